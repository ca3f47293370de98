"""Optuna studies for pg_lab's sweeper (hydra_plugins/pg_lab_sweepers/optuna_sweeper.py): storage, the search
space from Hydra's sweep syntax, the best trial as an experiment file, and, inside a trial's job, reporting
and pruning (`TrialReporter`)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Transformer
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from pg_lab.resume import Pruned
from pg_lab.rundir import BOOKKEEPING_KEYS, SEED_KEY, override_key

if TYPE_CHECKING:  # optuna is imported where it is used: pg-lab commands that tune nothing do not pay for it
    import optuna
    from optuna.distributions import BaseDistribution

TRIAL_KEY = "optuna_trial"  # the trial a job belongs to (a bookkeeping key: not in job directory names)
SWEEPER_TARGET = "hydra_plugins.pg_lab_sweepers.optuna_sweeper.OptunaSweeper"


def open_storage(spec: str | None, sweep_dir: Path | str):
    """The study's storage: an RDB URL as it is, anything else a journal file (default: in the sweep dir)."""
    import optuna

    if spec and "://" in spec:
        return spec
    path = Path(spec).expanduser() if spec else Path(sweep_dir) / "optuna.journal"
    path.parent.mkdir(parents=True, exist_ok=True)
    return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(path)))


def search_space(arguments: list[str]) -> tuple[dict[str, BaseDistribution], list[str]]:
    """Sweep overrides (`choice`, `range`, `interval`, `tag(log, interval(...))`, `a,b,c`) -> Optuna
    distributions; the rest are fixed overrides, passed to every job as they are."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    space: dict[str, BaseDistribution] = {}
    fixed: list[str] = []
    for o in OverridesParser.create().parse_overrides(arguments):
        key = o.get_key_element()
        if override_key(key) == SEED_KEY:
            raise ValueError("seed: each trial runs every seed in hydra.sweeper.seeds; do not set or sweep `seed`")
        if not o.is_sweep_override():
            fixed.append(o.input_line)
            continue
        if o.is_interval_sweep():
            v = o.value()
            log_scale = "log" in v.tags
            if isinstance(v.start, int) and isinstance(v.end, int):
                space[key] = IntDistribution(int(v.start), int(v.end), log=log_scale)
            else:
                space[key] = FloatDistribution(float(v.start), float(v.end), log=log_scale)
            continue
        values = list(o.sweep_iterator(transformer=Transformer.encode))
        if o.is_range_sweep() and all(isinstance(x, int) for x in values) and len(values) > 1 and \
                not o.value().shuffle:
            space[key] = IntDistribution(values[0], values[-1], step=values[1] - values[0])
        else:
            space[key] = CategoricalDistribution(values)
    return space, fixed


def incumbent(config: DictConfig, space: dict[str, BaseDistribution]) -> tuple[dict[str, Any], list[str]]:
    """The searched keys' values in the config the sweep was launched with (a group's key: its chosen option):
    today's setting, to be the study's first trial so that its best is never worse than what users run. Returns
    those inside their distribution and the keys whose value lies outside it (left to the sampler)."""
    from optuna.distributions import CategoricalDistribution

    choices = config.hydra.runtime.choices if "hydra" in config else {}
    params, outside = {}, []
    for key, dist in space.items():
        value = choices[key] if key in choices else OmegaConf.select(config, key, default=None)
        if isinstance(dist, CategoricalDistribution):
            inside = value in dist.choices
        else:
            inside = isinstance(value, (int, float)) and not isinstance(value, bool) and dist.low <= value <= dist.high
        if inside:
            params[key] = value
        else:
            outside.append(key)
    return params, outside


def as_override(key: str, value: Any) -> str:
    if value is None:
        return f"{key}=null"
    if isinstance(value, bool):
        return f"{key}={str(value).lower()}"
    return f"{key}={value}"


def experiment_file(overrides: list[str], groups: set[str], study: str, trial: int, value: float) -> str:
    """A job's overrides as an experiment preset: group choices as defaults overrides, values as keys (seed,
    the trial and bookkeeping keys left out; an `experiment=` preset the sweep used is included first)."""
    defaults, values = [], {}
    for o in overrides:
        key, _, v = o.partition("=")
        key = key.lstrip("+~")
        if key in (SEED_KEY, TRIAL_KEY) or key.startswith("hydra.") or \
                (key in BOOKKEEPING_KEYS and key != "experiment"):
            continue
        if key == "experiment":
            defaults.insert(0, f"/experiment/{v}")
        elif key in groups:
            defaults.append({f"override /{key}": v})
        else:
            _set(values, key, yaml.safe_load(v))
    body = {"defaults": defaults, **values} if defaults else values
    head = (f"# @package _global_\n# The best trial ({trial}, value {value:.6g}) of the Optuna study {study!r}, "
            "written by pg_lab's sweeper.\n"
            f"#   pg-lab --config-dir <this file's grandparent> experiment=best_{study}\n")
    return head + yaml.safe_dump(body, sort_keys=False)


def _set(tree: dict, dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    for p in parents:
        tree = tree.setdefault(p, {})
    tree[leaf] = value


# ------------------------------------------------------------------ inside a job: reporting and pruning


class TrialReporter:
    """In a job of an Optuna trial with a pruner: reports the recent return (first seed only) `reports` times
    over the budget and asks whether the trial should stop. `None` from `for_job` when there is nothing to do."""

    def __init__(self, trial: optuna.Trial, report: bool, every: int):
        self.trial, self.report, self.every, self.next = trial, report, max(1, every), max(1, every)

    @classmethod
    def for_job(cls, cfg: DictConfig) -> TrialReporter | None:
        number = cfg.get(TRIAL_KEY)
        if number is None:
            return None
        import optuna
        from hydra.core.hydra_config import HydraConfig

        hc = HydraConfig.get()
        sweeper = hc.sweeper
        if sweeper.get("_target_") != SWEEPER_TARGET:
            raise ValueError(f"{TRIAL_KEY}= is set by pg_lab's Optuna sweeper (hydra/sweeper=optuna), not by hand")
        if not sweeper.get("pruner"):
            return None
        storage = open_storage(sweeper.storage, hc.sweep.dir)
        study = optuna.load_study(study_name=sweeper.study_name, storage=storage, pruner=instantiate(sweeper.pruner))
        storage = study._storage
        trial_id = storage.get_trial_id_from_study_id_trial_number(
            storage.get_study_id_from_name(sweeper.study_name), int(number))
        report = int(cfg.seed) == int(list(sweeper.seeds)[0])
        return cls(optuna.trial.Trial(study, trial_id), report, int(cfg.total_steps) // max(1, int(sweeper.reports)))

    def __call__(self, step: int, value: float | None) -> None:
        """Raises Pruned when the study's pruner says so."""
        if step < self.next:
            return
        point = step // self.every * self.every  # on a grid shared by all trials, whatever their batch size,
        self.next = point + self.every           # so that pruners compare trials at the same step
        if self.report and value is not None:
            self.trial.report(value, point)
        if self.trial.should_prune():
            raise Pruned(f"pruned by the study's pruner at {step} env steps (pid {os.getpid()})")

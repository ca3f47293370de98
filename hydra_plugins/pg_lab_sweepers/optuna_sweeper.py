"""Optuna through Hydra at cluster scale: `hydra/sweeper=optuna`, a Hydra sweeper plugin over current Optuna.

    pg-lab -m experiment=tune_cartpole                                # 20 trials x 3 seeds, TPE, median pruning
    pg-lab -m experiment=tune_cartpole hydra/launcher=slurm           # the same study, its jobs on Slurm
    pg-lab -m experiment=tune_cartpole hydra.sweeper.storage=postgresql://user@host/db   # several sweepers, one study

- **Several seeds per trial**: each trial runs once per seed in `seeds`, through whichever Hydra launcher is
  chosen (basic, joblib, submitit); its value is the mean of the seeds' returns, their spread is kept in the
  trial's user attributes (`seed_values`, `std`).
- **Shared storage**: the study lives in `storage`: by default a journal file in the sweep directory (Optuna's
  JournalFileBackend, which locks the file and suits shared file systems), a journal file you name, or an RDB
  URL. Sweepers on several machines can feed one study at once.
- **Continuing**: the same command again continues the study. Trials cut off, by a signal that stopped the sweep
  (Ctrl-C, SIGTERM: its running jobs checkpoint, the rest do not start) or by a sweeper that died (no heartbeat
  for `stale_after_s`), are run again with the same parameters, so their jobs resume from their checkpoints;
  only the trials still missing from `n_trials` are asked.
- **Pruning** (with a `pruner`): the first seed of each trial reports its recent return to the study as it
  trains; every seed of a trial the pruner stops ends with status `pruned`, and the trial is told PRUNED.
- **The best trial** is written as a ready-to-run experiment file, `<sweep dir>/best/experiment/<study>.yaml`;
  the sweep prints the command that runs it.

Why a plugin of our own rather than hydra-optuna-sweeper: that plugin (1.3.0, its last release) pins
optuna < 3, which resolves to Optuna 2.10 (2022): no JournalStorage, no seeds per trial, no pruning (its
trials are told only their final value). This one is the Sweeper interface and Optuna's own ask/tell,
samplers, pruners and storages; launching stays Hydra's.
"""

from __future__ import annotations

import logging
import math
import statistics
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from hydra.core.config_store import ConfigStore
from hydra.core.plugins import Plugins
from hydra.core.utils import JobReturn, JobStatus
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from pg_lab.rundir import SEED_KEY, STOP_MARKER, RunDir, override_key
from pg_lab.tuning import TRIAL_KEY, as_override, experiment_file, incumbent, open_storage, search_space

if TYPE_CHECKING:  # optuna is imported when a sweep starts, not by every pg-lab command (it takes ~0.4 s)
    import optuna

log = logging.getLogger("pg_lab")


def _built(node: Any) -> Any:
    """A sampler or pruner: Hydra has usually instantiated it already (its `_target_`); None stays None."""
    return instantiate(node) if isinstance(node, (dict, DictConfig)) else node


def _job_dir(ret: JobReturn) -> Path:
    return Path(ret.hydra_cfg.hydra.runtime.output_dir)


def _done(states) -> tuple:
    return states.COMPLETE, states.PRUNED, states.FAIL


@dataclass
class OptunaSweeperConf:
    _target_: str = "hydra_plugins.pg_lab_sweepers.optuna_sweeper.OptunaSweeper"
    study_name: str = "${name}"
    # null: a journal file in the sweep directory; a path: a journal file there; a URL: an RDB (sqlite:///...)
    storage: str | None = None
    direction: str = "maximize"
    n_trials: int = 20                  # trials in the study, all launches together
    n_jobs: int = 2                     # trials launched at once (each as len(seeds) jobs)
    seeds: list[int] = field(default_factory=lambda: [0])
    sampler: Any = field(default_factory=lambda: {"_target_": "optuna.samplers.TPESampler", "seed": 0})
    pruner: Any = None                  # e.g. {_target_: optuna.pruners.MedianPruner, n_startup_trials: 5}
    reports: int = 20                   # intermediate values a pruned-for trial reports over its budget
    params: dict[str, str] = field(default_factory=dict)  # key: sweep, as on the command line
    max_failure_rate: float = 0.0       # failed trials tolerated per batch before the sweep stops
    stale_after_s: float = 300.0        # a running trial with no heartbeat for this long was cut off
    incumbent_first: bool = True        # trial 0 is the launch config's own values of the searched keys


ConfigStore.instance().store(group="hydra/sweeper", name="optuna", node=OptunaSweeperConf, provider="pg_lab")


class _Heartbeat:
    """Marks the trials in flight as alive (a user attribute, every few seconds), so that a relaunch can tell
    trials cut off by a dead sweeper from trials another live sweeper is running."""

    def __init__(self, study: optuna.Study, trials: list[optuna.Trial], every_s: float):
        self.study, self.trials, self.every_s = study, trials, every_s
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._beat, daemon=True)

    def _beat(self) -> None:
        while True:
            for t in self.trials:
                try:
                    t.set_user_attr("heartbeat", time.time())
                except Exception:  # noqa: BLE001 - a trial already told, or a storage hiccup: next beat
                    pass
            if self.done.wait(self.every_s):
                return

    def __enter__(self) -> _Heartbeat:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.done.set()
        self.thread.join()


class OptunaSweeper(Sweeper):
    def __init__(self, study_name: str, storage: str | None, direction: str, n_trials: int, n_jobs: int,
                 seeds: list[int], sampler: Any, pruner: Any, reports: int, params: dict[str, str],
                 max_failure_rate: float, stale_after_s: float, incumbent_first: bool = True) -> None:
        if not seeds:
            raise ValueError("hydra.sweeper.seeds: give at least one seed")
        self.study_name, self.storage_spec, self.direction = study_name, storage, direction
        self.n_trials, self.n_jobs, self.seeds = n_trials, max(1, n_jobs), list(seeds)
        self.sampler_cfg, self.pruner_cfg, self.params = sampler, pruner, dict(params or {})
        self.max_failure_rate, self.stale_after_s = max_failure_rate, stale_after_s
        self.incumbent_first = incumbent_first
        del reports  # read by the jobs (pg_lab.tuning.TrialReporter), from the job's hydra config

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config = config
        self.launcher = Plugins.instance().instantiate_launcher(config=config, hydra_context=hydra_context,
                                                                task_function=task_function)
        self.sweep_dir = Path(config.hydra.sweep.dir)
        self.groups = set(config.hydra.runtime.choices)

    # ------------------------------------------------------------------ the study

    def sweep(self, arguments: list[str]) -> None:
        import optuna

        space, fixed = search_space([*(f"{k}={v}" for k, v in self.params.items()), *arguments])
        fixed_keys = {override_key(o) for o in fixed}
        space = {k: d for k, d in space.items() if k not in fixed_keys}  # the command line fixes a swept key
        self.sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, self.sweep_dir / "multirun.yaml")
        study = optuna.create_study(
            study_name=self.study_name, storage=open_storage(self.storage_spec, self.sweep_dir),
            sampler=_built(self.sampler_cfg), pruner=_built(self.pruner_cfg) or optuna.pruners.NopPruner(),
            direction=self.direction, load_if_exists=True)
        if study.get_trials(deepcopy=False):
            # continuing (or a second sweeper on the same study): a sampler seeded as before would propose the
            # first trials' parameters again
            study.sampler.reseed_rng()
        elif self.incumbent_first and space:  # a new study: today's setting is measured first, beside the rest
            params, outside = incumbent(self.config, space)
            study.enqueue_trial(params, user_attrs={"incumbent": True})
            log.info("trial 0: the launch config's own values (%s)%s",
                     ", ".join(f"{k}={v}" for k, v in params.items()) or "none in the search space",
                     f"; outside the search space, sampled: {', '.join(outside)}" if outside else "")
        self._rerun_cut_off(study, space)
        log.info("Optuna study %r (%s): %d of %d trials done; %d seed(s) per trial; searching %s",
                 self.study_name, self.storage_spec or self.sweep_dir / "optuna.journal",
                 self._counted(study), self.n_trials, len(self.seeds), ", ".join(space) or "nothing")
        job_idx = 0
        while (remaining := self.n_trials - self._counted(study)) > 0:
            trials = [study.ask(space) for _ in range(min(self.n_jobs, remaining))]
            for t in trials:
                t.set_user_attr("heartbeat", time.time())
            jobs = [[*fixed, *(as_override(k, v) for k, v in t.params.items()), f"{SEED_KEY}={seed}",
                     f"{TRIAL_KEY}={t.number}"] for t in trials for seed in self.seeds]
            with _Heartbeat(study, trials, every_s=max(1.0, self.stale_after_s / 10)):
                returns = self.launcher.launch(jobs, initial_job_idx=job_idx)
            job_idx += len(returns)
            per_trial = [returns[i * len(self.seeds):(i + 1) * len(self.seeds)] for i in range(len(trials))]
            # a signal stopped the sweep (pg_lab.sweeps): its jobs checkpointed or did not start, and its trials
            # are not failures but cut off, to run again with the same parameters when the command is relaunched
            stopped = (self.sweep_dir / STOP_MARKER).exists()
            outcomes = [self._tell(study, t, rets, stopped) for t, rets in zip(trials, per_trial)]
            if stopped:
                log.warning("the sweep was stopped: %d trial(s) cut off run again, their jobs resuming, when the "
                            "same command is launched again", outcomes.count("cut off"))
                return  # pg_lab.sweeps says how it stopped, and exits with 128 + the signal
            failed = outcomes.count("fail")
            if failed and failed / len(trials) > self.max_failure_rate:
                raise RuntimeError(f"{failed} of {len(trials)} trials failed (max_failure_rate="
                                   f"{self.max_failure_rate}); their job directories hold error.txt")
        self._write_best(study)

    def _counted(self, study: optuna.Study) -> int:
        """Trials that count towards n_trials: done ones (less those re-run) and ones running elsewhere. Waiting
        (re-queued) trials do not: `ask` hands them out first, in place of the ones they re-run."""
        from optuna.trial import TrialState

        now = time.time()
        return sum(1 for t in study.get_trials(deepcopy=False)
                   if (t.state in _done(TrialState) and not t.user_attrs.get("rerun"))
                   or (t.state == TrialState.RUNNING and now - t.user_attrs.get("heartbeat", 0) < self.stale_after_s))

    def _rerun_cut_off(self, study: optuna.Study, space: dict) -> None:
        from optuna.trial import TrialState

        now = time.time()
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if now - t.user_attrs.get("heartbeat", 0) < self.stale_after_s:
                continue  # another sweeper is running it
            self._run_again(study, t.number, t._trial_id, t.params if set(t.params) == set(space) else None)

    @staticmethod
    def _run_again(study: optuna.Study, number: int, trial_id: int, params: dict | None) -> None:
        """A cut-off trial: FAIL, marked `rerun` (not counted), and its parameters queued for the next `ask`."""
        from optuna.trial import TrialState

        study._storage.set_trial_user_attr(trial_id, "rerun", True)
        study.tell(number, state=TrialState.FAIL)
        if params is not None:
            study.enqueue_trial(params, user_attrs={"rerun_of": number})
            log.info("trial %d was cut off: it runs again with the same parameters", number)

    def _tell(self, study: optuna.Study, trial: optuna.Trial, rets: list[JobReturn], stopped: bool = False) -> str:
        from optuna.trial import TrialState

        values, statuses = [], []
        for r in rets:
            summary = RunDir(_job_dir(r)).read_summary()
            statuses.append((summary or {}).get("status", "failed"))
            if r.status == JobStatus.COMPLETED and isinstance(r.return_value, (int, float)):
                values.append(float(r.return_value))
        trial.set_user_attr("job_dirs", [str(_job_dir(r)) for r in rets])
        trial.set_user_attr("statuses", statuses)
        if "pruned" in statuses:
            study.tell(trial, state=TrialState.PRUNED)
            return "pruned"
        if stopped and any(s != "finished" for s in statuses):  # interrupted, or never started
            self._run_again(study, trial.number, trial._trial_id, trial.params)
            return "cut off"
        if len(values) < len(rets) or not all(math.isfinite(v) for v in values):
            log.warning("trial %d failed: job statuses %s, values %s", trial.number, statuses, values)
            study.tell(trial, state=TrialState.FAIL)
            return "fail"
        trial.set_user_attr("seed_values", values)
        trial.set_user_attr("std", statistics.pstdev(values))
        study.tell(trial, statistics.fmean(values))
        return "complete"

    # ------------------------------------------------------------------ the result

    def _write_best(self, study: optuna.Study) -> None:
        from optuna.trial import TrialState

        try:
            best = study.best_trial
        except ValueError:
            log.warning("no trial completed: nothing to report")
            return
        results = {"name": "optuna", "study": self.study_name, "best_trial": best.number,
                   "best_params": dict(best.params), "best_value": best.value,
                   "best_seed_values": best.user_attrs.get("seed_values"), "best_std": best.user_attrs.get("std"),
                   "trials": {st.name.lower(): len(study.get_trials(deepcopy=False, states=(st,)))
                              for st in _done(TrialState)}}
        (self.sweep_dir / "optimization_results.yaml").write_text(yaml.safe_dump(results, sort_keys=False))
        job_dir = Path(best.user_attrs["job_dirs"][0])
        overrides = OmegaConf.load(job_dir / ".hydra" / "overrides.yaml")
        path = self.sweep_dir / "best" / "experiment" / f"best_{self.study_name}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(experiment_file(list(overrides), self.groups, study=self.study_name, trial=best.number,
                                        value=best.value))
        log.info("best trial %d: %.4g (seeds %s) with %s\n  run it:  pg-lab --config-dir %s experiment=%s",
                 best.number, best.value, best.user_attrs.get("seed_values"), best.params, path.parent.parent,
                 path.stem)



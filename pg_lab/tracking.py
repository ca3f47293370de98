"""Weights & Biases: one W&B run per job, metrics namespaced the way dashboards group them.

metrics.jsonl keeps the run-directory contract's flat keys (`step`, `episode_return_mean`, ...); in W&B the
same numbers are logged as `charts/…`, `losses/…`, `diagnostics/…` and `time/…`, all on the `step` axis
(env steps). The W&B summary also carries summary.json's fields and the last `step` and `episode_return_mean`
under their flat names, so that `wandb leet inspect --summary` and the W&B runs table read like the run
directory.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from pg_lab.rundir import RunDir, grouping_key, override_key

log = logging.getLogger(__name__)

SECTIONS = {
    "charts": ("episode_return_mean", "episode_length_mean", "episodes", "return_recent_mean", "lr"),
    "losses": ("policy_loss", "value_loss", "entropy"),
    "time": ("steps_per_s", "time_s", "rollout_s", "update_s"),
}
SECTION_OF = {key: section for section, keys in SECTIONS.items() for key in keys}
AXIS = "step"
CONTRACT_KEYS = (AXIS, "episode_return_mean")  # also in the W&B summary under their run-directory names


def namespaced(row: dict) -> dict:
    """{"policy_loss": x, "grad_snr": y, "step": s} -> {"losses/policy_loss": x, "diagnostics/grad_snr": y,
    "step": s}; anything not named in SECTIONS is a diagnostic. None values are left out."""
    out = {}
    for key, value in row.items():
        if value is None or not isinstance(value, (int, float)):
            continue
        out[key if key in (AXIS, "update") else f"{SECTION_OF.get(key, 'diagnostics')}/{key}"] = value
    return out


@dataclass
class JobIdentity:
    """How this job shows in W&B: name from its overrides ("policy=beta,seed=3"), job_type = the grouping
    key (the same overrides less the seed and the bookkeeping keys: seeds of one configuration sit
    together), group = the sweep's name."""
    env_choice: str
    name: str
    group: str | None
    job_type: str
    tags: list[str]


def job_identity(cfg: DictConfig) -> JobIdentity:
    hc = HydraConfig.get()
    choices = hc.runtime.choices
    excluded = set(hc.job.config.override_dirname.exclude_keys)
    overrides = [o for o in hc.overrides.task if override_key(o) not in excluded]
    name = cfg.wandb.name or hc.job.override_dirname or "default"
    group = cfg.wandb.group
    if group is None and hc.mode == RunMode.MULTIRUN:
        group = cfg.name
    job_type = cfg.wandb.job_type or grouping_key(overrides)
    tags = [*cfg.wandb.tags, *(f"{g}:{choices[g]}" for g in ("env", "policy", "baseline") if choices.get(g))]
    return JobIdentity(choices.get("env", "?"), name, group, job_type[:64], tags)


class WandbRun:
    """One W&B run per job. Whatever W&B does (no network, bad key, no package), training and the local
    files go on: a failure turns W&B off with one warning."""

    def __init__(self, cfg: DictConfig, run_dir: RunDir, job: JobIdentity, run_id: str | None):
        self.run = None
        self.run_id = run_id
        self.last: dict = {}
        if cfg.wandb.mode == "disabled":
            return
        try:
            import wandb

            self.run_id = run_id or uuid.uuid4().hex[:8]
            self.run = wandb.init(
                dir=str(run_dir), mode=str(cfg.wandb.mode.value if hasattr(cfg.wandb.mode, "value")
                                           else cfg.wandb.mode),
                project=cfg.wandb.project, entity=cfg.wandb.entity, group=job.group, name=job.name,
                job_type=job.job_type, tags=job.tags or None, id=self.run_id, resume="allow",
                config=OmegaConf.to_container(cfg, resolve=True, enum_to_str=True),
                settings=wandb.Settings(console="off", init_timeout=60, silent=True),
            )
            self.run.define_metric(AXIS)
            self.run.define_metric("*", step_metric=AXIS)
            run_dir.write_wandb_id(self.run_id)
        except Exception as e:  # noqa: BLE001 - W&B must never stop training
            log.warning("W&B is off for this run (%s: %s); metrics still go to %s", type(e).__name__, e,
                        run_dir.metrics.name)
            self.run = None

    def log(self, metrics: dict) -> None:
        if self.run is None:
            return
        self.last = metrics
        try:
            self.run.log(namespaced(metrics))
        except Exception as e:  # noqa: BLE001
            log.warning("W&B logging failed (%s); W&B is off for the rest of this run", e)
            self.run = None

    def finish(self, summary: dict, exit_code: int) -> None:
        if self.run is None:
            return
        try:
            flat = {**{k: self.last.get(k) for k in CONTRACT_KEYS}, **summary}
            self.run.summary.update({k: v for k, v in flat.items() if isinstance(v, (int, float, str))})
            self.run.finish(exit_code=exit_code)
        except Exception as e:  # noqa: BLE001
            log.warning("W&B finish failed (%s)", e)

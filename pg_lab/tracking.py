"""Weights & Biases: one W&B run per job, metrics namespaced the way dashboards group them.

metrics.jsonl keeps the run-directory contract's flat keys (`step`, `episode_return_mean`, ...); in W&B the
same numbers are logged as `charts/…`, `losses/…`, `diagnostics/…` and `time/…`, all on the `step` axis
(env steps). The W&B summary also carries summary.json's fields and the last `step` and `episode_return_mean`
under their flat names, so that `wandb leet inspect --summary` and the W&B runs table read like the run
directory.
"""

from __future__ import annotations

import logging
import os
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
    "step": s}; a key that names its own section (`reward/forward`, the env's reward terms) keeps it; anything
    else not named in SECTIONS is a diagnostic. None values are left out."""
    out = {}
    for key, value in row.items():
        if value is None or not isinstance(value, (int, float)):
            continue
        own = key in (AXIS, "update") or "/" in key
        out[key if own else f"{SECTION_OF.get(key, 'diagnostics')}/{key}"] = value
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


WANDB_MODE_ALIASES = {"offline": "offline", "dryrun": "offline", "online": "online", "run": "online",
                      "disabled": "disabled"}


def wandb_mode(cfg: DictConfig, command_line: list[str]) -> tuple[str, str]:
    """Which W&B mode this run uses, and why. W&B's own precedence puts `WANDB_MODE` below an explicit
    `wandb.init(mode=...)`; pg_lab always passes a mode, so it decides: `wandb.mode=` on the command line wins,
    then the environment's WANDB_MODE, then the config (offline by default)."""
    configured = str(getattr(cfg.wandb.mode, "value", cfg.wandb.mode))
    if any(override_key(o) == "wandb.mode" for o in command_line):
        return configured, "wandb.mode on the command line"
    env = os.environ.get("WANDB_MODE")
    if env:
        if env in WANDB_MODE_ALIASES:
            return WANDB_MODE_ALIASES[env], "WANDB_MODE in the environment"
        log.warning("WANDB_MODE=%s is not a W&B mode (offline, online, disabled): using wandb.mode=%s", env,
                    configured)
    return configured, "wandb.mode in the config"


class WandbRun:
    """One W&B run per job. Whatever W&B does (no network, bad key, no package), training and the local
    files go on: a failure turns W&B off with one warning, and a start that hangs gives up after
    `wandb.init_timeout` seconds. W&B's offline format writes one `offline-run-*` folder per process, so a
    resumed run has one per launch; `wandb sync` of them all uploads one run (same id)."""

    def __init__(self, cfg: DictConfig, run_dir: RunDir, job: JobIdentity, run_id: str | None,
                 command_line: list[str]):
        self.run = None
        self.run_id = run_id
        self.last: dict = {}
        self.mode, why = wandb_mode(cfg, command_line)
        if self.mode != str(getattr(cfg.wandb.mode, "value", cfg.wandb.mode)) or why.startswith("WANDB_MODE"):
            log.info("W&B mode %s (from %s)", self.mode, why)
        if self.mode == "disabled":
            return
        try:
            import wandb

            if self.mode == "online":
                log.info("starting W&B online (gives up after %.0f s and trains without it)", cfg.wandb.init_timeout)
            self.run_id = run_id or uuid.uuid4().hex[:8]
            self.run = wandb.init(
                dir=str(run_dir), mode=self.mode,
                project=cfg.wandb.project, entity=cfg.wandb.entity, group=job.group, name=job.name,
                job_type=job.job_type, tags=job.tags or None, id=self.run_id, resume="allow",
                config=OmegaConf.to_container(cfg, resolve=True, enum_to_str=True),
                settings=wandb.Settings(console="off", init_timeout=cfg.wandb.init_timeout, silent=True),
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

"""Stopping and resuming: checkpoint contents, RNG states, signals, `resume=DIR`.

Every batch starts with a reset seeded by (seed, update) (`batch_seed`), so the state at a batch boundary is
the learner's alone: networks, optimizers, observation statistics, counters and the RNGs. A checkpoint
of that state resumes bit-for-bit.
"""

from __future__ import annotations

import logging
import random
import signal
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from pg_lab.config import Config, ConfigError
from pg_lab.learner import Learner, Progress
from pg_lab.runlog import CHECKPOINT

log = logging.getLogger("pg_lab")


class Interrupted(Exception):
    """A signal asked the run to stop; it stops at a batch boundary with a checkpoint."""


def batch_seed(seed: int, update: int) -> int:
    """The reset seed of each batch, derived from (seed, update) so that a resume reproduces it."""
    return int(np.random.SeedSequence([seed, update]).generate_state(1)[0])


def state_dict(learner: Learner, progress: Progress, rng: dict, wandb_id: str | None) -> dict:
    return {
        "policy": learner.policy.state_dict(),
        "optimizer": learner.optimizer.state_dict(),
        "baseline": learner.baseline.state_dict(),
        "normalizer": learner.normalizer.state_dict(),
        "progress": {"step": progress.step, "update": progress.update, "wall_time_s": progress.wall_time_s,
                     "episodes": progress.episodes, "recent_returns": list(progress.recent_returns)},
        "rng": rng,
        "wandb_run_id": wandb_id,
    }


def capture_rng() -> dict:
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}


def restore_rng(rng: dict) -> None:
    torch.set_rng_state(rng["torch"])
    np.random.set_state(rng["numpy"])
    random.setstate(rng["python"])


def load_state(learner: Learner, progress: Progress, ckpt: dict) -> None:
    learner.policy.load_state_dict(ckpt["policy"])
    learner.optimizer.load_state_dict(ckpt["optimizer"])
    learner.baseline.load_state_dict(ckpt["baseline"])
    learner.normalizer.load_state_dict(ckpt["normalizer"])
    p = ckpt["progress"]
    progress.step, progress.update, progress.wall_time_s = p["step"], p["update"], p["wall_time_s"]
    progress.episodes = p["episodes"]
    progress.recent_returns.extend(p["recent_returns"])
    restore_rng(ckpt["rng"])


class StopFlag:
    """SIGINT/SIGTERM/SIGUSR2 (submitit's pre-emption) set a flag that the loop checks; a second SIGINT
    stops at once."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR2)

    def __init__(self):
        self.signum: int | None = None
        self.previous = {}
        for s in self.SIGNALS:
            try:
                self.previous[s] = signal.signal(s, self._handle)
            except ValueError:  # not the main thread (e.g. a thread-based launcher): leave signals alone
                pass

    def _handle(self, signum, frame):
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signum = signum

    def hand_on(self) -> None:
        """After our checkpoint, let the handler that was there before (submitit's, which re-queues the job
        on pre-emption) have the signal too."""
        previous = self.previous.get(self.signum)
        if callable(previous):
            previous(self.signum, None)

    def __call__(self) -> bool:
        return self.signum is not None

    def restore(self) -> None:
        for s, h in self.previous.items():
            signal.signal(s, h)


def resume_target(cfg: DictConfig, hc) -> tuple[DictConfig, Path]:
    """`resume=DIR`: continue the run in DIR with the config it was started with (a `total_steps=` on
    this command line may extend it)."""
    run_dir = Path(cfg.resume).expanduser().resolve()
    if not (run_dir / CHECKPOINT).is_file():
        raise ConfigError(f"resume={cfg.resume}: no {CHECKPOINT} in {run_dir}: nothing to resume")
    if not (run_dir / ".hydra" / "config.yaml").is_file():
        raise ConfigError(f"resume={cfg.resume}: no .hydra/config.yaml in {run_dir}: not a pg-lab run directory")
    saved = OmegaConf.load(run_dir / ".hydra" / "config.yaml")
    if any(o.startswith("total_steps=") for o in hc.overrides.task):
        saved.total_steps = cfg.total_steps
    saved.resume = None
    log.info("resuming the run in %s", run_dir)
    try:
        return OmegaConf.merge(OmegaConf.structured(Config), saved), run_dir
    except Exception as e:  # noqa: BLE001 - e.g. a run made by an older pg_lab with another schema
        raise ConfigError(f"resume={cfg.resume}: its saved config does not fit this pg_lab's schema ({e})") from None

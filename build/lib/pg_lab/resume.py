"""Stopping and resuming: checkpoint contents, RNG states, signals, `resume=DIR`.

Every batch starts with a reset seeded by (seed, update) (`batch_seed`), so the state at a batch boundary is
the learner's alone: networks, optimizers, observation statistics, counters and the RNGs. A checkpoint
of that state resumes bit-for-bit.
"""

from __future__ import annotations

import logging
import random
import signal
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from pg_lab.config import Config, ConfigError
from pg_lab.reinforce import Reinforce
from pg_lab.rundir import BOOKKEEPING_KEYS, RunDir, override_key

log = logging.getLogger("pg_lab")
RECENT_EPISODES = 20  # final_return_mean averages the returns of this many last episodes


@dataclass
class Progress:
    step: int = 0            # env steps so far
    update: int = 0
    wall_time_s: float = 0.0
    episodes: int = 0
    recent_returns: deque = field(default_factory=lambda: deque(maxlen=RECENT_EPISODES))

    def state_dict(self) -> dict:
        return {"step": self.step, "update": self.update, "wall_time_s": self.wall_time_s,
                "episodes": self.episodes, "recent_returns": list(self.recent_returns)}

    def load_state_dict(self, state: dict) -> None:
        self.step, self.update, self.wall_time_s = state["step"], state["update"], state["wall_time_s"]
        self.episodes = state["episodes"]
        self.recent_returns.extend(state["recent_returns"])


class Interrupted(Exception):
    """A signal asked the run to stop; it stops at a batch boundary with a checkpoint."""

    def __init__(self, signum: int | None):
        super().__init__(f"stopped by signal {signum}")
        self.signum = signum


class Pruned(Exception):
    """An Optuna trial's pruner stopped the run (pg_lab.optuna_sweeper); it ends with status `pruned`."""


def batch_seed(seed: int, update: int) -> int:
    """The reset seed of each batch, derived from (seed, update) so that a resume reproduces it."""
    return int(np.random.SeedSequence([seed, update]).generate_state(1)[0])


def checkpoint_state(algorithm: Reinforce, progress: Progress, rng: dict, wandb_id: str | None) -> dict:
    """What checkpoint.pt holds: the algorithm's state (policy, optimizers, baseline, observation statistics),
    the counters, the RNG states at the batch boundary and the W&B run id."""
    return {**algorithm.state_dict(), "progress": progress.state_dict(), "rng": rng, "wandb_run_id": wandb_id}


def capture_rng() -> dict:
    """Every generator a run draws from; with device=cuda the policy samples from CUDA's."""
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def restore_rng(rng: dict) -> None:
    torch.set_rng_state(rng["torch"])
    np.random.set_state(rng["numpy"])
    random.setstate(rng["python"])
    if rng.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])


def load_state(algorithm: Reinforce, progress: Progress, ckpt: dict) -> None:
    algorithm.load_state_dict(ckpt)
    progress.load_state_dict(ckpt["progress"])
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


def resume_target(cfg: DictConfig, hc) -> tuple[DictConfig, RunDir]:
    """`resume=DIR`: continue the run in DIR with the config it was started with (a `total_steps=` on
    this command line may extend it; bookkeeping keys apply; any other override is refused, not ignored)."""
    run_dir = RunDir(Path(cfg.resume).expanduser().resolve())
    if not run_dir.has_checkpoint():
        raise ConfigError(f"resume={cfg.resume}: no {run_dir.checkpoint.name} in {run_dir}: nothing to resume")
    if not run_dir.is_run():
        raise ConfigError(f"resume={cfg.resume}: no .hydra/config.yaml in {run_dir}: not a pg-lab run directory")
    saved = run_dir.read_config()
    # the run's own config, plus what this command line may change: a longer budget, and keys that change how
    # the run is launched or logged (progress_bar, wandb.mode, torch_threads, ...); anything else is refused
    applied = {"total_steps", *BOOKKEEPING_KEYS} - {"experiment", "name", "resume", "fresh", "hydra.launcher.n_jobs"}
    ignored = []
    for override in hc.overrides.task:
        key = override_key(override)
        if key == "resume":
            continue
        if key in applied:
            OmegaConf.update(saved, key, OmegaConf.select(cfg, key), force_add=True)
        else:
            ignored.append(override)
    if ignored:
        raise ConfigError(f"resume={cfg.resume} continues that run with the config it was started with: "
                          f"{' '.join(ignored)} would change it. Drop them (only total_steps= and keys such as "
                          "progress_bar= or wandb.mode= apply to a resumed run), or start a new run")
    saved.resume = None
    log.info("resuming the run in %s", run_dir)
    try:
        return OmegaConf.merge(OmegaConf.structured(Config), saved), run_dir
    except Exception as e:  # noqa: BLE001 - e.g. a run made by an older pg_lab with another schema
        raise ConfigError(f"resume={cfg.resume}: its saved config does not fit this pg_lab's schema ({e})") from None

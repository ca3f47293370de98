"""The run directory: every file a run leaves, read and written here and nowhere else.

    metrics.jsonl    one JSON object per update (`step`, `episode_return_mean`, losses, ...)
    summary.json     how the run ended (status, total_steps, wall_time_s, steps_per_s, final_return_mean, ...)
    checkpoint.pt    everything needed to resume exactly (see pg_lab.resume)
    .hydra/          Hydra's record: config.yaml (composed config), overrides.yaml, hydra.yaml
    wandb_run_id     the W&B run id, so that a resumed run continues the same W&B run
    error.txt        the traceback of a failed run
    train.log        the job's log (Hydra's job logging)
    wandb/           the W&B run itself (written by wandb)

Files are written so that a crash never leaves a half-written result: JSON lines are flushed one by one,
summary.json and checkpoint.pt are replaced atomically (temp file, fsync, os.replace).

How a run is *grouped* with its seeds (W&B's job_type, `pg-lab-compare`, the sweep report) also lives here:
its overrides less the seed and less `BOOKKEEPING_KEYS`, the keys that change how a run is launched or
logged but not what it learns. The same list keeps those keys out of a sweep job's directory name
(conf/config.yaml reads it through the `pg_lab:bookkeeping_keys` resolver), so a relaunch with, say,
`progress_bar=false` finds its jobs again.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch
import yaml
from omegaconf import DictConfig, OmegaConf

# keys that do not change what a run learns: left out of job directory names and of the grouping key
BOOKKEEPING_KEYS = ("wandb.mode", "wandb.project", "wandb.entity", "wandb.group", "wandb.name", "wandb.job_type",
                    "wandb.tags", "device", "progress_bar", "name", "experiment", "resume", "torch_threads",
                    "checkpoint_every", "hydra.launcher.n_jobs")
SEED_KEY = "seed"


def override_key(override: str) -> str:
    """`+algo.gamma=0.9` -> `algo.gamma`."""
    return override.split("=", 1)[0].lstrip("+~")


def grouping_key(overrides: Iterable[str]) -> str:
    """The configuration a run belongs to, seeds collapsed: "env=hopper,policy=beta" (sorted), or "default"."""
    kept = sorted(o for o in overrides if override_key(o) not in (*BOOKKEEPING_KEYS, SEED_KEY))
    return ",".join(kept) or "default"


def atomic_write(path: Path, write: Callable[[Any], None], binary: bool = False) -> None:
    """Write through `write(file)` into a temp file beside `path`, fsync it, then rename over `path`."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb" if binary else "w") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


class RunDir:
    """One run's (or sweep job's) directory."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.metrics = self.path / "metrics.jsonl"
        self.summary = self.path / "summary.json"
        self.checkpoint = self.path / "checkpoint.pt"
        self.config = self.path / ".hydra" / "config.yaml"
        self.overrides = self.path / ".hydra" / "overrides.yaml"
        self.wandb_id = self.path / "wandb_run_id"
        self.error = self.path / "error.txt"

    def __str__(self) -> str:
        return str(self.path)

    def is_run(self) -> bool:
        """A directory Hydra launched a pg-lab job in (it has the composed config)."""
        return self.config.is_file()

    # ------------------------------------------------------------------ Hydra's record

    def read_config(self) -> DictConfig:
        return OmegaConf.load(self.config)

    def read_overrides(self) -> list[str]:
        if not self.overrides.is_file():
            return []
        return yaml.safe_load(self.overrides.read_text()) or []

    def group(self) -> str:
        return grouping_key(self.read_overrides())

    # ------------------------------------------------------------------ summary, error, W&B id

    def read_summary(self) -> dict | None:
        try:
            return json.loads(self.summary.read_text())
        except (OSError, ValueError):
            return None

    def write_summary(self, summary: dict) -> None:
        atomic_write(self.summary, lambda f: json.dump(summary, f, indent=2))

    def write_error(self, text: str) -> None:
        self.error.write_text(text)

    def read_wandb_id(self) -> str | None:
        return self.wandb_id.read_text().strip() if self.wandb_id.is_file() else None

    def write_wandb_id(self, run_id: str) -> None:
        self.wandb_id.write_text(run_id)

    # ------------------------------------------------------------------ checkpoint

    def has_checkpoint(self) -> bool:
        return self.checkpoint.is_file()

    def save_checkpoint(self, state: dict) -> None:
        atomic_write(self.checkpoint, lambda f: torch.save(state, f), binary=True)

    def load_checkpoint(self) -> dict:
        try:
            # our own file, holding numpy and python RNG states besides tensors
            return torch.load(self.checkpoint, map_location="cpu", weights_only=False)
        except Exception as e:  # noqa: BLE001 - any unreadable file is the same problem for the user
            raise ValueError(f"checkpoint {self.checkpoint} is unreadable or corrupt ({type(e).__name__}: {e}); "
                             f"move it away to start afresh") from None

    # ------------------------------------------------------------------ metrics

    def read_metrics(self) -> list[dict]:
        """Every complete line of metrics.jsonl (a torn last line from a crash is skipped)."""
        rows = []
        if self.metrics.is_file():
            for line in self.metrics.read_text().splitlines():
                try:
                    rows.append(json.loads(line))
                except ValueError:
                    continue
        return rows

    def open_metrics(self, resume_step: int | None) -> MetricsFile:
        return MetricsFile(self.metrics, resume_step)


class MetricsFile:
    """metrics.jsonl, one JSON object per update. On resume, lines past the checkpoint's step (written
    after it, before the crash) are dropped so that every step appears exactly once."""

    def __init__(self, path: Path, resume_step: int | None):
        self.path = path
        if resume_step is None:
            self.path.unlink(missing_ok=True)
        elif self.path.exists():
            lines = self.path.read_text().splitlines()
            kept = [line for line in lines if line.strip() and _step_of(line) <= resume_step]
            if len(kept) != len(lines):
                atomic_write(self.path, lambda f: f.write("".join(f"{line}\n" for line in kept)))
        self.file = open(self.path, "a")

    def write(self, metrics: dict) -> None:
        self.file.write(json.dumps(metrics) + "\n")
        self.file.flush()

    def close(self) -> None:
        self.file.close()


def _step_of(line: str) -> float:
    try:
        return json.loads(line)["step"]
    except (ValueError, KeyError, TypeError):
        return math.inf  # a torn last line from a crash: drop it

"""What a run leaves in its directory: metrics.jsonl, summary.json, the W&B run, checkpoint.pt.

Files are written so that a crash never leaves a half-written result: JSON lines are flushed one by
one, summary.json and checkpoint.pt are replaced atomically (temp file, fsync, os.replace).
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)

METRICS, SUMMARY, CHECKPOINT, WANDB_ID = "metrics.jsonl", "summary.json", "checkpoint.pt", "wandb_run_id"


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


def save_checkpoint(path: Path, state: dict) -> None:
    atomic_write(path, lambda f: torch.save(state, f), binary=True)


def load_checkpoint(path: Path) -> dict:
    try:
        # our own file, holding numpy and python RNG states besides tensors
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # noqa: BLE001 - any unreadable file is the same problem for the user
        raise ValueError(f"checkpoint {path} is unreadable or corrupt ({type(e).__name__}: {e}); "
                         f"move it away to start afresh") from None


def write_summary(run_dir: Path, summary: dict) -> None:
    atomic_write(run_dir / SUMMARY, lambda f: json.dump(summary, f, indent=2))


def read_summary(run_dir: Path) -> dict | None:
    try:
        return json.loads((run_dir / SUMMARY).read_text())
    except (OSError, ValueError):
        return None


class MetricsFile:
    """metrics.jsonl, one JSON object per update. On resume, lines past the checkpoint's step (written
    after it, before the crash) are dropped so that every step appears exactly once."""

    def __init__(self, run_dir: Path, resume_step: int | None):
        self.path = run_dir / METRICS
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


class WandbRun:
    """One W&B run per job. Whatever W&B does (no network, bad key, no package), training and the local
    files go on: a failure turns W&B off with one warning."""

    def __init__(self, cfg: DictConfig, run_dir: Path, name: str, group: str | None, job_type: str | None,
                 tags: list[str], run_id: str | None):
        self.run = None
        if cfg.wandb.mode == "disabled":
            return
        try:
            import wandb

            self.run_id = run_id or uuid.uuid4().hex[:8]
            self.run = wandb.init(
                dir=str(run_dir), mode=str(cfg.wandb.mode.value if hasattr(cfg.wandb.mode, "value")
                                           else cfg.wandb.mode),
                project=cfg.wandb.project, entity=cfg.wandb.entity, group=group, name=name,
                job_type=job_type, tags=tags or None, id=self.run_id, resume="allow",
                config=OmegaConf.to_container(cfg, resolve=True, enum_to_str=True),
                settings=wandb.Settings(console="off", init_timeout=60, silent=True),
            )
            self.run.define_metric("step")
            self.run.define_metric("*", step_metric="step")
            (run_dir / WANDB_ID).write_text(self.run_id)
        except Exception as e:  # noqa: BLE001 - W&B must never stop training
            log.warning("W&B is off for this run (%s: %s); metrics still go to %s", type(e).__name__, e, METRICS)
            self.run = None

    def log(self, metrics: dict) -> None:
        if self.run is None:
            return
        try:
            self.run.log({k: v for k, v in metrics.items() if isinstance(v, (int, float)) and v is not None})
        except Exception as e:  # noqa: BLE001
            log.warning("W&B logging failed (%s); W&B is off for the rest of this run", e)
            self.run = None

    def finish(self, summary: dict, exit_code: int) -> None:
        if self.run is None:
            return
        try:
            self.run.summary.update({k: v for k, v in summary.items() if isinstance(v, (int, float, str))})
            self.run.finish(exit_code=exit_code)
        except Exception as e:  # noqa: BLE001
            log.warning("W&B finish failed (%s)", e)

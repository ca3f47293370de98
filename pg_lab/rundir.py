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

import contextlib
import errno
import fcntl
import hashlib
import json
import logging
import math
import os
import shutil
import socket
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import torch
import yaml
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger("pg_lab")

# keys that do not change what a run learns: left out of job directory names and of the grouping key
BOOKKEEPING_KEYS = ("wandb.mode", "wandb.project", "wandb.entity", "wandb.group", "wandb.name", "wandb.job_type",
                    "wandb.tags", "wandb.init_timeout", "device", "progress_bar", "name", "experiment", "resume",
                    "torch_threads", "checkpoint_every", "fresh", "optuna_trial", "hydra.launcher.n_jobs")
# also not part of a run's config fingerprint: a resumed run may be given more steps
FINGERPRINT_IGNORED = (*BOOKKEEPING_KEYS, "total_steps")
# keys added after runs were recorded, at the value that does what runs did before the key existed: left out of
# the record at that value, and out of comparisons with records that hold it there (bootstrap_truncation was
# recorded for a while), so records from before and after the key (studies, benchmarks) match the configs that
# made them
OMITTED_AT_DEFAULT = {"env.backend": "mujoco", "algo.bootstrap_truncation": None, "env.kwargs.tracking_sigma": 0.25,
                      "env.kwargs.rewards.command_progress": 0.0, "env.kwargs.command_curriculum": None,
                      "baseline.normalize_targets": False, "env.kwargs.solver": None,
                      "env.kwargs.terrain_roughness": 0.04}
SEED_KEY = "seed"


def override_key(override: str) -> str:
    """`+algo.gamma=0.9` -> `algo.gamma`."""
    return override.split("=", 1)[0].lstrip("+~")


def grouping_key(overrides: Iterable[str]) -> str:
    """The configuration a run belongs to, seeds collapsed: "env=hopper,policy=beta" (sorted), or "default"."""
    kept = sorted(o for o in overrides if override_key(o) not in (*BOOKKEEPING_KEYS, SEED_KEY))
    return ",".join(kept) or "default"


class RunDirBusy(RuntimeError):
    """Another live process holds the run directory's lock."""


def flat_config(cfg: DictConfig) -> dict[str, Any]:
    """The resolved config as {"algo.gamma": 0.99, ...}, less the keys that do not change what is learned."""
    flat: dict[str, Any] = {}

    def walk(node: Any, key: str) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, f"{key}.{k}" if key else str(k))
        elif key not in FINGERPRINT_IGNORED and not key.startswith(("wandb.", "hydra.")) and \
                not (key in OMITTED_AT_DEFAULT and node == OMITTED_AT_DEFAULT[key]):
            flat[key] = node
    walk(OmegaConf.to_container(cfg, resolve=True, enum_to_str=True), "")
    return flat


def _at_defaults_omitted(flat: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in flat.items() if not (k in OMITTED_AT_DEFAULT and v == OMITTED_AT_DEFAULT[k])}


def fingerprint(flat: dict[str, Any]) -> str:
    flat = _at_defaults_omitted(flat)
    return hashlib.sha256(json.dumps(flat, sort_keys=True, default=str).encode()).hexdigest()[:16]


def config_differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    old, new = _at_defaults_omitted(old), _at_defaults_omitted(new)
    return [f"{k}: {old.get(k, '<absent>')!r} -> {new.get(k, '<absent>')!r}"
            for k in sorted(old.keys() | new.keys()) if old.get(k, "<absent>") != new.get(k, "<absent>")]


def _disk_full_message(path: Path, e: BaseException) -> str | None:
    """Say so when a failed write is a full disk (torch's writer reports it as 'unexpected pos')."""
    full = isinstance(e, OSError) and e.errno == errno.ENOSPC
    if not full:
        try:
            st = os.statvfs(path.parent)
        except OSError:
            return None
        full = st.f_bavail * st.f_frsize < 1 << 20  # under 1 MiB free
    return f"no space left on device: cannot write {path} ({type(e).__name__}: {e})" if full else None


def atomic_write(path: Path, write: Callable[[Any], None], binary: bool = False) -> None:
    """Write through `write(file)` into a temp file beside `path`, fsync it, then rename over `path`.
    A full disk is reported as such, naming the file."""
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.fchmod(fd, 0o644)  # mkstemp's 0600 would hide results from the rest of a research group
        with os.fdopen(fd, "wb" if binary else "w") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        message = _disk_full_message(path, e) if isinstance(e, Exception) else None
        if message:
            raise OSError(errno.ENOSPC, message) from e
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


class ConfigMismatch(ValueError):
    """The directory's record was produced by another config."""


REPLACED = ".replaced-"
STOP_MARKER = ".stop"  # in a sweep directory: a signal stopped the sweep; jobs not yet started do not start
# what pg-lab-eval writes into a run directory (pg_lab.evaluate): results (eval.json, eval_commands.json, and
# eval[_commands]_<label>.json for evaluations with changed env settings), the plot and video it makes by default
EVALUATION = ("eval*.json", "tracking.png", "eval.mp4")


def evaluation_files(path: Path) -> list[str]:
    """The names of the evaluation files (EVALUATION's patterns) in the run directory `path`."""
    return sorted({f.name for pattern in EVALUATION for f in path.glob(pattern) if f.is_file()})


# what `fresh=true` moves aside: everything that describes the old run (train.log is copied)
RECORD = ("checkpoint.pt", "summary.json", "metrics.jsonl", "wandb_run_id", "error.txt", "wandb", ".hydra")
# and the evaluation files (evaluation_files)


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
        self.log = self.path / "train.log"
        self.lock_file = self.path / ".lock"
        self.refused = self.path / ".refused"

    def __str__(self) -> str:
        return str(self.path)

    def is_run(self) -> bool:
        """A directory Hydra launched a pg-lab job in (it has the composed config)."""
        return self.config.is_file()

    def is_replaced(self) -> bool:
        """A record moved aside by `fresh=true`: not part of its sweep any more."""
        return REPLACED in self.path.name

    def remove_if_empty(self) -> None:
        """After a refusal: leave no run directory behind. Removed only when it holds nothing, or nothing but the
        job's log with no run record (a library that logs a line while the env is built opens the log)."""
        if not self.is_run() and self.log.is_file() and [p.name for p in self.path.iterdir()] == [self.log.name]:
            self.log.unlink()
        try:
            self.path.rmdir()
        except OSError:
            pass

    # ------------------------------------------------------------------ one process per directory

    def lock(self) -> None:
        """Hold an exclusive lock on the directory for the life of this process (the kernel drops it when the
        process dies, so a lock never outlives its holder). A second process is refused, naming the holder."""
        self.path.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.lock_file, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise RunDirBusy(f"{self.path} is in use by {holder}: one process per run directory (wait for it, "
                             "or use another directory)") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on host {socket.gethostname()}\n".encode(), 0)
        self._lock_fd = fd

    def is_busy(self) -> bool:
        """Is the directory held by a live process, other than through this object's lock()? (The kernel drops a
        dead holder's lock.)"""
        if getattr(self, "_lock_fd", None) is not None or not self.lock_file.exists():
            return False
        try:
            fd = os.open(self.lock_file, os.O_RDONLY)
        except FileNotFoundError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)  # closing releases the probe's own lock
        return False

    def unlock(self, remove: bool = False) -> None:
        fd = getattr(self, "_lock_fd", None)
        if fd is not None:
            if remove:  # a refused command leaves nothing behind
                self.lock_file.unlink(missing_ok=True)
            os.close(fd)  # releases the flock
            self._lock_fd = None

    @contextlib.contextmanager
    def locked(self) -> Iterator[RunDir]:
        self.lock()
        try:
            yield self
        finally:
            self.unlock(remove=not self.is_run())

    def mark_refused(self, reason: str) -> None:
        """A sweep job refused without touching the record (another process holds it, or another config made
        it): say so beside the record, for the sweep's table."""
        self.refused.write_text(reason)

    # ------------------------------------------------------------------ what config the record belongs to

    def recorded_config(self) -> dict[str, Any] | None:
        """The flat config the checkpoint (or else the summary) was produced with; None if there is no record."""
        if self.has_checkpoint():
            return self.load_checkpoint().get("config")
        summary = self.read_summary()
        return summary.get("config") if summary else None

    def check_record(self, cfg: DictConfig, fresh: bool = False) -> None:
        """Refuse to continue or skip a record made with another config, naming the keys that differ; with
        `fresh`, move that record aside (to a sibling directory) instead."""
        old = self.recorded_config()
        if old is None:
            return
        new = flat_config(cfg)
        differences = config_differences(old, new)
        if not differences:
            return
        if not fresh:
            shown = "; ".join(differences[:6]) + (f"; and {len(differences) - 6} more" if len(differences) > 6 else "")
            raise ConfigMismatch(
                f"another config made the record in {self.path.name} ({shown}): refusing to resume or skip it under "
                f"this one. Use another directory (name=... for a sweep, hydra.run.dir=... for a run), or fresh=true "
                f"to move that record aside and start afresh in {self.path}")
        aside = self.move_record_aside()
        log.warning("%s held a run of another config (%s): moved to %s; starting afresh", self.path,
                    "; ".join(differences[:3]), aside)

    def move_record_aside(self) -> Path:
        aside = self.path.with_name(f"{self.path.name}{REPLACED}{time.strftime('%Y%m%d-%H%M%S')}")
        aside.mkdir()
        for name in (*RECORD, *evaluation_files(self.path)):
            if (self.path / name).exists():
                shutil.move(self.path / name, aside / name)
        if self.log.exists():
            shutil.copy2(self.log, aside / self.log.name)
        return aside

    def write_record(self, cfg: DictConfig, hydra_cfg: DictConfig | None, overrides: list[str] | None) -> None:
        """Hydra's record (.hydra/config.yaml, hydra.yaml, overrides.yaml), written by pg_lab once the run
        holds the directory (hydra.output_subdir is null): a refused command or a second process never
        rewrites the record of the run that is there."""
        self.config.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(self.config, lambda f: f.write(OmegaConf.to_yaml(cfg)))
        if hydra_cfg is not None:
            atomic_write(self.config.with_name("hydra.yaml"),
                         lambda f: f.write(OmegaConf.to_yaml(OmegaConf.create({"hydra": hydra_cfg}))))
        if overrides is not None:
            atomic_write(self.overrides, lambda f: f.write(OmegaConf.to_yaml(OmegaConf.create(list(overrides)))))

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
        try:
            self.file.write(json.dumps(metrics) + "\n")
            self.file.flush()
        except OSError as e:
            message = _disk_full_message(self.path, e)
            if message:
                raise OSError(errno.ENOSPC, message) from e
            raise

    def close(self) -> None:
        self.file.close()


def _step_of(line: str) -> float:
    try:
        return json.loads(line)["step"]
    except (ValueError, KeyError, TypeError):
        return math.inf  # a torn last line from a crash: drop it

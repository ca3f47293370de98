"""What a multirun adds to single runs: a report of its jobs at the end, and a failure that shows.

Hydra launches the jobs (basic, joblib, submitit or Optuna); this callback, registered in
`conf/config.yaml` under `hydra.callbacks`, reads each job's summary.json when the sweep ends, prints a
table of the jobs and one of their configurations (seeds collapsed, by the same grouping key as W&B's
job_type and `pg-lab-compare`), writes `sweep_summary.csv` in the sweep directory, and exits non-zero if
any job did not finish. At the start it refuses to sweep over a bookkeeping key (those keys are not part of
a job's directory name, so the jobs would share one directory) or a `name` that would leave outputs/sweeps/.
"""

from __future__ import annotations

import csv
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import psutil
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from pg_lab.config import NAME_PATTERN
from pg_lab.rundir import BOOKKEEPING_KEYS, STOP_MARKER, RunDir

COLUMNS = ("job", "status", "final_return_mean", "total_steps", "wall_time_s", "error")


def job_rows(sweep_dir: Path, since: float = 0.0) -> list[dict[str, Any]]:
    """One row per job directory under `sweep_dir` launched at or after `since` (a time.time()): its status
    (`reused` for a job that had finished before this launch, `refused` for one this launch left alone). A job
    another process is running (its directory locked: a second launch into the same sweep) is not this launch's and
    is left out."""
    rows = []
    for overrides in sorted(sweep_dir.rglob(".hydra/overrides.yaml")):
        job = RunDir(overrides.parent.parent)
        refused = job.refused.exists() and job.refused.stat().st_mtime >= since
        if job.is_replaced() or (overrides.stat().st_mtime < since and not refused and not _touched(job, since)):
            continue
        if not refused and job.is_busy():  # another process's run in the same sweep directory: not this launch's
            continue
        summary = job.read_summary() or {"status": "failed",
                                         "error": "no summary.json (the job stopped before training)"}
        status = summary.get("status", "failed")
        if refused:
            status, summary = "refused", {**summary, "error": job.refused.read_text().strip()}
        elif status == "finished" and job.summary.stat().st_mtime < since:
            status = "reused"  # finished before this launch: skipped, its result shown as it was
        rows.append({
            "job": str(job.path.relative_to(sweep_dir)),
            "status": status,
            "final_return_mean": summary.get("final_return_mean"),
            "total_steps": summary.get("total_steps"),
            "wall_time_s": summary.get("wall_time_s"),
            "error": summary.get("error", ""),
            "group": job.group(),
            "dir": str(job.path),
        })
    return rows


def _touched(job: RunDir, since: float) -> bool:
    """Did this launch visit the job (its log grows on every launch, even one that skips it)?"""
    return job.log.exists() and job.log.stat().st_mtime >= since


def group_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per configuration (seeds collapsed): how many jobs finished and the mean/min/max final return."""
    out = []
    for group in sorted({r["group"] for r in rows}):
        finals = [r["final_return_mean"] for r in rows if r["group"] == group
                  and r["status"] in ("finished", "reused") and r["final_return_mean"] is not None]
        jobs = sum(r["group"] == group for r in rows)
        out.append({"configuration": group, "finished": f"{len(finals)}/{jobs}",
                    "final_return_mean": float(np.mean(finals)) if finals else None,
                    "min": min(finals) if finals else None, "max": max(finals) if finals else None})
    return out


def format_table(rows: list[dict[str, Any]], cols: tuple[str, ...]) -> str:
    def cell(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.1f}"
        return "" if v is None else str(v)
    table = [list(cols)] + [[cell(r[c]) if c != "error" else cell(r[c])[:200] for c in cols] for r in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(cols))]
    return "\n".join("  ".join(v.ljust(w) for v, w in zip(line, widths)).rstrip() for line in table)


class SweepReport(Callback):
    """Runs in the process that launches the sweep. Besides the report, it makes a signal stop the whole sweep:
    SIGINT/SIGTERM to this process is passed on (as SIGTERM) to the job processes it started, each job
    checkpoints and records `interrupted`, jobs not yet started do not start, the table is printed, and the
    sweep exits with 128 + the signal."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self.started = time.time() - 1.0  # mtime resolution
        self.signum: int | None = None
        # Hydra turns a callback's exceptions into warnings: refuse with our own exit
        if not NAME_PATTERN.fullmatch(str(config.name)) or ".." in str(config.name):
            _refuse(f"name={config.name!r} names the sweep's directory under outputs/sweeps/: use letters, digits "
                    "and _ . , = + - (no '/' or '..')")
        swept = [o.key_or_group for o in OverridesParser.create().parse_overrides(list(config.hydra.overrides.task))
                 if o.is_sweep_override() and o.key_or_group in BOOKKEEPING_KEYS]
        if swept:
            _refuse(f"cannot sweep over {', '.join(swept)}: bookkeeping keys are not part of a job's directory "
                    "name, so its jobs would share one directory; set one value per sweep")
        keep_earlier_launch(Path(config.hydra.sweep.dir), list(config.hydra.overrides.task))
        self.marker = Path(config.hydra.sweep.dir) / STOP_MARKER
        self.marker.unlink(missing_ok=True)
        self.previous = {}
        if threading.current_thread() is threading.main_thread():
            self.previous = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}

    def _on_signal(self, signum: int, frame: Any) -> None:
        first = self.signum is None
        self.signum = self.signum or signum
        self.marker.parent.mkdir(parents=True, exist_ok=True)
        self.marker.touch()
        for child in psutil.Process().children():  # joblib's workers, submitit's local jobs
            try:
                child.send_signal(signal.SIGTERM)  # not SIGINT: a second SIGINT means "stop at once" to a job
            except psutil.Error:
                pass
        if first:
            print(f"\nsignal {signum}: stopping the sweep (each running job checkpoints; the rest do not start)",
                  file=sys.stderr, flush=True)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        for s, h in getattr(self, "previous", {}).items():
            signal.signal(s, h)
        sweep_dir = Path(config.hydra.sweep.dir)
        stopped = self.signum or (STOP_MARKER_SIGNAL if (sweep_dir / STOP_MARKER).exists() else None)
        (sweep_dir / STOP_MARKER).unlink(missing_ok=True)
        rows = job_rows(sweep_dir, getattr(self, "started", 0.0))
        if rows:
            report(sweep_dir, rows)
        # a job an Optuna pruner stopped ended as asked: not a failure
        failed = [r for r in rows if r["status"] not in ("finished", "reused", "pruned")]
        if stopped:
            print(f"the sweep was stopped by signal {stopped}: run the same command to resume it", file=sys.stderr,
                  flush=True)
            sys.exit(128 + stopped)
        if failed:
            print(f"{len(failed)} job(s) did not finish: see error.txt and train.log in their directories",
                  file=sys.stderr, flush=True)
            sys.exit(1)


def keep_earlier_launch(sweep_dir: Path, overrides: list[str]) -> Path | None:
    """multirun.yaml records one launch, and the sweeper rewrites it. A launch with other overrides into the same
    directory (more seeds, or another sweep under the same name) keeps the earlier record beside it, as
    multirun.<its time>.yaml; a relaunch with the same overrides (to resume) replaces it as before."""
    path = sweep_dir / "multirun.yaml"
    if not path.is_file():
        return None
    try:
        earlier = list(OmegaConf.load(path).hydra.overrides.task)
    except Exception:  # noqa: BLE001 - unreadable or not Hydra's: keep it all the same
        earlier = None
    if earlier == overrides:
        return None
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(path.stat().st_mtime))
    kept, n = path.with_name(f"multirun.{stamp}.yaml"), 1
    while kept.exists():  # two launches within a second
        kept, n = path.with_name(f"multirun.{stamp}-{n}.yaml"), n + 1
    path.rename(kept)
    print(f"{sweep_dir} holds an earlier launch with other overrides ({' '.join(earlier or ['unreadable'])}): "
          f"its record is kept as {kept.name}", file=sys.stderr, flush=True)
    return kept


STOP_MARKER_SIGNAL = signal.SIGTERM  # a job stopped by a signal sent to it directly (not through this process)


def report(sweep_dir: Path, rows: list[dict[str, Any]]) -> None:
    with open(sweep_dir / "sweep_summary.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=[*COLUMNS, "group", "dir"])
        writer.writeheader()
        writer.writerows(rows)
    done = sum(r["status"] in ("finished", "reused") for r in rows)
    pruned = sum(r["status"] == "pruned" for r in rows)
    cols = COLUMNS[:-1] + (("error",) if any(r["error"] for r in rows) else ())
    print(f"\nsweep {sweep_dir}: {done}/{len(rows)} jobs finished" + (f", {pruned} pruned" if pruned else "") +
          f"\n{format_table(rows, cols)}", flush=True)
    groups = group_rows(rows)
    if len(groups) < len(rows):  # some configurations have several seeds
        print(f"\nper configuration, seeds collapsed:\n{format_table(groups, tuple(groups[0]))}", flush=True)


def _refuse(message: str) -> None:
    print(f"pg-lab: error: {message}", file=sys.stderr, flush=True)
    sys.exit(2)

"""What a multirun adds to single runs: a report of its jobs at the end, and a failure that shows.

Hydra launches the jobs (basic, joblib, submitit or Optuna); this callback, registered in
`conf/config.yaml` under `hydra.callbacks`, reads each job's summary.json when the sweep ends, prints a
table of the jobs and one of their configurations (seeds collapsed, by the same grouping key as W&B's
job_type and `pg-lab-compare`), writes `sweep_summary.csv` in the sweep directory, and exits non-zero if
any job did not finish. At the start it refuses to sweep over a bookkeeping key: those keys are not part of
a job's directory name, so the jobs would share one directory.
"""

from __future__ import annotations

import csv
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from pg_lab.rundir import BOOKKEEPING_KEYS, RunDir

COLUMNS = ("job", "status", "final_return_mean", "total_steps", "wall_time_s", "error")


def job_rows(sweep_dir: Path, since: float = 0.0) -> list[dict[str, Any]]:
    """One row per job directory under `sweep_dir` launched at or after `since` (a time.time())."""
    rows = []
    for overrides in sorted(sweep_dir.rglob(".hydra/overrides.yaml")):
        if overrides.stat().st_mtime < since:
            continue
        job = RunDir(overrides.parent.parent)
        summary = job.read_summary() or {"status": "failed",
                                         "error": "no summary.json (the job stopped before training)"}
        rows.append({
            "job": str(job.path.relative_to(sweep_dir)),
            "status": summary.get("status", "failed"),
            "final_return_mean": summary.get("final_return_mean"),
            "total_steps": summary.get("total_steps"),
            "wall_time_s": summary.get("wall_time_s"),
            "error": summary.get("error", ""),
            "group": job.group(),
            "dir": str(job.path),
        })
    return rows


def group_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per configuration (seeds collapsed): how many jobs finished and the mean/min/max final return."""
    out = []
    for group in sorted({r["group"] for r in rows}):
        finals = [r["final_return_mean"] for r in rows if r["group"] == group and r["status"] == "finished"
                  and r["final_return_mean"] is not None]
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
    table = [list(cols)] + [[cell(r[c])[:80] for c in cols] for r in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(cols))]
    return "\n".join("  ".join(v.ljust(w) for v, w in zip(line, widths)).rstrip() for line in table)


class SweepReport(Callback):
    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self.started = time.time() - 1.0  # mtime resolution
        swept = [o.key_or_group for o in OverridesParser.create().parse_overrides(list(config.hydra.overrides.task))
                 if o.is_sweep_override() and o.key_or_group in BOOKKEEPING_KEYS]
        if swept:  # Hydra turns a callback's exceptions into warnings: stop the sweep ourselves
            print(f"pg-lab: error: cannot sweep over {', '.join(swept)}: bookkeeping keys are not part of a job's "
                  "directory name, so its jobs would share one directory; set one value per sweep",
                  file=sys.stderr, flush=True)
            sys.exit(2)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        rows = job_rows(sweep_dir, getattr(self, "started", 0.0))
        if not rows:
            return
        with open(sweep_dir / "sweep_summary.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=[*COLUMNS, "group", "dir"])
            writer.writeheader()
            writer.writerows(rows)
        failed = [r for r in rows if r["status"] != "finished"]
        cols = COLUMNS[:-1] + (("error",) if any(r["error"] for r in rows) else ())
        print(f"\nsweep {sweep_dir}: {len(rows) - len(failed)}/{len(rows)} jobs finished\n{format_table(rows, cols)}",
              flush=True)
        groups = group_rows(rows)
        if len(groups) < len(rows):  # some configurations have several seeds
            print(f"\nper configuration, seeds collapsed:\n{format_table(groups, tuple(groups[0]))}", flush=True)
        if failed:
            print(f"{len(failed)} job(s) did not finish: see error.txt and train.log in their directories",
                  file=sys.stderr, flush=True)
            sys.exit(1)

"""What a multirun adds to single runs: a report of its jobs at the end, and a failure that shows.

Hydra launches the jobs (basic, joblib, submitit or Optuna); this callback, registered in
`conf/config.yaml` under `hydra.callbacks`, reads each job's summary.json when the sweep ends, prints a
table, writes `sweep_summary.csv` in the sweep directory, and exits non-zero if any job did not finish.
"""

from __future__ import annotations

import csv
import json
import sys
import time
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

COLUMNS = ("job", "status", "final_return_mean", "total_steps", "wall_time_s", "error")


def job_rows(sweep_dir: Path, since: float = 0.0) -> list[dict[str, Any]]:
    """One row per job directory under `sweep_dir` launched at or after `since` (a time.time())."""
    rows = []
    for overrides in sorted(sweep_dir.rglob(".hydra/overrides.yaml")):
        if overrides.stat().st_mtime < since:
            continue
        job_dir = overrides.parent.parent
        summary = {}
        try:
            summary = json.loads((job_dir / "summary.json").read_text())
        except (OSError, ValueError):
            summary = {"status": "failed", "error": "no summary.json (the job stopped before training)"}
        rows.append({
            "job": str(job_dir.relative_to(sweep_dir)),
            "status": summary.get("status", "failed"),
            "final_return_mean": summary.get("final_return_mean"),
            "total_steps": summary.get("total_steps"),
            "wall_time_s": summary.get("wall_time_s"),
            "error": summary.get("error", ""),
            "dir": str(job_dir),
        })
    return rows


def format_table(rows: list[dict[str, Any]]) -> str:
    def cell(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.1f}"
        return "" if v is None else str(v)
    cols = COLUMNS[:-1] + (("error",) if any(r["error"] for r in rows) else ())
    table = [list(cols)] + [[cell(r[c])[:80] for c in cols] for r in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(cols))]
    return "\n".join("  ".join(v.ljust(w) for v, w in zip(line, widths)).rstrip() for line in table)


class SweepReport(Callback):
    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self.started = time.time() - 1.0  # mtime resolution

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        rows = job_rows(sweep_dir, getattr(self, "started", 0.0))
        if not rows:
            return
        with open(sweep_dir / "sweep_summary.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=[*COLUMNS, "dir"])
            writer.writeheader()
            writer.writerows(rows)
        failed = [r for r in rows if r["status"] != "finished"]
        print(f"\nsweep {sweep_dir}: {len(rows) - len(failed)}/{len(rows)} jobs finished\n{format_table(rows)}",
              flush=True)
        if failed:
            print(f"{len(failed)} job(s) did not finish: see error.txt and train.log in their directories",
                  file=sys.stderr, flush=True)
            sys.exit(1)

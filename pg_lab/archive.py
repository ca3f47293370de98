"""`python -m pg_lab.archive save|restore RUNS ARCHIVE`: finished runs' records, kept in git.

outputs/ is not versioned, so a new checkout starts without it: a study or benchmark that takes several sessions
would lose its finished runs, and a report could no longer be regenerated from them. `save` copies the record of
every finished run under RUNS into ARCHIVE at the same relative path: Hydra's config and overrides, summary.json,
the evaluation files and metrics.jsonl, gzipped with its numbers rounded to `DIGITS` significant digits (a 1M-step
MuJoCo run: ~340 kB raw, tens of kB archived). Checkpoints and W&B files stay behind: they are large, and a
finished run is not resumed.

`restore` copies the archived records back under RUNS where that run directory holds no record yet (a local run,
finished or not, is never overwritten). A relaunched sweep or benchmark then skips those runs (pg_lab does not rerun
a finished run of the same config and budget, checkpoint or not) and the reports read them as before.
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import shutil
from pathlib import Path

from pg_lab.rundir import RunDir, evaluation_files

DIGITS = 6  # significant digits kept in archived metrics: far below seed-to-seed noise; gzip then makes a
# 1M-step Ant run 47 kB instead of 89 kB at full precision (368 kB raw)
METRICS_GZ = "metrics.jsonl.gz"
KEPT = ("summary.json", ".hydra/config.yaml", ".hydra/overrides.yaml")  # and the evaluation results (kept())


def kept(path: Path) -> list[str]:
    """What is archived of the run directory `path` besides its metrics: KEPT and its evaluations' results."""
    return [*KEPT, *(name for name in evaluation_files(path) if name.endswith(".json"))]


def _rounded(value):
    if isinstance(value, float) and math.isfinite(value) and value != 0.0:
        return float(f"{value:.{DIGITS}g}")
    return value


def finished_runs(root: Path) -> list[RunDir]:
    """Run directories under `root` whose summary says finished (records moved aside by fresh=true excluded)."""
    runs = (RunDir(h.parent) for h in sorted(root.rglob(".hydra")))
    return [r for r in runs if r.is_run() and not r.is_replaced()
            and (r.read_summary() or {}).get("status") == "finished"]


def save(runs: Path, archive: Path) -> list[Path]:
    """Archive every finished run under `runs` (replacing an older archived copy of it); returns what was written.
    A run whose archived copy already holds the same summary, config and evaluation files is skipped: a finished
    run's metrics change only with its summary (a longer budget rewrites both), and the study's script saves
    every few minutes."""
    written = []
    for run in finished_runs(runs):
        dest = archive / run.path.relative_to(runs)
        if (dest / METRICS_GZ).is_file() and all(
                (dest / name).is_file() and (dest / name).read_bytes() == (run.path / name).read_bytes()
                for name in kept(run.path) if (run.path / name).is_file()):
            continue
        if dest.exists():
            shutil.rmtree(dest)
        for name in kept(run.path):
            if (run.path / name).is_file():
                (dest / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(run.path / name, dest / name)
        rows = run.read_metrics()
        text = "".join(json.dumps({k: _rounded(v) for k, v in row.items()}) + "\n" for row in rows)
        with gzip.GzipFile(dest / METRICS_GZ, "wb", compresslevel=9, mtime=0) as f:  # mtime 0: same run, same bytes
            f.write(text.encode())
        written.append(dest)
    return written


def restore(archive: Path, runs: Path) -> list[Path]:
    """Put archived records back under `runs` where no record is there yet; returns the run directories restored."""
    restored = []
    for gz in sorted(archive.rglob(METRICS_GZ)):
        src = gz.parent
        dest = runs / src.relative_to(archive)
        if RunDir(dest).is_run() or (dest / "summary.json").exists():
            continue  # a local record (finished, running or interrupted) is the truth about this directory
        for name in kept(src):
            if (src / name).is_file():
                (dest / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(src / name, dest / name)
        with gzip.open(gz, "rt") as f:
            (dest / "metrics.jsonl").write_text(f.read())
        restored.append(dest)
    return restored


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("action", choices=("save", "restore"))
    p.add_argument("runs", type=Path, help="the run directories' root (e.g. outputs/sweeps/beta_vs_gaussian)")
    p.add_argument("archive", type=Path, help="the archive's root (e.g. docs/results/runs/beta_vs_gaussian)")
    args = p.parse_args(argv)
    if args.action == "save":
        if not args.runs.is_dir():
            p.error(f"{args.runs} is not a directory")
        done = save(args.runs, args.archive)
        print(f"archived {len(done)} new or changed finished run(s) from {args.runs} into {args.archive}")
    else:
        done = restore(args.archive, args.runs) if args.archive.is_dir() else []
        print(f"restored {len(done)} run record(s) from {args.archive} into {args.runs}")


if __name__ == "__main__":
    main()

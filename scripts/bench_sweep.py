"""Speed-up of a parallel joblib sweep over the same jobs run one after the other (Hydra's basic launcher).

    python scripts/bench_sweep.py                       # 2 jobs: CartPole seeds 0,1, 100k steps each
    python scripts/bench_sweep.py --jobs 2 -- env=hopper total_steps=100000

Both sweeps are the same `pg-lab -m` command but for `hydra/launcher`; wall-clock time includes Hydra's
start-up and the W&B-offline logging of every job, as a user would see it.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def sweep(launcher: str, seeds: str, overrides: list[str], sweep_dir: Path) -> float:
    cmd = [sys.executable, "-m", "pg_lab", "-m", f"hydra/launcher={launcher}", f"seed={seeds}", *overrides,
           "progress_bar=false", f"hydra.sweep.dir={sweep_dir}"]
    t = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, cwd=ROOT)
    return time.perf_counter() - t


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--jobs", type=int, default=2, help="number of jobs (seeds) in the sweep")
    p.add_argument("overrides", nargs="*", default=None, help="pg-lab overrides (after --)")
    args = p.parse_args()
    overrides = args.overrides or ["env=cartpole", "total_steps=100000", "wandb.mode=offline"]
    seeds = ",".join(str(s) for s in range(args.jobs))
    with tempfile.TemporaryDirectory() as tmp:
        serial = sweep("basic", seeds, overrides, Path(tmp) / "basic")
        parallel = sweep("joblib", seeds, overrides, Path(tmp) / "joblib")
    print(f"{args.jobs} jobs ({' '.join(overrides)}): one after the other {serial:.1f} s, "
          f"joblib {parallel:.1f} s, speed-up {serial / parallel:.2f}x")


if __name__ == "__main__":
    main()

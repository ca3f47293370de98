"""Size and write time of a checkpoint (atomic: temp file, fsync, rename) for an env config.

    python scripts/bench_checkpoint.py --env half_cheetah -- baseline=gae
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

from hydra import compose, initialize_config_dir

from pg_lab.builder import build
from pg_lab.config import register_schema
from pg_lab.resume import Progress, capture_rng, checkpoint_state
from pg_lab.rundir import RunDir
from pg_lab.train import CONF_DIR


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--env", default="half_cheetah")
    p.add_argument("--writes", type=int, default=20)
    p.add_argument("overrides", nargs="*", help="pg-lab overrides (after --)")
    args = p.parse_args()
    register_schema()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("config", overrides=[f"env={args.env}", *args.overrides])
    envs, algorithm = build(cfg, args.env)
    with tempfile.TemporaryDirectory() as tmp:
        run_dir, times = RunDir(tmp), []
        for _ in range(args.writes):
            t = time.perf_counter()
            run_dir.save_checkpoint(checkpoint_state(algorithm, Progress(), capture_rng(), None))
            times.append(time.perf_counter() - t)
        size = run_dir.checkpoint.stat().st_size
    print(f"{args.env} {' '.join(args.overrides)}: checkpoint {size / 1024:.0f} KiB, write median "
          f"{statistics.median(times) * 1000:.1f} ms (min {min(times) * 1000:.1f}, max {max(times) * 1000:.1f}) "
          f"over {args.writes} writes")
    envs.close()


if __name__ == "__main__":
    main()

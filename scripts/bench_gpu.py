"""The GPU backend's figures (env.backend=warp; run by scripts/gpu_warp.sh on a GPU machine):

    python scripts/bench_gpu.py envsteps --worlds 1024 4096 16384    # env steps/s of the legged task, no learner
    python scripts/bench_gpu.py envsteps --worlds 4096 --solver iterations=4 ls_iterations=8   # env.kwargs.solver
    python scripts/bench_gpu.py curve RUN_DIR SNAPSHOTS_DIR           # evaluate a run's snapshots: time to 1 m/s

`envsteps`: N Go1 worlds stepping small random joint offsets (physics + observations + rewards + resets, all on
the device), after one warm-up step (kernel compilation, CUDA graph capture). Training's own rate (rollout +
update) is the run's `steps_per_s` (summary.json).

`curve`: SNAPSHOTS_DIR holds copies of the run's checkpoint named `<seconds of training>.pt`; each is evaluated
on the CPU env (the same task; deterministic policy), in parallel. Forward task: 20 s episodes, and the first
snapshot at >= 1 m/s forward speed with 0 falls is the time to 1 m/s. Velocity task: pg-lab-eval's command sweep
(forward -1 to 1.5 m/s, lateral ±0.5, turning), and the first snapshot with a mean tracking error <= 0.25 m/s and
0 falls is the time to the target.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def envsteps(args) -> None:
    from pg_lab.envs.warp_legged import steps_per_second

    solver = {}
    for item in args.solver:
        key, _, value = item.partition("=")
        solver[key] = value if key == "cone" else float(value) if key == "impratio" else int(value)
    for n in args.worlds:
        rate = steps_per_second(n, args.device, steps=args.steps, task=args.task, solver=solver)
        print(f"{args.task} task, {n} worlds on {args.device}, solver {solver or 'as the MJCF'}: {rate:,.0f} env "
              f"steps/s ({rate * 5:,.0f} physics steps/s)", flush=True)


def _evaluate(job: tuple[str, str, int]) -> dict:
    import torch

    torch.set_num_threads(1)
    from pg_lab.evaluate import evaluate, evaluate_commands
    from pg_lab.rundir import RunDir

    run_dir, snapshot, episodes = job
    run = RunDir(run_dir)
    state = torch.load(snapshot, map_location="cpu", weights_only=False)
    row = {"seconds": float(Path(snapshot).stem), "steps": state.get("progress", {}).get("step")}
    if run.read_config().env.kwargs.get("task") == "velocity":
        report = evaluate_commands(run, checkpoint=Path(snapshot))
        return {**row, "tracking_error": report["tracking_error_xy_mean"], "falls": report["falls"],
                "episodes": len(report["commands"])}
    report = evaluate(run, episodes=episodes, checkpoint=Path(snapshot))
    return {**row, "forward_speed": report["forward_speed_mean"], "falls": report["falls"], "episodes": episodes}


def reached(row: dict, speed: float, tracking: float) -> bool:
    if "tracking_error" in row:
        return row["tracking_error"] <= tracking and row["falls"] == 0
    return row["forward_speed"] >= speed and row["falls"] == 0


def curve(args) -> None:
    snapshots = sorted(Path(args.snapshots).glob("*.pt"), key=lambda p: float(p.stem))
    jobs = [(args.run_dir, str(s), args.episodes) for s in snapshots]
    with ProcessPoolExecutor(args.workers) as pool:
        rows = list(pool.map(_evaluate, jobs))
    first = None
    for r in rows:
        what = f"tracking error {r['tracking_error']:.2f} m/s" if "tracking_error" in r else \
            f"forward speed {r['forward_speed']:.2f} m/s"
        print(f"{r['seconds']:7.0f} s  {r['steps'] or 0:>12,} steps  {what}  falls {r['falls']}/{r['episodes']}")
        if first is None and reached(r, args.speed, args.tracking):
            first = r
    target = f"tracking error <= {args.tracking} m/s" if rows and "tracking_error" in rows[0] else \
        f">= {args.speed} m/s"
    if first:
        print(f"time to {target} with 0 falls: {first['seconds']:.0f} s of training ({first['steps']:,} env steps)")
    else:
        print(f"did not reach {target} with 0 falls in {rows[-1]['seconds'] if rows else math.nan:.0f} s")
    Path(args.snapshots, "curve.json").write_text(json.dumps(rows, indent=1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("envsteps")
    p.add_argument("--worlds", type=int, nargs="+", default=[1024, 4096, 16384])
    p.add_argument("--device", default="cuda")
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--task", default="forward")
    p.add_argument("--solver", nargs="*", default=[], metavar="KEY=VALUE",
                   help="env.kwargs.solver: iterations, ls_iterations, cone, impratio (default: the MJCF's)")
    p.set_defaults(fn=envsteps)
    p = sub.add_parser("curve")
    p.add_argument("run_dir")
    p.add_argument("snapshots")
    p.add_argument("--episodes", type=int, default=3)
    p.add_argument("--speed", type=float, default=1.0)
    p.add_argument("--tracking", type=float, default=0.25)
    p.add_argument("--workers", type=int, default=8)
    p.set_defaults(fn=curve)
    args = parser.parse_args()
    args.fn(args)


if __name__ == "__main__":
    main()

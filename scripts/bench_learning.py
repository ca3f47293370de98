"""Learning-efficiency benchmark: pg_lab's defaults on a few tasks, N seeds, beside published anchors.

    python scripts/bench_learning.py --tasks cartpole inverted_pendulum --seeds 5
    python scripts/bench_learning.py --tasks half_cheetah hopper --seeds 5 --jobs 2 --out docs/results/learning.md

pg_lab's figure is the mean *training*-episode return of the last 20 episodes at the budget
(`final_return_mean` in summary.json), per seed; the table gives their median and mean. The anchors of
../shared/BENCHMARKS.md report other things (max test return, deterministic evaluation); the table says which.
Runs land in outputs/bench/<task>/seed<n>/ (re-running skips finished ones).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from pg_lab.rundir import RunDir

ROOT = Path(__file__).resolve().parent.parent

TASKS = {  # overrides, budget, target (what, threshold), anchors
    "cartpole": (["env=cartpole"], 50_000, ("median env steps to a last-20 mean >= 475", 475, "steps"),
                 ["CleanRL PPO, 500k steps: 490 ± 6", "SB3 zoo PPO, 100k steps: 500"]),
    "inverted_pendulum": (["env=inverted_pendulum", "baseline=gae"], 300_000, ("mean final return", 950, "final"),
                          ["Tianshou REINFORCE (no critic), 3M steps, max test return: 999 ± 2"]),
    "half_cheetah": (["env=half_cheetah", "experiment=efficient_mujoco"], 1_000_000,
                     ("mean final return", 1500, "final"),
                     ["Spinning Up VPG, 3M: 632 ± 337", "Tianshou REINFORCE, 3M, max test: 884 ± 41",
                      "CleanRL PPO, 1M: 1443 ± 46"]),
    "hopper": (["env=hopper", "experiment=efficient_mujoco"], 1_000_000, ("mean final return", 1000, "final"),
               ["Spinning Up VPG, 3M: 815 ± 136", "Tianshou REINFORCE, 3M: 396 ± 65"]),
    "quadruped": (["experiment=quadruped"], 1_000_000, ("mean final return", 0, "final"), []),
}


def run(task: str, seed: int, extra: list[str]) -> dict:
    overrides, budget, _, _ = TASKS[task]
    run_dir = ROOT / "outputs" / "bench" / task / f"seed{seed}"
    cmd = [sys.executable, "-m", "pg_lab", *overrides, f"seed={seed}", f"total_steps={budget}", *extra,
           "wandb.mode=disabled", "progress_bar=false", f"hydra.run.dir={run_dir}"]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")
    summary, rows = RunDir(run_dir).read_summary(), RunDir(run_dir).read_metrics()
    hit = next((r for r in rows if (r.get("return_recent_mean") or 0) >= 475), None)
    return {"task": task, "seed": seed, "final": summary["final_return_mean"], "steps_to_475": hit and hit["step"],
            "wall_time_s": summary["wall_time_s"], "steps": summary["total_steps"]}


def report(results: list[dict], tasks: list[str]) -> str:
    lines = ["| task | budget (env steps) | pg_lab: final return per seed | median | mean | target | met? | "
             "published anchors (different measures) |", "|---|---|---|---|---|---|---|---|"]
    for task in tasks:
        rs = sorted((r for r in results if r["task"] == task), key=lambda r: r["seed"])
        _, budget, (what, threshold, kind), anchors = TASKS[task]
        finals = [r["final"] for r in rs]
        per_seed = ", ".join(f"{f:.0f}" for f in finals)
        if kind == "steps":
            steps = [r["steps_to_475"] for r in rs]
            reached = [s for s in steps if s is not None]
            med = statistics.median(s if s is not None else float("inf") for s in steps)
            target = f"{what}: ≤ {budget}"
            met = med <= budget
            per_seed += "; steps to 475: " + ", ".join(str(s) if s else "-" for s in steps)
            middle = f"{med:.0f} steps" if reached else "not reached"
        else:
            target = f"{what} ≥ {threshold}" if threshold else "—"
            met = statistics.mean(finals) >= threshold if threshold else None
            middle = f"{statistics.median(finals):.0f}"
        mark = "—" if met is None else ("yes" if met else "no")
        lines.append(f"| {task} | {budget} | {per_seed} | {middle} | {statistics.mean(finals):.0f} | {target} | "
                     f"{mark} | {'; '.join(anchors)} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tasks", nargs="+", default=["cartpole", "inverted_pendulum"], choices=sorted(TASKS))
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--jobs", type=int, default=2, help="runs at once (each uses one core for its rollouts)")
    p.add_argument("--out", type=Path, default=None, help="also write the Markdown table here")
    p.add_argument("overrides", nargs="*", help="extra pg-lab overrides for every run (after --)")
    args = p.parse_args()
    jobs = [(t, s) for t in args.tasks for s in range(args.seeds)]
    with ThreadPoolExecutor(args.jobs) as pool:
        results = list(pool.map(lambda ts: run(ts[0], ts[1], args.overrides), jobs))
    table = report(results, args.tasks)
    command = "python scripts/bench_learning.py " + " ".join(sys.argv[1:])
    print(table)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(f"Produced by `{command}`\n\n{table}")


if __name__ == "__main__":
    main()

"""Learning-efficiency benchmark: pg_lab's defaults on a few tasks, N seeds, beside published anchors.

    python scripts/bench_learning.py --tasks cartpole inverted_pendulum --seeds 5
    python scripts/bench_learning.py --tasks half_cheetah hopper --seeds 5 --jobs 2 --out docs/results/learning.md

Every task runs at its env file's defaults (the settings a user gets from `pg-lab env=X`). pg_lab's figure is
the mean *training*-episode return of the last 20 episodes at the budget (`final_return_mean` in
summary.json), per seed; the table gives their median and mean. The anchors of
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

PPO_ZOO = "SB3 zoo PPO"
TASKS = {  # overrides (the env's defaults: no preset), budget, target (what, threshold, kind), anchors
    "cartpole": (["env=cartpole"], 50_000, ("median env steps to a last-20 mean >= 475", 25_000, "steps"),
                 ["CleanRL PPO, 500k steps: 490 ± 6", f"{PPO_ZOO}, 100k steps: 500"]),
    "acrobot": (["env=acrobot"], 500_000, ("mean final return", None, "final"), []),
    "pendulum": (["env=pendulum"], 500_000, ("mean final return", None, "final"), []),
    "mountain_car_continuous": (["env=mountain_car_continuous"], 500_000, ("mean final return", None, "final"), []),
    "inverted_pendulum": (["env=inverted_pendulum"], 200_000, ("final return on every seed", 1000, "every"),
                          ["Tianshou REINFORCE (no critic), 3M steps, max test return: 999 ± 2"]),
    "inverted_double_pendulum": (["env=inverted_double_pendulum"], 500_000, ("mean final return", 9000, "final"),
                                 []),
    "half_cheetah": (["env=half_cheetah"], 1_000_000, ("mean final return", 3000, "final"),
                     ["Tianshou REINFORCE, 10M: 1139", "CleanRL PPO, 1M: 1443 ± 46"]),
    "hopper": (["env=hopper"], 1_000_000, ("mean final return", 1500, "final"),
               ["Tianshou REINFORCE, 10M: 416", "CleanRL PPO, 1M: 2383"]),
    "walker2d": (["env=walker2d"], 1_000_000, ("mean final return", 1500, "final"),
                 ["Tianshou REINFORCE, 10M: 441", "CleanRL PPO, 1M: 2288"]),
    "ant": (["env=ant"], 1_000_000, ("mean final return", 1200, "final"), ["Tianshou REINFORCE, 10M: 1108"]),
    "humanoid": (["env=humanoid"], 1_000_000, ("mean final return", 500, "final"), ["CleanRL PPO, 1M: 716"]),
    "swimmer": (["env=swimmer"], 1_000_000, ("mean final return", None, "final"), []),
    "reacher": (["env=reacher"], 1_000_000, ("mean final return", None, "final"), []),
    "quadruped": (["experiment=quadruped"], 1_000_000, ("mean final return", None, "final"), []),
}


def run(task: str, seed: int, extra: list[str]) -> dict:
    overrides, budget, _, _ = TASKS[task]
    run_dir = ROOT / "outputs" / "bench" / task / f"seed{seed}"
    # fresh=true: a directory left by other settings (older defaults) is moved aside, not resumed
    cmd = [sys.executable, "-m", "pg_lab", *overrides, f"seed={seed}", f"total_steps={budget}", *extra,
           "wandb.mode=disabled", "progress_bar=false", "fresh=true", f"hydra.run.dir={run_dir}"]
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
            target = f"{what} ≤ {threshold}, every seed ≤ {int(threshold * 1.6)}"
            met = med <= threshold and len(reached) == len(steps) and max(reached) <= threshold * 1.6
            per_seed += "; steps to 475: " + ", ".join(str(s) if s else "-" for s in steps)
            middle = f"{med:.0f} steps" if reached else "not reached"
        elif kind == "every":
            target = f"{what}: {threshold}"
            met = all(f >= threshold for f in finals)
            middle = f"{statistics.median(finals):.0f}"
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

"""Learning-efficiency benchmark: pg_lab's defaults on every env option, N seeds, beside published anchors.

    python scripts/bench_learning.py --tasks all --seeds 5 --jobs 2 --out docs/results/learning.md
    python scripts/bench_learning.py --tasks hopper walker2d --seeds 5
    python scripts/bench_learning.py --tasks all --report-only --out docs/results/learning.md   # launch nothing

Every task runs at its env file's defaults (the settings a user gets from `pg-lab env=X`). pg_lab's figure is
the mean *training*-episode return of the last 20 episodes at the budget (`final_return_mean` in
summary.json), per seed; the table gives their median and mean. The quadruped's target is its deterministic
evaluation instead (5 episodes from the final checkpoint, `pg_lab.evaluate`: forward speed and falls, eval.json).
The anchors of ../shared/BENCHMARKS.md report other things (max test return, deterministic evaluation); the table
says which.
Runs land in outputs/bench/<task>/seed<n>/; re-running skips finished ones, so the same command continues an
interrupted benchmark and regenerates the report. Each finished run's record is archived in
docs/results/runs/bench/ (`pg_lab.archive`: no checkpoint) and restored from there into a new checkout, so the
report regenerates and finished runs are not run again. A run made with other defaults than today's is moved aside
(fresh=true) and run again; `--report-only` lists it as stale instead. With `--out`, learning curves (PNG and
SVG, every seed and their mean) go beside the table, in <out stem>/.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from pg_lab.archive import restore, save
from pg_lab.compare import save_figure
from pg_lab.rundir import RunDir, fingerprint

ROOT = Path(__file__).resolve().parent.parent
RUNS = ROOT / "outputs" / "bench"
ARCHIVE = ROOT / "docs" / "results" / "runs" / "bench"  # what git keeps of RUNS (pg_lab.archive)

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
    "quadruped": (["experiment=quadruped"], 1_000_000,
                  ("deterministic evaluation (5 episodes): forward speed, 0 falls, every seed", 1.5, "speed"), []),
}

MAX_SEEDS = {"humanoid": 3}  # the count for the costliest task (about 15 minutes a run here)


def run_dir(task: str, seed: int) -> Path:
    return RUNS / task / f"seed{seed}"


def command(task: str, seed: int, extra: list[str]) -> list[str]:
    overrides, budget, _, _ = TASKS[task]
    # fresh=true: a directory left by other settings (older defaults) is moved aside, not resumed
    return [sys.executable, "-m", "pg_lab", *overrides, f"seed={seed}", f"total_steps={budget}", *extra,
            "wandb.mode=disabled", "progress_bar=false", "fresh=true", f"hydra.run.dir={run_dir(task, seed)}"]


def expected_fingerprint(task: str, seed: int, extra: list[str]) -> str:
    """The config fingerprint a run of today's defaults records (to tell stale run directories apart)."""
    from hydra import compose, initialize_config_dir

    from pg_lab.config import register_schema, validate
    from pg_lab.rundir import flat_config
    from pg_lab.train import CONF_DIR

    register_schema()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("config", overrides=command(task, seed, extra)[3:-1])
    validate(cfg)
    return fingerprint(flat_config(cfg))


def result(task: str, seed: int) -> dict | None:
    """What the run directory holds, or None when it holds no finished run."""
    d = RunDir(run_dir(task, seed))
    summary = d.read_summary()
    if not summary or summary.get("status") != "finished":
        return None
    rows = d.read_metrics()
    hit = next((r for r in rows if (r.get("return_recent_mean") or 0) >= 475), None)
    evaluation = d.path / "eval.json"  # the quadruped's target is its deterministic evaluation (see run)
    return {"task": task, "seed": seed, "final": summary["final_return_mean"], "steps_to_475": hit and hit["step"],
            "eval": json.loads(evaluation.read_text()) if evaluation.exists() else None,
            "wall_time_s": summary["wall_time_s"], "steps": summary["total_steps"],
            # from the recorded config, not the recorded hash: keys added since are compared at their defaults
            "fingerprint": fingerprint(summary["config"]) if "config" in summary else summary.get("config_fingerprint"),
            "curve": [(r["step"], r["return_recent_mean"]) for r in rows if r.get("return_recent_mean") is not None]}


def run(task: str, seed: int, extra: list[str]) -> dict:
    proc = subprocess.run(command(task, seed, extra), capture_output=True, text=True, cwd=ROOT)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(command(task, seed, extra))} failed:\n{proc.stderr[-2000:]}")
    if TASKS[task][2][2] == "speed" and not (run_dir(task, seed) / "eval.json").exists() \
            and RunDir(run_dir(task, seed)).has_checkpoint():
        # 5 deterministic episodes from the final checkpoint: forward speed and falls (eval.json, archived below)
        subprocess.run([sys.executable, "-m", "pg_lab.evaluate", str(run_dir(task, seed)), "--episodes", "5"],
                       check=True, capture_output=True, cwd=ROOT)
    save(run_dir(task, seed), ARCHIVE / task / f"seed{seed}")
    return result(task, seed)


def plot(task: str, results: list[dict], out: Path) -> list[str]:
    """Every seed's curve (thin) and their mean on a common grid (thick), as PNG and SVG."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    _, budget, _, _ = TASKS[task]
    fig, ax = plt.subplots(figsize=(5.6, 3.6), dpi=110)
    grid = np.linspace(0, budget, 200)
    curves = []
    for r in results:
        steps, values = map(np.asarray, zip(*r["curve"]))
        ax.plot(steps, values, lw=0.8, alpha=0.5, label=f"seed {r['seed']}")
        curves.append(np.where(grid >= steps[0], np.interp(grid, steps, values), np.nan))
    with np.errstate(all="ignore"), warnings.catch_warnings():  # before the first update no seed has a point
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.nanmean(np.stack(curves), 0)
    ax.plot(grid, mean, color="black", lw=2, label="mean")
    ax.set_title(f"{task}: last-20-episode training return ({len(results)} seeds)", fontsize=10)
    ax.set_xlabel("environment steps")
    ax.set_ylabel("return")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    paths = [out / f"{task}.{fmt}" for fmt in ("png", "svg")]
    save_figure(fig, paths)
    return [p.name for p in paths]


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
        elif kind == "speed":
            evals = [r["eval"] for r in rs]
            target = f"{what}: ≥ {threshold} m/s"
            met = all(e and e["forward_speed_mean"] >= threshold and e["falls"] == 0 for e in evals)
            per_seed += "; evaluation m/s (falls of 5): " + ", ".join(
                f"{e['forward_speed_mean']:.2f} ({e['falls']})" if e else "not evaluated" for e in evals)
            speeds = [e["forward_speed_mean"] for e in evals if e]
            middle = f"{statistics.median(speeds):.2f} m/s" if speeds else "not evaluated"
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
    p.add_argument("--tasks", nargs="+", default=["all"], choices=["all", *sorted(TASKS)])
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--jobs", type=int, default=2, help="runs at once (each uses one core for its rollouts)")
    p.add_argument("--out", type=Path, default=None, help="also write the Markdown table (and curves) here")
    p.add_argument("--report-only", action="store_true", help="launch nothing: report the finished runs there are")
    p.add_argument("overrides", nargs="*", help="extra pg-lab overrides for every run (after --)")
    args = p.parse_args()
    tasks = list(TASKS) if "all" in args.tasks else args.tasks
    jobs = [(t, s) for t in tasks for s in range(min(args.seeds, MAX_SEEDS.get(t, args.seeds)))]
    restore(ARCHIVE, RUNS)
    if args.report_only:
        found = {(t, s): result(t, s) for t, s in jobs}
        stale = {k for k, r in found.items() if r and r["fingerprint"] != expected_fingerprint(*k, args.overrides)}
        results = [r for k, r in found.items() if r and k not in stale]
        missing = sorted({t for (t, s), r in found.items() if r is None or (t, s) in stale})
    else:
        with ThreadPoolExecutor(args.jobs) as pool:
            results = list(pool.map(lambda ts: run(ts[0], ts[1], args.overrides), jobs))
        missing = []
    done = [t for t in tasks if any(r["task"] == t for r in results)]
    table = report(results, done)
    cmd = "python scripts/bench_learning.py " + " ".join(sys.argv[1:])
    print(table)
    if args.out:
        figures = args.out.parent / args.out.stem
        figures.mkdir(parents=True, exist_ok=True)
        curves = []
        for task in done:
            png, svg = plot(task, [r for r in results if r["task"] == task], figures)
            curves.append(f"![{task}]({figures.name}/{png}) ([SVG]({figures.name}/{svg}))")
        gaps = "\nHow these settings were chosen, and the tries behind them: [learning_notes.md](learning_notes.md).\n"
        if missing:
            gaps += (f"\nNot run on all {args.seeds} seeds (humanoid: 3) at today's defaults: " + ", ".join(missing) +
                     " (a task with some finished seeds is in the table with those seeds; runs of older defaults "
                     "are left out).\n")
        args.out.write_text(f"Produced by `{cmd}`\n\n{table}{gaps}\n## Learning curves\n\n" +
                            "\n\n".join(curves) + "\n")


if __name__ == "__main__":
    main()

"""Wall-clock to a return threshold: pg_lab's defaults beside Stable-Baselines3 PPO with the RL Zoo's settings.

    pip install -e '.[bench]'
    python scripts/bench_wallclock.py --seeds 3 --out docs/results/wallclock.md

For each task (HalfCheetah-v5 to 1500, Hopper-v5 to 1000) and seed, both run in the same benchmark, one
pg_lab run and one SB3 run at a time side by side (one core each, one torch thread each), each capped at 15
minutes. The clock runs from the start of learning (model and envs built) to the first moment the mean return
of the last 20 training episodes reaches the threshold; a run is stopped there. The figure is the ratio of the
medians over seeds (a capped run counts as the cap, so the ratio is then a bound).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TASKS = {"half_cheetah": ("HalfCheetah-v5", 1500.0), "hopper": ("Hopper-v5", 1000.0)}
CAP_S = float(os.environ.get("PG_LAB_BENCH_CAP_S", 900.0))

# rl-baselines3-zoo hyperparams/ppo.yml (HalfCheetah-v3, Hopper-v3 entries, run here on v5): VecNormalize, 1 env
ZOO_PPO = {
    "half_cheetah": dict(batch_size=64, n_steps=512, gamma=0.98, learning_rate=2.0633e-05, ent_coef=0.000401762,
                         clip_range=0.1, n_epochs=20, gae_lambda=0.92, max_grad_norm=0.8, vf_coef=0.58096),
    "hopper": dict(batch_size=32, n_steps=512, gamma=0.999, learning_rate=9.80828e-05, ent_coef=0.00229519,
                   clip_range=0.2, n_epochs=5, gae_lambda=0.99, max_grad_norm=0.7, vf_coef=0.835671),
}


def pg_lab(task: str, seed: int, tmp: Path) -> dict:
    """pg_lab at the env file's defaults, stopped (SIGTERM: a checkpoint, then exit) once it reaches the bar."""
    _, threshold = TASKS[task]
    run = tmp / f"pg_lab_{task}_{seed}"
    proc = subprocess.Popen([sys.executable, "-m", "pg_lab", f"env={task}", f"seed={seed}", "total_steps=5000000",
                             "wandb.mode=disabled", "progress_bar=false", f"hydra.run.dir={run}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
    hit, start = None, time.time()
    while proc.poll() is None and hit is None and time.time() - start < CAP_S + 60:
        time.sleep(1.0)
        metrics = run / "metrics.jsonl"
        if metrics.exists():
            rows = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
            hit = next((r for r in rows if (r.get("return_recent_mean") or -1e9) >= threshold), None)
            if rows and rows[-1]["time_s"] > CAP_S:
                break
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        proc.wait()
    if hit is not None and hit["time_s"] <= CAP_S:
        return {"time_s": hit["time_s"], "steps": hit["step"]}
    return {"time_s": None, "steps": None}


def sb3_child(task: str, seed: int) -> None:
    """In its own process: SB3 PPO with the zoo's settings until the bar or the cap; prints a JSON line."""
    import numpy as np
    import torch
    from stable_baselines3 import PPO
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecNormalize

    torch.set_num_threads(1)
    env_id, threshold = TASKS[task]
    hp = ZOO_PPO[task]
    env = VecNormalize(make_vec_env(env_id, n_envs=1, seed=seed), gamma=hp["gamma"])
    model = PPO("MlpPolicy", env, seed=seed, device="cpu", **hp,
                policy_kwargs=dict(log_std_init=-2, ortho_init=False, activation_fn=torch.nn.ReLU,
                                   net_arch=dict(pi=[256, 256], vf=[256, 256])))

    class Bar(BaseCallback):
        def __init__(self):
            super().__init__()
            self.start, self.result, self.seen = time.perf_counter(), {"time_s": None, "steps": None}, deque(maxlen=20)

        def _on_step(self) -> bool:
            for info in self.locals["infos"]:
                if "episode" in info:  # Monitor's record: the raw (unnormalised) return
                    self.seen.append(info["episode"]["r"])
            elapsed = time.perf_counter() - self.start
            if len(self.seen) == 20 and np.mean(self.seen) >= threshold:
                self.result = {"time_s": elapsed, "steps": self.num_timesteps}
                return False
            return elapsed < CAP_S

    bar = Bar()
    model.learn(10_000_000, callback=bar)
    print(json.dumps(bar.result), flush=True)


def sb3(task: str, seed: int) -> dict:
    out = subprocess.run([sys.executable, __file__, "--sb3-child", task, str(seed)], capture_output=True, text=True,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-2000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def median_time(runs: list[dict]) -> float:
    return statistics.median(r["time_s"] if r["time_s"] is not None else CAP_S for r in runs)


def main() -> None:
    global CAP_S
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--cap", type=float, default=None, help="seconds a run may take (default 900)")
    p.add_argument("--sb3-child", nargs=2, metavar=("TASK", "SEED"), help=argparse.SUPPRESS)
    args = p.parse_args()
    CAP_S = args.cap or CAP_S
    os.environ["PG_LAB_BENCH_CAP_S"] = str(CAP_S)  # for the SB3 child processes
    if args.sb3_child:
        sb3_child(args.sb3_child[0], int(args.sb3_child[1]))
        return
    rows = []
    with tempfile.TemporaryDirectory() as tmp, ThreadPoolExecutor(2) as pool:
        for task in args.tasks:
            ours, theirs = [], []
            for seed in range(args.seeds):  # the pair side by side: one core each
                a, b = pool.submit(pg_lab, task, seed, Path(tmp)), pool.submit(sb3, task, seed)
                ours.append(a.result())
                theirs.append(b.result())
                print(f"{task} seed {seed}: pg_lab {ours[-1]}, SB3 PPO {theirs[-1]}", flush=True)
            rows.append((task, ours, theirs))

    def cell(runs: list[dict]) -> str:
        return ", ".join(f"{r['time_s']:.0f} s ({r['steps'] / 1000:.0f}k)" if r["time_s"] is not None
                         else f"> {CAP_S:.0f} s" for r in runs)

    lines = ["| task (bar) | pg_lab defaults: seconds (steps) per seed | SB3 PPO, zoo: seconds (steps) per seed | "
             "median pg_lab | median SB3 | pg_lab ÷ SB3 |", "|---|---|---|---|---|---|"]
    for task, ours, theirs in rows:
        env_id, threshold = TASKS[task]
        mo, mt = median_time(ours), median_time(theirs)
        bound = "≤ " if any(r["time_s"] is None for r in theirs) and not any(r["time_s"] is None for r in ours) \
            else ""
        lines.append(f"| {env_id} ({threshold:.0f}) | {cell(ours)} | {cell(theirs)} | {mo:.0f} s | {mt:.0f} s | "
                     f"{bound}{mo / mt:.2f} |")
    table = "\n".join(lines) + "\n"
    print(table)
    if args.out:
        cmd = "python scripts/bench_wallclock.py " + " ".join(sys.argv[1:])
        args.out.write_text(f"Produced by `{cmd}` (cap {CAP_S:.0f} s a run; a capped run counts as the cap)\n\n"
                            f"{table}")


if __name__ == "__main__":
    main()

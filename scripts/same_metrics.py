"""Does a change of code keep what training computes? Runs a few fixed-seed configurations with the code of
a git revision and with the working tree, and compares their metrics.jsonl line by line in every field
that is not a timing.

    python scripts/same_metrics.py --before 90b2e52        # prints one line per configuration, exits 1 on a difference

Both sides run `python -m pg_lab` with the same interpreter, one thread, W&B off; the revision is checked out
into a temporary git worktree (its own `conf/` and package), so nothing of the working tree leaks into it.
Two configurations pin `algo.batching=episodes` (critic-free baselines need it since CartPole's default became
step batching), so the revision must know that key; the refactor of issue 10 was checked against 90b2e52 with
the script as it stood before that (commit 328011f). Configurations that use an env's defaults differ, by
design, from revisions before those defaults changed (HalfCheetah, CartPole: issue 12).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TIMING = {"rollout_s", "update_s", "steps_per_s", "time_s"}
# name -> overrides: the default CartPole run, HalfCheetah with GAE, a Beta head, grad-variance diagnostics, and
# the other estimator, reduction, baselines, LR schedule and the squashed head
CONFIGS = {
    "cartpole_default": ["total_steps=20000"],
    "half_cheetah_gae": ["env=half_cheetah", "baseline=gae", "env.num_envs=4", "algo.num_steps=250",
                         "total_steps=12000"],
    "pendulum_beta": ["env=pendulum", "policy=beta", "baseline=gae", "total_steps=8000"],
    "cartpole_grad_variance": ["algo.grad_variance_chunks=4", "baseline=mean", "algo.batching=episodes",
                               "total_steps=8000"],
    "cartpole_trajectory_sum": ["baseline=none", "algo.estimator=trajectory", "algo.reduction=sum",
                                "algo.batching=episodes", "algo.anneal_lr=true", "total_steps=8000"],
    "pendulum_squashed": ["env=pendulum", "policy=squashed_gaussian", "baseline=value", "algo.ent_coef=0.01",
                          "total_steps=8000"],
    # the legged env (reward terms, heading command, step batching); its reward weights pinned to the values of
    # revisions from before the preset's fall penalty (2026-11-27), so that those stay comparable
    "go1_pinned_rewards": ["env=go1", "env.kwargs.rewards.alive=1.0", "env.kwargs.rewards.termination=0.0",
                           "total_steps=4096"],
}


def run(tree: Path, out: Path, overrides: list[str]) -> list[dict]:
    env = {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled"}
    cmd = [sys.executable, "-m", "pg_lab", "seed=3", "wandb.mode=disabled", "progress_bar=false",
           f"hydra.run.dir={out}", *overrides]
    proc = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed in {tree}:\n{proc.stderr[-3000:]}")
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def differences(before: list[dict], after: list[dict]) -> list[str]:
    if len(before) != len(after):
        return [f"{len(before)} lines before, {len(after)} after"]
    out = []
    for i, (a, b) in enumerate(zip(before, after)):
        a = {k: v for k, v in a.items() if k not in TIMING}
        b = {k: v for k, v in b.items() if k not in TIMING}
        for key in sorted(a.keys() | b.keys()):
            if a.get(key, "<absent>") != b.get(key, "<absent>"):
                out.append(f"line {i} {key}: {a.get(key, '<absent>')} -> {b.get(key, '<absent>')}")
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--before", required=True, help="the git revision to compare the working tree against")
    p.add_argument("--configs", nargs="*", default=list(CONFIGS), choices=list(CONFIGS))
    args = p.parse_args()
    failed = False
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        old = tmp / "before"
        subprocess.run(["git", "worktree", "add", "--detach", str(old), args.before], cwd=ROOT, check=True,
                       capture_output=True)
        try:
            for name in args.configs:
                before = run(old, tmp / f"{name}-before", CONFIGS[name])
                after = run(ROOT, tmp / f"{name}-after", CONFIGS[name])
                diff = differences(before, after)
                fields = len({k for row in before for k in row} - TIMING)
                verdict = "identical" if not diff else f"{len(diff)} DIFFERENCES"
                print(f"{name:24s} {len(before):3d} lines x {fields:2d} non-timing fields: {verdict}"
                      f"   ({' '.join(CONFIGS[name])})", flush=True)
                for line in diff[:10]:
                    print(f"    {line}")
                failed |= bool(diff)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(old)], cwd=ROOT, capture_output=True)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()

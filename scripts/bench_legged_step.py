"""What Gymnasium's `mj_rnePostConstraint` costs the legged env, on a trained gait (not random flailing):

    python scripts/bench_legged_step.py outputs/tuning_legged/go1_termination [--steps 1000 --repeats 5]

Runs the run's deterministic policy for `steps` steps on the CPU env, records its actions, then replays them
from the same reset through `env.step` with and without the call (MujocoEnv's own `_step_mujoco_simulation`
against the legged env's), alternating, `repeats` times each; prints the fastest time per step of each and their
ratio, and checks that both replays produce the same observations (the call computes forces nothing reads).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    from gymnasium.envs.mujoco.mujoco_env import MujocoEnv

    from pg_lab.envs.legged import LeggedEnv
    from pg_lab.evaluate import load
    from pg_lab.rundir import RunDir

    torch.set_num_threads(1)
    env, policy = load(RunDir(args.run_dir), render=False)
    obs, _ = env.reset(seed=0)
    actions = []
    for _ in range(args.steps):
        with torch.no_grad():
            action = policy.to_env(policy.act(torch.as_tensor(obs, dtype=torch.float32)[None], True))[0]
        actions.append(action)
        obs, _, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            break
    variants = {"without": LeggedEnv._step_mujoco_simulation, "with": MujocoEnv._step_mujoco_simulation}
    times, observations = {k: [] for k in variants}, {}
    for _ in range(args.repeats):
        for name, method in variants.items():
            LeggedEnv._step_mujoco_simulation = method
            env.reset(seed=0)
            seen = []
            t0 = time.perf_counter()
            for action in actions:
                seen.append(env.step(action)[0])
            times[name].append((time.perf_counter() - t0) / len(actions))
            observations[name] = np.array(seen)
    LeggedEnv._step_mujoco_simulation = variants["without"]
    best = {k: min(v) * 1e6 for k, v in times.items()}
    print(f"{len(actions)} steps of the policy's gait, fastest of {args.repeats}: with mj_rnePostConstraint "
          f"{best['with']:.0f} µs/step, without {best['without']:.0f} µs/step (ratio {best['with'] / best['without']:.2f}); "
          f"same observations: {np.array_equal(observations['with'], observations['without'])}")


if __name__ == "__main__":
    main()

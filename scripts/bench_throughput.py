"""Throughput benchmark: training steps/s against raw env stepping of the same task, in one run.

    python scripts/bench_throughput.py                         # half_cheetah hopper quadruped, defaults
    python scripts/bench_throughput.py --envs hopper --steps 60000 -- env.num_envs=8
    python scripts/bench_throughput.py --sb3                   # + Stable-Baselines3 side by side
    python scripts/bench_throughput.py --from-runs outputs/bench/go1/seed0 --steps 30000   # a trained policy's states

For each env config it measures, in this order: raw stepping of one env with random actions, raw stepping
of the vector env that training uses (same num_envs and vectorisation), a `pg-lab` training run with the
default settings (plus any overrides after `--`), and raw single-env stepping again. The figure is
training steps/s ÷ the mean of the two raw single-env measurements (the one-core simulator ceiling).

With --from-runs it measures trained runs instead: a copy of each resumed for --steps more steps, against one env
of the task driven by the run's policy with only the env's steps timed (raw stepping in the states training
visits: the physics of a step depends on them, e.g. on a legged robot's ground contacts).

With --sb3 (`pip install -e '.[bench]'`) it also runs Stable-Baselines3 PPO and A2C with the RL Zoo's
hyperparameters: on CartPole-v1 the wall-clock time to a mean return >= 475 over the last 20 episodes
(median over seeds, pg_lab's default config beside it), and steps/s on HalfCheetah-v5.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import pg_lab  # noqa: F401  (registers the quadruped)
from pg_lab.rundir import RunDir

ROOT = Path(__file__).resolve().parent.parent
ENV_CONFIGS = sorted(p.stem for p in (ROOT / "conf" / "env").glob("*.yaml"))


def compose_env(env_cfg: str, overrides: list[str]):
    """The env config's EnvFactory, composed as `pg-lab env=<env_cfg> <overrides>` would."""
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    from pg_lab.config import register_schema
    from pg_lab.train import CONF_DIR
    register_schema()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("config", overrides=[f"env={env_cfg}", *overrides])
    return instantiate(cfg.env)


def action_sampler(space, std: float | None):
    """Random actions for raw stepping: uniform over `space`, or N(0, std) clipped to it."""
    if std is None:
        return space.sample
    rng = np.random.default_rng(0)
    return lambda: np.clip(rng.normal(0.0, std, space.shape), space.low, space.high)


def raw_single(env_cfg: str, overrides: list[str], n: int = 20000, std: float | None = None) -> float:
    """One env of the task (its env file's kwargs: the legged models' xml_file, physics_dt, ...), random actions:
    uniform over the action space, or with `std` drawn as N(0, std) and clipped to it (an untrained Gaussian
    policy's actions, whose robot stays up longer with more ground contacts, each step costing more physics)."""
    env = compose_env(env_cfg, overrides).make()
    env.reset(seed=0)
    env.action_space.seed(0)
    draw = action_sampler(env.action_space, std)
    t = time.perf_counter()
    for _ in range(n):
        _, _, term, trunc, _ = env.step(draw())
        if term or trunc:
            env.reset()
    sps = n / (time.perf_counter() - t)
    env.close()
    return sps


def raw_vector(env_cfg: str, overrides: list[str], n: int = 20000, std: float | None = None) -> float:
    envs = compose_env(env_cfg, overrides).make_vector()
    envs.reset(seed=0)
    envs.action_space.seed(0)
    draw = action_sampler(envs.action_space, std)
    steps, t = 0, time.perf_counter()
    while steps < n:
        envs.step(draw())
        steps += envs.num_envs
    sps = steps / (time.perf_counter() - t)
    envs.close()
    return sps


def pg_lab_run(overrides: list[str], run_dir: Path) -> tuple[dict, list[dict]]:
    cmd = [sys.executable, "-m", "pg_lab", *overrides, "wandb.mode=disabled", "progress_bar=false",
           f"hydra.run.dir={run_dir}"]
    subprocess.run(cmd, check=True, capture_output=True, cwd=ROOT)
    return RunDir(run_dir).read_summary(), RunDir(run_dir).read_metrics()


def throughput(envs: list[str], steps: int, overrides: list[str], std: float | None = None) -> list[dict]:
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in envs:
            before = raw_single(name, overrides, std=std)
            vector = raw_vector(name, overrides, std=std)
            summary, _ = pg_lab_run([f"env={name}", f"total_steps={steps}", "seed=0", *overrides], Path(tmp) / name)
            after = raw_single(name, overrides, std=std)
            raw = (before + after) / 2
            results.append({"env": name, "raw_single": raw, "raw_vector": vector, "train": summary["steps_per_s"],
                            "ratio": summary["steps_per_s"] / raw})
            r = results[-1]
            print(f"{name:18s} raw 1 env {raw:8.0f}/s  raw vector {vector:8.0f}/s  training {r['train']:8.0f}/s  "
                  f"training/raw {r['ratio']:.3f}", flush=True)
    return results


# ------------------------------------------------------------------------------ in a trained policy's states

def raw_single_in_policy_states(run: Path, n: int = 8000) -> float:
    """One env of a trained run's task, driven by its policy (sampled, as training samples), timing only the env's
    `step` and `reset`: raw single-env stepping in the states that training visits. It continues, in turn, each of
    the training envs' episodes as the run's checkpoint holds them (the simulator's state and the task's, e.g. a
    command curriculum's level), n / num_envs steps each. The physics of a step depends on the state: a trained
    runner may have fewer ground contacts than a body thrown over by random actions, or more."""
    import torch

    from pg_lab.envs.state import restore_env
    from pg_lab.evaluate import load
    torch.set_num_threads(1)
    torch.manual_seed(0)
    env, policy = load(RunDir(run), render=False)
    rollout = RunDir(run).load_checkpoint().get("rollout") or {}
    states = rollout.get("envs") or [None]  # None: not captured (whole-episode batching): fresh episodes
    clock, stepping = time.perf_counter, 0.0
    for i, state in enumerate(states):
        obs, _ = env.reset(seed=i)
        if state is not None:
            restore_env(env, state)
            obs = np.asarray(rollout["obs"][i])
        for _ in range(n // len(states)):
            with torch.no_grad():
                action = policy.to_env(policy.act(torch.as_tensor(obs, dtype=torch.float32)[None]))[0]
            t = clock()
            obs, _, term, trunc, _ = env.step(action)
            if term or trunc:
                obs, _ = env.reset()
            stepping += clock() - t
    env.close()
    return n // len(states) * len(states) / stepping


def resumed_training(run: Path, steps: int, tmp: Path) -> float:
    """Training steps/s of a copy of `run` resumed for `steps` more steps (its own config: the states it visits
    are the trained policy's)."""
    import shutil
    copy = Path(tempfile.mkdtemp(dir=tmp)) / run.name  # runs of several tasks share names (seed0)
    shutil.copytree(run, copy, ignore=shutil.ignore_patterns("*.mp4", "wandb"))
    budget = RunDir(copy).read_summary()["total_steps"] + steps
    done = subprocess.run([sys.executable, "-m", "pg_lab", f"resume={copy}", f"total_steps={budget}",
                           "wandb.mode=disabled", "progress_bar=false"], capture_output=True, text=True, cwd=ROOT)
    if done.returncode:
        raise RuntimeError(f"resuming a copy of {run} failed:\n{done.stderr[-2000:]}")
    return RunDir(copy).read_metrics()[-1]["steps_per_s"]  # this session's steps over its wall clock


def throughput_from(runs: list[Path], steps: int, raw_steps: int = 8000) -> list[dict]:
    """For trained runs: their training resumed, against raw single-env stepping in their policy's states (before
    and after, averaged), and against uniform random actions (the check's baseline) for comparison."""
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for run in runs:
            before = raw_single_in_policy_states(run, raw_steps)
            train = resumed_training(run, steps, Path(tmp))
            raw = (before + raw_single_in_policy_states(run, raw_steps)) / 2
            env = RunDir(run).read_config().env
            results.append({"run": str(run), "raw_policy_states": raw, "train": train, "ratio": train / raw})
            print(f"{str(run):40s} {env.id}: raw 1 env in the policy's states {raw:8.0f}/s  training (resumed) "
                  f"{train:8.0f}/s  training/raw {train / raw:.3f}", flush=True)
    return results


# ------------------------------------------------------------------------------ Stable-Baselines3 peers

def sb3_time_to_475(algo: str, seed: int, max_steps: int) -> tuple[float | None, int | None]:
    from stable_baselines3 import A2C, PPO
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_vec_env

    class Solved(BaseCallback):
        def __init__(self):
            super().__init__()
            self.start, self.time, self.steps = time.perf_counter(), None, None

        def _on_step(self) -> bool:
            buf = self.model.ep_info_buffer
            if len(buf) >= 20 and np.mean([e["r"] for e in list(buf)[-20:]]) >= 475:
                self.time, self.steps = time.perf_counter() - self.start, self.num_timesteps
                return False
            return True

    env = make_vec_env("CartPole-v1", n_envs=8, seed=seed)
    if algo == "ppo":  # rl-zoo3 hyperparams/ppo.yml, CartPole-v1
        model = PPO("MlpPolicy", env, n_steps=32, batch_size=256, gae_lambda=0.8, gamma=0.98, n_epochs=20,
                    ent_coef=0.0, learning_rate=lambda f: 1e-3 * f, clip_range=lambda f: 0.2 * f, seed=seed,
                    device="cpu")
    else:  # rl-zoo3 hyperparams/a2c.yml, CartPole-v1
        model = A2C("MlpPolicy", env, ent_coef=0.0, seed=seed, device="cpu")
    cb = Solved()
    model.learn(max_steps, callback=cb)
    return cb.time, cb.steps


def pg_lab_time_to_475(seed: int, tmp: Path) -> tuple[float | None, int | None]:
    _, rows = pg_lab_run(["env=cartpole", f"seed={seed}", "total_steps=100000"], tmp / f"cartpole{seed}")
    hit = next((r for r in rows if (r["return_recent_mean"] or 0) >= 475), None)
    return (hit["time_s"], hit["step"]) if hit else (None, None)


def sb3_steps_per_s(algo: str, steps: int) -> float:
    from stable_baselines3 import A2C, PPO
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecNormalize
    if algo == "ppo":  # rl-zoo3 hyperparams/ppo.yml, HalfCheetah-v4 (run on v5)
        env = VecNormalize(make_vec_env("HalfCheetah-v5", n_envs=1, seed=0), gamma=0.98)
        model = PPO("MlpPolicy", env, batch_size=64, n_steps=512, gamma=0.98, learning_rate=2.0633e-05,
                    ent_coef=0.000401762, clip_range=0.1, n_epochs=20, gae_lambda=0.92, max_grad_norm=0.8,
                    vf_coef=0.58096, seed=0, device="cpu")
    else:  # rl-zoo3 hyperparams/a2c.yml, HalfCheetah-v4 (run on v5)
        env = VecNormalize(make_vec_env("HalfCheetah-v5", n_envs=4, seed=0), gamma=0.99)
        model = A2C("MlpPolicy", env, seed=0, device="cpu", ent_coef=0.0, max_grad_norm=0.5, n_steps=8,
                    gae_lambda=0.9, vf_coef=0.4, use_rms_prop=True, normalize_advantage=False, learning_rate=3e-4)
    t = time.perf_counter()
    model.learn(steps)
    return steps / (time.perf_counter() - t)


def peers(seeds: int, hc_steps: int) -> None:
    import torch
    torch.set_num_threads(1)  # as pg_lab's rollouts; SB3 would otherwise use every core
    with tempfile.TemporaryDirectory() as tmp:
        table = {"pg_lab (default)": [pg_lab_time_to_475(s, Path(tmp)) for s in range(seeds)]}
        table["SB3 PPO (zoo)"] = [sb3_time_to_475("ppo", s, 200_000) for s in range(seeds)]
        table["SB3 A2C (zoo)"] = [sb3_time_to_475("a2c", s, 300_000) for s in range(seeds)]
    print("\nCartPole-v1: wall-clock seconds (and env steps) to a mean return >= 475 over the last 20 episodes")
    for name, runs in table.items():
        times = [t for t, _ in runs if t is not None]
        med = f"{statistics.median(times):6.1f} s" if len(times) == len(runs) else "not always reached"
        print(f"  {name:18s} median {med}   per seed: " +
              ", ".join(f"{t:.1f}s/{n}" if t is not None else "-" for t, n in runs))
    with tempfile.TemporaryDirectory() as tmp:
        ours, _ = pg_lab_run(["env=half_cheetah", f"total_steps={hc_steps}", "seed=0"], Path(tmp) / "hc")
    print(f"\nHalfCheetah-v5 steps/s over {hc_steps} steps: pg_lab {ours['steps_per_s']:.0f}, "
          f"SB3 PPO {sb3_steps_per_s('ppo', hc_steps):.0f}, SB3 A2C {sb3_steps_per_s('a2c', hc_steps):.0f}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--envs", nargs="+", default=["half_cheetah", "hopper", "quadruped"], choices=ENV_CONFIGS)
    p.add_argument("--steps", type=int, default=100_000, help="training steps per env")
    p.add_argument("--sb3", action="store_true", help="also run the Stable-Baselines3 comparison")
    p.add_argument("--seeds", type=int, default=3, help="seeds of the CartPole time-to-solve comparison")
    p.add_argument("--raw-std", type=float, default=None,
                   help="raw stepping with N(0, STD) actions (clipped) instead of uniform ones, e.g. the policy's "
                        "init_std")
    p.add_argument("--from-runs", nargs="+", type=Path, metavar="RUN",
                   help="instead: trained runs, resumed for --steps more steps, against raw single-env stepping "
                        "in their policy's states")
    p.add_argument("overrides", nargs="*", help="pg-lab overrides for every training run (after --)")
    args = p.parse_args()
    if args.from_runs:
        throughput_from(args.from_runs, args.steps)
    else:
        throughput(args.envs, args.steps, args.overrides, args.raw_std)
    if args.sb3:
        peers(args.seeds, args.steps)


if __name__ == "__main__":
    main()

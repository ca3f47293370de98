"""Where a training step's time goes, per env step, at an env file's defaults (docs/results/throughput.md).

    python scripts/profile_step.py --env half_cheetah
    python scripts/profile_step.py --env go1 --batches 2 -- env.num_envs=16

Builds the vector env and the learner as `pg-lab env=<env>` does, collects batches with the step collector's loop
(timing each part of it), times the update's parts on the last batch, and the vector env stepping alone with the
same actions. Prints µs per env step, the median over `--batches` batches. One torch thread, as training collects.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from pg_lab.rollout import StepCollector, _Steps, pop_env_metrics


def build(env: str, overrides: list[str]):
    from hydra import compose, initialize_config_dir

    from pg_lab.builder import build as build_run
    from pg_lab.config import register_schema
    from pg_lab.train import CONF_DIR
    register_schema()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("config", overrides=[f"env={env}", "wandb.mode=disabled", *overrides])
    envs, algorithm = build_run(cfg, env)
    return cfg, envs, algorithm


def collect_timed(collector: StepCollector, algorithm, num_steps: int) -> tuple[dict[str, float], object]:
    """StepCollector.collect's loop, with each part's time (seconds). A copy with timers between the lines (hooks
    in the real loop would cost every run): keep it in step with pg_lab/rollout.py."""
    policy, envs, clock = algorithm.policy, collector.envs, time.perf_counter
    parts = dict.fromkeys(("policy draw", "map to the env", "vector env step", "buffers"), 0.0)
    steps, everyone = _Steps(), np.ones(envs.num_envs, dtype=bool)
    pop_env_metrics(envs)  # as the collector does: this batch's own steps only
    for _ in range(num_steps):
        t0 = clock()
        action = steps.act(policy, collector.obs, algorithm.device)
        t1 = clock()
        env_action = policy.to_env(action)
        t2 = clock()
        collector.obs, reward, terminated, truncated, info = envs.step(env_action)
        t3 = clock()
        steps.add(reward, terminated, truncated, info, everyone)
        t4 = clock()
        for key, dt in zip(parts, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
            parts[key] += dt
    t = clock()
    batch = steps.batch(envs, (), (), np.zeros((num_steps, envs.num_envs), dtype=bool))
    parts["buffers"] += clock() - t
    return parts, batch


def update_timed(algorithm, batch) -> dict[str, float]:
    """Reinforce.update's parts (seconds)."""
    clock, a = time.perf_counter, algorithm
    t0 = clock()
    est = a.baseline.estimate(batch, a.gamma, a.estimator, a.bootstrap_truncation)
    advantages = a.baseline.advantages(est, a.gamma)
    obs = batch.flat(torch.as_tensor(batch.obs).to(a.device))
    t1 = clock()
    a.policy_step(obs, batch, advantages)
    t2 = clock()
    a.baseline.fit(obs, est, advantages)
    t3 = clock()
    return {"update: values, returns, advantages": t1 - t0, "update: policy step": t2 - t1,
            "update: critic fit": t3 - t2}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--env", default="half_cheetah", help="an env config (conf/env/)")
    p.add_argument("--batches", type=int, default=5)
    p.add_argument("overrides", nargs="*", help="pg-lab overrides (after --)")
    args = p.parse_args()
    cfg, envs, algorithm = build(args.env, args.overrides)
    torch.set_num_threads(1)
    num_steps, n = cfg.algo.num_steps, envs.num_envs
    collector = StepCollector(envs, reset_seed=cfg.seed)
    collector.collect(algorithm.policy, num_steps)  # warm up, and a state to continue from
    rows: dict[str, list[float]] = {}
    for _ in range(args.batches):
        parts, batch = collect_timed(collector, algorithm, num_steps)
        actions = [algorithm.policy.to_env(a) for a in batch.actions]
        torch.set_num_threads(cfg.torch_threads)
        parts.update(update_timed(algorithm, batch))
        torch.set_num_threads(1)
        state = collector.state_dict()
        t = time.perf_counter()
        for action in actions:  # the same actions again, from the same states, with nothing else in the loop
            envs.step(action)
        parts["(the vector env stepping alone)"] = time.perf_counter() - t
        collector.load_state_dict(state, reset_seed=cfg.seed)
        for key, seconds in parts.items():
            rows.setdefault(key, []).append(seconds / (num_steps * n) * 1e6)
    print(f"env={args.env} {' '.join(args.overrides)}: {n} envs x {num_steps} steps, median of {args.batches} "
          f"batches, us per env step")
    total = 0.0
    for key, values in rows.items():
        value = statistics.median(values)
        total += 0.0 if key.startswith("(") else value
        print(f"  {key:40s} {value:8.2f}")
    print(f"  {'total':40s} {total:8.2f}  ({1e6 / total:,.0f} env steps/s)")
    h = torch.randn(512, 64)
    for name, fn in (("torch.tanh", lambda: torch.tanh(h)), ("np.tanh", lambda: np.tanh(h.numpy()))):
        fn()
        t = time.perf_counter()
        for _ in range(2000):
            fn()
        print(f"  {name} on [512, 64]: {(time.perf_counter() - t) / 2000 * 1e6:.1f} us")
    envs.close()


if __name__ == "__main__":
    main()

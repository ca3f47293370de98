"""Environments: gymnasium vector envs built from the `env` config group."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
from gymnasium.vector import AutoresetMode, VectorEnv


def make_vector_env(id: str, num_envs: int = 1, vectorization: str = "sync",
                    kwargs: dict[str, Any] | None = None, max_episode_steps: int | None = None) -> VectorEnv:
    """`num_envs` copies of the Gymnasium env `id`, stepped together.

    "sync" steps them in this process (best when a step costs microseconds, or for one env); "async"
    gives each its own process (worth it when the simulator dominates and cores are free).
    Finished envs reset within the same step (AutoresetMode.SAME_STEP; see pg_lab.rollout).
    """
    if num_envs < 1:
        raise ValueError(f"env.num_envs must be >= 1, got {num_envs}")
    if vectorization not in ("sync", "async"):
        raise ValueError(f"env.vectorization must be 'sync' or 'async', got {vectorization!r}")
    extra = dict(kwargs or {})
    if max_episode_steps is not None:
        extra["max_episode_steps"] = max_episode_steps
    return gym.make_vec(id, num_envs=num_envs, vectorization_mode=vectorization,
                        vector_kwargs={"autoreset_mode": AutoresetMode.SAME_STEP}, **extra)


if "pg_lab/Quadruped-v0" not in gym.registry:
    gym.register("pg_lab/Quadruped-v0", entry_point="pg_lab.envs.quadruped:QuadrupedEnv", max_episode_steps=1000)

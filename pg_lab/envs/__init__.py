"""Environments: the `env` config group builds an `EnvFactory`, which makes the gymnasium vector env that
training steps and the single env that evaluation renders, from the same settings.

Importing pg_lab registers `pg_lab/Quadruped-v0` and `pg_lab/Legged-v0` (real robot models: pg_lab.envs.legged),
and picks MuJoCo's offscreen backend where none is set (MUJOCO_GL=osmesa if OSMesa is installed, else egl if EGL
is), so `render_mode="rgb_array"` works as is."""

from __future__ import annotations

import ctypes.util
import os
from typing import Any

if "MUJOCO_GL" not in os.environ:  # offscreen rendering: OSMesa (any CPU) if installed, else EGL; else leave it
    for _backend, _lib in (("osmesa", "OSMesa"), ("egl", "EGL")):
        if ctypes.util.find_library(_lib):
            os.environ["MUJOCO_GL"] = _backend
            break
if os.environ.get("MUJOCO_GL") in ("egl", "osmesa"):  # PyOpenGL must agree with MuJoCo's offscreen backend
    os.environ.setdefault("PYOPENGL_PLATFORM", os.environ["MUJOCO_GL"])

import gymnasium as gym
from gymnasium.vector import AutoresetMode, VectorEnv

BACKENDS = ("mujoco", "warp")
# info keys an env reports per step that training logs (their mean per step), each prefix a W&B section of its own:
# the reward decomposition (`reward_forward`: Gymnasium's MuJoCo tasks, pg_lab's legged env) and a curriculum's
# level (`curriculum_command_level`)
METRIC_PREFIXES = ("reward_", "curriculum_")


class StepMetrics(gym.Wrapper):
    """Keeps the values of the info keys training logs (METRIC_PREFIXES) until `pop_metrics()`, once per batch, and
    hands the vector env an empty info.

    Gymnasium's vector envs merge every key of every env's info into arrays at every step (`_add_info`): about 1.5 µs
    a key and env, which on the MuJoCo tasks costs more than the policy's forward pass (4 keys on HalfCheetah, 6 on
    Walker2d, 21 on the legged task). Training reads only these values, and only their sums over a batch. The
    vector env still reports each episode's final observation (`info["final_obs"]`): it adds that itself."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        self._times: dict[str, list[int]] = {}   # per key: the steps (since the last pop) that reported it ...
        self._values: dict[str, list[float]] = {}  # ... and its values
        self._steps = 0

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        for key, value in info.items():
            if key.startswith(METRIC_PREFIXES):
                if key not in self._values:
                    self._times[key], self._values[key] = [], []
                self._times[key].append(self._steps)
                self._values[key].append(value)
        self._steps += 1
        return obs, reward, terminated, truncated, {}

    def pop_metrics(self) -> dict[str, tuple[list[int], list[float]]]:
        """Per key, the steps since the last pop that reported it and the values; starts counting afresh."""
        out = {key: (self._times[key], self._values[key]) for key in self._values}
        self._times, self._values, self._steps = {}, {}, 0
        return out


class EnvFactory:
    """`num_envs` copies of the Gymnasium env `id` for training, or one for evaluation.

    "sync" steps them in this process (best when a step costs microseconds, or for one env); "async"
    gives each its own process (worth it when the simulator dominates and cores are free).
    Finished envs reset within the same step (AutoresetMode.SAME_STEP; see pg_lab.rollout).
    `backend=warp` makes the legged task's N worlds on MuJoCo Warp instead, on the run's device
    (pg_lab.envs.warp_legged); evaluation and videos use the CPU env, the same task.
    """

    def __init__(self, id: str, num_envs: int = 1, vectorization: str = "sync",
                 kwargs: dict[str, Any] | None = None, max_episode_steps: int | None = None,
                 backend: str = "mujoco"):
        if num_envs < 1:
            raise ValueError(f"env.num_envs must be >= 1, got {num_envs}")
        if vectorization not in ("sync", "async"):
            raise ValueError(f"env.vectorization must be 'sync' or 'async', got {vectorization!r}")
        if backend not in BACKENDS:
            raise ValueError(f"env.backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
        if backend == "warp" and id != "pg_lab/Legged-v0":
            raise ValueError(f"env.backend=warp runs the legged task (env=go1, go2, quadruped_velocity, legged), "
                             f"not {id}: use env.backend=mujoco")
        self.id, self.num_envs, self.vectorization, self.backend = id, num_envs, vectorization, backend
        self.kwargs = dict(kwargs or {})
        if max_episode_steps is not None:
            self.kwargs["max_episode_steps"] = max_episode_steps

    def make_vector(self, device: str | None = None) -> VectorEnv:
        """The training vector env; with backend=warp, N worlds on `device` (torch's name: cpu, cuda)."""
        if self.backend == "warp":
            from pg_lab.envs.warp_legged import WarpLeggedVecEnv

            kwargs = dict(self.kwargs)
            limit = kwargs.pop("max_episode_steps", None) or gym.spec(self.id).max_episode_steps
            return WarpLeggedVecEnv(self.num_envs, device=device or "cpu", max_episode_steps=limit, **kwargs)
        return gym.make_vec(self.id, num_envs=self.num_envs, vectorization_mode=self.vectorization,
                            vector_kwargs={"autoreset_mode": AutoresetMode.SAME_STEP}, wrappers=[StepMetrics],
                            **self.kwargs)

    def make(self, render_mode: str | None = None) -> gym.Env:
        return gym.make(self.id, render_mode=render_mode, **self.kwargs)


def make_vector_env(id: str, num_envs: int = 1, vectorization: str = "sync",
                    kwargs: dict[str, Any] | None = None, max_episode_steps: int | None = None) -> VectorEnv:
    """The training vector env in one call (for scripts and tests)."""
    return EnvFactory(id, num_envs, vectorization, kwargs, max_episode_steps).make_vector()


if "pg_lab/Quadruped-v0" not in gym.registry:
    gym.register("pg_lab/Quadruped-v0", entry_point="pg_lab.envs.quadruped:QuadrupedEnv", max_episode_steps=1000)
if "pg_lab/Legged-v0" not in gym.registry:  # 20 s episodes at the default 50 Hz control
    gym.register("pg_lab/Legged-v0", entry_point="pg_lab.envs.legged:LeggedEnv", max_episode_steps=1000)

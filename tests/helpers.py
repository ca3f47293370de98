"""Tiny environments whose every return can be computed by hand."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from pg_lab.baselines import Baseline, Estimates


class CountEnv(gym.Env):
    """Reward t+1 at step t; the episode terminates after a length drawn at reset from [min_len, max_len]
    (or is truncated there, with `truncate=True`). Observation: [t, length]."""

    def __init__(self, min_len: int = 2, max_len: int = 5, truncate: bool = False, nan_after: int | None = None):
        self.observation_space = spaces.Box(-np.inf, np.inf, (2,), np.float32)
        self.action_space = spaces.Discrete(2)
        self.min_len, self.max_len, self.truncate, self.nan_after = min_len, max_len, truncate, nan_after
        self.total_steps = 0

    def _obs(self):
        return np.array([self.t, self.length], dtype=np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        self.length = int(self.np_random.integers(self.min_len, self.max_len + 1))
        return self._obs(), {}

    def step(self, action):
        self.t += 1
        self.total_steps += 1
        done = self.t >= self.length
        obs = self._obs()
        if self.nan_after is not None and self.total_steps > self.nan_after:
            obs[0] = np.nan
        return obs, float(self.t), done and not self.truncate, done and self.truncate, {}


class TabularMDP(gym.Env):
    """Two states, two actions, three steps, then termination. Action a moves to state a.
    Rewards R[s, a]. Observations are one-hot states, so a linear softmax policy is tabular."""

    R = np.array([[1.0, 0.0], [-1.0, 2.0]])
    HORIZON = 3

    def __init__(self):
        self.observation_space = spaces.Box(0.0, 1.0, (2,), np.float32)
        self.action_space = spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.s, self.t = 0, 0
        return np.eye(2, dtype=np.float32)[self.s], {}

    def step(self, action):
        r = float(self.R[self.s, action])
        self.s, self.t = int(action), self.t + 1
        return np.eye(2, dtype=np.float32)[self.s], r, self.t >= self.HORIZON, False, {}


def register_test_envs() -> None:
    for name, cls in (("Count-v0", CountEnv), ("Tabular-v0", TabularMDP)):
        if f"pg_lab_test/{name}" not in gym.registry:
            gym.register(f"pg_lab_test/{name}", entry_point=cls)



class ConstantBaseline(Baseline):
    """A user's baseline, written as the README says: one class (its YAML is given as overrides in the test)."""

    def __init__(self, context=None, value: float = 0.0):
        super().__init__(context)
        self.value = value

    def advantages(self, est: Estimates, gamma: float) -> np.ndarray:
        return est.returns - self.value

"""Return estimators on time-major batches of shape [T, N] (T steps of N environments).

Conventions shared by every function here:
- `ends[t, n]` is True where an episode ended at step t (terminated or truncated);
- `next_values[t, n]` is the value of the state after step t: V(s_{t+1}) inside an episode, V of the final
  observation where a time limit truncated it, and 0 where it terminated or where no critic exists.
Recursions never cross an episode end, so whatever follows an env's last episode in the batch (an
env that waits for the others) cannot leak into the returns.

Each estimator takes NumPy arrays or torch tensors and computes where its inputs are: a batch collected on a GPU
(pg_lab.rollout.DeviceStepCollector) has its returns computed there, in float64 as on the host.
"""

from __future__ import annotations

import numpy as np
import torch


def array_module(x):
    """numpy for arrays, torch for tensors (the two share the names used here: zeros_like, where, float64)."""
    return torch if isinstance(x, torch.Tensor) else np


def reward_to_go(rewards: np.ndarray, ends: np.ndarray, next_values: np.ndarray, gamma: float) -> np.ndarray:
    """G_t = r_t + γ G_{t+1} within an episode; at an episode's end G_t = r_t + γ next_values_t.

    As in every common implementation, the policy gradient uses G_t without the γ^t weight of step t: unbiased
    for γ = 1, a (useful) bias towards the undiscounted objective for γ < 1 (Thomas, 2014). The lecture's
    G(τ) (`trajectory_returns`) is unbiased for the discounted objective; tests/test_policy_gradient.py checks both."""
    xp = array_module(rewards)
    returns = xp.zeros_like(rewards, dtype=xp.float64)
    running = xp.zeros_like(returns[0])
    for t in reversed(range(rewards.shape[0])):
        running = rewards[t] + gamma * xp.where(ends[t], next_values[t], running)
        returns[t] = running
    return returns


def episode_starts(ends: np.ndarray) -> np.ndarray:
    """True at the first step of each episode: step 0 and every step after an end."""
    starts = array_module(ends).zeros_like(ends, dtype=bool)
    starts[0] = True
    starts[1:] = ends[:-1]
    return starts


def trajectory_returns(rewards: np.ndarray, ends: np.ndarray, next_values: np.ndarray,
                       gamma: float) -> np.ndarray:
    """The lecture's G(τ) = Σ_t γ^t r_t of the whole episode, assigned to every step of that episode."""
    to_go = reward_to_go(rewards, ends, next_values, gamma)
    starts = episode_starts(ends)
    xp = array_module(to_go)
    returns = xp.empty_like(to_go)
    current = to_go[0]
    for t in range(to_go.shape[0]):
        current = xp.where(starts[t], to_go[t], current)
        returns[t] = current
    return returns


def gae(rewards: np.ndarray, values: np.ndarray, next_values: np.ndarray, ends: np.ndarray,
        gamma: float, lam: float) -> np.ndarray:
    """Generalised advantage estimation (Schulman et al. 2016): Σ_k (γλ)^k δ_{t+k} within the episode,
    δ_t = r_t + γ V(s_{t+1}) − V(s_t). λ = 1 gives G_t − V(s_t) (the Monte-Carlo value baseline)."""
    xp = array_module(rewards)
    deltas = rewards + gamma * next_values - values
    advantages = xp.zeros_like(deltas, dtype=xp.float64)
    running = xp.zeros_like(advantages[0])
    for t in reversed(range(rewards.shape[0])):
        running = deltas[t] + gamma * lam * xp.where(ends[t], 0.0, running)
        advantages[t] = running
    return advantages


def episode_stats(rewards: np.ndarray, ends: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Undiscounted returns and lengths of the episodes that ended inside the valid part of a batch."""
    totals = reward_to_go(rewards, ends, np.zeros_like(rewards), 1.0)
    lengths = reward_to_go(np.ones_like(rewards), ends, np.zeros_like(rewards), 1.0)
    first = episode_starts(ends) & valid
    # an episode counts only if it also ended within the valid steps (always true in complete-episode batches)
    ended = np.cumsum(ends[::-1] & valid[::-1], axis=0)[::-1] > 0
    pick = first & ended
    # transpose so episodes come out env by env, in time order
    return totals.T[pick.T], lengths.T[pick.T].astype(np.int64)

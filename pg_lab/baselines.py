"""Baselines b subtracted from the return: advantage = G − b.

Any b that does not depend on the action leaves the policy gradient unbiased and can cut its variance.
Each baseline turns a batch's returns into advantages (`advantages`) and then learns from the batch
(`update`). Only `value` and `gae` have a critic; they also bootstrap time-limit truncations with it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from pg_lab.networks import ObsNormalizer, ValueNet
from pg_lab.returns import gae


@dataclass
class Estimates:
    """What a baseline sees: the batch's returns under the chosen estimator, plus the critic's view."""
    returns: np.ndarray        # [T, N] the estimator's returns (G(τ) or G_t)
    reward_to_go: np.ndarray   # [T, N] G_t, the value function's regression target
    rewards: np.ndarray
    ends: np.ndarray
    valid: np.ndarray
    values: np.ndarray         # [T, N] V(s_t) (zeros without a critic)
    next_values: np.ndarray    # [T, N] V(s_{t+1}) per the conventions of pg_lab.returns


class NoBaseline:
    """b = 0: the lecture's plain REINFORCE."""

    critic: ValueNet | None = None

    def advantages(self, est: Estimates, gamma: float) -> np.ndarray:
        return est.returns

    def update(self, obs: torch.Tensor, est: Estimates, advantages: np.ndarray) -> dict[str, float]:
        return {}

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


class MeanBaseline(NoBaseline):
    """b = running mean of past batches' returns (an exponential average with `momentum`).

    Only *past* batches feed b, so it is independent of the current actions and the gradient stays
    unbiased; the first batch uses b = 0."""

    def __init__(self, momentum: float = 0.9):
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"baseline.momentum must be in [0, 1), got {momentum}")
        self.momentum = momentum
        self.value: float | None = None

    def advantages(self, est: Estimates, gamma: float) -> np.ndarray:
        return est.returns - (self.value or 0.0)

    def update(self, obs: torch.Tensor, est: Estimates, advantages: np.ndarray) -> dict[str, float]:
        batch_mean = float(est.returns[est.valid].mean())
        self.value = batch_mean if self.value is None else \
            self.momentum * self.value + (1 - self.momentum) * batch_mean
        return {"baseline_mean": self.value}

    def state_dict(self) -> dict:
        return {"value": self.value}

    def load_state_dict(self, state: dict) -> None:
        self.value = state["value"]


class ValueBaseline(NoBaseline):
    """b = V(s_t), a learned state value fitted to the reward-to-go by regression with its own optimizer."""

    def __init__(self, obs_dim: int, normalizer: ObsNormalizer,
                 optimizer: Callable[..., torch.optim.Optimizer],
                 hidden_sizes: Sequence[int] = (64, 64), activation: str = "tanh", lr: float = 1e-3,
                 epochs: int = 5, minibatches: int = 4, device: torch.device | str = "cpu"):
        if epochs < 1 or minibatches < 1:
            raise ValueError(f"baseline.epochs and baseline.minibatches must be >= 1, got {epochs}, {minibatches}")
        self.critic = ValueNet(obs_dim, normalizer, hidden_sizes, activation).to(device)
        self.optimizer = optimizer(self.critic.net.parameters(), lr=lr)
        self.epochs, self.minibatches = epochs, minibatches

    def advantages(self, est: Estimates, gamma: float) -> np.ndarray:
        return est.returns - est.values

    def targets(self, est: Estimates, advantages: np.ndarray) -> np.ndarray:
        return est.reward_to_go

    def update(self, obs: torch.Tensor, est: Estimates, advantages: np.ndarray) -> dict[str, float]:
        targets = self.targets(est, advantages)
        valid = torch.from_numpy(est.valid.reshape(-1))
        x = obs.reshape(-1, obs.shape[-1])[valid]
        y = torch.as_tensor(targets.reshape(-1)[valid.numpy()], dtype=torch.float32, device=x.device)
        size = max(1, len(x) // self.minibatches)
        losses = []
        for _ in range(self.epochs):
            order = torch.randperm(len(x), device=x.device)
            for start in range(0, len(x), size):
                idx = order[start:start + size]
                loss = 0.5 * (self.critic(x[idx]) - y[idx]).pow(2).mean()
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                self.optimizer.step()
                losses.append(loss.item())
        explained = 1.0 - np.var(est.values[est.valid] - targets[est.valid]) / max(np.var(targets[est.valid]), 1e-8)
        return {"value_loss": float(np.mean(losses)), "explained_variance": float(explained)}

    def state_dict(self) -> dict:
        return {"critic": self.critic.state_dict(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.critic.load_state_dict(state["critic"])
        self.optimizer.load_state_dict(state["optimizer"])


class GAEBaseline(ValueBaseline):
    """Advantages by GAE(λ) on the learned V; λ = 1 is the Monte-Carlo value baseline, λ < 1 trades
    bias for variance (where REINFORCE meets actor-critic). V regresses on the λ-return."""

    def __init__(self, obs_dim: int, normalizer: ObsNormalizer,
                 optimizer: Callable[..., torch.optim.Optimizer],
                 hidden_sizes: Sequence[int] = (64, 64), activation: str = "tanh", lr: float = 1e-3,
                 epochs: int = 5, minibatches: int = 4, lam: float = 0.95, device: torch.device | str = "cpu"):
        if not 0.0 <= lam <= 1.0:
            raise ValueError(f"baseline.lam must be in [0, 1], got {lam}")
        super().__init__(obs_dim, normalizer, optimizer, hidden_sizes, activation, lr, epochs, minibatches, device)
        self.lam = lam

    def advantages(self, est: Estimates, gamma: float) -> np.ndarray:
        return gae(est.rewards, est.values, est.next_values, est.ends, gamma, self.lam)

    def targets(self, est: Estimates, advantages: np.ndarray) -> np.ndarray:
        return advantages + est.values

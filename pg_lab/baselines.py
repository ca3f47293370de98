"""Baselines b subtracted from the return: advantage = G − b.

Any b that does not depend on the action leaves the policy gradient unbiased and can cut its variance.
A baseline owns everything about estimation: the returns under the chosen estimator (`estimate`, where a
critic bootstraps time-limit truncations), the advantages, its own learning step (`fit`, with its own
optimizer) and its state. Adding one is a subclass of `Baseline` here plus a YAML file in conf/baseline/.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from omegaconf import DictConfig

from pg_lab.config import Batching, ConfigError, Estimator
from pg_lab.networks import ObsNormalizer, ValueNet
from pg_lab.returns import array_module, gae, reward_to_go, trajectory_returns
from pg_lab.rollout import Batch


def _var(x) -> float:
    """The population variance (NumPy's np.var), of an array or a tensor."""
    return float(x.var(unbiased=False)) if isinstance(x, torch.Tensor) else float(np.var(x))


class Context:
    """What the builder hands every baseline besides its own hyperparameters. A plain class, not a
    dataclass: Hydra's `instantiate` would turn a dataclass argument into a config (copying the modules)."""

    def __init__(self, obs_dim: int, normalizer: ObsNormalizer,
                 make_optimizer: Callable[..., torch.optim.Optimizer], device: torch.device):
        self.obs_dim = obs_dim
        self.normalizer = normalizer          # the policy's observation normaliser, shared
        self.make_optimizer = make_optimizer  # the optimizer group's kind, as a partial
        self.device = device


@dataclass
class Estimates:
    """What a baseline sees: the batch's returns under the chosen estimator, plus the critic's view. NumPy arrays,
    or torch tensors on the batch's device when the batch is there (pg_lab.rollout.DeviceStepCollector)."""
    returns: np.ndarray        # [T, N] the estimator's returns (G(τ) or G_t)
    reward_to_go: np.ndarray   # [T, N] G_t, the value function's regression target
    rewards: np.ndarray
    ends: np.ndarray
    valid: np.ndarray
    values: np.ndarray         # [T, N] V(s_t) (zeros without a critic)
    next_values: np.ndarray    # [T, N] V(s_{t+1}) per the conventions of pg_lab.returns


class Baseline(ABC):
    """The interface every baseline implements (the config's `_target_` builds one with a `Context`)."""

    name = "?"              # the option's name in conf/baseline/, for messages
    has_critic = False      # a learned V(s): what bootstraps truncated and cut episodes

    critic: ValueNet | None = None

    def __init__(self, context: Context | None = None):
        self.context = context

    @classmethod
    def check_config(cls, algo: DictConfig) -> None:
        """Refuse `algo` settings this baseline cannot honour (raise ConfigError naming both keys)."""
        if algo.batching == Batching.steps and not cls.has_critic:
            raise ConfigError(f"algo.batching=steps cuts episodes and bootstraps the cut with a critic's V(s), "
                              f"which baseline={cls.name} does not have: the returns would be biased. Use "
                              f"baseline=value or baseline=gae, or algo.batching=episodes")
        if algo.get("bootstrap_truncation") and not cls.has_critic:
            raise ConfigError(f"algo.bootstrap_truncation=true bootstraps time-limit truncations with a critic's "
                              f"V(s), which baseline={cls.name} does not have: use baseline=value or gae, or "
                              f"algo.bootstrap_truncation=false")

    def values(self, batch: Batch) -> tuple[np.ndarray, np.ndarray]:
        """V(s_t) and V(s_{t+1}) per pg_lab.returns' conventions; zeros without a critic."""
        xp = array_module(batch.rewards)
        return xp.zeros_like(batch.rewards), xp.zeros_like(batch.rewards)

    def estimate(self, batch: Batch, gamma: float, estimator: Estimator,
                 bootstrap_truncation: bool | None = None) -> Estimates:
        """Returns under `estimator`, and the critic's values where the baseline has one. With
        bootstrap_truncation=False a time-limit truncation is an end worth 0 (cuts still bootstrap)."""
        values, next_values = self.values(batch)
        if bootstrap_truncation is False:
            next_values = array_module(next_values).where(batch.truncated & ~batch.terminated, 0.0, next_values)
        to_go = reward_to_go(batch.rewards, batch.ends, next_values, gamma)
        returns = to_go if estimator == Estimator.reward_to_go else \
            trajectory_returns(batch.rewards, batch.ends, next_values, gamma)
        return Estimates(returns=returns, reward_to_go=to_go, rewards=batch.rewards, ends=batch.ends,
                         valid=batch.valid, values=values, next_values=next_values)

    @abstractmethod
    def advantages(self, est: Estimates, gamma: float) -> np.ndarray:
        """G − b per step, [T, N]."""

    def fit(self, obs: torch.Tensor, est: Estimates, advantages: np.ndarray) -> dict[str, float]:
        """Learn from the batch after the policy step; `obs` holds the valid steps' observations, [n, d]."""
        return {}

    @property
    def optimizers(self) -> list[torch.optim.Optimizer]:
        return []

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        return None  # no state


class NoBaseline(Baseline):
    """b = 0: the lecture's plain REINFORCE."""

    name = "none"

    def advantages(self, est: Estimates, gamma: float) -> np.ndarray:
        return est.returns


class MeanBaseline(Baseline):
    """b = running mean of past batches' returns (an exponential average with `momentum`).

    Only *past* batches feed b, so it is independent of the current actions and the gradient stays
    unbiased; the first batch uses b = 0."""

    name = "mean"

    def __init__(self, context: Context | None = None, momentum: float = 0.9):
        super().__init__(context)
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"baseline.momentum must be in [0, 1), got {momentum}")
        self.momentum = momentum
        self.value: float | None = None

    def advantages(self, est: Estimates, gamma: float) -> np.ndarray:
        return est.returns - (self.value or 0.0)

    def fit(self, obs: torch.Tensor, est: Estimates, advantages: np.ndarray) -> dict[str, float]:
        batch_mean = float(est.returns[est.valid].mean())
        self.value = batch_mean if self.value is None else \
            self.momentum * self.value + (1 - self.momentum) * batch_mean
        return {"baseline_mean": self.value}

    def state_dict(self) -> dict:
        return {"value": self.value}

    def load_state_dict(self, state: dict) -> None:
        self.value = state["value"]


class ValueBaseline(Baseline):
    """b = V(s_t), a learned state value fitted to the reward-to-go by regression with its own optimizer.
    The critic also bootstraps time-limit truncations with V(final observation); a terminal state is worth 0.
    `normalize_targets`: regress on the targets standardised by their running mean and std (pg_lab.networks'
    ValueNet), the value normalisation of PPO implementations (MAPPO's ValueNorm, without PopArt's output fix)."""

    name, has_critic = "value", True

    def __init__(self, context: Context, hidden_sizes: Sequence[int] = (64, 64), activation: str = "tanh",
                 lr: float = 1e-3, epochs: int = 5, minibatches: int = 4, normalize_targets: bool = False):
        super().__init__(context)
        if epochs < 1 or minibatches < 1:
            raise ValueError(f"baseline.epochs and baseline.minibatches must be >= 1, got {epochs}, {minibatches}")
        self.critic = ValueNet(context.obs_dim, context.normalizer, hidden_sizes, activation,
                               normalize_targets).to(context.device)
        self.optimizer = context.make_optimizer(self.critic.net.parameters(), lr=lr)
        self.epochs, self.minibatches = epochs, minibatches

    def values(self, batch: Batch) -> tuple[np.ndarray, np.ndarray]:
        device = self.context.device
        on_device = isinstance(batch.rewards, torch.Tensor)  # a batch collected on the device stays there
        out = (lambda v: v.double()) if on_device else (lambda v: v.double().cpu().numpy())
        next_values = array_module(batch.rewards).zeros_like(batch.rewards)
        with torch.no_grad():
            values = out(self.critic(torch.as_tensor(batch.obs).to(device)))
            next_values[:-1] = values[1:]
            next_values[batch.ends] = 0.0
            if len(batch.final_index):
                t, n = batch.final_index.T
                if on_device:
                    t, n = torch.as_tensor(t, device=device), torch.as_tensor(n, device=device)
                final = torch.as_tensor(batch.final_obs).to(device)
                next_values[t, n] = out(self.critic(final))
        return values, next_values

    def advantages(self, est: Estimates, gamma: float) -> np.ndarray:
        return est.returns - est.values

    def targets(self, est: Estimates, advantages: np.ndarray) -> np.ndarray:
        return est.reward_to_go

    def fit(self, obs: torch.Tensor, est: Estimates, advantages: np.ndarray) -> dict[str, float]:
        targets = self.targets(est, advantages)
        y = torch.as_tensor(targets[est.valid], dtype=torch.float32, device=obs.device)
        stats = self.critic.target_stats
        if stats.enabled:  # this batch's targets join the statistics, then the MLP regresses in their units
            stats.accumulate(y)
            y = (y - stats.mean.float()) * torch.rsqrt(stats.var + stats.eps).float()
        size = max(1, len(obs) // self.minibatches)
        losses = []
        for _ in range(self.epochs):
            order = torch.randperm(len(obs), device=obs.device)
            for start in range(0, len(obs), size):
                idx = order[start:start + size]
                loss = 0.5 * (self.critic.normalized(obs[idx]) - y[idx]).pow(2).mean()
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                self.optimizer.step()
                losses.append(loss.item())
        explained = 1.0 - _var(est.values[est.valid] - targets[est.valid]) / max(_var(targets[est.valid]), 1e-8)
        return {"value_loss": float(np.mean(losses)), "explained_variance": float(explained)}

    @property
    def optimizers(self) -> list[torch.optim.Optimizer]:
        return [self.optimizer]

    def state_dict(self) -> dict:
        return {"critic": self.critic.state_dict(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        critic = dict(state["critic"])
        for key, value in self.critic.state_dict().items():  # checkpoints from before target normalisation
            if key.startswith("target_stats.") and key not in critic and not self.critic.target_stats.enabled:
                critic[key] = value
        self.critic.load_state_dict(critic)
        self.optimizer.load_state_dict(state["optimizer"])


class GAEBaseline(ValueBaseline):
    """Advantages by GAE(λ) on the learned V; λ = 1 is the Monte-Carlo value baseline, λ < 1 trades
    bias for variance (where REINFORCE meets actor-critic). V regresses on the λ-return."""

    name = "gae"

    def __init__(self, context: Context, hidden_sizes: Sequence[int] = (64, 64), activation: str = "tanh",
                 lr: float = 1e-3, epochs: int = 5, minibatches: int = 4, lam: float = 0.95,
                 normalize_targets: bool = False):
        if not 0.0 <= lam <= 1.0:
            raise ValueError(f"baseline.lam must be in [0, 1], got {lam}")
        super().__init__(context, hidden_sizes, activation, lr, epochs, minibatches, normalize_targets)
        self.lam = lam

    @classmethod
    def check_config(cls, algo: DictConfig) -> None:
        super().check_config(algo)
        if algo.estimator == Estimator.trajectory:
            raise ConfigError("baseline=gae computes its own advantages from the reward-to-go; "
                              "algo.estimator=trajectory cannot apply: use baseline=value or estimator=reward_to_go")

    def advantages(self, est: Estimates, gamma: float) -> np.ndarray:
        return gae(est.rewards, est.values, est.next_values, est.ends, gamma, self.lam)

    def targets(self, est: Estimates, advantages: np.ndarray) -> np.ndarray:
        return advantages + est.values

"""Building blocks shared by policies and value functions."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU, "elu": nn.ELU, "gelu": nn.GELU, "silu": nn.SiLU}


def mlp(in_dim: int, hidden_sizes: Sequence[int], out_dim: int, activation: str = "tanh",
        out_gain: float = 1.0) -> nn.Sequential:
    """An MLP with orthogonal init; `out_gain` scales the last layer (0.01 for a policy's output,
    following Andrychowicz et al. 2020: near-uniform initial actions)."""
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
    if any(int(h) < 1 for h in hidden_sizes):
        raise ValueError(f"hidden_sizes must be layer widths >= 1, got {list(hidden_sizes)}")
    layers: list[nn.Module] = []
    sizes = [in_dim, *hidden_sizes]
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [_init(nn.Linear(a, b), np.sqrt(2)), ACTIVATIONS[activation]()]
    layers.append(_init(nn.Linear(sizes[-1], out_dim), out_gain))
    return nn.Sequential(*layers)


def _init(layer: nn.Linear, gain: float) -> nn.Linear:
    nn.init.orthogonal_(layer.weight, gain)
    nn.init.zeros_(layer.bias)
    return layer


class ObsNormalizer(nn.Module):
    """Running mean/variance of observations, applied as (x - mean) / std clipped to ±clip.

    It lives in the model (buffers), not in an env wrapper, so that checkpoints, evaluation and the
    final observations of truncated episodes all see the same statistics. Statistics accumulate only
    between updates, so the distribution that sampled a batch is the one that scores it.
    """

    def __init__(self, shape: Sequence[int], clip: float = 10.0, eps: float = 1e-8, enabled: bool = True):
        super().__init__()
        self.clip, self.eps, self.enabled = clip, eps, enabled
        self.register_buffer("mean", torch.zeros(shape, dtype=torch.float64))
        self.register_buffer("var", torch.ones(shape, dtype=torch.float64))
        self.register_buffer("count", torch.tensor(0.0, dtype=torch.float64))
        self._cached_count = -1.0  # float32 copies of the statistics for forward, refreshed when count changes

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        if not self.enabled:
            return obs
        if self._cached_count != self.count.item():  # statistics changed (update or load): refresh
            self._shift = self.mean.float()
            self._scale = torch.rsqrt(self.var + self.eps).float()
            self._cached_count = self.count.item()
        if self._cached_count == 0:
            return obs
        return torch.clamp((obs - self._shift) * self._scale, -self.clip, self.clip)

    @torch.no_grad()
    def accumulate(self, batch: torch.Tensor) -> None:
        """Chan et al.'s parallel update of mean and variance with a batch of shape [n, *shape]."""
        if not self.enabled or batch.shape[0] == 0:
            return
        batch = batch.to(torch.float64)
        b_mean, b_var, n = batch.mean(0), batch.var(0, unbiased=False), batch.shape[0]
        delta, total = b_mean - self.mean, self.count + n
        self.mean += delta * n / total
        self.var.copy_((self.var * self.count + b_var * n + delta**2 * self.count * n / total) / total)
        self.count += n


class ValueNet(nn.Module):
    """V(s): an MLP on normalised observations. With `normalize_targets` the MLP predicts the value in units of
    its regression targets' running mean and standard deviation (`target_stats`, fed by the baseline before each
    fit), so that returns of hundreds or thousands are regressed at the scale the network starts at."""

    def __init__(self, obs_dim: int, normalizer: ObsNormalizer, hidden_sizes: Sequence[int] = (64, 64),
                 activation: str = "tanh", normalize_targets: bool = False):
        super().__init__()
        self.normalizer = normalizer
        self.net = mlp(obs_dim, hidden_sizes, 1, activation, out_gain=1.0)
        self.target_stats = ObsNormalizer((), enabled=normalize_targets)

    def normalized(self, obs: torch.Tensor) -> torch.Tensor:
        """The MLP's output: V(s) in target units (V(s) itself without target normalisation)."""
        return self.net(self.normalizer(obs)).squeeze(-1)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        out = self.normalized(obs)
        stats = self.target_stats
        if not stats.enabled or stats.count.item() == 0:
            return out
        return out * torch.sqrt(stats.var + stats.eps).float() + stats.mean.float()

"""Policies π(a | s; θ): an MLP torso and one distribution head per action-space family.

Every policy offers the same small protocol:
    distribution(obs) -> a torch distribution whose log_prob(action) and entropy() have shape [batch]
    mode(dist)        -> the deterministic action (argmax / mean), for evaluation
    to_env(action)    -> the action sent to the environment (clipped or mapped to the bounds)
The action *sampled* is what is stored and scored; only `to_env` clips, squashes or maps it.

Continuous heads sample in a normalised space ([-1, 1] for the Gaussians, the pre-tanh u for the squashed
Gaussian, (0, 1) for the Beta) and map to the Box bounds, so one set of hyperparameters (initial std 0.5, say)
means the same thing on every task. Their log-probs and entropies are nevertheless in the env's action units:
each includes the log-Jacobian of its map to the bounds (affine, and tanh for the squashed Gaussian), so they
compare across heads. The constant terms change no gradient.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from gymnasium import spaces
from torch import nn
from torch.distributions import Beta, Categorical, Distribution, Independent, Normal
from torch.special import log_ndtr

from pg_lab.networks import ObsNormalizer, mlp


class UnsupportedActionSpace(ValueError):
    """A head that cannot act in the env's action space (e.g. gaussian on CartPole)."""


def is_bounded(space: spaces.Space) -> bool:
    return isinstance(space, spaces.Box) and bool(np.all(np.isfinite(space.low)) and
                                                  np.all(np.isfinite(space.high)))


class Policy(nn.Module):
    """MLP torso shared by the heads below; subclasses define the head (`_head_dim`, `distribution`)."""

    name = "policy"

    def __init__(self, observation_space: spaces.Box, action_space: spaces.Space,
                 hidden_sizes: Sequence[int] = (64, 64), activation: str = "tanh",
                 out_gain: float = 0.01, normalizer: ObsNormalizer | None = None):
        super().__init__()
        self.check_space(action_space)
        self.action_space = action_space
        obs_dim = int(np.prod(observation_space.shape))
        self.normalizer = normalizer if normalizer is not None else ObsNormalizer((obs_dim,), enabled=False)
        self.net = mlp(obs_dim, hidden_sizes, self._head_dim(action_space), activation, out_gain)

    space_type: type[spaces.Space] = spaces.Space  # the action-space family this head acts in ...
    space_kind = ""                                  # ... as the refusal names it
    space_hint = ""                                  # ... and the heads to use instead

    @classmethod
    def check_space(cls, action_space: spaces.Space) -> None:
        """Raise UnsupportedActionSpace, saying what to use instead, if this head cannot act in `action_space`."""
        if not isinstance(action_space, cls.space_type):
            raise UnsupportedActionSpace(f"policy={cls.name} needs a {cls.space_kind} action space, got "
                                         f"{action_space}: {cls.space_hint}")

    def _head_dim(self, action_space: spaces.Space) -> int:
        raise NotImplementedError

    def distribution(self, obs: torch.Tensor) -> Distribution:
        raise NotImplementedError

    def mode(self, dist: Distribution) -> torch.Tensor:
        return dist.mean

    def to_env(self, action: torch.Tensor) -> np.ndarray:
        """The action as a Gymnasium env takes it (NumPy)."""
        return self.env_action(action).cpu().numpy()

    def env_action(self, action: torch.Tensor) -> torch.Tensor:
        """The action as the env takes it, as a tensor on the policy's device (a device-resident env's input)."""
        return action

    def act(self, obs: torch.Tensor, deterministic: bool = False) -> torch.Tensor:
        dist = self.distribution(obs)
        return self.mode(dist) if deterministic else dist.sample()

    def diagnostics(self) -> dict[str, float]:
        """Per-update numbers about the head itself, logged beside the losses."""
        return {}

    def action_diagnostics(self, actions: torch.Tensor) -> dict[str, float]:
        """Per-update numbers about a batch's stored actions (e.g. how often they hit the bounds)."""
        return {}


class CategoricalPolicy(Policy):
    """Softmax over a Discrete action space."""

    name = "categorical"
    space_type, space_kind = spaces.Discrete, "Discrete"
    space_hint = "use policy=gaussian, squashed_gaussian or beta for continuous actions"

    def _head_dim(self, action_space: spaces.Discrete) -> int:
        return int(action_space.n)

    def distribution(self, obs: torch.Tensor) -> Categorical:
        return Categorical(logits=self.net(self.normalizer(obs)))

    def mode(self, dist: Categorical) -> torch.Tensor:
        return dist.probs.argmax(-1)

    def act(self, obs: torch.Tensor, deterministic: bool = False) -> torch.Tensor:
        """The rollout's hot path: the same draw as distribution(obs).sample(), without building it."""
        logits = self.net(self.normalizer(obs))
        if deterministic:
            return logits.argmax(-1)
        return torch.multinomial(torch.softmax(logits, -1), 1, True).squeeze(-1)

    def env_action(self, action: torch.Tensor) -> torch.Tensor:
        return action + int(self.action_space.start)


class _BoxPolicy(Policy):
    """Shared by the continuous heads: the affine map between [-1, 1] and the Box bounds."""

    needs_bounds = True
    space_type, space_kind = spaces.Box, "continuous (Box)"
    space_hint = "use policy=categorical for discrete actions"

    @classmethod
    def check_space(cls, action_space: spaces.Space) -> None:
        super().check_space(action_space)
        if cls.needs_bounds and not is_bounded(action_space):
            raise UnsupportedActionSpace(
                f"policy={cls.name} needs finite action bounds, but the action space {action_space} is "
                "unbounded: use policy=gaussian")

    def __init__(self, observation_space, action_space, hidden_sizes=(64, 64), activation="tanh",
                 out_gain=0.01, normalizer=None):
        self.act_dim = int(np.prod(action_space.shape))
        super().__init__(observation_space, action_space, hidden_sizes, activation, out_gain, normalizer)
        bounded = is_bounded(action_space)
        low = torch.as_tensor(action_space.low if bounded else -np.ones(self.act_dim), dtype=torch.float32)
        high = torch.as_tensor(action_space.high if bounded else np.ones(self.act_dim), dtype=torch.float32)
        self.register_buffer("center", (high + low) / 2)
        self.register_buffer("half_range", (high - low) / 2)
        self.bounded = bounded

    def env_action(self, action: torch.Tensor) -> torch.Tensor:
        """[-1, 1] -> bounds. Subclasses whose samples can leave [-1, 1] clip here, and only here."""
        return self.center + self.half_range * action

    def unit_actions(self, actions: torch.Tensor) -> torch.Tensor:
        """Stored actions as the env gets them, in [-1, 1] units of the bounds (before the affine map)."""
        return actions.clamp(-1.0, 1.0)

    def action_diagnostics(self, actions: torch.Tensor) -> dict[str, float]:
        """near_bound_frac: action components within 1% of the range from a bound, as the env gets them
        (clipped ones included), comparable across heads."""
        if not self.bounded:
            return {}
        return {"near_bound_frac": (self.unit_actions(actions).abs() >= 0.98).float().mean().item()}


class ActionUnits(Distribution):
    """`base` (over a head's sample space) with log-probs and entropy in action units: log_scale, the
    log-Jacobian of the map from samples to actions (a constant per event), is subtracted from log_prob and
    added to the entropy. Samples, mean and the stored action are base's."""

    arg_constraints: dict = {}

    def __init__(self, base: Distribution, log_scale: torch.Tensor):
        self.base, self.log_scale = base, log_scale
        super().__init__(batch_shape=base.batch_shape, event_shape=base.event_shape, validate_args=False)

    def sample(self, sample_shape: torch.Size = torch.Size()) -> torch.Tensor:
        return self.base.sample(sample_shape)

    def rsample(self, sample_shape: torch.Size = torch.Size()) -> torch.Tensor:
        return self.base.rsample(sample_shape)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        return self.base.log_prob(value) - self.log_scale

    def entropy(self) -> torch.Tensor:
        return self.base.entropy() + self.log_scale

    @property
    def mean(self) -> torch.Tensor:
        return self.base.mean

    @property
    def stddev(self) -> torch.Tensor:
        return self.base.stddev


class GaussianPolicy(_BoxPolicy):
    """Diagonal Gaussian; samples are clipped to the bounds on the way to the env (Chou et al.'s
    'Gaussian with clipping'). log σ (initially log init_std) is state-independent by default, clamped to
    [log_std_min, log_std_max]. On an unbounded Box the actions are used as they are."""

    name = "gaussian"
    needs_bounds = False

    def __init__(self, observation_space, action_space, hidden_sizes: Sequence[int] = (64, 64),
                 activation: str = "tanh", out_gain: float = 0.01, normalizer: ObsNormalizer | None = None,
                 init_std: float = 0.5, state_dependent_std: bool = False,
                 log_std_min: float = -5.0, log_std_max: float = 2.0):
        if init_std <= 0:
            raise ValueError(f"policy.init_std must be positive, got {init_std}")
        log_std_init = math.log(init_std)
        self.state_dependent_std = state_dependent_std
        super().__init__(observation_space, action_space, hidden_sizes, activation, out_gain, normalizer)
        self.log_std_min, self.log_std_max = log_std_min, log_std_max
        if state_dependent_std:
            nn.init.constant_(self.net[-1].bias[self.act_dim:], log_std_init)
        else:
            self.log_std = nn.Parameter(torch.full((self.act_dim,), float(log_std_init)))

    def _head_dim(self, action_space: spaces.Box) -> int:
        return 2 * self.act_dim if self.state_dependent_std else self.act_dim

    def diagnostics(self) -> dict[str, float]:
        if self.state_dependent_std:
            return {}
        return {"action_std": self.log_std.detach().exp().mean().item()}

    def _mean_log_std(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.net(self.normalizer(obs))
        if self.state_dependent_std:
            mean, log_std = out.split(self.act_dim, dim=-1)
        else:
            mean, log_std = out, self.log_std.expand_as(out)
        return mean, log_std.clamp(self.log_std_min, self.log_std_max)

    def distribution(self, obs: torch.Tensor) -> Distribution:
        """N(μ, σ) over [-1, 1] units; log-probs and entropy in action units (σ_action = half_range · σ)."""
        mean, log_std = self._mean_log_std(obs)
        base = Independent(Normal(mean, log_std.exp()), 1)
        return ActionUnits(base, self.half_range.log().sum()) if self.bounded else base

    def act(self, obs: torch.Tensor, deterministic: bool = False) -> torch.Tensor:
        """The rollout's hot path: the same draw as distribution(obs).sample(), without building it."""
        mean, log_std = self._mean_log_std(obs)
        return mean if deterministic else torch.normal(mean, log_std.exp())

    def env_action(self, action: torch.Tensor) -> torch.Tensor:
        if not self.bounded:
            return action
        return super().env_action(action.clamp(-1.0, 1.0))

    def action_diagnostics(self, actions: torch.Tensor) -> dict[str, float]:
        """clip_frac: action components outside the bounds (clipped on the way to the env)."""
        if not self.bounded:
            return {}
        return {"clip_frac": (actions.abs() > 1.0).float().mean().item(), **super().action_diagnostics(actions)}


class ClippedNormal(Distribution):
    """The distribution of clip(x, -1, 1), x ~ N(μ, σ), as Fujita & Maeda's clipped-action policy gradient
    (CAPG, ICML 2018) scores it: a sample beyond a bound has the probability of the whole tail,
    log Φ((-1 - μ)/σ) or log Φ((μ - 1)/σ); inside, the Gaussian density (in action units: minus log_scale).
    The score of a clipped sample is then that of the action the env got, which keeps the estimator unbiased
    with a lower variance than scoring the unclipped sample."""

    arg_constraints: dict = {}

    def __init__(self, mean: torch.Tensor, std: torch.Tensor, log_scale: torch.Tensor):
        self.base, self.log_scale = Normal(mean, std), log_scale
        super().__init__(batch_shape=mean.shape[:-1], event_shape=mean.shape[-1:], validate_args=False)

    def sample(self, sample_shape: torch.Size = torch.Size()) -> torch.Tensor:
        return self.base.sample(sample_shape)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        mean, std = self.base.loc, self.base.scale
        inside = self.base.log_prob(value.clamp(-1.0, 1.0))  # clamped: the unused branch must not give NaN grads
        low = log_ndtr((-1.0 - mean) / std)   # P(x <= -1)
        high = log_ndtr((mean - 1.0) / std)   # P(x >= 1)
        per_dim = torch.where(value <= -1.0, low, torch.where(value >= 1.0, high, inside))
        n_inside = (value.abs() < 1.0).to(per_dim.dtype)
        return per_dim.sum(-1) - (n_inside * self.log_scale).sum(-1)

    def entropy(self) -> torch.Tensor:
        """The unclipped Gaussian's entropy in action units (the clipped law is a mixed measure without one):
        what the entropy bonus acts on, as for the Gaussian head."""
        return self.base.entropy().sum(-1) + self.log_scale.sum(-1)

    @property
    def mean(self) -> torch.Tensor:
        return self.base.mean


class CapgPolicy(GaussianPolicy):
    """A Gaussian clipped to the bounds, scored as the clipped action it sends (CAPG, Fujita & Maeda 2018)."""

    name = "capg"
    needs_bounds = True

    def distribution(self, obs: torch.Tensor) -> ClippedNormal:
        mean, log_std = self._mean_log_std(obs)
        return ClippedNormal(mean, log_std.exp(), self.half_range.log())


class TanhNormal(Distribution):
    """The squashed Gaussian over its pre-tanh sample u ~ N(μ, σ): the stored, scored action is u; the env
    gets center + half_range · tanh(u). log p(a) = log N(u) − Σ log(1 − tanh² u) − log_scale, in action units
    (log_scale: Σ log half_range). Scoring u itself keeps saturated samples (|u| ≫ 1, where tanh(u) rounds to
    ±1 in float32) exact: recovering u by atanh of a clamped action biased their gradient."""

    arg_constraints: dict = {}

    def __init__(self, mean: torch.Tensor, std: torch.Tensor, log_scale: torch.Tensor | float = 0.0):
        self.base = Normal(mean, std)
        self.log_scale = log_scale
        super().__init__(batch_shape=mean.shape[:-1], event_shape=mean.shape[-1:], validate_args=False)

    def sample(self, sample_shape: torch.Size = torch.Size()) -> torch.Tensor:
        return self.base.sample(sample_shape)

    def rsample(self, sample_shape: torch.Size = torch.Size()) -> torch.Tensor:
        return self.base.rsample(sample_shape)

    def log_prob(self, u: torch.Tensor) -> torch.Tensor:
        # log(1 - tanh(u)^2) written stably: 2 (log 2 - u - softplus(-2u))
        log_det = 2.0 * (math.log(2.0) - u - nn.functional.softplus(-2.0 * u))
        return (self.base.log_prob(u) - log_det).sum(-1) - self.log_scale

    def entropy(self) -> torch.Tensor:
        """No closed form: a one-sample Monte Carlo estimate −log p(u), u reparametrised (so an entropy bonus
        has a gradient)."""
        return -self.log_prob(self.base.rsample())

    @property
    def mean(self) -> torch.Tensor:
        """μ, whose action tanh(μ) is the deterministic one (the median, not the mean, of the squashed law)."""
        return self.base.mean


class SquashedGaussianPolicy(GaussianPolicy):
    """Gaussian squashed by tanh into the bounds: no clipping, no mass outside the box. The stored action is
    the pre-tanh sample u; tanh is applied on the way to the env."""

    name = "squashed_gaussian"
    needs_bounds = True

    def distribution(self, obs: torch.Tensor) -> TanhNormal:
        mean, log_std = self._mean_log_std(obs)
        return TanhNormal(mean, log_std.exp(), self.half_range.log().sum())

    def env_action(self, u: torch.Tensor) -> torch.Tensor:
        return _BoxPolicy.env_action(self, torch.tanh(u))

    def unit_actions(self, actions: torch.Tensor) -> torch.Tensor:
        return torch.tanh(actions)

    def action_diagnostics(self, actions: torch.Tensor) -> dict[str, float]:
        return _BoxPolicy.action_diagnostics(self, actions)


class ClampedBeta(Beta):
    """Beta whose log-prob clamps x to [eps, 1 - eps]: finite values and gradients at the bounds."""

    def __init__(self, alpha: torch.Tensor, beta: torch.Tensor, eps: float = 1e-6):
        super().__init__(alpha, beta, validate_args=False)
        self.eps = eps

    def sample(self, sample_shape: torch.Size = torch.Size()) -> torch.Tensor:
        return super().sample(sample_shape).clamp(self.eps, 1.0 - self.eps)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        return super().log_prob(value.clamp(self.eps, 1.0 - self.eps))


class BetaPolicy(_BoxPolicy):
    """Beta(α, β) per action dimension with α, β = 1 + softplus(·) ≥ 1 (unimodal, Chou et al. 2017).

    The stored action is the sample x ∈ (0, 1); `to_env` maps it affinely to [low, high]. No clipping is
    ever needed, so the gradient is unbiased on bounded action spaces.
    """

    name = "beta"

    def __init__(self, observation_space, action_space, hidden_sizes: Sequence[int] = (64, 64),
                 activation: str = "tanh", out_gain: float = 0.01, normalizer: ObsNormalizer | None = None,
                 eps: float = 1e-6, init_std: float = 0.5):
        """init_std: the initial std in half-range units, as for the Gaussian heads (so that arms compare
        like with like): α = β = (1/init_std² − 1)/2, which must exceed 1, so init_std < 1/√3."""
        super().__init__(observation_space, action_space, hidden_sizes, activation, out_gain, normalizer)
        self.eps = eps
        concentration = (1.0 / init_std**2 - 1.0) / 2.0 if init_std > 0 else 0.0
        if concentration <= 1.0:
            raise ValueError(f"policy.init_std must be in (0, 1/√3 ≈ 0.577) for a Beta head, got {init_std}")
        c = torch.tensor(concentration - 1.0)
        nn.init.constant_(self.net[-1].bias, float(c + torch.log(-torch.expm1(-c))))  # softplus⁻¹(c − 1)

    def _head_dim(self, action_space: spaces.Box) -> int:
        return 2 * self.act_dim

    def distribution(self, obs: torch.Tensor) -> ActionUnits:
        """Beta(α, β) over (0, 1); log-probs and entropy in action units (the map to the bounds scales by
        high − low = 2 · half_range)."""
        alpha, beta = (1.0 + nn.functional.softplus(self.net(self.normalizer(obs)))).split(self.act_dim, -1)
        return ActionUnits(Independent(ClampedBeta(alpha, beta, self.eps), 1), (2.0 * self.half_range).log().sum())

    def env_action(self, action: torch.Tensor) -> torch.Tensor:
        return super().env_action(2.0 * action - 1.0)

    def unit_actions(self, actions: torch.Tensor) -> torch.Tensor:
        return 2.0 * actions - 1.0


def kl_divergence(old: Distribution, new: Distribution) -> torch.Tensor:
    """KL(old ‖ new) per state, for any head's distribution. The action-unit shift, tanh and the affine map
    are bijections, which leave the KL unchanged, so it is the KL of the sampled laws; for CAPG's clipped
    Gaussian it is the KL of the unclipped Gaussians, an upper bound (clipping loses information)."""
    def sampled(d: Distribution) -> Distribution:
        if isinstance(d, ActionUnits):
            return d.base
        if isinstance(d, (TanhNormal, ClippedNormal)):
            return Independent(d.base, 1)
        return d
    return torch.distributions.kl_divergence(sampled(old), sampled(new))


POLICIES = {p.name: p for p in (CategoricalPolicy, GaussianPolicy, CapgPolicy, SquashedGaussianPolicy, BetaPolicy)}

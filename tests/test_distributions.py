"""Policy heads against torch.distributions and scipy, and at the edges of their supports."""

import math

import numpy as np
import pytest
import scipy.stats
import torch
from gymnasium import spaces

from pg_lab.policies import (
    BetaPolicy,
    CapgPolicy,
    CategoricalPolicy,
    GaussianPolicy,
    SquashedGaussianPolicy,
    TanhNormal,
)

OBS = spaces.Box(-np.inf, np.inf, (3,), np.float32)
BOX = spaces.Box(np.array([-2.0, 0.0], np.float32), np.array([2.0, 1.0], np.float32))


def make(cls, action_space=BOX, **kw):
    torch.manual_seed(0)
    policy = cls(OBS, action_space, hidden_sizes=(16,), out_gain=1.0, **kw)
    return policy, torch.randn(5, 3)


def test_categorical_matches_softmax():
    policy, obs = make(CategoricalPolicy, spaces.Discrete(4))
    dist = policy.distribution(obs)
    logits = policy.net(obs)
    probs = torch.softmax(logits, -1)
    a = torch.tensor([0, 1, 2, 3, 1])
    assert torch.allclose(dist.log_prob(a), probs.log()[range(5), a], atol=1e-6)
    assert torch.allclose(dist.entropy(), -(probs * probs.log()).sum(-1), atol=1e-6)
    assert torch.equal(policy.mode(dist), probs.argmax(-1))


def test_categorical_to_env_respects_the_space_start():
    policy, _ = make(CategoricalPolicy, spaces.Discrete(3, start=-1))
    assert policy.to_env(torch.tensor([0, 2])).tolist() == [-1, 1]


def test_gaussian_log_prob_and_entropy_match_scipy_in_action_units():
    policy, obs = make(GaussianPolicy, init_std=math.exp(-0.3))
    dist = policy.distribution(obs)
    mean, std = dist.base.base_dist.loc.detach().numpy(), dist.base.base_dist.scale.detach().numpy()
    center, half = policy.center.numpy(), policy.half_range.numpy()
    x = torch.randn(5, 2)
    a = center + half * x.numpy()  # the action (unclipped) in the env's units
    expected = scipy.stats.norm.logpdf(a, center + half * mean, half * std).sum(-1)
    assert np.allclose(dist.log_prob(x).detach().numpy(), expected, atol=1e-5)
    assert np.allclose(dist.entropy().detach().numpy(), scipy.stats.norm.entropy(0, half * std).sum(-1), atol=1e-5)
    assert np.allclose(std, math.exp(-0.3))


def test_gaussian_log_std_is_clamped_and_state_dependent_option_works():
    policy, obs = make(GaussianPolicy, init_std=math.exp(5.0), log_std_max=1.0)
    assert torch.allclose(policy.distribution(obs).stddev, torch.tensor(math.exp(1.0)))
    policy, obs = make(GaussianPolicy, state_dependent_std=True, init_std=math.exp(-1.0))
    scale = policy.distribution(obs).stddev
    assert not torch.allclose(scale[0], scale[1])  # depends on the state
    assert not hasattr(policy, "log_std")


def test_gaussian_clips_only_on_the_way_to_the_env():
    policy, obs = make(GaussianPolicy)
    a = torch.tensor([[3.0, -3.0], [0.0, 0.5]])
    # [-1, 1] maps to each dimension's [low, high]; outside is clipped
    assert np.allclose(policy.to_env(a), [[2.0, 0.0], [0.0, 0.75]])
    # the stored sample keeps its value: log_prob of the unclipped action differs from the clipped one
    dist = policy.distribution(obs[:2])
    assert not torch.allclose(dist.log_prob(a), dist.log_prob(a.clamp(-1, 1)))


def test_gaussian_on_unbounded_box_passes_actions_through():
    policy, _ = make(GaussianPolicy, spaces.Box(-np.inf, np.inf, (2,), np.float32))
    assert np.allclose(policy.to_env(torch.tensor([[5.0, -7.0]])), [[5.0, -7.0]])


def test_beta_matches_scipy_in_action_units_and_maps_to_the_bounds():
    policy, obs = make(BetaPolicy)
    dist = policy.distribution(obs)
    alpha = dist.base.base_dist.concentration1.detach().numpy()
    beta = dist.base.base_dist.concentration0.detach().numpy()
    assert (alpha >= 1).all() and (beta >= 1).all()
    x = torch.rand(5, 2) * 0.98 + 0.01
    low, width = BOX.low, BOX.high - BOX.low
    a = low + width * x.numpy()
    assert np.allclose(dist.log_prob(x).detach().numpy(),
                       scipy.stats.beta.logpdf(a, alpha, beta, loc=low, scale=width).sum(-1), atol=1e-4)
    assert np.allclose(dist.entropy().detach().numpy(),
                       scipy.stats.beta.entropy(alpha, beta, loc=low, scale=width).sum(-1), atol=1e-4)
    assert np.allclose(policy.to_env(torch.tensor([[0.0, 0.0], [1.0, 1.0], [0.5, 0.5]])),
                       [[-2.0, 0.0], [2.0, 1.0], [0.0, 0.5]], atol=1e-5)
    assert np.allclose(policy.mode(dist).detach().numpy(), alpha / (alpha + beta))


def test_squashed_gaussian_scores_its_pre_tanh_sample_in_action_units():
    policy, obs = make(SquashedGaussianPolicy)
    dist = policy.distribution(obs)
    mean, std = dist.base.loc.detach().numpy(), dist.base.scale.detach().numpy()
    u = torch.randn(5, 2) * 3
    half = policy.half_range.numpy()
    # density of a = center + half * tanh(u): N(u) / |da/du|, da/du = half * (1 - tanh(u)^2)
    expected = (scipy.stats.norm.logpdf(u.numpy(), mean, std) - np.log(half * (1 - np.tanh(u.numpy()) ** 2))).sum(-1)
    assert np.allclose(dist.log_prob(u).detach().numpy(), expected, atol=1e-4)
    assert np.allclose(policy.to_env(u), policy.center.numpy() + half * np.tanh(u.numpy()), atol=1e-6)


def test_squashed_gradient_is_unbiased_when_saturated():
    """The review's case: pre-tanh μ = 7, σ = 0.5. A third of the samples lie beyond atanh(1 − 1e-6), where
    recovering u from the clamped action mis-scored them (mean ∂log π/∂μ was −0.40); scored as u, the mean
    score over samples is 0."""
    torch.manual_seed(0)
    mu = torch.tensor([[7.0]], requires_grad=True)
    dist = TanhNormal(mu.expand(200000, 1), torch.tensor([[0.5]]).expand(200000, 1))
    u = dist.sample()
    assert (u > math.atanh(1 - 1e-6)).float().mean() > 0.25
    (grad,) = torch.autograd.grad(dist.log_prob(u).sum(), mu)
    score_mean, score_se = grad.item() / 200000, (1 / 0.5) / math.sqrt(200000)  # score s.d. = 1/σ
    assert abs(score_mean) < 4 * score_se


def test_capg_scores_clipped_samples_by_their_tail_probability():
    policy, obs = make(CapgPolicy)
    dist = policy.distribution(obs[:1])
    mean, std = dist.base.loc.detach().numpy()[0], dist.base.scale.detach().numpy()[0]
    half = policy.half_range.numpy()
    x = torch.tensor([[-3.0, 0.3]])
    expected = scipy.stats.norm.logcdf((-1 - mean[0]) / std[0]) + \
        scipy.stats.norm.logpdf(0.3, mean[1], std[1]) - np.log(half[1])
    assert np.isclose(dist.log_prob(x).item(), expected, atol=1e-5)
    # every sample beyond a bound gets the same score: the env got the same action
    assert torch.allclose(dist.log_prob(torch.tensor([[5.0, 0.3]])), dist.log_prob(torch.tensor([[1.0, 0.3]])))
    # the two tails and the inside make a probability law: mass(-1) + ∫ density + mass(1) = 1 per dimension
    grid = torch.linspace(-1 + 1e-5, 1 - 1e-5, 200001)
    m, s = dist.base.loc[0, 0], dist.base.scale[0, 0]
    inside = torch.trapezoid(torch.distributions.Normal(m, s).log_prob(grid).exp(), grid)
    tails = torch.special.ndtr((-1 - m) / s) + torch.special.ndtr((m - 1) / s)
    assert abs((inside + tails).item() - 1.0) < 1e-4


def test_entropies_are_comparable_across_heads():
    """In action units, a head that spreads over more of the box has more entropy whatever its family: a
    Gaussian and a Beta with the same std in action units have entropies within a few percent of a nat."""
    torch.manual_seed(0)
    space = spaces.Box(np.array([-10.0], np.float32), np.array([10.0], np.float32))
    beta = BetaPolicy(OBS, space, hidden_sizes=(4,), init_std=0.2, out_gain=0.0)
    gauss = GaussianPolicy(OBS, space, hidden_sizes=(4,), init_std=0.2, out_gain=0.0)
    obs = torch.zeros(1, 3)
    h_beta, h_gauss = beta.distribution(obs).entropy().item(), gauss.distribution(obs).entropy().item()
    assert abs(h_beta - h_gauss) < 0.1, (h_beta, h_gauss)  # in [-1, 1] units they differed by log 10 + log 2


def test_bound_diagnostics():
    gauss, _ = make(GaussianPolicy)
    d = gauss.action_diagnostics(torch.tensor([[1.5, 0.0], [-0.99, 0.2]]))
    assert d == {"clip_frac": 0.25, "near_bound_frac": 0.5}
    beta, _ = make(BetaPolicy)
    assert beta.action_diagnostics(torch.tensor([[0.001, 0.5], [0.999, 0.995]]))["near_bound_frac"] == 0.75
    squashed, _ = make(SquashedGaussianPolicy)
    assert squashed.action_diagnostics(torch.tensor([[9.0, 0.0]]))["near_bound_frac"] == 0.5


@pytest.mark.parametrize("cls", [GaussianPolicy, SquashedGaussianPolicy, BetaPolicy, CategoricalPolicy])
def test_entropy_is_minus_expected_log_prob(cls):
    space = spaces.Discrete(3) if cls is CategoricalPolicy else BOX
    policy, obs = make(cls, space)
    with torch.no_grad():
        dist = policy.distribution(obs)
        samples = dist.sample((40000,))
        mc = -dist.log_prob(samples).mean(0)
        if cls is SquashedGaussianPolicy:  # a one-sample estimate: average it over many copies
            entropy = policy.distribution(obs.repeat(40000, 1)).entropy().reshape(40000, -1).mean(0)
        else:
            entropy = dist.entropy()
    assert torch.allclose(entropy, mc, atol=0.05), (entropy, mc)


def test_squashed_density_integrates_to_one():
    """The change of variables is right: the density of the action integrates to 1 over the bounds."""
    dist = TanhNormal(torch.tensor([[0.7]]), torch.tensor([[0.9]]), log_scale=math.log(2.5))  # bounds ±2.5
    u = torch.linspace(-12, 12, 400001).reshape(-1, 1, 1)
    a = 2.5 * torch.tanh(u.squeeze())
    density = dist.log_prob(u).exp().squeeze()
    assert abs(torch.trapezoid(density, a).item() - 1.0) < 1e-3


@pytest.mark.parametrize("cls", [SquashedGaussianPolicy, BetaPolicy, CapgPolicy])
def test_log_prob_and_grads_finite_at_and_beyond_the_bounds(cls):
    policy, obs = make(cls)
    if cls is BetaPolicy:
        edge = [0.0, 1.0, np.nextafter(np.float32(0), np.float32(1)), np.nextafter(np.float32(1), np.float32(0)),
                1e-7]
    else:  # pre-tanh samples and unclipped Gaussian samples can be anywhere
        edge = [-1.0, 1.0, 40.0, -1e4, 300.0]
    actions = torch.tensor(edge, dtype=torch.float32).reshape(-1, 1).expand(5, 2).contiguous()
    log_prob = policy.distribution(obs).log_prob(actions)
    assert actions.dtype == torch.float32 and torch.isfinite(log_prob).all()
    log_prob.sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in policy.parameters() if p.grad is not None)


@pytest.mark.parametrize("cls", [SquashedGaussianPolicy, BetaPolicy])
def test_samples_stay_inside_the_bounds(cls):
    policy, obs = make(cls)
    with torch.no_grad():
        acts = policy.act(obs.repeat(2000, 1))
    env = policy.to_env(acts)
    assert (env >= BOX.low - 1e-6).all() and (env <= BOX.high + 1e-6).all()


def test_beta_init_std_sets_the_initial_spread():
    torch.manual_seed(0)
    policy = BetaPolicy(OBS, BOX, hidden_sizes=(16,), init_std=0.2)
    dist = policy.distribution(torch.randn(5, 3))
    assert torch.allclose(dist.base.base_dist.concentration1, torch.tensor(12.0), atol=0.1)
    # std of 2x - 1 (the half-range units) is 1 / sqrt(2c + 1) = 0.2
    assert torch.allclose(2 * dist.stddev, torch.tensor(0.2), atol=0.005)

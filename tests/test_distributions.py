"""Policy heads against torch.distributions and scipy, and at the edges of their supports."""

import math

import numpy as np
import pytest
import scipy.stats
import torch
from gymnasium import spaces

from pg_lab.policies import BetaPolicy, CategoricalPolicy, GaussianPolicy, SquashedGaussianPolicy, TanhNormal

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


def test_gaussian_log_prob_and_entropy_match_scipy():
    policy, obs = make(GaussianPolicy, init_std=math.exp(-0.3))
    dist = policy.distribution(obs)
    mean, std = dist.base_dist.loc.detach().numpy(), dist.base_dist.scale.detach().numpy()
    a = torch.randn(5, 2)
    expected = scipy.stats.norm.logpdf(a.numpy(), mean, std).sum(-1)
    assert np.allclose(dist.log_prob(a).detach().numpy(), expected, atol=1e-5)
    assert np.allclose(dist.entropy().detach().numpy(), scipy.stats.norm.entropy(0, std).sum(-1), atol=1e-5)
    assert np.allclose(std, math.exp(-0.3))


def test_gaussian_log_std_is_clamped_and_state_dependent_option_works():
    policy, obs = make(GaussianPolicy, init_std=math.exp(5.0), log_std_max=1.0)
    assert torch.allclose(policy.distribution(obs).base_dist.scale, torch.tensor(math.exp(1.0)))
    policy, obs = make(GaussianPolicy, state_dependent_std=True, init_std=math.exp(-1.0))
    scale = policy.distribution(obs).base_dist.scale
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


def test_beta_matches_scipy_and_maps_to_the_bounds():
    policy, obs = make(BetaPolicy)
    dist = policy.distribution(obs)
    alpha = dist.base_dist.concentration1.detach().numpy()
    beta = dist.base_dist.concentration0.detach().numpy()
    assert (alpha >= 1).all() and (beta >= 1).all()
    x = torch.rand(5, 2) * 0.98 + 0.01
    assert np.allclose(dist.log_prob(x).detach().numpy(),
                       scipy.stats.beta.logpdf(x.numpy(), alpha, beta).sum(-1), atol=1e-4)
    assert np.allclose(dist.entropy().detach().numpy(), scipy.stats.beta.entropy(alpha, beta).sum(-1), atol=1e-4)
    assert np.allclose(policy.to_env(torch.tensor([[0.0, 0.0], [1.0, 1.0], [0.5, 0.5]])),
                       [[-2.0, 0.0], [2.0, 1.0], [0.0, 0.5]], atol=1e-5)
    assert np.allclose(policy.mode(dist).detach().numpy(), alpha / (alpha + beta))


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
    """The change of variables is right: the density of tanh(u) integrates to 1 over (-1, 1)."""
    dist = TanhNormal(torch.tensor([[0.7]]), torch.tensor([[0.9]]))
    a = torch.linspace(-1 + 1e-6, 1 - 1e-6, 200001).reshape(-1, 1, 1)
    density = dist.log_prob(a).exp().squeeze()
    assert abs(torch.trapezoid(density, a.squeeze()).item() - 1.0) < 1e-3


@pytest.mark.parametrize("cls", [SquashedGaussianPolicy, BetaPolicy])
def test_log_prob_and_grads_finite_at_and_next_to_the_bounds(cls):
    policy, obs = make(cls)
    lo, hi = (-1.0, 1.0) if cls is SquashedGaussianPolicy else (0.0, 1.0)
    edge = torch.tensor([lo, hi, np.nextafter(np.float32(lo), np.float32(1)),
                         np.nextafter(np.float32(hi), np.float32(-1)), lo + 1e-7], dtype=torch.float32)
    actions = edge.reshape(-1, 1).expand(5, 2).contiguous()
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
    assert torch.allclose(dist.base_dist.concentration1, torch.tensor(12.0), atol=0.1)
    # std of 2x - 1 (the half-range units) is 1 / sqrt(2c + 1) = 0.2
    assert torch.allclose(2 * dist.base_dist.stddev, torch.tensor(0.2), atol=0.005)

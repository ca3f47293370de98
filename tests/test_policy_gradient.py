"""The lecture's derivation as a test.

On a small MDP the exact gradient ∇θ E[G(τ)] is computed by enumerating every trajectory; the mean of
many REINFORCE estimates, produced by the real collector and `Reinforce.update` (estimator, baselines,
loss), must match it
within statistical error — for both return estimators, with and without baselines.
"""

import itertools

import numpy as np
import pytest
import torch
from helpers import TabularMDP

from pg_lab.baselines import Context, GAEBaseline, MeanBaseline, NoBaseline, ValueBaseline
from pg_lab.config import Estimator, Reduction
from pg_lab.envs import make_vector_env
from pg_lab.networks import ObsNormalizer
from pg_lab.policies import CategoricalPolicy
from pg_lab.reinforce import Reinforce, policy_loss
from pg_lab.rollout import collect

N_ENVS, N_BATCHES = 200, 120


def tabular_policy(envs) -> CategoricalPolicy:
    policy = CategoricalPolicy(envs.single_observation_space, envs.single_action_space, hidden_sizes=())
    with torch.no_grad():  # logits = W · onehot(s) + b: a tabular softmax policy, away from uniform
        policy.net[0].weight.copy_(torch.tensor([[0.3, -0.5], [0.8, 0.1]]))
        policy.net[0].bias.copy_(torch.tensor([0.2, -0.1]))
    return policy


def exact_gradient(policy: CategoricalPolicy, gamma: float) -> torch.Tensor:
    """∇θ Σ_τ P(τ; θ) G(τ), every one of the 2^3 trajectories enumerated."""
    policy.zero_grad()
    eye = torch.eye(2)
    objective = torch.zeros(())
    for actions in itertools.product((0, 1), repeat=TabularMDP.HORIZON):
        s, prob, ret = 0, torch.ones(()), 0.0
        for t, a in enumerate(actions):
            prob = prob * policy.distribution(eye[s:s + 1]).probs[0, a]
            ret += gamma**t * TabularMDP.R[s, a]
            s = a
        objective = objective + prob * ret
    objective.backward()
    return torch.cat([p.grad.flatten() for p in policy.parameters()]).clone()


def reinforce_estimates(policy, envs, baseline, gamma, estimator, reduction=Reduction.sum) -> np.ndarray:
    """The policy gradient of N_BATCHES batches through the real `Reinforce.update` (the baseline learns from
    each batch after its step, as in training: it depends on past batches only, so it stays unbiased)."""
    optimizer = torch.optim.SGD(policy.parameters(), lr=0.0)  # read the gradient, leave θ where it is
    algorithm = Reinforce(policy, optimizer, baseline, gamma=gamma, estimator=estimator, reduction=reduction,
                          normalize_advantage=False, max_grad_norm=None)
    grads = []
    for k in range(N_BATCHES):
        algorithm.update(collect(envs, policy, TabularMDP.HORIZON, reset_seed=k))
        # the loss is −J, so its gradient is −∇J
        grads.append(-torch.cat([p.grad.flatten() for p in policy.parameters()]).numpy())
    return np.array(grads)


def make_baseline(name: str):
    torch.manual_seed(1)
    if name == "none":
        return NoBaseline()
    if name == "mean":
        b = MeanBaseline()
        b.value = 2.5  # any constant
        return b
    cls = ValueBaseline if name == "value" else GAEBaseline
    kwargs = {"lam": 1.0} if name == "gae" else {}
    # an untrained, random critic: any function of the state is a valid baseline
    context = Context(2, ObsNormalizer((2,), enabled=False), torch.optim.Adam, torch.device("cpu"))
    return cls(context, hidden_sizes=(8,), epochs=1, minibatches=1, **kwargs)


SLOW = pytest.mark.slow  # ~6 s of CPU each: `make test` keeps one per estimator and a critic; CI runs them all


@pytest.mark.parametrize("estimator,gamma,baseline", [
    # G(τ) = Σ γ^t r_t is unbiased for the discounted objective
    (Estimator.trajectory, 0.9, "none"), pytest.param(Estimator.trajectory, 0.9, "mean", marks=SLOW),
    (Estimator.trajectory, 0.9, "value"),
    # reward-to-go G_t drops the γ^t weight of step t (as every implementation does): unbiased at γ = 1
    pytest.param(Estimator.reward_to_go, 1.0, "none", marks=SLOW),
    pytest.param(Estimator.reward_to_go, 1.0, "mean", marks=SLOW),
    pytest.param(Estimator.reward_to_go, 1.0, "value", marks=SLOW), (Estimator.reward_to_go, 1.0, "gae"),
])
def test_reinforce_is_an_unbiased_estimate_of_the_exact_gradient(estimator, gamma, baseline):
    envs = make_vector_env("pg_lab_test/Tabular-v0", num_envs=N_ENVS)
    policy = tabular_policy(envs)
    exact = exact_gradient(policy, gamma).numpy()
    torch.manual_seed(0)
    grads = reinforce_estimates(policy, envs, make_baseline(baseline), gamma, estimator)
    mean, stderr = grads.mean(0), grads.std(0, ddof=1) / np.sqrt(len(grads))
    # the test has power: a bias of 10% of the largest component would show
    assert stderr.max() < 0.1 * np.abs(exact).max()
    z = np.abs(mean - exact) / stderr
    assert (z < 4.5).all(), f"exact {exact}, estimated {mean} ± {stderr}"
    envs.close()


@pytest.mark.slow
def test_baselines_reduce_variance_on_this_mdp():
    envs = make_vector_env("pg_lab_test/Tabular-v0", num_envs=N_ENVS)
    policy = tabular_policy(envs)
    torch.manual_seed(0)
    plain = reinforce_estimates(policy, envs, NoBaseline(), 1.0, Estimator.trajectory).var(0).sum()
    torch.manual_seed(0)
    causal = reinforce_estimates(policy, envs, NoBaseline(), 1.0, Estimator.reward_to_go).var(0).sum()
    torch.manual_seed(0)
    centred = reinforce_estimates(policy, envs, make_baseline("mean"), 1.0, Estimator.reward_to_go).var(0).sum()
    assert causal < plain and centred < causal
    envs.close()


def test_mean_reduction_is_the_sum_estimate_over_episode_length():
    envs = make_vector_env("pg_lab_test/Tabular-v0", num_envs=20)
    policy = tabular_policy(envs)
    out = []
    for reduction in (Reduction.sum, Reduction.mean):
        torch.manual_seed(0)
        out.append(reinforce_estimates(policy, envs, NoBaseline(), 1.0, Estimator.trajectory, reduction)[:3])
    assert np.allclose(out[1], out[0] / TabularMDP.HORIZON, atol=1e-6)
    envs.close()


def test_gradient_variance_matches_per_sample_gradients():
    """With one episode per chunk, the estimate is the textbook one: Σ var(per-episode gradients) / n."""
    from pg_lab.reinforce import gradient_variance
    envs = make_vector_env("pg_lab_test/Tabular-v0", num_envs=1)
    policy = tabular_policy(envs)
    torch.manual_seed(0)
    obs = torch.eye(2)[torch.randint(0, 2, (6,))]
    actions = torch.randint(0, 2, (6,))
    advantage = torch.randn(6)
    log_prob = policy.distribution(obs).log_prob(actions)
    out = gradient_variance(policy, log_prob, advantage, np.arange(6), chunks=6)
    per_sample = []
    for i in range(6):
        policy.zero_grad()
        (-(advantage[i] * policy.distribution(obs[i:i + 1]).log_prob(actions[i:i + 1]))).sum().backward()
        per_sample.append(torch.cat([p.grad.flatten() for p in policy.parameters()]).clone())
    g = torch.stack(per_sample)
    expected = g.var(0, unbiased=True).sum().item() / 6
    assert out["grad_var"] == pytest.approx(expected, rel=1e-5)
    assert out["grad_snr"] == pytest.approx(g.mean(0).pow(2).sum().item() / expected, rel=1e-5)
    envs.close()


def _sum_reduction_mean_gradient(budget: int, batches: int, rng: np.random.Generator) -> float:
    """E over batches of d/dθ policy_loss(sum) with log π = θ at every step and advantage 1: each episode adds
    its length L ∈ {1, 5} (equally likely), and a batch holds whole episodes until `budget` steps are reached,
    so the number of episodes N is random and short episodes come with more of them."""
    theta = torch.zeros((), requires_grad=True)
    grads = []
    for _ in range(batches):
        lengths = []
        while sum(lengths) < budget:
            lengths.append(int(rng.choice([1, 5])))
        log_prob = theta.expand(sum(lengths))
        loss = policy_loss(log_prob, torch.ones(sum(lengths)), Reduction.sum, num_episodes=len(lengths))
        (g,) = torch.autograd.grad(-loss, theta)
        grads.append(g.item())
    return float(np.mean(grads))


def test_sum_reduction_is_consistent_not_unbiased():
    """The per-episode gradient's expectation is E[L] = 3. Dividing by the realised number of episodes is a
    ratio estimator: biased when batches hold few episodes, the bias vanishing as they hold many."""
    rng = np.random.default_rng(0)
    few = _sum_reduction_mean_gradient(budget=5, batches=4000, rng=rng)       # 1 to 5 episodes a batch
    many = _sum_reduction_mean_gradient(budget=600, batches=400, rng=rng)     # ~200 episodes a batch
    assert abs(few - 3.0) > 0.3   # biased (one 5-step episode alone makes a batch: long ones weigh more)
    assert abs(many - 3.0) < 0.05  # consistent

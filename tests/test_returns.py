"""Returns, GAE and the collector against episodes computed by hand."""

import numpy as np
import pytest
import torch
from gymnasium import spaces

from pg_lab.baselines import Context, Estimates, GAEBaseline, NoBaseline, ValueBaseline
from pg_lab.config import Estimator
from pg_lab.envs import make_vector_env
from pg_lab.networks import ObsNormalizer
from pg_lab.policies import CategoricalPolicy
from pg_lab.returns import episode_stats, gae, reward_to_go, trajectory_returns
from pg_lab.rollout import StepCollector, collect

G = 0.9
# one env (column), two episodes: [1, 2, 3 | 4, 5]; the second is cut by a time limit with V(final) = 10
REWARDS = np.array([[1.0], [2.0], [3.0], [4.0], [5.0]])
ENDS = np.array([[0], [0], [1], [0], [1]], dtype=bool)
NEXT_V = np.array([[0.0], [0.0], [0.0], [0.0], [10.0]])  # terminal -> 0, truncated -> V(final obs)


def test_reward_to_go_by_hand():
    expected = [1 + G * 2 + G**2 * 3, 2 + G * 3, 3, 4 + G * 5 + G**2 * 10, 5 + G * 10]
    assert np.allclose(reward_to_go(REWARDS, ENDS, NEXT_V, G)[:, 0], expected)


def test_trajectory_return_is_the_whole_episode_for_every_step():
    g1, g2 = 1 + G * 2 + G**2 * 3, 4 + G * 5 + G**2 * 10
    assert np.allclose(trajectory_returns(REWARDS, ENDS, NEXT_V, G)[:, 0], [g1, g1, g1, g2, g2])


def test_gae_by_hand_and_lambda_one_is_monte_carlo():
    values = np.array([[0.5], [1.0], [1.5], [2.0], [2.5]])
    next_v = np.array([[1.0], [1.5], [0.0], [2.5], [10.0]])
    deltas = REWARDS + G * next_v - values
    lam = 0.8
    expected = [deltas[0] + G * lam * deltas[1] + (G * lam) ** 2 * deltas[2], deltas[1] + G * lam * deltas[2],
                deltas[2], deltas[3] + G * lam * deltas[4], deltas[4]]
    assert np.allclose(gae(REWARDS, values, next_v, ENDS, G, lam), np.array(expected))
    assert np.allclose(gae(REWARDS, values, next_v, ENDS, G, 1.0), reward_to_go(REWARDS, ENDS, next_v, G) - values)


def test_recursions_do_not_cross_episode_ends_between_envs():
    rewards = np.array([[1.0, 100.0], [1.0, 100.0]])
    ends = np.array([[1, 0], [1, 1]], dtype=bool)
    out = reward_to_go(rewards, ends, np.zeros_like(rewards), 1.0)
    assert out.tolist() == [[1.0, 200.0], [1.0, 100.0]]


def test_episode_stats_counts_only_valid_complete_episodes():
    rewards = np.array([[1.0, 1.0], [2.0, 1.0], [3.0, 7.0]])
    ends = np.array([[0, 1], [1, 0], [0, 1]], dtype=bool)
    valid = np.array([[1, 1], [1, 1], [0, 1]], dtype=bool)  # env 0 waits at t=2 (invalid)
    returns, lengths = episode_stats(rewards, ends, valid)
    assert sorted(returns.tolist()) == [1.0, 3.0, 8.0] and sorted(lengths.tolist()) == [1, 2, 2]


def test_collect_holds_whole_episodes_and_no_reset_step():
    """A real vector env in SAME_STEP autoreset: every valid step is a real step of an episode (rewards
    count 1, 2, ..., L), each env stops right after the episode that crosses num_steps, and nothing
    after it is valid."""
    envs = make_vector_env("pg_lab_test/Count-v0", num_envs=3, kwargs={"min_len": 2, "max_len": 6})
    policy = CategoricalPolicy(envs.single_observation_space, envs.single_action_space, hidden_sizes=())
    batch = collect(envs, policy, num_steps=7, reset_seed=123)
    for n in range(3):
        valid = batch.valid[:, n]
        k = valid.sum()
        assert valid[:k].all() and not valid[k:].any(), "valid steps must be a prefix"
        assert k >= 7 and batch.ends[k - 1, n], "an env stops only at an episode's end past num_steps"
        ends = np.flatnonzero(batch.ends[:k, n])
        if len(ends) > 1:
            assert ends[-2] + 1 < 7, "it must not start an episode at or after num_steps"
        starts = np.r_[0, ends[:-1] + 1]
        for s, e in zip(starts, ends):
            assert batch.rewards[s:e + 1, n].tolist() == list(range(1, e - s + 2))
            assert batch.obs[s, n, 0] == 0  # the first observation of each episode is the reset one
    returns, lengths = episode_stats(batch.rewards, batch.ends, batch.valid)
    assert np.allclose(returns, lengths * (lengths + 1) / 2)
    assert batch.env_steps == batch.rewards.size >= batch.num_valid
    envs.close()


def test_collect_is_reproducible_from_its_reset_seed():
    envs = make_vector_env("pg_lab_test/Count-v0", num_envs=2)
    policy = CategoricalPolicy(envs.single_observation_space, envs.single_action_space, hidden_sizes=())
    torch.manual_seed(0)
    a = collect(envs, policy, 5, reset_seed=7)
    torch.manual_seed(0)
    b = collect(envs, policy, 5, reset_seed=7)
    assert np.array_equal(a.rewards, b.rewards) and torch.equal(a.actions, b.actions)


@pytest.mark.parametrize("baseline_cls", [ValueBaseline, GAEBaseline])
def test_truncation_bootstraps_with_the_critic_and_termination_does_not(baseline_cls):
    kw = {"min_len": 3, "max_len": 3}
    norm = ObsNormalizer((2,), enabled=False)
    baseline = baseline_cls(Context(2, norm, torch.optim.Adam, torch.device("cpu")), hidden_sizes=(8,))
    for truncate in (False, True):
        envs = make_vector_env("pg_lab_test/Count-v0", num_envs=1, kwargs={**kw, "truncate": truncate})
        policy = CategoricalPolicy(envs.single_observation_space, envs.single_action_space, hidden_sizes=())
        batch = collect(envs, policy, 3, reset_seed=0)
        est = baseline.estimate(batch, G, Estimator.reward_to_go)
        with torch.no_grad():
            v_final = baseline.critic(torch.tensor([[3.0, 3.0]])).item()  # the final observation [t=3, L=3]
        bootstrap = v_final if truncate else 0.0
        assert len(batch.final_index) == int(truncate)
        assert est.next_values[2, 0] == pytest.approx(bootstrap, abs=1e-6)
        assert est.reward_to_go[0, 0] == pytest.approx(1 + G * 2 + G**2 * 3 + G**3 * bootstrap, abs=1e-5)
        envs.close()


@pytest.mark.parametrize("baseline_cls", [ValueBaseline, GAEBaseline])
def test_bootstrap_truncation_false_makes_a_time_limit_an_end_but_keeps_the_cut(baseline_cls):
    """The switch separates the objective from the baseline: with it off a critic baseline optimises what
    none/mean do (a truncation is worth 0), while step batching's cut still bootstraps (or it would be biased)."""
    norm = ObsNormalizer((2,), enabled=False)
    baseline = baseline_cls(Context(2, norm, torch.optim.Adam, torch.device("cpu")), hidden_sizes=(8,))
    envs = make_vector_env("pg_lab_test/Count-v0", num_envs=1, kwargs={"min_len": 3, "max_len": 3, "truncate": True})
    policy = CategoricalPolicy(envs.single_observation_space, envs.single_action_space, hidden_sizes=())
    batch = StepCollector(envs, reset_seed=0).collect(policy, num_steps=5)  # a truncated episode, then a cut
    on = baseline.estimate(batch, G, Estimator.reward_to_go)
    off = baseline.estimate(batch, G, Estimator.reward_to_go, bootstrap_truncation=False)
    assert batch.truncated[2, 0] and batch.cut[4, 0]
    assert on.next_values[2, 0] != 0 and off.next_values[2, 0] == 0  # the time limit
    assert off.next_values[4, 0] == on.next_values[4, 0] != 0          # the cut
    assert off.reward_to_go[0, 0] == pytest.approx(1 + G * 2 + G**2 * 3, abs=1e-5)
    envs.close()


@pytest.mark.parametrize("baseline", ["none", "mean"])
def test_bootstrap_truncation_true_without_a_critic_is_refused_naming_both_keys(compose, baseline):
    from pg_lab.config import ConfigError, validate

    cfg = compose("env=cartpole", f"baseline={baseline}", "algo.batching=episodes", "algo.bootstrap_truncation=true")
    with pytest.raises(ConfigError, match=f"algo.bootstrap_truncation=true .* baseline={baseline}"):
        validate(cfg)


def test_without_a_critic_truncation_is_not_bootstrapped():
    envs = make_vector_env("pg_lab_test/Count-v0", num_envs=1, kwargs={"min_len": 3, "max_len": 3, "truncate": True})
    policy = CategoricalPolicy(envs.single_observation_space, envs.single_action_space, hidden_sizes=())
    est = NoBaseline().estimate(collect(envs, policy, 3, reset_seed=0), G, Estimator.trajectory)
    assert np.allclose(est.returns[:, 0], 1 + G * 2 + G**2 * 3)


def test_obs_normalizer_matches_numpy():
    norm = ObsNormalizer((3,))
    data = np.random.default_rng(0).normal(5.0, 3.0, size=(1000, 3))
    for chunk in np.split(data, [10, 400, 401]):
        norm.accumulate(torch.from_numpy(chunk))
    assert np.allclose(norm.mean.numpy(), data.mean(0)) and np.allclose(norm.var.numpy(), data.var(0))
    x = torch.from_numpy(data[:4]).float()
    assert torch.allclose(norm(x), ((x - torch.tensor(data.mean(0))) / torch.tensor(data.std(0))).float(),
                          atol=1e-4)


def test_actions_are_sampled_in_the_normalised_space():
    space = spaces.Box(np.array([0.0], np.float32), np.array([10.0], np.float32))
    from pg_lab.policies import GaussianPolicy
    policy = GaussianPolicy(spaces.Box(-1, 1, (2,), np.float32), space, hidden_sizes=())
    with torch.no_grad():
        acts = policy.act(torch.zeros(20000, 2))
    # mean 0, std 0.5 in [-1, 1] units: env actions centred on 5 with std 2.5 before clipping
    assert abs(acts.mean().item()) < 0.02 and abs(acts.std().item() - 0.5) < 0.02


def on_device(batch):
    """The same batch as DeviceStepCollector holds it: the per-step fields as tensors."""
    import dataclasses

    fields = ("obs", "rewards", "terminated", "truncated", "valid", "final_obs", "cut")
    return dataclasses.replace(batch, **{k: torch.from_numpy(getattr(batch, k)) for k in fields})


@pytest.mark.parametrize("baseline_cls", [ValueBaseline, GAEBaseline])
def test_a_batch_of_tensors_gets_the_same_returns_and_advantages_as_one_of_arrays(baseline_cls):
    """A device-resident rollout's batch (tensors: env.backend=warp) is estimated where it is, in float64 like
    the host's NumPy path, and gives the same numbers: truncations, termination and the batch's cut included."""
    norm = ObsNormalizer((2,), enabled=False)
    baseline = baseline_cls(Context(2, norm, torch.optim.Adam, torch.device("cpu")), hidden_sizes=(8,))
    envs = make_vector_env("pg_lab_test/Count-v0", num_envs=3, kwargs={"min_len": 2, "max_len": 4, "truncate": True})
    policy = CategoricalPolicy(envs.single_observation_space, envs.single_action_space, hidden_sizes=())
    batch = StepCollector(envs, reset_seed=0).collect(policy, num_steps=7)
    assert batch.truncated.any() and batch.cut[-1].any()
    host = baseline.estimate(batch, G, Estimator.reward_to_go)
    device = baseline.estimate(on_device(batch), G, Estimator.reward_to_go)
    for name in ("returns", "reward_to_go", "values", "next_values"):
        assert isinstance(getattr(device, name), torch.Tensor)
        assert np.array_equal(getattr(device, name).numpy(), getattr(host, name)), name
    assert np.array_equal(baseline.advantages(device, G).numpy(), baseline.advantages(host, G))
    envs.close()


def _fit_to(baseline, obs: torch.Tensor, targets: np.ndarray, fits: int) -> float:
    """`fits` regressions of the critic on (obs, targets); returns its final mean absolute error."""
    valid = np.ones(len(targets), dtype=bool)
    for _ in range(fits):
        with torch.no_grad():
            values = baseline.critic(obs).double().numpy()
        est = Estimates(returns=targets, reward_to_go=targets, rewards=targets, ends=valid, valid=valid,
                        values=values, next_values=values)
        baseline.fit(obs, est, targets - values)
    with torch.no_grad():
        return float(np.abs(baseline.critic(obs).double().numpy() - targets).mean())


def test_normalised_targets_are_regressed_in_their_own_units_and_travel_with_the_state():
    """Returns of thousands (a MuJoCo task's): in 10 fits a critic regressing standardised targets gets within a
    small fraction of their spread, where one regressing raw targets has not left its start; V(s) is the MLP's
    output scaled back by the targets' running statistics, which the checkpoint holds."""
    rng = np.random.default_rng(0)
    obs = torch.as_tensor(rng.normal(size=(512, 2)), dtype=torch.float32)
    targets = 2000.0 + 300.0 * obs[:, 0].double().numpy()
    errors = {}
    for normalize in (False, True):
        torch.manual_seed(0)
        context = Context(2, ObsNormalizer((2,), enabled=False), torch.optim.Adam, torch.device("cpu"))
        baseline = ValueBaseline(context, hidden_sizes=(16,), lr=3e-3, normalize_targets=normalize)
        errors[normalize] = _fit_to(baseline, obs, targets, fits=10)
    stats = baseline.critic.target_stats
    assert stats.mean.item() == pytest.approx(targets.mean()) and stats.var.item() == pytest.approx(targets.var())
    assert errors[True] < 0.1 * 300 and errors[False] > 1900, errors
    with torch.no_grad():
        raw = baseline.critic.normalized(obs)
        assert torch.allclose(baseline.critic(obs), raw * float(np.sqrt(targets.var())) + float(targets.mean()))
    twin = ValueBaseline(Context(2, ObsNormalizer((2,), enabled=False), torch.optim.Adam, torch.device("cpu")),
                         hidden_sizes=(16,), normalize_targets=True)
    twin.load_state_dict(baseline.state_dict())
    with torch.no_grad():
        assert torch.equal(twin.critic(obs), baseline.critic(obs))
    # a checkpoint from before the option (no target statistics) loads into a critic that does not normalise
    plain = ValueBaseline(Context(2, ObsNormalizer((2,), enabled=False), torch.optim.Adam, torch.device("cpu")),
                          hidden_sizes=(16,))
    old = plain.state_dict()
    old["critic"] = {k: v for k, v in old["critic"].items() if not k.startswith("target_stats.")}
    plain.load_state_dict(old)

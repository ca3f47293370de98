"""Step batching (`algo.batching=steps`): fixed rollouts that cut episodes, bootstrapped with V at the cut;
episodes that continue across batches; total_steps honoured; exact resume with the envs' state."""

import json
import logging

import gymnasium as gym
import numpy as np
import pytest
import torch

from pg_lab.baselines import Context, GAEBaseline, ValueBaseline
from pg_lab.config import ConfigError, Estimator, validate
from pg_lab.envs import make_vector_env
from pg_lab.envs.state import capture, restore
from pg_lab.networks import ObsNormalizer
from pg_lab.policies import CategoricalPolicy, GaussianPolicy
from pg_lab.rollout import StepCollector

G = 0.9


def count_envs(n=1, length=5, vectorization="sync"):
    """pg_lab_test/Count-v0: reward t+1 at step t, observation [t, length], terminates after `length` steps."""
    return make_vector_env("pg_lab_test/Count-v0", num_envs=n, vectorization=vectorization,
                           kwargs={"min_len": length, "max_len": length})


def policy_for(envs):
    return CategoricalPolicy(envs.single_observation_space, envs.single_action_space, hidden_sizes=())


def test_batches_cut_episodes_and_continue_them():
    envs = count_envs()
    collector = StepCollector(envs, reset_seed=0)
    policy = policy_for(envs)
    first = collector.collect(policy, 3)
    assert first.rewards[:, 0].tolist() == [1, 2, 3] and first.valid.all()
    assert first.cut[:, 0].tolist() == [False, False, True] and not first.terminated.any()
    assert first.final_index.tolist() == [[2, 0]] and first.final_obs.tolist() == [[3.0, 5.0]]  # after step 3
    assert len(first.episode_returns) == 0  # no episode ended yet
    second = collector.collect(policy, 3)  # the episode goes on: 4, 5 | a new one: 1
    assert second.rewards[:, 0].tolist() == [4, 5, 1] and second.terminated[:, 0].tolist() == [False, True, False]
    assert second.episode_returns.tolist() == [15.0] and second.episode_lengths.tolist() == [5]  # across batches
    assert second.cut[:, 0].tolist() == [False, False, True]
    envs.close()


@pytest.mark.parametrize("baseline_cls", [ValueBaseline, GAEBaseline])
def test_the_cut_is_bootstrapped_with_v_of_the_next_observation(baseline_cls):
    envs = count_envs()
    baseline = baseline_cls(Context(2, ObsNormalizer((2,), enabled=False), torch.optim.Adam, torch.device("cpu")),
                            hidden_sizes=(8,))
    batch = StepCollector(envs, reset_seed=0).collect(policy_for(envs), 3)
    est = baseline.estimate(batch, G, Estimator.reward_to_go)
    with torch.no_grad():
        v = baseline.critic(torch.tensor([[0.0, 5.0], [1.0, 5.0], [2.0, 5.0], [3.0, 5.0]])).double().numpy()
    assert est.next_values[:, 0] == pytest.approx([v[1], v[2], v[3]], abs=1e-6)  # V(s_{t+1}); V([3, 5]) at the cut
    assert est.reward_to_go[0, 0] == pytest.approx(1 + G * 2 + G**2 * 3 + G**3 * v[3], abs=1e-5)
    envs.close()


@pytest.mark.parametrize("overrides,words", [
    (["algo.batching=steps", "baseline=none"], ["algo.batching=steps", "baseline=none"]),
    (["algo.batching=steps", "baseline=mean"], ["algo.batching=steps", "baseline=mean"]),
    (["algo.batching=steps", "baseline=value", "algo.estimator=trajectory"],
     ["algo.batching=steps", "algo.estimator=trajectory"]),
])
def test_combinations_that_cannot_be_unbiased_are_refused_naming_both_keys(compose, overrides, words):
    with pytest.raises(ConfigError) as err:
        validate(compose(*overrides))
    assert all(w in str(err.value) for w in words), err.value


def test_total_steps_is_honoured_within_one_batch_in_step_mode(tmp_path, train_in_process):
    train_in_process("algo.batching=steps", "env.num_envs=4", "algo.num_steps=100", "total_steps=1001",
                     run_dir=tmp_path / "run")
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert 1001 <= summary["total_steps"] < 1001 + 4 and summary["budget"] == 1001


def test_whole_episode_batches_start_no_episode_past_the_budget(tmp_path, train_in_process):
    """Count-v0 episodes last 10 steps: a 25-step budget ends inside the third, which finishes; no fourth."""
    train_in_process("env.id=pg_lab_test/Count-v0", "+env.kwargs.min_len=10", "+env.kwargs.max_len=10",
                     "env.num_envs=1", "algo.batching=episodes", "algo.num_steps=1000", "total_steps=25",
                     run_dir=tmp_path / "run")
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["total_steps"] == 30 and summary["episodes"] == 3


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1", "HalfCheetah-v5"])
def test_captured_envs_continue_exactly(env_id):
    """Step a vector env, capture, step on; restore the capture into a fresh vector env: the same steps follow."""
    a, b = (make_vector_env(env_id, num_envs=2) for _ in range(2))
    a.reset(seed=1)
    b.reset(seed=99)
    rng = np.random.default_rng(0)

    def actions():
        return a.action_space.sample() if env_id == "CartPole-v1" else rng.uniform(-1, 1, a.action_space.shape)
    for _ in range(30):
        a.step(actions())
    state = capture(a)
    restore(b, state)
    for _ in range(600):  # through episode ends and auto-resets (CartPole's RNG, the time limits)
        act = actions()
        out_a, out_b = a.step(act), b.step(act)
        for x, y in zip(out_a[:4], out_b[:4]):
            assert np.array_equal(x, y)
    a.close()
    b.close()


def test_an_async_vector_env_resumes_with_fresh_episodes_and_says_so(caplog):
    envs = count_envs(2, vectorization="async")
    collector = StepCollector(envs, reset_seed=0)
    collector.collect(policy_for(envs), 3)
    state = collector.state_dict()
    assert state["envs"] is None
    resumed = StepCollector(envs, reset_seed=0)
    with caplog.at_level(logging.WARNING, logger="pg_lab"):
        resumed.load_state_dict(state, reset_seed=7)
    assert "starts fresh episodes" in caplog.text
    assert resumed.collect(policy_for(envs), 2).rewards[0].tolist() == [1.0, 1.0]  # a new episode
    envs.close()


def test_a_gaussian_step_batch_runs_the_whole_update(compose):
    """HalfCheetah with GAE in step batching, through Reinforce.update: finite losses, the cut bootstrapped."""
    from pg_lab.builder import build
    cfg = compose("env=half_cheetah", "baseline=gae", "algo.batching=steps", "env.num_envs=2")
    validate(cfg)
    envs, algorithm = build(cfg, "half_cheetah")
    assert isinstance(algorithm.policy, GaussianPolicy)
    batch = StepCollector(envs, reset_seed=0).collect(algorithm.policy, 16)
    assert batch.num_episodes == 2 and len(batch.final_index) == 2  # two cut segments, both bootstrapped
    metrics = algorithm.update(batch)
    assert all(np.isfinite(v) for v in metrics.values())
    envs.close()


@pytest.mark.parametrize("batching", ["steps", "episodes"])
def test_the_envs_reward_terms_are_logged_per_step(batching):
    """Gymnasium's MuJoCo tasks decompose their reward in info (`reward_forward`, `reward_ctrl` for HalfCheetah):
    each term's mean per step reaches the batch, and the terms add up to the reward."""
    from pg_lab.rollout import EpisodeCollector, StepCollector

    envs = make_vector_env("HalfCheetah-v5", num_envs=2, max_episode_steps=40)
    policy = GaussianPolicy(envs.single_observation_space, envs.single_action_space, hidden_sizes=(8,))
    if batching == "steps":
        batch = StepCollector(envs, reset_seed=0).collect(policy, 50)
    else:
        batch = EpisodeCollector(envs).collect(policy, 30, reset_seed=0)
    assert set(batch.env_metrics) == {"reward/forward", "reward/ctrl"}
    assert batch.env_metrics["reward/ctrl"] < 0
    mean_reward = batch.rewards[batch.valid].mean()
    assert sum(batch.env_metrics.values()) == pytest.approx(mean_reward, rel=1e-6, abs=1e-9)
    envs.close()


def test_the_training_vector_env_merges_no_per_step_info():
    """Gymnasium's vector env merges every info key of every env at every step; the training envs hand it none
    (pg_lab.envs.StepMetrics keeps the logged terms aside), but it still reports an episode's final observation, and
    an async vector env hands the terms over too."""
    from pg_lab.rollout import pop_env_metrics

    for vectorization in ("sync", "async"):
        envs = make_vector_env("HalfCheetah-v5", num_envs=2, vectorization=vectorization, max_episode_steps=3)
        envs.reset(seed=0)
        for t in range(3):
            _, reward, _, truncated, info = envs.step(np.zeros((2, 6), np.float32))
            if t < 2:
                assert info == {}
        assert {"final_obs", "final_info"} <= set(info) and info["final_info"] == {}  # (and the reset's info)
        assert truncated.all() and info["final_obs"][0].shape == (17,)
        valid = np.ones((3, 2), dtype=bool)
        valid[2, 1] = False  # the last step of env 1 is left out of the mean
        metrics = pop_env_metrics(envs, valid)
        assert set(metrics) == {"reward/forward", "reward/ctrl"} and metrics["reward/ctrl"] == 0.0
        assert pop_env_metrics(envs, valid) == {}  # handed over once
        envs.close()


def test_checkpointed_wrapper_counters_restore_into_a_longer_wrapper_chain():
    """A checkpoint from before StepMetrics was added around the envs holds one entry fewer per env: the time
    limit's counter still goes back to the TimeLimit wrapper."""
    a, b = (make_vector_env("Pendulum-v1", num_envs=1) for _ in range(2))
    a.reset(seed=0)
    b.reset(seed=0)
    for _ in range(7):
        a.step(np.zeros((1, 1), np.float32))
    state = capture(a)
    state[0]["wrappers"] = state[0]["wrappers"][1:]  # as saved without the outermost wrapper
    restore(b, state)
    env = b.envs[0]
    while not isinstance(env, gym.wrappers.TimeLimit):
        assert not hasattr(env, "_elapsed_steps")  # no other wrapper was handed the counter
        env = env.env
    assert env._elapsed_steps == 7
    a.close()
    b.close()


def test_reward_terms_keep_their_own_wandb_section():
    from pg_lab.tracking import namespaced

    assert namespaced({"step": 5, "reward/forward": 1.5, "policy_loss": 0.1, "grad_snr": 2.0}) == {
        "step": 5, "reward/forward": 1.5, "losses/policy_loss": 0.1, "diagnostics/grad_snr": 2.0}

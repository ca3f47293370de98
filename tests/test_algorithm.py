"""The algorithm as one object (`Reinforce`), the one builder, and the extension points it promises."""

import json

import numpy as np
import pytest
import torch

from pg_lab.builder import build
from pg_lab.evaluate import evaluate
from pg_lab.rollout import collect
from pg_lab.rundir import RunDir


def _algorithm(compose, *overrides):
    cfg = compose("wandb.mode=disabled", *overrides)
    torch.manual_seed(0)
    return build(cfg, None)


def test_anneal_scales_the_configured_rates_even_after_a_checkpoint_is_loaded(compose):
    envs, algorithm = _algorithm(compose, "baseline=value", "optimizer.lr=0.004", "baseline.lr=0.002")
    algorithm.anneal(0.5)
    state = algorithm.state_dict()  # a checkpoint taken mid-schedule holds the annealed rates
    envs.close()
    envs, resumed = _algorithm(compose, "baseline=value", "optimizer.lr=0.004", "baseline.lr=0.002")
    resumed.load_state_dict(state)
    resumed.anneal(0.5)
    assert [o.param_groups[0]["lr"] for o in resumed.optimizers] == pytest.approx([0.002, 0.001])
    envs.close()


def test_state_dict_round_trip_gives_identical_actions(compose):
    envs, a = _algorithm(compose, "env=pendulum", "policy=beta", "baseline=gae")
    batch = collect(envs, a.policy, 50, reset_seed=0)
    a.update(batch)  # moves the policy, the critic and the observation statistics away from their start
    envs2, b = _algorithm(compose, "env=pendulum", "policy=beta", "baseline=gae", "seed=7")
    b.load_state_dict(a.state_dict())
    obs = torch.from_numpy(batch.obs[0])
    assert torch.equal(a.policy.act(obs, deterministic=True), b.policy.act(obs, deterministic=True))
    assert torch.equal(a.baseline.critic(obs), b.baseline.critic(obs))
    envs.close()
    envs2.close()


def test_update_returns_the_losses_and_leaves_the_policy_changed(compose):
    envs, algorithm = _algorithm(compose, "baseline=gae")
    before = [p.detach().clone() for p in algorithm.policy.parameters()]
    metrics = algorithm.update(collect(envs, algorithm.policy, 64, reset_seed=0))
    assert {"policy_loss", "entropy", "grad_norm", "value_loss", "explained_variance"} <= set(metrics)
    assert all(np.isfinite(v) for v in metrics.values())
    assert any(not torch.equal(b, p) for b, p in zip(before, algorithm.policy.parameters()))
    assert algorithm.normalizer.count.item() > 0  # statistics accumulate after the step
    envs.close()


def test_a_new_baseline_is_one_class_and_its_config(tmp_path, train_in_process):
    """tests/helpers.py: ConstantBaseline subclasses Baseline; nothing in pg_lab names it."""
    ret = train_in_process("baseline=none", "baseline._target_=helpers.ConstantBaseline", "+baseline.value=20.0",
                           "algo.batching=episodes", "total_steps=2000", run_dir=tmp_path / "run")
    assert np.isfinite(ret)
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["status"] == "finished"


def test_evaluation_builds_the_env_through_the_env_groups_target(tmp_path, train_in_process):
    """An env option set for training (here the time limit) holds in evaluation too."""
    run = tmp_path / "run"
    train_in_process("total_steps=600", "env.max_episode_steps=5", run_dir=run)
    report = evaluate(RunDir(run), episodes=3)
    assert [e["length"] for e in report["episodes"]] == [5, 5, 5]

"""optimizer=natural: conjugate gradient against the explicit Fisher, the KL bound, and the line search."""

import logging

import numpy as np
import pytest
import torch
from gymnasium import spaces
from omegaconf import OmegaConf

from pg_lab.natural import NaturalGradient, conjugate_gradient
from pg_lab.policies import BetaPolicy, CategoricalPolicy, GaussianPolicy, SquashedGaussianPolicy, kl_divergence

OBS = spaces.Box(-np.inf, np.inf, (3,), np.float32)
BOX = spaces.Box(-np.ones(2, np.float32), np.ones(2, np.float32))
HEADS = [(GaussianPolicy, BOX), (BetaPolicy, BOX), (SquashedGaussianPolicy, BOX),
         (CategoricalPolicy, spaces.Discrete(3))]


class Distribution(torch.nn.Module):
    """policy.distribution as a forward, so that torch.func can call it with other parameters."""

    def __init__(self, policy):
        super().__init__()
        self.policy = policy

    def forward(self, obs):
        return self.policy.distribution(obs)


def setup(cls, space):
    torch.manual_seed(0)
    policy = cls(OBS, space, hidden_sizes=(4,), out_gain=1.0)
    obs = torch.randn(64, 3)
    with torch.no_grad():
        old = policy.distribution(obs)
        actions = old.sample()
    return policy, obs, old, actions, torch.randn(64)


def surrogate(policy, obs, old, actions, adv):
    old_lp = old.log_prob(actions).detach()
    return lambda: -(adv * torch.exp(policy.distribution(obs).log_prob(actions) - old_lp)).mean()


@pytest.mark.parametrize("cls,space", HEADS, ids=[c.name for c, _ in HEADS])
def test_cg_on_fisher_vector_products_solves_the_explicit_fisher_system(cls, space):
    policy, obs, _, _, _ = setup(cls, space)
    policy.double()  # in double precision, so that the comparison tests the algebra, not rounding
    obs = obs.double()
    with torch.no_grad():
        old = policy.distribution(obs)
    names, params = zip(*policy.named_parameters())
    sizes = [p.numel() for p in params]
    wrapper = Distribution(policy)

    def mean_kl(flat):
        tensors = {f"policy.{n}": t.view(p.shape) for n, p, t in zip(names, params, flat.split(sizes))}
        return kl_divergence(old, torch.func.functional_call(wrapper, tensors, (obs,))).mean()

    theta = torch.cat([p.detach().reshape(-1) for p in params])
    fisher = torch.autograd.functional.hessian(mean_kl, theta) + 1e-3 * torch.eye(len(theta), dtype=torch.float64)
    g = torch.randn(len(theta), dtype=torch.float64)
    opt = NaturalGradient(policy.parameters())
    fvp = opt.fisher_vector_product(lambda: kl_divergence(old, policy.distribution(obs)).mean(), 1e-3)
    x = conjugate_gradient(fvp, g, iters=len(theta) * 3, tol=1e-20)
    assert torch.allclose(x, torch.linalg.solve(fisher, g), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("line_search", [True, False])
@pytest.mark.parametrize("cls,space", HEADS[:2], ids=[c.name for c, _ in HEADS[:2]])
def test_a_step_keeps_the_kl_within_the_bound_and_improves_the_surrogate(cls, space, line_search):
    policy, obs, old, actions, adv = setup(cls, space)
    loss_fn = surrogate(policy, obs, old, actions, adv)
    before = loss_fn().item()
    opt = NaturalGradient(policy.parameters(), max_kl=0.01, line_search=line_search)
    info = opt.natural_step(loss_fn, lambda: kl_divergence(old, policy.distribution(obs)).mean())
    kl = kl_divergence(old, policy.distribution(obs)).mean().item()
    assert info["kl"] == pytest.approx(kl, rel=1e-4) and 0 < kl <= 0.01 * (1.0 if line_search else 1.5)
    assert loss_fn().item() < before


def test_a_rejected_line_search_leaves_the_parameters_unchanged():
    policy, obs, old, actions, adv = setup(GaussianPolicy, BOX)
    loss_fn = surrogate(policy, obs, old, actions, adv)
    theta = [p.detach().clone() for p in policy.parameters()]
    opt = NaturalGradient(policy.parameters(), max_kl=0.01, max_backtracks=3)
    # a KL that is always above the bound: no fraction of the step can be accepted
    info = opt.natural_step(loss_fn, lambda: kl_divergence(old, policy.distribution(obs)).mean() + 1.0)
    assert info["step_fraction"] == 0.0 and opt.state["steps"] == {"taken": 0, "rejected": 1}
    assert all(torch.equal(a, b) for a, b in zip(theta, policy.parameters()))


def test_its_state_round_trips_through_a_checkpoint():
    policy, obs, old, actions, adv = setup(GaussianPolicy, BOX)
    opt = NaturalGradient(policy.parameters(), step_size=0.7)
    kl = lambda: kl_divergence(old, policy.distribution(obs)).mean()  # noqa: E731
    opt.natural_step(surrogate(policy, obs, old, actions, adv), kl)
    other = NaturalGradient(policy.parameters(), step_size=1.0)
    other.load_state_dict(opt.state_dict())
    assert other.param_groups[0]["lr"] == 0.7 and other.state["steps"] == {"taken": 1, "rejected": 0}


def test_training_with_the_natural_optimizer_runs_and_logs_its_kl(train_in_process, tmp_path):
    from pg_lab.rundir import RunDir

    train_in_process("env=pendulum", "optimizer=natural", "policy=beta", "total_steps=2048", "env.num_envs=2",
                     "algo.num_steps=256", run_dir=tmp_path / "run")
    rows = RunDir(tmp_path / "run").read_metrics()
    assert rows and all(0 <= r["kl"] <= 0.01 for r in rows) and "near_bound_frac" in rows[0]


def test_an_env_files_adam_lr_does_not_shrink_the_natural_step(compose, caplog):
    from pg_lab.builder import build_algorithm
    from pg_lab.config import validate


    caplog.set_level(logging.INFO)
    cfg = compose("env=hopper", "optimizer=natural")
    assert cfg.optimizer.lr == 2e-3  # what env=hopper (through mujoco.yaml) tunes for Adam
    validate(cfg)
    assert "lr" not in cfg.optimizer and "optimizer.lr=0.002 is not used" in caplog.text
    # expected of every env file's rate, so not a warning (a sweep would repeat it for every job)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING and "not used" in r.getMessage()]
    algorithm = build_algorithm(cfg, spaces.Box(-np.inf, np.inf, (11,)), spaces.Box(-1.0, 1.0, (3,)),
                                torch.device("cpu"))
    assert algorithm.optimizer.param_groups[0]["lr"] == 1.0  # step_size: TRPO's full step
    adam = compose("env=hopper")
    validate(adam)
    assert adam.optimizer.lr == 2e-3


def test_an_lr_the_command_line_gives_the_natural_step_is_a_warning(train_in_process, tmp_path, caplog):
    train_in_process("env=pendulum", "optimizer=natural", "++optimizer.lr=0.01", "total_steps=512",
                     "env.num_envs=2", "algo.num_steps=256", run_dir=tmp_path / "run")
    warned = [r for r in caplog.records if r.levelno == logging.WARNING and "optimizer.lr=0.01 is not used" in
              r.getMessage()]
    assert warned and "lr" not in OmegaConf.load(tmp_path / "run" / ".hydra" / "config.yaml").optimizer

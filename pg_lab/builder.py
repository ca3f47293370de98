"""Everything a run trains, built from the config groups (env, policy, baseline, optimizer) in one place,
for training, resuming and evaluation alike: any impossible choice raises ConfigError here, naming it,
before the first env step."""

from __future__ import annotations

import functools

import hydra
import torch
from gymnasium import spaces
from hydra.utils import instantiate
from omegaconf import DictConfig

from pg_lab.baselines import Context
from pg_lab.config import ConfigError, Device
from pg_lab.envs import EnvFactory
from pg_lab.natural import NaturalGradient
from pg_lab.networks import ObsNormalizer
from pg_lab.policies import UnsupportedActionSpace
from pg_lab.reinforce import Reinforce


def resolve_device(device: Device | str) -> torch.device:
    name = device.value if isinstance(device, Device) else str(device)
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device=cuda but torch sees no CUDA device: use device=cpu or device=auto")
    return torch.device(name)


def _label(cfg: DictConfig, env_choice: str | None) -> str:
    return f"env={env_choice}" if env_choice else f"env.id={cfg.env.id}"


def env_factory(cfg: DictConfig, env_choice: str | None = None) -> EnvFactory:
    try:
        return instantiate(cfg.env)
    except Exception as e:  # noqa: BLE001 - hydra wraps constructor errors
        raise ConfigError(f"{_label(cfg, env_choice)}: cannot make env.id={cfg.env.get('id')!r}: {e}") from None


def build_algorithm(cfg: DictConfig, observation_space: spaces.Space, action_space: spaces.Space,
                    device: torch.device, env_choice: str | None = None) -> Reinforce:
    """Policy (with the observation normaliser), its optimizer and the baseline, as one `Reinforce`."""
    if len(observation_space.shape) != 1:
        raise ConfigError(f"{_label(cfg, env_choice)}: pg_lab's MLP policies need flat observations, "
                          f"got {observation_space}")
    try:
        hydra.utils.get_class(cfg.policy._target_).check_space(action_space)
    except UnsupportedActionSpace as e:
        raise ConfigError(f"{e} ({_label(cfg, env_choice)}, {cfg.env.id})") from None
    normalizer = ObsNormalizer(observation_space.shape, enabled=cfg.algo.normalize_obs)
    try:
        policy = instantiate(cfg.policy, observation_space=observation_space, action_space=action_space,
                             normalizer=normalizer).to(device)
        make_optimizer = instantiate(cfg.optimizer)
        optimizer = make_optimizer(policy.parameters())
        # a critic is a regression: with optimizer=natural (a policy-only step) it learns with Adam
        make_critic_optimizer = functools.partial(torch.optim.Adam, eps=1e-5) \
            if getattr(make_optimizer, "func", None) is NaturalGradient else make_optimizer
        baseline = instantiate(cfg.baseline, context=Context(observation_space.shape[0], normalizer,
                                                             make_critic_optimizer, device))
    except Exception as e:  # noqa: BLE001 - hydra wraps constructor errors; show the cause
        raise ConfigError(f"cannot build the learner: {e.__cause__ or e}") from None
    algo = cfg.algo
    return Reinforce(policy, optimizer, baseline, gamma=algo.gamma, estimator=algo.estimator,
                     reduction=algo.reduction, normalize_advantage=algo.normalize_advantage,
                     ent_coef=algo.ent_coef, max_grad_norm=algo.max_grad_norm,
                     grad_variance_chunks=algo.grad_variance_chunks,
                     bootstrap_truncation=algo.bootstrap_truncation, device=device)


def build(cfg: DictConfig, env_choice: str | None = None):
    """The training vector env and the algorithm. Returns (envs, algorithm)."""
    device = resolve_device(cfg.device)
    factory = env_factory(cfg, env_choice)
    try:
        envs = factory.make_vector(device=str(device))
    except Exception as e:  # noqa: BLE001 - gymnasium raises several kinds for a bad id or kwargs
        raise ConfigError(f"{_label(cfg, env_choice)}: cannot make env.id={cfg.env.get('id')!r}: {e}") from None
    try:
        envs.action_space.seed(cfg.seed)  # pg_lab never samples from it, but a user's wrapper might
        return envs, build_algorithm(cfg, envs.single_observation_space, envs.single_action_space, device,
                                     env_choice)
    except BaseException:
        envs.close()  # an async vector env has worker processes
        raise

"""What a run trains: built from the config groups (env, policy, baseline, optimizer) in one place."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import hydra
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig

from pg_lab.baselines import NoBaseline, ValueBaseline
from pg_lab.config import ConfigError, Device
from pg_lab.networks import ObsNormalizer
from pg_lab.policies import UnsupportedActionSpace

RECENT_EPISODES = 20  # final_return_mean averages the returns of this many last episodes


@dataclass
class Learner:
    """Everything that is built from the config and trained."""
    envs: object
    policy: torch.nn.Module
    optimizer: torch.optim.Optimizer
    baseline: NoBaseline
    normalizer: ObsNormalizer
    device: torch.device

    @property
    def optimizers(self) -> list[torch.optim.Optimizer]:
        critic_opt = getattr(self.baseline, "optimizer", None)
        return [self.optimizer] + ([critic_opt] if critic_opt is not None else [])


@dataclass
class Progress:
    step: int = 0            # env steps so far
    update: int = 0
    wall_time_s: float = 0.0
    episodes: int = 0
    recent_returns: deque = field(default_factory=lambda: deque(maxlen=RECENT_EPISODES))


def resolve_device(device: Device | str) -> torch.device:
    name = device.value if isinstance(device, Device) else str(device)
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device=cuda but torch sees no CUDA device: use device=cpu or device=auto")
    return torch.device(name)


def build(cfg: DictConfig, env_choice: str) -> Learner:
    """Build env, policy, baseline and optimizer; any impossible choice raises ConfigError here,
    before the first env step."""
    device = resolve_device(cfg.device)
    try:
        envs = instantiate(cfg.env)
    except Exception as e:  # noqa: BLE001 - gymnasium raises several kinds for a bad id or kwargs
        raise ConfigError(f"env={env_choice}: cannot make env.id={cfg.env.get('id')!r}: {e}") from None
    try:
        return _build_learner(cfg, env_choice, envs, device)
    except BaseException:
        envs.close()  # an async vector env has worker processes
        raise


def _build_learner(cfg: DictConfig, env_choice: str, envs, device: torch.device) -> Learner:
    envs.action_space.seed(cfg.seed)  # pg_lab never samples from it, but a user's wrapper might
    obs_space, act_space = envs.single_observation_space, envs.single_action_space
    if len(obs_space.shape) != 1:
        raise ConfigError(f"env={env_choice}: pg_lab's MLP policies need flat observations, got {obs_space}")
    policy_cls = hydra.utils.get_class(cfg.policy._target_)
    try:
        policy_cls.check_space(act_space)
    except UnsupportedActionSpace as e:
        raise ConfigError(f"{e} (env={env_choice}, {cfg.env.id})") from None
    normalizer = ObsNormalizer(obs_space.shape, enabled=cfg.algo.normalize_obs)
    try:
        policy = instantiate(cfg.policy, observation_space=obs_space, action_space=act_space,
                             normalizer=normalizer).to(device)
        make_optimizer = instantiate(cfg.optimizer)
        optimizer = make_optimizer(policy.parameters())
        baseline_kwargs = {}
        if issubclass(hydra.utils.get_class(cfg.baseline._target_), ValueBaseline):
            baseline_kwargs = {"obs_dim": obs_space.shape[0], "normalizer": normalizer,
                               "optimizer": make_optimizer, "device": device}
        baseline = instantiate(cfg.baseline, **baseline_kwargs)
    except Exception as e:  # noqa: BLE001 - hydra wraps constructor errors; show the cause
        cause = e.__cause__ or e
        raise ConfigError(f"cannot build the learner: {cause}") from None
    return Learner(envs, policy, optimizer, baseline, normalizer.to(device), device)

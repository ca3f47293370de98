"""Structured-config schema and validation.

The schema is registered in Hydra's ConfigStore and sits first in `conf/config.yaml`'s defaults, so a
misspelled top-level key or a wrong type fails at composition with the key's name. The group nodes (env,
policy, baseline, optimizer) hold `_target_` plus keyword arguments; `check_targets` checks those keys
against the target's signature before anything is built, so a typo there fails before training too.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import enum
import importlib
import inspect
import logging
import math
import re
import types
import typing
from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, ListConfig, OmegaConf, open_dict

log = logging.getLogger("pg_lab")


class ConfigError(ValueError):
    """A configuration that cannot run; the message names the offending key."""


class Device(str, enum.Enum):
    cpu = "cpu"
    cuda = "cuda"
    auto = "auto"


class WandbMode(str, enum.Enum):
    offline = "offline"
    online = "online"
    disabled = "disabled"


class Estimator(str, enum.Enum):
    trajectory = "trajectory"      # G(τ) for every step: the lecture's form
    reward_to_go = "reward_to_go"  # G_t: only rewards that follow the action (causality)


class Batching(str, enum.Enum):
    episodes = "episodes"  # whole episodes per batch: G(τ) and critic-free baselines need them
    steps = "steps"        # num_envs × num_steps steps per batch, episodes cut and bootstrapped with V (a critic)


class Reduction(str, enum.Enum):
    mean = "mean"  # mean over all time steps of the batch (a rescaled gradient; the usual practice)
    sum = "sum"    # sum over time, mean over the batch's (random number of) episodes: the lecture's equation,
    #                a ratio estimator, consistent (its bias vanishes as episodes per batch grow), not unbiased


@dataclass
class AlgoConfig:
    gamma: float = 0.99
    estimator: Estimator = Estimator.reward_to_go
    batching: Batching = Batching.episodes
    # steps per env per update; with batching=episodes each env then finishes its current episode
    num_steps: int = 512
    reduction: Reduction = Reduction.mean
    normalize_advantage: bool = True
    normalize_obs: bool = True
    ent_coef: float = 0.0
    max_grad_norm: float | None = 0.5
    anneal_lr: bool = False  # linear decay of every learning rate to 0 at total_steps
    # a time-limit truncation bootstrapped with V(final observation) (the infinite-horizon objective), or
    # treated as an end worth 0 (the objective critic-free baselines optimise); null: true with a critic, false
    # without (true needs a critic). A batch's cut in step batching is always bootstrapped.
    bootstrap_truncation: bool | None = None
    debug: bool = False      # anomaly detection and distribution argument validation (slow)
    # > 0: log grad_var and grad_snr of the policy gradient from this many per-chunk gradients (costs
    # that many extra backward passes per update)
    grad_variance_chunks: int = 0


@dataclass
class WandbConfig:
    mode: WandbMode = WandbMode.offline
    project: str = "pg_lab"
    entity: str | None = None
    group: str | None = None       # default: the sweep's name in a multirun, none for a single run
    name: str | None = None        # default: the job's overrides, e.g. "policy=beta,seed=3"
    job_type: str | None = None
    tags: list[str] = field(default_factory=list)
    init_timeout: float = 30.0     # seconds W&B may take to start (online: reach its server); then the run goes on


@dataclass
class Config:
    seed: int = 0
    # env steps; any type here so that `total_steps=1e6` (as CleanRL and zoo users write it) composes: validate()
    # accepts an integral number and stores it as an int, and refuses anything else naming the key
    total_steps: Any = 100_000
    device: Device = Device.cpu
    name: str = "default"            # names the sweep directory and the W&B group of a multirun
    # torch threads for the update (rollouts always use one: per-step inference on a few envs is fastest so).
    # More than one helps large batches a little when the machine is otherwise idle, and costs dearly when
    # other processes compete for the cores (spinning OpenMP threads): with two HalfCheetah runs side by
    # side on 2 cores, each with 2 threads, one update took 1.1 s; alone, with 1 thread, 0.02 s.
    torch_threads: int = 1
    checkpoint_every: int = 5        # updates between checkpoints (and one at the end)
    progress_bar: bool = True
    resume: str | None = None        # a run directory to continue (its saved config is used)
    # a run directory whose record came from another config is refused; fresh=true moves that record aside
    # (to <dir>.replaced-<time>) and trains this config there instead
    fresh: bool = False
    optuna_trial: int | None = None  # set by the Optuna sweeper (hydra/sweeper=optuna) for its trials' jobs
    algo: AlgoConfig = field(default_factory=AlgoConfig)
    wandb: WandbConfig = field(default_factory=WandbConfig)
    env: Any = MISSING
    policy: Any = MISSING
    baseline: Any = MISSING
    optimizer: Any = MISSING
    experiment: Any = None


def register_schema() -> None:
    """The schema node, and the `pg_lab:bookkeeping_keys` resolver that conf/config.yaml uses to keep those
    keys (pg_lab.rundir.BOOKKEEPING_KEYS) out of sweep job directory names."""
    from pg_lab.rundir import BOOKKEEPING_KEYS

    ConfigStore.instance().store(name="pg_lab_schema", node=Config)
    if not OmegaConf.has_resolver("pg_lab"):
        OmegaConf.register_new_resolver("pg_lab", lambda name: {"bookkeeping_keys": list(BOOKKEEPING_KEYS)}[name])


# --------------------------------------------------------------------------- validation after composition

_GROUPS = ("env", "policy", "baseline", "optimizer")


SEED_LIMIT = 2**32  # numpy's seeds are 32-bit
NAME_PATTERN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.,=+-]*")


def validate(cfg: DictConfig) -> None:
    """Reject configurations that would fail or mislead later, naming the key. Builds nothing.
    Also normalises `total_steps` given as an integral float (1e6) to an int."""
    _check_schema_keys(cfg, Config, "")
    missing = sorted(OmegaConf.missing_keys(cfg))
    if missing:
        raise ConfigError(f"{', '.join(missing)} must be set (it is ??? in the config): e.g. "
                          f"{missing[0]}=...")
    _check_finite(cfg, "")
    steps = cfg.total_steps
    if isinstance(steps, bool) or not isinstance(steps, (int, float)) or steps != int(steps) or steps <= 0:
        raise ConfigError(f"total_steps must be a positive whole number of env steps (e.g. 1000000 or 1e6), "
                          f"got {steps!r}")
    cfg.total_steps = int(steps)
    if not 0 <= cfg.seed < SEED_LIMIT:
        raise ConfigError(f"seed must be in [0, 2**32), got {cfg.seed}")
    if not NAME_PATTERN.fullmatch(cfg.name) or ".." in cfg.name:
        raise ConfigError(f"name={cfg.name!r} names a directory under outputs/sweeps/: use letters, digits and "
                          "_ . , = + - (no '/' or '..')")
    algo = cfg.algo
    if not 0.0 < algo.gamma <= 1.0:
        raise ConfigError(f"algo.gamma must be in (0, 1], got {algo.gamma}")
    if algo.num_steps <= 0:
        raise ConfigError(f"algo.num_steps must be positive, got {algo.num_steps}")
    if algo.batching == Batching.steps and algo.estimator == Estimator.trajectory:
        raise ConfigError("algo.batching=steps cuts episodes, but algo.estimator=trajectory needs each whole "
                          "episode's G(τ): use algo.estimator=reward_to_go, or algo.batching=episodes")
    if algo.grad_variance_chunks < 0 or algo.grad_variance_chunks == 1:
        raise ConfigError(f"algo.grad_variance_chunks must be 0 (off) or >= 2, got {algo.grad_variance_chunks}")
    if not algo.ent_coef >= 0:
        raise ConfigError(f"algo.ent_coef must be >= 0, got {algo.ent_coef}")
    if algo.max_grad_norm is not None and not algo.max_grad_norm > 0:
        raise ConfigError(f"algo.max_grad_norm must be positive or null, got {algo.max_grad_norm}")
    if cfg.checkpoint_every <= 0:
        raise ConfigError(f"checkpoint_every must be positive, got {cfg.checkpoint_every}")
    if cfg.torch_threads <= 0:
        raise ConfigError(f"torch_threads must be positive, got {cfg.torch_threads}")
    _drop_inherited_lr(cfg)
    for group in _GROUPS:
        check_targets(cfg[group], group)
    for group in ("optimizer", "baseline"):
        lr = cfg[group].get("lr")
        if isinstance(lr, (int, float)) and not lr > 0:
            raise ConfigError(f"{group}.lr must be a positive learning rate, got {lr}")
    for group in ("policy", "baseline"):
        sizes = cfg[group].get("hidden_sizes")
        if OmegaConf.is_list(sizes) and not all(isinstance(h, int) and h >= 1 for h in sizes):
            raise ConfigError(f"{group}.hidden_sizes must be layer widths >= 1, got {list(sizes)}")
    # a baseline refuses the algo settings it cannot honour itself (Baseline.check_config)
    check = getattr(_resolve_target(cfg.baseline._target_, "baseline"), "check_config", None)
    if check is not None:
        check(algo)


def _on_command_line(key: str) -> bool:
    """Whether this launch's overrides set `key` (False outside a Hydra app, e.g. a composed config in a test)."""
    from hydra.core.hydra_config import HydraConfig

    from pg_lab.rundir import override_key

    if not HydraConfig.initialized():
        return False
    return any(override_key(o) == key for o in HydraConfig.get().overrides.task)


def _drop_inherited_lr(cfg: DictConfig) -> None:
    """optimizer=natural steps to a KL bound: it has no learning rate. An env file's `optimizer.lr` is Adam's
    tuned rate (env files come after the optimizer in the defaults list, so it lands on any optimizer): applied
    to the natural step it would shrink it by that factor (with lr 2e-3, no learning at all). Dropped here, before
    the run's record is written, so the record shows what the step used. A warning only where the command line set
    it (an env file's rate is expected, and a sweep would repeat the warning for every job)."""
    from pg_lab.natural import NaturalGradient

    target = _resolve_target(cfg.optimizer._target_, "optimizer")
    if isinstance(target, type) and issubclass(target, NaturalGradient) and "lr" in cfg.optimizer:
        level = logging.WARNING if _on_command_line("optimizer.lr") else logging.INFO
        log.log(level, "optimizer=natural has no learning rate (its step is set by max_kl, scaled by step_size): "
                "optimizer.lr=%s is not used", cfg.optimizer.lr)
        with open_dict(cfg.optimizer):
            del cfg.optimizer["lr"]


def _check_schema_keys(node: DictConfig, schema: type, prefix: str) -> None:
    """Keys under a schema node (the top level, algo, wandb) must be the schema's: `+algo.gama=0.9`, which
    Hydra's own hint suggests for a typo, is refused here."""
    known = set(schema.__dataclass_fields__)
    unknown = sorted(set(node.keys()) - known)
    if unknown:
        where = f"key(s) under {prefix.rstrip('.')}" if prefix else "top-level key(s)"
        raise ConfigError(f"unknown {where} {[prefix + k for k in unknown]}: not in the pg_lab config "
                          f"(known: {sorted(prefix + k for k in known)})")
    for name, f in schema.__dataclass_fields__.items():
        if dataclasses.is_dataclass(f.default_factory if f.default_factory is not dataclasses.MISSING else None):
            _check_schema_keys(node[name], f.default_factory, f"{prefix}{name}.")


def _check_finite(node: Any, key: str) -> None:
    """No NaN anywhere, and no infinity outside env.kwargs (where e.g. an open-ended healthy range may use it)."""
    if isinstance(node, DictConfig):
        for k in node:
            if not OmegaConf.is_missing(node, k):
                _check_finite(node[k], f"{key}.{k}" if key else str(k))
    elif isinstance(node, ListConfig):
        for i, v in enumerate(node):
            _check_finite(v, f"{key}[{i}]")
    elif isinstance(node, float) and not math.isfinite(node):
        if math.isnan(node) or not key.startswith("env.kwargs"):
            raise ConfigError(f"{key} must be a finite number, got {node}")


def _resolve_target(path: str, key: str) -> Any:
    module_name, _, attr = path.rpartition(".")
    try:
        return getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError, ValueError) as e:
        raise ConfigError(f"{key}._target_: cannot import {path!r} ({e})") from None


def _type_ok(value: Any, annotation: Any) -> bool:
    """A light check of YAML/CLI values against simple annotations; anything complex passes."""
    if annotation is inspect.Parameter.empty or annotation is Any:
        return True
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(_type_ok(value, a) for a in typing.get_args(annotation))
    if annotation is type(None):
        return value is None
    if annotation is bool:
        return isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if annotation is str:
        return isinstance(value, str)
    if origin in (list, tuple, collections.abc.Sequence) or annotation in (list, tuple):
        return isinstance(value, (list, tuple, ListConfig))
    return True


def _accepted(target: Any) -> tuple[dict[str, Any], bool] | None:
    """The keyword arguments `target` accepts, {name: annotation}, and whether it takes any keyword at all.
    A class whose __init__ passes **kwargs on to its base (SquashedGaussianPolicy) accepts its bases' too."""
    accepted: dict[str, Any] = {}
    functions = [c.__init__ for c in inspect.getmro(target) if "__init__" in vars(c)] if inspect.isclass(target) \
        else [target]
    for fn in functions:
        try:
            params = inspect.signature(fn).parameters
            hints = typing.get_type_hints(fn)
        except (TypeError, ValueError, NameError):
            return None
        for name, p in params.items():
            if p.kind not in (inspect.Parameter.VAR_KEYWORD, inspect.Parameter.VAR_POSITIONAL) and name != "self":
                accepted.setdefault(name, hints.get(name, p.annotation))
        if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
            return accepted, False
        if not inspect.isclass(target):
            break
    return accepted, True


def check_targets(node: Any, key: str) -> None:
    """Every key of a `_target_` node must be a parameter of the target, of a plausible type."""
    if not isinstance(node, DictConfig) or "_target_" not in node:
        return
    found = _accepted(_resolve_target(node._target_, key))
    if found is None:
        return
    accepted, open_kwargs = found
    for name in node:
        if name.startswith("_") and name.endswith("_"):
            continue
        sub = f"{key}.{name}"
        if name not in accepted:
            if open_kwargs:
                continue
            raise ConfigError(f"{sub}: {node._target_} takes no argument {name!r} (valid: {sorted(accepted)})")
        value = OmegaConf.to_container(node[name], resolve=True) if OmegaConf.is_config(node[name]) \
            else node[name]
        annotation = accepted[name]
        if not _type_ok(value, annotation):
            raise ConfigError(f"{sub}: {value!r} is not a valid {getattr(annotation, '__name__', annotation)}")
        check_targets(node[name], sub)

"""Every option of every group composes, validates and builds; bad configurations are refused by name."""

from pathlib import Path

import pytest
import torch
from hydra.errors import ConfigCompositionException, MissingConfigException
from omegaconf.errors import ConfigKeyError, ValidationError

from pg_lab.builder import build
from pg_lab.config import ConfigError, validate
from pg_lab.policies import POLICIES
from pg_lab.train import CONF_DIR

GROUPS = {g: sorted(p.stem for p in (Path(CONF_DIR) / g).glob("*.yaml"))
          for g in ("env", "policy", "baseline", "optimizer")}
DISCRETE_ENVS = {"cartpole", "acrobot"}


def test_the_fast_combinations_cover_every_pair_of_options():
    import itertools
    fast = [p.values for p in all_pairs_first(BOUNDED_HEADS, GROUPS["baseline"], GROUPS["optimizer"]) if not p.marks]
    groups = (BOUNDED_HEADS, GROUPS["baseline"], GROUPS["optimizer"])
    for a, b in itertools.combinations(range(3), 2):
        assert {(c[a], c[b]) for c in fast} == set(itertools.product(groups[a], groups[b]))
    assert len(fast) == len(BOUNDED_HEADS) * len(GROUPS["optimizer"])


def test_design_names_exist():
    assert set(GROUPS["policy"]) == {"categorical", "gaussian", "capg", "squashed_gaussian", "beta"}
    assert set(GROUPS["baseline"]) == {"none", "mean", "value", "gae"}
    assert set(GROUPS["optimizer"]) == {"adam", "adamw", "sgd", "rmsprop", "natural"}
    assert {"cartpole", "acrobot", "pendulum", "mountain_car_continuous", "inverted_pendulum",
            "inverted_double_pendulum", "reacher", "swimmer", "half_cheetah", "hopper", "walker2d", "ant",
            "humanoid"} <= set(GROUPS["env"])


@pytest.mark.parametrize("env", GROUPS["env"])
def test_every_env_builds_with_its_default_head(compose, env):
    extra = {"gymnasium": ["env.id=CartPole-v1"], "mujoco": ["env.id=Hopper-v5"]}.get(env, [])  # generic: an id
    cfg = compose(f"env={env}", "env.num_envs=1", *extra)
    validate(cfg)
    envs, algorithm = build(cfg, env)
    expected = "categorical" if env in DISCRETE_ENVS | {"gymnasium"} else \
        "capg" if env in ("pendulum", "mountain_car_continuous") else "gaussian"  # the best found there (env files)
    assert algorithm.policy.name == expected
    envs.close()


BOUNDED_HEADS = ["gaussian", "capg", "squashed_gaussian", "beta"]


def all_pairs_first(heads: list[str], baselines: list[str], optimizers: list[str]) -> list:
    """Every head × baseline × optimizer; those outside a covering array of strength 2 are marked slow. The
    covering set (optimizer i, head j, baseline (i + j) mod 4: 20 of the 80) holds every pair of options of two
    groups at least once, and the interactions are between two groups (the natural step with each head, each
    optimizer for a baseline's critic); `make test-slow` builds the rest."""
    covered = {(o, h, baselines[(i + j) % len(baselines)])
               for i, o in enumerate(optimizers) for j, h in enumerate(heads)}
    return [pytest.param(h, b, o, marks=() if (o, h, b) in covered else pytest.mark.slow)
            for o in optimizers for b in baselines for h in heads]


@pytest.mark.parametrize("policy,baseline,optimizer",
                         all_pairs_first(BOUNDED_HEADS, GROUPS["baseline"], GROUPS["optimizer"]))
def test_every_continuous_combination_builds(compose, policy, baseline, optimizer):
    cfg = compose("env=pendulum", f"policy={policy}", f"baseline={baseline}", f"optimizer={optimizer}")
    validate(cfg)
    envs, algorithm = build(cfg, "pendulum")
    assert isinstance(algorithm.policy, POLICIES[policy])
    assert type(algorithm.optimizer).__name__.lower() == {"natural": "naturalgradient"}.get(optimizer, optimizer)
    assert (algorithm.baseline.critic is not None) == (baseline in ("value", "gae"))
    if algorithm.baseline.critic is not None:  # the critic has its own optimizer of the chosen kind
        # (a natural step is for the policy: the critic's regression then uses Adam)
        critic_kind = torch.optim.Adam if optimizer == "natural" else type(algorithm.optimizer)
        assert type(algorithm.baseline.optimizer) is critic_kind
        assert algorithm.baseline.critic.normalizer is algorithm.policy.normalizer  # one set of statistics
    envs.close()


@pytest.mark.parametrize("env,policy", [("cartpole", "gaussian"), ("cartpole", "beta"),
                                        ("cartpole", "squashed_gaussian"), ("cartpole", "capg"),
                                        ("pendulum", "categorical"),
                                        ("acrobot", "beta")])
def test_impossible_pairs_are_refused_naming_both(compose, env, policy):
    cfg = compose(f"env={env}", f"policy={policy}")
    with pytest.raises(ConfigError, match=rf"policy={policy}.*env={env}"):
        build(cfg, env)


def test_beta_on_an_unbounded_box_is_refused():
    from gymnasium import spaces

    from pg_lab.policies import BetaPolicy, UnsupportedActionSpace
    with pytest.raises(UnsupportedActionSpace, match="policy=beta needs finite action bounds"):
        BetaPolicy.check_space(spaces.Box(-float("inf"), float("inf"), (2,)))
    # the Gaussian acts on an unbounded Box as it is
    from pg_lab.policies import GaussianPolicy
    GaussianPolicy.check_space(spaces.Box(-float("inf"), float("inf"), (2,)))


def test_typos_and_wrong_types_fail_at_composition_naming_the_key(compose):
    with pytest.raises(ConfigCompositionException, match="gama"):
        compose("gama=0.9")
    with pytest.raises(ConfigError, match="total_steps"):  # any number composes (1e6 is accepted); then refused
        validate(compose("total_steps=abc"))
    with pytest.raises(ConfigCompositionException, match="mode"):
        compose("wandb.mode=sometimes")
    with pytest.raises(ConfigCompositionException, match="estimator"):
        compose("algo.estimator=causal")
    with pytest.raises(MissingConfigException, match="nosuchenv"):
        compose("env=nosuchenv")


@pytest.mark.parametrize("override,message", [
    ("+gama=0.9", r"unknown top-level key\(s\) \['gama'\]"),
    ("total_steps=-5", "total_steps must be a positive"),
    ("algo.gamma=1.5", r"algo.gamma must be in \(0, 1\]"),
    ("algo.gamma=0", r"algo.gamma must be in \(0, 1\]"),
    ("+policy.hiden_sizes=[8]", "policy.hiden_sizes: pg_lab.policies.CategoricalPolicy takes no argument"),
    ("policy.hidden_sizes=abc", "policy.hidden_sizes: 'abc' is not a valid"),
    ("baseline.lr=fast", "baseline.lr: 'fast' is not a valid float"),
    ("+optimizer.lrr=0.1", "optimizer.lrr: torch.optim.Adam takes no argument"),
    ("env._target_=pg_lab.nowhere.make", "env._target_: cannot import"),
])
def test_validate_names_the_offending_key(compose, override, message):
    try:
        cfg = compose(override)
    except (ConfigKeyError, ValidationError) as e:  # pragma: no cover - would be an earlier, also-fine refusal
        pytest.fail(f"{override} failed at composition instead: {e}")
    with pytest.raises(ConfigError, match=message):
        validate(cfg)


def test_unknown_env_id_is_refused_naming_it(compose):
    cfg = compose("env.id=NoSuchEnv-v0")
    with pytest.raises(ConfigError, match="NoSuchEnv"):
        build(cfg, "cartpole")


def test_every_constructor_argument_is_reachable_from_its_config(compose):
    """TorchRL's check: each constructor argument of a `_target_` that the config can set, it does set
    (for a head that passes **kwargs on to its base, its base's arguments too)."""
    from pg_lab.config import _accepted, _resolve_target
    built_in = {"observation_space", "action_space", "normalizer", "context"}
    for group, options in GROUPS.items():
        if group == "optimizer":
            continue
        for option in options:
            node = compose(f"{group}={option}")[group]
            params = set(_accepted(_resolve_target(node._target_, group))[0]) - built_in
            missing = params - set(node.keys())
            assert not missing, f"{group}={option} cannot set {sorted(missing)}"


def test_a_typo_in_an_inherited_argument_is_still_refused(compose):
    """SquashedGaussianPolicy inherits GaussianPolicy's arguments: typos must not slip through."""
    validate(compose("env=pendulum", "policy=squashed_gaussian", "policy.init_std=0.3"))
    with pytest.raises(ConfigError, match="policy.init_sdt: pg_lab.policies.SquashedGaussianPolicy takes no argument"):
        validate(compose("env=pendulum", "policy=squashed_gaussian", "+policy.init_sdt=0.3"))


def test_in_group_inheritance_keeps_each_option_whole(compose):
    """Env files extend env/gymnasium.yaml (locomotion through env/mujoco.yaml); squashed_gaussian extends
    gaussian; gae extends value."""
    cfg = compose("env=half_cheetah", "policy=squashed_gaussian", "baseline=gae")
    assert cfg.env._target_ == "pg_lab.envs.EnvFactory" and cfg.env.id == "HalfCheetah-v5"
    assert cfg.env.num_envs == 8 and cfg.env.vectorization == "sync" and cfg.algo.batching == "steps"
    assert compose("env=hopper").baseline._target_.endswith("GAEBaseline")  # the locomotion default
    assert compose("env=hopper", "baseline=value").baseline._target_.endswith(".ValueBaseline")  # yours wins
    assert cfg.policy._target_.endswith("SquashedGaussianPolicy") and cfg.policy.init_std == 0.5
    assert cfg.baseline._target_.endswith("GAEBaseline") and cfg.baseline.epochs == 5
    with pytest.raises(ConfigError, match="env.id"):  # the generic option wants an id
        validate(compose("env=gymnasium"))


def test_the_gpu_preset_is_the_legged_task_on_warp_at_scale(compose):
    cfg = compose("env=go1", "experiment=legged_gpu")
    validate(cfg)
    assert cfg.env.backend == "warp" and cfg.device.value == "cuda"
    assert cfg.env.num_envs == 4096 and cfg.algo.num_steps == 24 and cfg.algo.batching.value == "steps"
    assert cfg.env.kwargs.xml_file == "go1" and cfg.baseline._target_.endswith("GAEBaseline")
    # the heading penalty under which Go1 kept its heading on the GPU (docs/results/gpu.md, third session)
    assert cfg.env.kwargs.rewards.heading == -1.0 and compose("env=go1").env.kwargs.rewards.heading == -0.25


def test_the_gpu_preset_pays_a_standing_robot_where_the_cpu_preset_clips_it_to_zero(compose):
    """At 4096 worlds the CPU preset (no alive bonus, a fall penalty, rewards clipped at 0) left Go1 standing: a
    standing step's penalties outweigh its forward reward, the clip makes it 0, and the batch says only "do not
    fall" (docs/results/gpu.md). The GPU preset pays every step survived, so standing still earns a signal."""
    import numpy as np
    from omegaconf import OmegaConf

    from pg_lab.envs.legged import LeggedEnv

    def standing_reward(cfg):
        kwargs = OmegaConf.to_container(cfg.env.kwargs, resolve=True)
        env = LeggedEnv(**{**kwargs, "reset_noise_scale": 0.0})
        env.reset(seed=0)
        rewards = [env.step(np.zeros(12, dtype=np.float32))[1] for _ in range(10)]
        env.close()
        return min(rewards)

    assert standing_reward(compose("env=go1")) == 0.0
    assert standing_reward(compose("env=go1", "experiment=legged_gpu")) > 0.0


ADDED_LATER = [("env.backend", "warp"), ("env.kwargs.tracking_sigma", 1.0),
               ("env.kwargs.rewards.command_progress", 2.0), ("algo.bootstrap_truncation", False)]


@pytest.mark.parametrize("key,other", ADDED_LATER)
def test_keys_added_later_stay_out_of_run_records_at_their_default(compose, key, other):
    """Records made before a key existed (a study's, a benchmark's) must still match the config that made
    them: at its default the key is left out of the record; any other value is recorded."""
    from pg_lab.rundir import flat_config

    assert key not in flat_config(compose("env=go1"))
    assert flat_config(compose("env=go1", f"{key}={other}"))[key] == other


def test_solver_options_are_recorded_only_when_set(compose):
    from pg_lab.rundir import flat_config

    assert not any(k.startswith("env.kwargs.solver") for k in flat_config(compose("env=go1")))
    assert flat_config(compose("env=go1", "env.kwargs.solver={iterations:4}"))["env.kwargs.solver.iterations"] == 4


def test_the_command_curriculum_is_recorded_only_when_on(compose):
    """On in the velocity task's env file (with the linear tracking term), off (null, unrecorded) elsewhere: the
    forward task's records made before the key existed still match."""
    from pg_lab.rundir import flat_config

    for off in (compose("env=go1"), compose("env=quadruped_velocity", "env.kwargs.command_curriculum=null")):
        assert not any(k.startswith("env.kwargs.command_curriculum") for k in flat_config(off))
    on = flat_config(compose("env=quadruped_velocity"))
    assert on["env.kwargs.command_curriculum.step"] == 0.1 and on["env.kwargs.rewards.command_progress"] == 2.0


@pytest.mark.parametrize("key,other", ADDED_LATER)
def test_a_record_that_holds_a_later_key_at_its_default_matches_one_without_it(compose, key, other):
    """algo.bootstrap_truncation was recorded for a while before it was left out: records from either side
    must match each other and today's config, by comparison and by fingerprint; another value must not."""
    from pg_lab.rundir import OMITTED_AT_DEFAULT, config_differences, fingerprint, flat_config

    today = flat_config(compose("env=go1"))
    holding_it = {**today, key: OMITTED_AT_DEFAULT[key]}
    assert config_differences(holding_it, today) == [] and fingerprint(holding_it) == fingerprint(today)
    changed = {**today, key: other}
    assert config_differences(changed, today) == [f"{key}: {other!r} -> '<absent>'"]
    assert fingerprint(changed) != fingerprint(today)

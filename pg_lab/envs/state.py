"""The state of a vector env at a batch boundary, for checkpoints: episodes that straddle a checkpoint resume
exactly where they were.

Per sub-env: the simulator (MuJoCo's integration state, `mj_getState(mjSTATE_INTEGRATION)`: time, qpos, qvel,
act, the solver's warm start, controls and applied forces — a few kB; restored with `mj_setState` and
`mj_forward`, so derived quantities such as body positions are consistent with it, and the next `mj_step`, which
recomputes everything from that state, is bit-identical), plus what an env keeps
beside it through `extra_state()` / `load_extra_state(state)`, e.g. the legged env's command, last action and
randomised model parameters; for other envs, the
plain attributes of the unwrapped env, e.g. CartPole's `state`), the env's random generator, and the
wrappers' counters (TimeLimit's elapsed steps). Exact for Gymnasium's own envs and pg_lab's; a wrapper of
your own that keeps other state is not captured. Only a SyncVectorEnv's sub-envs are reachable: for an
async vector env `capture` returns None and a resume starts fresh episodes (pg_lab.rollout says so).
"""

from __future__ import annotations

import copy
import pickle
import zlib
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import SyncVectorEnv, VectorEnv

_SIMPLE = (np.ndarray, np.generic, int, float, bool, str, type(None))


def _is_simple(value: Any) -> bool:
    if isinstance(value, (list, tuple)):
        return all(_is_simple(v) for v in value)
    return isinstance(value, _SIMPLE)


def _wrappers(env: gym.Env) -> list[gym.Env]:
    chain = []
    while isinstance(env, gym.Wrapper):
        chain.append(env)
        env = env.env
    return chain


def capture_env(env: gym.Env) -> dict:
    unwrapped = env.unwrapped
    state: dict[str, Any] = {
        "rng": unwrapped.np_random.bit_generator.state,
        "wrappers": [{"elapsed_steps": getattr(w, "_elapsed_steps", None)} for w in _wrappers(env)],
    }
    data = getattr(unwrapped, "data", None)
    if data is not None and type(data).__name__ == "MjData":
        import mujoco
        # not the pickled MjData: that carries the whole model with it (17 MB compressed, 1 s, per Go1 env)
        spec = mujoco.mjtState.mjSTATE_INTEGRATION
        physics = np.empty(mujoco.mj_stateSize(unwrapped.model, spec))
        mujoco.mj_getState(unwrapped.model, data, physics, spec)
        state["mjstate"] = physics
        if hasattr(unwrapped, "extra_state"):  # task state beside the simulator's (pg_lab.envs.legged)
            state["extra"] = copy.deepcopy(unwrapped.extra_state())
    else:
        state["attributes"] = {k: copy.deepcopy(v) for k, v in vars(unwrapped).items()
                               if not k.startswith("_np_random") and _is_simple(v)}
    return state


def restore_env(env: gym.Env, state: dict) -> None:
    unwrapped = env.unwrapped
    unwrapped.np_random.bit_generator.state = state["rng"]
    # innermost first: a wrapper added outside later (pg_lab.envs.StepMetrics) leaves older checkpoints aligned
    for wrapper, saved in zip(reversed(_wrappers(env)), reversed(state["wrappers"])):
        if saved["elapsed_steps"] is not None:
            wrapper._elapsed_steps = saved["elapsed_steps"]
    if "mjstate" in state or "mjdata" in state:
        import mujoco
        model, data = unwrapped.model, unwrapped.data
        if "extra" in state:  # first: it may set model parameters (the legged env's randomisation)
            unwrapped.load_extra_state(copy.deepcopy(state["extra"]))
        if "mjstate" in state:
            spec = mujoco.mjtState.mjSTATE_INTEGRATION
            mujoco.mj_setState(model, data, state["mjstate"], spec)
            mujoco.mj_forward(model, data)
            mujoco.mj_setState(model, data, state["mjstate"], spec)  # the warm start as saved, whatever forward did
        else:  # a checkpoint from before mjstate: the whole pickled MjData
            mujoco.mj_copyData(data, model, pickle.loads(zlib.decompress(state["mjdata"])))
    else:
        for k, v in state["attributes"].items():
            setattr(unwrapped, k, copy.deepcopy(v))


def capture(envs: VectorEnv) -> list[dict] | None:
    """Every sub-env's state, or None where they cannot be reached (an async vector env)."""
    if not isinstance(envs, SyncVectorEnv):
        return None
    return [capture_env(env) for env in envs.envs]


def restore(envs: VectorEnv, states: list[dict]) -> None:
    """Put `states` back into `envs` (which has been reset once, so that its wrappers allow stepping)."""
    if not isinstance(envs, SyncVectorEnv) or len(states) != len(envs.envs):
        raise ValueError(f"cannot restore {len(states)} env states into {envs}")
    for env, state in zip(envs.envs, states):
        restore_env(env, state)

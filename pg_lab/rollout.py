"""On-policy collection of complete episodes from a gymnasium vector env.

Each batch starts from a reset seeded by (seed, update), and every env collects at least `num_steps`
steps and then finishes the episode it is in. Batches therefore hold whole episodes only, which the
lecture's G(τ) needs and which keeps REINFORCE without a critic unbiased (the rule "start another
episode only while fewer than num_steps were taken" never looks at the episode it starts). Envs that
finish early keep stepping (a vector env steps all of its envs) until the last one is done; those steps
are marked invalid, counted as env steps and reported as `discarded_frac`.

Because each batch begins with a seeded reset, the state at a batch boundary is just the learner's:
checkpoints taken there resume bit-for-bit without pickling the simulators.

The vector env runs in AutoresetMode.SAME_STEP: a finished env is reset inside the same `step`, the
final observation comes in `info["final_obs"]`, and no "reset step" ever enters the batch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from gymnasium.vector import VectorEnv

from pg_lab.policies import Policy


class NonFiniteError(FloatingPointError):
    """NaN or inf where the run cannot go on; the message says where it came from."""


@dataclass
class Batch:
    obs: np.ndarray         # [T, N, obs_dim] float32, raw (unnormalised)
    actions: torch.Tensor   # [T, N, ...] as sampled (stored and scored)
    rewards: np.ndarray     # [T, N] float64
    terminated: np.ndarray  # [T, N] bool
    truncated: np.ndarray   # [T, N] bool
    valid: np.ndarray       # [T, N] bool: steps that belong to this batch's episodes
    final_obs: np.ndarray   # [K, obs_dim] final observations of the truncated valid steps ...
    final_index: np.ndarray  # [K, 2] ... and their (t, n)

    @property
    def ends(self) -> np.ndarray:
        return self.terminated | self.truncated

    @property
    def env_steps(self) -> int:
        return self.rewards.size

    @property
    def num_valid(self) -> int:
        return int(self.valid.sum())

    @property
    def num_episodes(self) -> int:
        """Episodes that end inside the valid steps (every episode, in a batch of whole episodes)."""
        return int((self.ends & self.valid).sum())

    def flat(self, x: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
        """[T, N, ...] -> [num_valid, ...]: the valid steps, env-major within each time step."""
        x = x.reshape(-1, *x.shape[2:])
        mask = self.valid.reshape(-1)
        return x[torch.from_numpy(mask).to(x.device)] if isinstance(x, torch.Tensor) else x[mask]


def collect(envs: VectorEnv, policy: Policy, num_steps: int, reset_seed: int,
            device: torch.device = torch.device("cpu"),
            should_stop: Callable[[], bool] = lambda: False) -> Batch | None:
    """Run `policy` in `envs` until every env has ≥ num_steps steps and has just finished an episode.
    Returns None if `should_stop()` turns true on the way (a signal): the batch is then dropped."""
    obs, _ = envs.reset(seed=reset_seed)
    n_envs = envs.num_envs
    collecting = np.ones(n_envs, dtype=bool)
    obs_buf, act_buf, rew_buf, term_buf, trunc_buf, valid_buf = [], [], [], [], [], []
    final_obs, final_index = [], []
    t = 0
    while collecting.any():
        if should_stop():
            return None
        obs = np.asarray(obs, dtype=np.float32)
        try:
            with torch.no_grad():
                action = policy.act(torch.from_numpy(obs).to(device))
        except RuntimeError:  # e.g. a categorical head fed NaN: say whether the env caused it
            if not np.isfinite(obs).all():
                raise NonFiniteError(f"the environment returned a non-finite observation at batch step {t}: "
                                     f"{obs.tolist()} (check the env, not the model)") from None
            raise
        next_obs, reward, terminated, truncated, info = envs.step(policy.to_env(action))
        obs_buf.append(obs)
        act_buf.append(action)
        rew_buf.append(reward)
        term_buf.append(terminated)
        trunc_buf.append(truncated)
        valid_buf.append(collecting.copy())
        cut = truncated & ~terminated & collecting
        if cut.any():
            for n in np.flatnonzero(cut):
                final_obs.append(np.asarray(info["final_obs"][n], dtype=np.float32))
                final_index.append((t, n))
        t += 1
        if t >= num_steps:
            collecting &= ~(terminated | truncated)
        obs = next_obs
    obs_dim = obs_buf[0].shape[1:]
    batch = Batch(
        obs=np.stack(obs_buf), actions=torch.stack(act_buf), rewards=np.stack(rew_buf).astype(np.float64),
        terminated=np.stack(term_buf), truncated=np.stack(trunc_buf), valid=np.stack(valid_buf),
        final_obs=np.stack(final_obs) if final_obs else np.zeros((0, *obs_dim), np.float32),
        final_index=np.asarray(final_index, dtype=np.int64).reshape(-1, 2))
    check_finite_env(batch)
    return batch


def check_finite_env(batch: Batch) -> None:
    """The environment's tripwire: non-finite observations or rewards stop the run, saying where."""
    for name, arr in (("observation", batch.obs), ("reward", batch.rewards), ("final observation",
                                                                            batch.final_obs)):
        bad = ~np.isfinite(arr)
        if bad.any():
            where = np.argwhere(bad)[0]
            raise NonFiniteError(f"the environment returned a non-finite {name} at batch index "
                                 f"{tuple(int(i) for i in where)} (step, env, ...): check the env, not the model")

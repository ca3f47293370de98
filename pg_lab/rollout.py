"""On-policy collection from a gymnasium vector env, in one of two batchings (`algo.batching`).

`episodes` (EpisodeCollector): each batch starts from a reset seeded by (seed, update), and every env
collects at least `num_steps` steps and then finishes the episode it is in. Batches hold whole episodes
only, which the lecture's G(τ) needs and which keeps REINFORCE without a critic unbiased (the rule "start
another episode only while fewer than num_steps were taken" never looks at the episode it starts). Envs
that finish early keep stepping (a vector env steps all of its envs) until the last one is done; those
steps are marked invalid, counted as env steps and reported as `discarded_frac`. No episode starts once the
batch has reached the run's remaining budget. Because each batch begins with a seeded reset, the state at a
batch boundary is the learner's alone.

`steps` (StepCollector): fixed rollouts of num_envs × num_steps steps; episodes continue across batches.
Where the batch cuts an episode (`Batch.cut`), the return is bootstrapped with V of the next observation,
so only baselines with a critic can use it. The vector env's state is part of a checkpoint
(pg_lab.envs.state), so a resume continues the episodes where they were.

The vector env runs in AutoresetMode.SAME_STEP: a finished env is reset inside the same `step`, the
final observation comes in `info["final_obs"]`, and no "reset step" ever enters a batch.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from gymnasium.vector import VectorEnv

from pg_lab.envs import METRIC_PREFIXES
from pg_lab.envs.state import capture, restore
from pg_lab.policies import Policy
from pg_lab.returns import episode_stats

log = logging.getLogger("pg_lab")


def metric_name(info_key: str) -> str:
    """`reward_forward` -> "reward/forward", `curriculum_command_level` -> "curriculum/command_level"."""
    prefix = next(p for p in METRIC_PREFIXES if info_key.startswith(p))
    return f"{prefix[:-1]}/{info_key.removeprefix(prefix)}"


def pop_env_metrics(envs: VectorEnv, valid: np.ndarray | None = None) -> dict[str, float]:
    """What the envs reported per step under METRIC_PREFIXES since the last call (pg_lab.envs.StepMetrics keeps it
    out of the vector env's info), as the mean per valid step ([T, N] mask) by W&B name; {} for a vector env that
    EnvFactory did not make. With valid=None the values are dropped (a batch starts)."""
    try:
        per_env = envs.call("pop_metrics")
    except AttributeError:
        return {}
    if valid is None:
        return {}
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    for n, metrics in enumerate(per_env):
        for key, (times, values) in metrics.items():
            present = valid[np.asarray(times, dtype=np.int64), n]
            sums[key] = sums.get(key, 0.0) + float(np.asarray(values, dtype=np.float64)[present].sum())
            counts[key] = counts.get(key, 0) + int(present.sum())
    return {metric_name(k): v / max(counts[k], 1) for k, v in sums.items()}


class NonFiniteError(FloatingPointError):
    """NaN or inf where the run cannot go on; the message says where it came from."""


@dataclass
class Batch:
    """One rollout, time-major. NumPy arrays from a Gymnasium vector env; from a device-resident env
    (DeviceStepCollector) the per-step fields are torch tensors on its device, and the returns are computed there
    (pg_lab.returns takes both)."""
    obs: np.ndarray         # [T, N, obs_dim] float32, raw (unnormalised)
    actions: torch.Tensor   # [T, N, ...] as sampled (stored and scored)
    rewards: np.ndarray     # [T, N] float64
    terminated: np.ndarray  # [T, N] bool
    truncated: np.ndarray   # [T, N] bool
    valid: np.ndarray       # [T, N] bool: steps that belong to this batch's episodes
    final_obs: np.ndarray   # [K, obs_dim] observations to bootstrap from, after truncated or cut steps ...
    final_index: np.ndarray  # [K, 2] ... and their (t, n)
    episode_returns: np.ndarray  # undiscounted return and length of every episode that ended in the batch
    episode_lengths: np.ndarray  # (in step batching, including its steps in earlier batches)
    cut: np.ndarray | None = None  # [T, N] bool: the batch ends inside an episode here (step batching)
    # what the env reports per step in its info under a logged prefix (pg_lab.envs.METRIC_PREFIXES), as the mean
    # per valid step by its W&B name: the reward decomposition (`reward_forward` -> "reward/forward": Gymnasium's
    # MuJoCo tasks, pg_lab's legged env), a curriculum's level (`curriculum_command_level` ->
    # "curriculum/command_level")
    env_metrics: dict[str, float] = field(default_factory=dict)

    @property
    def ends(self) -> np.ndarray:
        """Where the return recursion stops: an episode's end, or the batch's cut through one."""
        ends = self.terminated | self.truncated
        return ends | self.cut if self.cut is not None else ends

    @property
    def env_steps(self) -> int:
        return int(np.prod(self.rewards.shape))

    @property
    def num_valid(self) -> int:
        return int(self.valid.sum())

    @property
    def num_episodes(self) -> int:
        """Episodes (or, in step batching, episode segments) that end inside the valid steps."""
        return int((self.ends & self.valid).sum())

    def flat(self, x: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
        """[T, N, ...] -> [num_valid, ...]: the valid steps, env-major within each time step."""
        x = x.reshape(-1, *x.shape[2:])
        mask = self.valid.reshape(-1)
        if isinstance(x, torch.Tensor):
            return x[torch.as_tensor(mask, device=x.device)]
        return x[mask.cpu().numpy() if isinstance(mask, torch.Tensor) else mask]


class _Steps:
    """The per-step buffers of a batch being collected."""

    def __init__(self):
        self.obs, self.actions, self.rewards, self.terminated, self.truncated, self.valid = [], [], [], [], [], []
        self.final_obs, self.final_index = [], []

    def act(self, policy: Policy, obs: np.ndarray, device: torch.device) -> torch.Tensor:
        obs = np.asarray(obs, dtype=np.float32)
        try:
            with torch.no_grad():
                action = policy.act(torch.from_numpy(obs).to(device))
        except RuntimeError:  # e.g. a categorical head fed NaN: say whether the env caused it
            if not np.isfinite(obs).all():
                raise NonFiniteError(f"the environment returned a non-finite observation at batch step "
                                     f"{len(self.obs)}: {obs.tolist()} (check the env, not the model)") from None
            raise
        self.obs.append(obs)
        self.actions.append(action)
        return action

    def add(self, reward, terminated, truncated, info, valid: np.ndarray) -> None:
        t = len(self.rewards)
        self.rewards.append(reward)
        self.terminated.append(terminated)
        self.truncated.append(truncated)
        self.valid.append(valid.copy())
        cut = truncated & ~terminated & valid
        if cut.any():  # the hot path: most steps end nothing
            for n in np.flatnonzero(cut):
                self.bootstrap_from(info["final_obs"][n], t, n)

    def bootstrap_from(self, obs, t: int, n: int) -> None:
        self.final_obs.append(np.asarray(obs, dtype=np.float32))
        self.final_index.append((t, n))

    def batch(self, envs: VectorEnv, episode_returns, episode_lengths, cut: np.ndarray | None = None) -> Batch:
        """The batch; `envs` hand over what they reported per step under METRIC_PREFIXES (pop_env_metrics)."""
        obs_dim = self.obs[0].shape[1:]
        valid = np.stack(self.valid)
        batch = Batch(
            obs=np.stack(self.obs), actions=torch.stack(self.actions),
            rewards=np.stack(self.rewards).astype(np.float64), terminated=np.stack(self.terminated),
            truncated=np.stack(self.truncated), valid=valid,
            final_obs=np.stack(self.final_obs) if self.final_obs else np.zeros((0, *obs_dim), np.float32),
            final_index=np.asarray(self.final_index, dtype=np.int64).reshape(-1, 2),
            episode_returns=np.asarray(episode_returns, dtype=np.float64),
            episode_lengths=np.asarray(episode_lengths, dtype=np.int64), cut=cut,
            env_metrics=pop_env_metrics(envs, valid))
        check_finite_env(batch)
        return batch


class EpisodeCollector:
    """Whole episodes per batch (`algo.batching=episodes`)."""

    def __init__(self, envs: VectorEnv):
        self.envs = envs

    def collect(self, policy: Policy, num_steps: int, reset_seed: int, device: torch.device = torch.device("cpu"),
                should_stop: Callable[[], bool] = lambda: False, budget: int | None = None) -> Batch | None:
        """Run `policy` until every env has ≥ num_steps steps and has just finished an episode; no env starts
        an episode once the batch holds `budget` valid steps. Returns None if `should_stop()` turns true on
        the way (a signal): the batch is then dropped."""
        obs, _ = self.envs.reset(seed=reset_seed)
        pop_env_metrics(self.envs)  # this batch's own steps only
        collecting = np.ones(self.envs.num_envs, dtype=bool)
        steps, taken = _Steps(), 0
        while collecting.any():
            if should_stop():
                return None
            action = steps.act(policy, obs, device)
            obs, reward, terminated, truncated, info = self.envs.step(policy.to_env(action))
            steps.add(reward, terminated, truncated, info, collecting)
            taken += int(collecting.sum())
            if len(steps.rewards) >= num_steps or (budget is not None and taken >= budget):
                collecting &= ~(terminated | truncated)
        batch = steps.batch(self.envs, episode_returns=(), episode_lengths=())
        batch.episode_returns, batch.episode_lengths = episode_stats(batch.rewards, batch.ends, batch.valid)
        return batch

    def state_dict(self) -> dict:
        return {}  # every batch starts from a seeded reset

    def load_state_dict(self, state: dict, reset_seed: int) -> None:
        pass


class StepCollector:
    """num_envs × num_steps steps per batch, episodes continuing across batches (`algo.batching=steps`)."""

    def __init__(self, envs: VectorEnv, reset_seed: int):
        self.envs, self.reset_seed = envs, reset_seed
        self.obs: np.ndarray | None = None
        self.returns = np.zeros(envs.num_envs)            # of the episodes in progress
        self.lengths = np.zeros(envs.num_envs, dtype=np.int64)

    def collect(self, policy: Policy, num_steps: int, device: torch.device = torch.device("cpu")) -> Batch:
        """Always a whole batch: a signal is answered at the next batch boundary (a batch is short), where the
        envs' state is what a checkpoint holds."""
        if self.obs is None:
            self.obs, _ = self.envs.reset(seed=self.reset_seed)
        pop_env_metrics(self.envs)  # this batch's own steps only
        steps, done_returns, done_lengths = _Steps(), [], []
        everyone = np.ones(self.envs.num_envs, dtype=bool)
        for _ in range(num_steps):
            action = steps.act(policy, self.obs, device)
            self.obs, reward, terminated, truncated, info = self.envs.step(policy.to_env(action))
            steps.add(reward, terminated, truncated, info, everyone)
            self.returns += reward
            self.lengths += 1
            ended = terminated | truncated
            if ended.any():
                done_returns += self.returns[ended].tolist()
                done_lengths += self.lengths[ended].tolist()
                self.returns[ended], self.lengths[ended] = 0.0, 0
        cut = np.zeros((num_steps, self.envs.num_envs), dtype=bool)
        cut[-1] = ~(terminated | truncated)
        for n in np.flatnonzero(cut[-1]):  # bootstrap the cut with V(the observation after it)
            steps.bootstrap_from(self.obs[n], num_steps - 1, n)
        return steps.batch(self.envs, done_returns, done_lengths, cut)

    def state_dict(self) -> dict:
        return {"obs": self.obs, "returns": self.returns.copy(), "lengths": self.lengths.copy(),
                "envs": capture(self.envs) if self.obs is not None else None}

    def load_state_dict(self, state: dict, reset_seed: int) -> None:
        """Continue the checkpointed episodes; if the envs' state was not captured (async vectorization),
        say so and start fresh episodes from a reset seeded by `reset_seed`."""
        if state.get("obs") is None:
            return
        self.envs.reset(seed=reset_seed)
        if state["envs"] is None:
            log.warning("the vector env's state could not be saved (only a sync vector env's can): the resumed "
                        "run starts fresh episodes, so it is not bit-identical to an uninterrupted one")
            self.obs = None
            self.reset_seed = reset_seed
            return
        restore(self.envs, state["envs"])
        self.obs, self.returns, self.lengths = state["obs"], state["returns"], state["lengths"]


class DeviceStepCollector:
    """`algo.batching=steps` on a vector env that lives on the run's device (`env.backend=warp`): observations,
    actions, rewards and episode bookkeeping stay there while the batch is collected (no host round trip per
    step), and the `Batch` holds them there as tensors, so the returns, GAE and the update run on the device too.
    The envs' state is the env's own `get_state()` (a checkpoint's part)."""

    def __init__(self, envs, reset_seed: int):
        self.envs, self.reset_seed = envs, reset_seed
        self.obs: torch.Tensor | None = None
        self.returns = torch.zeros(envs.num_envs, dtype=torch.float64, device=envs.device)
        self.lengths = torch.zeros(envs.num_envs, dtype=torch.long, device=envs.device)

    def collect(self, policy: Policy, num_steps: int, device: torch.device = torch.device("cpu")) -> Batch:
        envs = self.envs
        if self.obs is None:
            self.obs, _ = envs.reset(seed=self.reset_seed)
        n, dim = envs.num_envs, self.obs.shape[1]
        obs = torch.empty(num_steps, n, dim, device=envs.device)
        final_obs = torch.empty(num_steps, n, dim, device=envs.device)
        rewards = torch.empty(num_steps, n, dtype=torch.float64, device=envs.device)
        terminated = torch.empty(num_steps, n, dtype=torch.bool, device=envs.device)
        truncated = torch.empty_like(terminated)
        ended_returns, ended_lengths = torch.empty_like(rewards), torch.empty(num_steps, n, dtype=torch.long,
                                                                               device=envs.device)
        actions, term_sums = [], {}
        for t in range(num_steps):
            obs[t] = self.obs
            with torch.no_grad():
                action = policy.act(self.obs.to(device))
            actions.append(action)
            self.obs, reward, terminated[t], truncated[t], info = envs.step(policy.env_action(action))
            rewards[t] = reward
            final_obs[t] = info["final_obs"]
            for key, value in info.items():
                if key.startswith(METRIC_PREFIXES):
                    term_sums[key] = term_sums.get(key, 0.0) + value.sum()
            self.returns += reward
            self.lengths += 1
            ended = terminated[t] | truncated[t]
            ended_returns[t], ended_lengths[t] = self.returns, self.lengths
            self.returns.masked_fill_(ended, 0.0)
            self.lengths.masked_fill_(ended, 0)
        # the batch stays on the device (the returns are computed there); only the episode statistics and the
        # bootstrap indices (a few numbers) cross to the host, once per batch
        ends = terminated | truncated
        cut = torch.zeros_like(terminated)
        cut[-1] = ~ends[-1]
        boot = torch.nonzero(truncated & ~terminated)
        last = torch.nonzero(cut[-1]).squeeze(1)
        final = torch.cat([final_obs[boot[:, 0], boot[:, 1]], self.obs[last]])
        index = torch.cat([boot, torch.stack([torch.full_like(last, num_steps - 1), last], 1)])
        host_ends = ends.cpu().numpy()
        total = num_steps * n
        batch = Batch(obs=obs, actions=torch.stack(actions), rewards=rewards, terminated=terminated,
                      truncated=truncated, valid=torch.ones_like(terminated), final_obs=final,
                      final_index=index.cpu().numpy().reshape(-1, 2),
                      episode_returns=ended_returns.cpu().numpy()[host_ends],
                      episode_lengths=ended_lengths.cpu().numpy()[host_ends], cut=cut,
                      env_metrics={metric_name(k): float(v) / total for k, v in term_sums.items()})
        check_finite_env(batch)
        return batch

    def state_dict(self) -> dict:
        if self.obs is None:
            return {"obs": None}
        return {"obs": self.obs.cpu(), "returns": self.returns.cpu(), "lengths": self.lengths.cpu(),
                "envs": self.envs.get_state()}

    def load_state_dict(self, state: dict, reset_seed: int) -> None:
        if state.get("obs") is None:
            return
        self.envs.set_state(state["envs"])
        device = self.envs.device
        self.obs = state["obs"].to(device)
        self.returns, self.lengths = state["returns"].to(device), state["lengths"].to(device)


def collect(envs: VectorEnv, policy: Policy, num_steps: int, reset_seed: int,
            device: torch.device = torch.device("cpu"),
            should_stop: Callable[[], bool] = lambda: False) -> Batch | None:
    """One batch of whole episodes (EpisodeCollector), for scripts and tests."""
    return EpisodeCollector(envs).collect(policy, num_steps, reset_seed, device, should_stop)


def check_finite_env(batch: Batch) -> None:
    """The environment's tripwire: non-finite observations or rewards stop the run, saying where."""
    for name, arr in (("observation", batch.obs), ("reward", batch.rewards), ("final observation",
                                                                            batch.final_obs)):
        bad = ~torch.isfinite(arr) if isinstance(arr, torch.Tensor) else ~np.isfinite(arr)
        if bad.any():
            where = np.argwhere(bad.cpu().numpy() if isinstance(bad, torch.Tensor) else bad)[0]
            raise NonFiniteError(f"the environment returned a non-finite {name} at batch index "
                                 f"{tuple(int(i) for i in where)} (step, env, ...): check the env, not the model")

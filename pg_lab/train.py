"""The `pg-lab` entrypoint: compose (Hydra) → validate → build → train loop → run directory.

The loop: collect a batch of whole episodes on-policy → returns → baseline/advantages → REINFORCE step
→ critic step → observation statistics → log → checkpoint. See pg_lab.reinforce for the update itself.
"""

from __future__ import annotations

import logging
import math
import os
import random
import signal
import sys
import time
import traceback
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import hydra
import numpy as np
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from pg_lab.baselines import NoBaseline, ValueBaseline
from pg_lab.config import Config, ConfigError, Device, register_schema, validate
from pg_lab.networks import ObsNormalizer
from pg_lab.policies import UnsupportedActionSpace
from pg_lab.reinforce import estimate, reinforce_update
from pg_lab.returns import episode_stats
from pg_lab.rollout import collect
from pg_lab.runlog import (
    CHECKPOINT,
    WANDB_ID,
    MetricsFile,
    WandbRun,
    load_checkpoint,
    read_summary,
    save_checkpoint,
    write_summary,
)

log = logging.getLogger("pg_lab")
CONF_DIR = str(Path(__file__).resolve().parent.parent / "conf")
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


class Interrupted(Exception):
    """A signal asked the run to stop; it stops at a batch boundary with a checkpoint."""


def resolve_device(device: Device | str) -> torch.device:
    name = device.value if isinstance(device, Device) else str(device)
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device=cuda but torch sees no CUDA device: use device=cpu or device=auto")
    return torch.device(name)


def update_threads(cfg: DictConfig) -> int:
    """Threads for the update phase: cfg.torch_threads, or the usable cores shared among parallel jobs."""
    if cfg.torch_threads is not None:
        return cfg.torch_threads
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    hc = HydraConfig.get()
    parallel = 1
    if hc.mode == RunMode.MULTIRUN and "n_jobs" in hc.launcher:
        n_jobs = hc.launcher.n_jobs
        parallel = cores if n_jobs is None or n_jobs < 0 else n_jobs
    return max(1, min(cores // parallel, 8))


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def batch_seed(seed: int, update: int) -> int:
    """The reset seed of each batch, derived from (seed, update) so that a resume reproduces it."""
    return int(np.random.SeedSequence([seed, update]).generate_state(1)[0])


def build(cfg: DictConfig, env_choice: str) -> Learner:
    """Build env, policy, baseline and optimizer; any impossible choice raises ConfigError here,
    before the first env step."""
    device = resolve_device(cfg.device)
    try:
        envs = instantiate(cfg.env)
    except Exception as e:  # noqa: BLE001 - gymnasium raises several kinds for a bad id or kwargs
        raise ConfigError(f"env={env_choice}: cannot make env.id={cfg.env.get('id')!r}: {e}") from None
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


def state_dict(learner: Learner, progress: Progress, rng: dict, wandb_id: str | None) -> dict:
    return {
        "policy": learner.policy.state_dict(),
        "optimizer": learner.optimizer.state_dict(),
        "baseline": learner.baseline.state_dict(),
        "normalizer": learner.normalizer.state_dict(),
        "progress": {"step": progress.step, "update": progress.update, "wall_time_s": progress.wall_time_s,
                     "episodes": progress.episodes, "recent_returns": list(progress.recent_returns)},
        "rng": rng,
        "wandb_run_id": wandb_id,
    }


def capture_rng() -> dict:
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}


def restore_rng(rng: dict) -> None:
    torch.set_rng_state(rng["torch"])
    np.random.set_state(rng["numpy"])
    random.setstate(rng["python"])


def load_state(learner: Learner, progress: Progress, ckpt: dict) -> None:
    learner.policy.load_state_dict(ckpt["policy"])
    learner.optimizer.load_state_dict(ckpt["optimizer"])
    learner.baseline.load_state_dict(ckpt["baseline"])
    learner.normalizer.load_state_dict(ckpt["normalizer"])
    p = ckpt["progress"]
    progress.step, progress.update, progress.wall_time_s = p["step"], p["update"], p["wall_time_s"]
    progress.episodes = p["episodes"]
    progress.recent_returns.extend(p["recent_returns"])
    restore_rng(ckpt["rng"])


class StopFlag:
    """SIGINT/SIGTERM/SIGUSR2 (submitit's pre-emption) set a flag that the loop checks; a second SIGINT
    stops at once."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR2)

    def __init__(self):
        self.signum: int | None = None
        self.previous = {}
        for s in self.SIGNALS:
            try:
                self.previous[s] = signal.signal(s, self._handle)
            except ValueError:  # not the main thread (e.g. a thread-based launcher): leave signals alone
                pass

    def _handle(self, signum, frame):
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signum = signum

    def hand_on(self) -> None:
        """After our checkpoint, let the handler that was there before (submitit's, which re-queues the job
        on pre-emption) have the signal too."""
        previous = self.previous.get(self.signum)
        if callable(previous):
            previous(self.signum, None)

    def __call__(self) -> bool:
        return self.signum is not None

    def restore(self) -> None:
        for s, h in self.previous.items():
            signal.signal(s, h)


@dataclass
class JobIdentity:
    """How this job shows in W&B: name from its overrides ("policy=beta,seed=3"), job_type from the same
    overrides less the seed (so seeds of one configuration sit together), group = the sweep's name."""
    env_choice: str
    name: str
    group: str | None
    job_type: str | None
    tags: list[str]


def job_identity(cfg: DictConfig) -> JobIdentity:
    hc = HydraConfig.get()
    choices = hc.runtime.choices
    excluded = set(hc.job.config.override_dirname.exclude_keys)
    overrides = [o for o in hc.overrides.task if o.split("=", 1)[0].lstrip("+~") not in excluded]
    name = cfg.wandb.name or hc.job.override_dirname or "default"
    group = cfg.wandb.group
    if group is None and hc.mode == RunMode.MULTIRUN:
        group = cfg.name
    job_type = cfg.wandb.job_type or (",".join(o for o in overrides if not o.startswith("seed=")) or "default")
    tags = [*cfg.wandb.tags, *(f"{g}:{choices[g]}" for g in ("env", "policy", "baseline") if choices.get(g))]
    return JobIdentity(choices.get("env", "?"), name, group, job_type[:64], tags)


def train(cfg: DictConfig, run_dir: Path) -> float:
    """One run in `run_dir`; resumes from its checkpoint if there is one. Returns final_return_mean."""
    validate(cfg)
    job = job_identity(cfg)
    env_choice = job.env_choice
    previous = read_summary(run_dir)
    ckpt_path = run_dir / CHECKPOINT
    if previous and previous.get("status") == "finished" and ckpt_path.exists() and \
            previous.get("total_steps", 0) >= cfg.total_steps:
        log.info("%s already finished (%d steps): nothing to do", run_dir, previous["total_steps"])
        return previous.get("final_return_mean") or float("nan")
    ckpt = load_checkpoint(ckpt_path) if ckpt_path.exists() else None

    threads = update_threads(cfg)
    torch.autograd.set_detect_anomaly(cfg.algo.debug)
    torch.distributions.Distribution.set_default_validate_args(cfg.algo.debug)
    seed_everything(cfg.seed)
    learner = build(cfg, env_choice)
    progress = Progress()
    if ckpt is not None:
        load_state(learner, progress, ckpt)
        log.info("resuming %s at step %d (update %d)", run_dir, progress.step, progress.update)

    base_lrs = [[g["lr"] for g in opt.param_groups] for opt in learner.optimizers]
    metrics_file = MetricsFile(run_dir, progress.step if ckpt is not None else None)
    wandb_id = (ckpt or {}).get("wandb_run_id") or _read(run_dir / WANDB_ID)
    wandb_run = WandbRun(cfg, run_dir, job.name, job.group, job.job_type, job.tags, wandb_id)
    stop = StopFlag()
    n_envs = learner.envs.num_envs
    status, error = "failed", None
    started = time.perf_counter()
    steps_at_start, wall_at_start = progress.step, progress.wall_time_s
    bar = tqdm(total=cfg.total_steps, initial=progress.step, unit="step", dynamic_ncols=True,
               disable=None if cfg.progress_bar else True, desc=f"{env_choice}")

    def checkpoint(rng: dict) -> None:
        progress.wall_time_s = wall_at_start + time.perf_counter() - started
        save_checkpoint(ckpt_path, state_dict(learner, progress, rng, getattr(wandb_run, "run_id", wandb_id)))

    rng = capture_rng()
    try:
        while progress.step < cfg.total_steps:
            rng = capture_rng()  # the RNG state at this batch boundary: what an interrupted run saves
            if stop():
                raise Interrupted
            if cfg.algo.anneal_lr:
                frac = 1.0 - progress.step / cfg.total_steps
                for opt, lrs in zip(learner.optimizers, base_lrs):
                    for g, lr in zip(opt.param_groups, lrs):
                        g["lr"] = lr * frac
            num_steps = min(cfg.algo.num_steps, math.ceil((cfg.total_steps - progress.step) / n_envs))
            t0 = time.perf_counter()
            torch.set_num_threads(1)
            batch = collect(learner.envs, learner.policy, num_steps, batch_seed(cfg.seed, progress.update),
                            learner.device, stop)
            if batch is None:
                restore_rng(rng)
                raise Interrupted
            t1 = time.perf_counter()
            torch.set_num_threads(threads)
            metrics = update(cfg, learner, batch)
            metrics.update(rollout_s=t1 - t0, update_s=time.perf_counter() - t1)
            returns, lengths = episode_stats(batch.rewards, batch.ends, batch.valid)
            progress.step += batch.env_steps
            progress.update += 1
            progress.episodes += len(returns)
            progress.recent_returns.extend(returns.tolist())
            elapsed = wall_at_start + time.perf_counter() - started
            row = {
                "step": progress.step, "update": progress.update,
                "episode_return_mean": float(returns.mean()) if len(returns) else None,
                "episode_length_mean": float(lengths.mean()) if len(lengths) else None,
                "episodes": int(len(returns)),
                "return_recent_mean": float(np.mean(progress.recent_returns)) if progress.recent_returns else None,
                **metrics,
                "discarded_frac": 1.0 - batch.num_valid / batch.env_steps,
                "lr": learner.optimizer.param_groups[0]["lr"],
                "steps_per_s": (progress.step - steps_at_start) / max(elapsed - wall_at_start, 1e-9),
                "time_s": elapsed,
            }
            metrics_file.write(row)
            wandb_run.log(row)
            bar.update(batch.env_steps)
            if row["return_recent_mean"] is not None:
                bar.set_postfix(ret=f"{row['return_recent_mean']:.1f}", sps=f"{row['steps_per_s']:.0f}")
            if progress.update % cfg.checkpoint_every == 0 or progress.step >= cfg.total_steps:
                checkpoint(capture_rng())
        status = "finished"
    except Interrupted:
        checkpoint(rng)
        status = "interrupted"
        log.warning("stopped by signal %s at step %d: checkpoint saved; run the same command to resume",
                    stop.signum, progress.step)
    except BaseException as e:
        error = e
        (run_dir / "error.txt").write_text(traceback.format_exc())
        log.error("run failed at step %d: %s: %s (traceback in %s)", progress.step, type(e).__name__, e,
                  run_dir / "error.txt")
        raise
    finally:
        bar.close()
        stop.restore()
        wall = wall_at_start + time.perf_counter() - started
        summary = {
            "status": status,
            "total_steps": progress.step,
            "wall_time_s": wall,
            "steps_per_s": progress.step / wall if wall > 0 else 0.0,
            "final_return_mean": float(np.mean(progress.recent_returns)) if progress.recent_returns else None,
            "episodes": progress.episodes,
            "updates": progress.update,
            "seed": cfg.seed,
        }
        if error is not None:
            summary["error"] = f"{type(error).__name__}: {error}"
        write_summary(run_dir, summary)
        metrics_file.close()
        wandb_run.finish(summary, exit_code=0 if status != "failed" else 1)
        learner.envs.close()
    if status == "interrupted":
        stop.hand_on()
        sys.exit(128 + (stop.signum or signal.SIGTERM))
    return summary["final_return_mean"] if summary["final_return_mean"] is not None else float("nan")


def update(cfg: DictConfig, learner: Learner, batch) -> dict[str, float]:
    """Returns → advantages → policy step → baseline step → observation statistics."""
    algo = cfg.algo
    est = estimate(batch, learner.baseline, algo.gamma, algo.estimator)
    advantages = learner.baseline.advantages(est, algo.gamma)
    num_episodes = int((batch.ends & batch.valid).sum())
    metrics = reinforce_update(
        learner.policy, learner.optimizer, batch, advantages, reduction=algo.reduction,
        normalize_advantage=algo.normalize_advantage, ent_coef=algo.ent_coef, max_grad_norm=algo.max_grad_norm,
        num_episodes=num_episodes, device=learner.device, grad_variance_chunks=algo.grad_variance_chunks)
    obs = torch.from_numpy(batch.obs).to(learner.device)
    metrics.update(learner.baseline.update(obs, est, advantages))
    learner.normalizer.update(obs.reshape(-1, obs.shape[-1])[torch.from_numpy(batch.valid.reshape(-1))])
    if hasattr(learner.policy, "log_std"):
        metrics["action_std"] = learner.policy.log_std.detach().exp().mean().item()
    return metrics


def _read(path: Path) -> str | None:
    return path.read_text().strip() if path.exists() else None


def resume_target(cfg: DictConfig, hc) -> tuple[DictConfig, Path]:
    """`resume=DIR`: continue the run in DIR with the config it was started with (a `total_steps=` on
    this command line may extend it)."""
    run_dir = Path(cfg.resume).expanduser().resolve()
    if not (run_dir / CHECKPOINT).is_file():
        raise ConfigError(f"resume={cfg.resume}: no {CHECKPOINT} in {run_dir}: nothing to resume")
    if not (run_dir / ".hydra" / "config.yaml").is_file():
        raise ConfigError(f"resume={cfg.resume}: no .hydra/config.yaml in {run_dir}: not a pg-lab run directory")
    saved = OmegaConf.load(run_dir / ".hydra" / "config.yaml")
    if any(o.startswith("total_steps=") for o in hc.overrides.task):
        saved.total_steps = cfg.total_steps
    saved.resume = None
    log.info("resuming the run in %s", run_dir)
    return OmegaConf.merge(OmegaConf.structured(Config), saved), run_dir


register_schema()


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="config")
def main(cfg: DictConfig) -> float:
    hc = HydraConfig.get()
    run_dir = Path(hc.runtime.output_dir)
    if cfg.resume:
        try:
            cfg, run_dir = resume_target(cfg, hc)
        except ConfigError as e:
            print(f"pg-lab: error: {e}", file=sys.stderr)
            sys.exit(2)
    if hc.mode == RunMode.MULTIRUN:
        # one job of a sweep: record the failure in its directory and let the others go on; the sweep's
        # report (pg_lab.sweeps) lists it and makes the sweep exit non-zero
        try:
            return train(cfg, run_dir)
        except Exception as e:  # noqa: BLE001
            if not (run_dir / "summary.json").exists():
                write_summary(run_dir, {"status": "failed", "error": f"{type(e).__name__}: {e}"})
                (run_dir / "error.txt").write_text(traceback.format_exc())
            log.error("job failed: %s: %s", type(e).__name__, e)
            return float("nan")
    try:
        return train(cfg, run_dir)
    except ConfigError as e:
        print(f"pg-lab: error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()

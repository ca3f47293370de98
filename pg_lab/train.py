"""The `pg-lab` entrypoint: compose (Hydra) → validate → build → train loop → run directory.

The loop: collect a batch of whole episodes on-policy → returns → baseline/advantages → REINFORCE step
→ critic step → observation statistics → log → checkpoint. See pg_lab.reinforce for the update itself.
"""

from __future__ import annotations

import logging
import math
import random
import signal
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import hydra
import numpy as np
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig
from tqdm import tqdm

from pg_lab.config import ConfigError, register_schema, validate
from pg_lab.learner import Learner, Progress, build
from pg_lab.reinforce import estimate, reinforce_update
from pg_lab.resume import (
    Interrupted,
    StopFlag,
    batch_seed,
    capture_rng,
    load_state,
    restore_rng,
    resume_target,
    state_dict,
)
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


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


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

    threads = cfg.torch_threads
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

"""A run's life in its directory, and what the process does when it ends: failure handling in one place.

`RunSession` (a context manager around the training loop) opens metrics.jsonl and the W&B run, records each
update (counters, the metrics line, W&B, the progress bar, periodic checkpoints) and, however the loop ends,
writes summary.json, closes everything and logs one closing line:
- finished: a last checkpoint was taken by the loop;
- a signal (`Interrupted`): a checkpoint at the last batch boundary, status `interrupted`, exit 128 + signal;
- anything else: status `failed`, error.txt with the traceback, the last good checkpoint kept, re-raised.

`task_wrapper` (around the Hydra task function) decides what the process does with a failure: a single run
prints a refused configuration as `pg-lab: error: ...` and exits 2; a sweep job records any failure in its
directory and returns NaN so the other jobs go on (the sweep's report, pg_lab.sweeps, shows it).
"""

from __future__ import annotations

import functools
import logging
import math
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig
from tqdm import tqdm

from pg_lab.config import ConfigError
from pg_lab.reinforce import Reinforce
from pg_lab.resume import Interrupted, Progress, Pruned, StopFlag, capture_rng, checkpoint_state
from pg_lab.rollout import Batch
from pg_lab.rundir import STOP_MARKER, ConfigMismatch, RunDir, RunDirBusy, fingerprint, flat_config
from pg_lab.tracking import JobIdentity, WandbRun

log = logging.getLogger("pg_lab")


class RunSession:
    def __init__(self, cfg: DictConfig, run_dir: RunDir, job: JobIdentity, algorithm: Reinforce,
                 progress: Progress, envs, collector, checkpoint: dict | None):
        self.cfg, self.run_dir, self.algorithm, self.progress, self.envs = cfg, run_dir, algorithm, progress, envs
        self.collector = collector  # its state (the envs' episodes in progress) is part of a checkpoint
        self.metrics = run_dir.open_metrics(progress.step if checkpoint is not None else None)
        wandb_id = (checkpoint or {}).get("wandb_run_id") or run_dir.read_wandb_id()
        self.wandb = WandbRun(cfg, run_dir, job, wandb_id, list(HydraConfig.get().overrides.task))
        self.stop = StopFlag()
        self.bar = tqdm(total=cfg.total_steps, initial=progress.step, unit="step", dynamic_ncols=True,
                        disable=None if cfg.progress_bar else True, desc=job.env_choice)
        self.started = time.perf_counter()
        self.steps_at_start, self.wall_at_start = progress.step, progress.wall_time_s
        self.rng = capture_rng()
        self.summary: dict = {}
        self.config = flat_config(cfg)  # what checkpoints and the summary are tied to
        self.multirun = HydraConfig.get().mode == RunMode.MULTIRUN
        self.trial = None  # a job of an Optuna trial with a pruner: reports its return, may be told to stop
        if cfg.get("optuna_trial") is not None:
            from pg_lab.tuning import TrialReporter

            self.trial = TrialReporter.for_job(cfg)

    def elapsed(self) -> float:
        return self.wall_at_start + time.perf_counter() - self.started

    def boundary(self) -> None:
        """A batch boundary: remember the RNG state an interrupted run saves; stop here if a signal came."""
        self.rng = capture_rng()
        if self.stop():
            raise Interrupted(self.stop.signum)

    def checkpoint(self, rng: dict) -> None:
        self.progress.wall_time_s = self.elapsed()
        state = checkpoint_state(self.algorithm, self.progress, rng, self.wandb.run_id)
        self.run_dir.save_checkpoint({**state, "rollout": self.collector.state_dict(), "config": self.config,
                                      "config_fingerprint": fingerprint(self.config)})

    def record(self, batch: Batch, metrics: dict[str, float]) -> None:
        """Count the batch, write its metrics line (metrics.jsonl, W&B), move the bar, checkpoint on schedule."""
        p = self.progress
        returns, lengths = batch.episode_returns, batch.episode_lengths
        p.step += batch.env_steps
        p.update += 1
        p.episodes += len(returns)
        p.recent_returns.extend(returns.tolist())
        elapsed = self.elapsed()
        row = {
            "step": p.step, "update": p.update,
            "episode_return_mean": float(returns.mean()) if len(returns) else None,
            "episode_length_mean": float(lengths.mean()) if len(lengths) else None,
            "episodes": int(len(returns)),
            "return_recent_mean": float(np.mean(p.recent_returns)) if p.recent_returns else None,
            **metrics,
            **batch.env_metrics,  # what the env reports per step: its reward terms, a curriculum's level
            "discarded_frac": 1.0 - batch.num_valid / batch.env_steps,
            "lr": self.algorithm.optimizer.param_groups[0]["lr"],
            "steps_per_s": (p.step - self.steps_at_start) / max(elapsed - self.wall_at_start, 1e-9),
            "time_s": elapsed,
        }
        self.metrics.write(row)
        self.wandb.log(row)
        self.bar.update(batch.env_steps)
        if row["return_recent_mean"] is not None:
            self.bar.set_postfix(ret=f"{row['return_recent_mean']:.1f}", sps=f"{row['steps_per_s']:.0f}")
        if p.update % self.cfg.checkpoint_every == 0 or p.step >= self.cfg.total_steps:
            self.checkpoint(capture_rng())
        if self.trial is not None and p.step < self.cfg.total_steps:
            self.trial(p.step, row["return_recent_mean"])  # raises Pruned when the study's pruner says so

    @property
    def final_return(self) -> float:
        value = self.summary.get("final_return_mean")
        return value if value is not None else math.nan

    def __enter__(self) -> RunSession:
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        status = "finished" if exc is None else "interrupted" if isinstance(exc, Interrupted) else \
            "pruned" if isinstance(exc, Pruned) else "failed"
        try:
            if status in ("interrupted", "pruned"):
                self.checkpoint(capture_rng() if status == "pruned" else self.rng)
            elif status == "failed":
                self.run_dir.write_error("".join(traceback.format_exception(exc_type, exc, tb)))
        finally:
            self._close(status, exc)
            self._say_how_it_ended(status, exc)
        if status == "pruned":
            return True  # the trial ends here; its value is what the run reached
        if status == "interrupted":
            self.stop.hand_on()
            if self.multirun and exc.signum in (signal.SIGINT, signal.SIGTERM) and not under_slurm():
                # one job of a sweep: its record says interrupted, and the sweep stops (pg_lab.sweeps); a
                # pre-emption (SIGUSR2) was handed to submitit above, which re-queues the job. Under Slurm a
                # SIGTERM is the scheduler's (pre-emption, `scontrol requeue`, scancel): the job exits non-zero
                # with its checkpoint and no result, so a re-queued job resumes, and the sweep is Slurm's to stop
                stop_sweep(HydraConfig.get().sweep.dir)
                return True
            raise SystemExit(128 + exc.signum)
        return False

    def _say_how_it_ended(self, status: str, exc: BaseException | None) -> None:
        """One closing line, on the console and in train.log: status, env steps, final return, wall time, where."""
        s = self.summary
        final = f"{s['final_return_mean']:.1f}" if s["final_return_mean"] is not None else "none (no episode ended)"
        line = (f"{status}: {s['total_steps']:,} env steps, final return {final} (mean of the last "
                f"{len(self.progress.recent_returns)} episodes), {s['wall_time_s']:.1f} s, run dir {self.run_dir}")
        if status == "finished":
            log.info(line)
        elif status == "pruned":
            log.info("%s; %s", line, exc)
        elif status == "interrupted":
            log.warning("%s; stopped by signal %s with a checkpoint: resume with  %s", line, exc.signum,
                        resume_command(self.run_dir))
        else:
            log.error("%s; %s: %s (traceback in %s)", line, type(exc).__name__, exc, self.run_dir.error)

    def _close(self, status: str, exc: BaseException | None) -> None:
        self.bar.close()
        self.stop.restore()
        p, wall = self.progress, self.elapsed()
        self.summary = {
            "status": status,
            "total_steps": p.step,
            "wall_time_s": wall,
            "steps_per_s": p.step / wall if wall > 0 else 0.0,
            "final_return_mean": float(np.mean(p.recent_returns)) if p.recent_returns else None,
            "episodes": p.episodes,
            "updates": p.update,
            "seed": self.cfg.seed,
            "budget": self.cfg.total_steps,  # total_steps asked for; `total_steps` above is what ran
            "wandb_mode": self.wandb.mode,
        }
        if status == "failed":
            self.summary["error"] = f"{type(exc).__name__}: {exc}"
        self.summary.update(config_fingerprint=fingerprint(self.config), config=self.config)
        self.run_dir.write_summary(self.summary)
        self.metrics.close()
        self.wandb.finish(self.summary, exit_code=0 if status != "failed" else 1)
        self.envs.close()


def under_slurm() -> bool:
    """This process is (part of) a Slurm job."""
    return "SLURM_JOB_ID" in os.environ


REFUSALS = (ConfigError, ConfigMismatch, RunDirBusy)


def resume_command(run_dir: RunDir) -> str:
    """The command that continues `run_dir`, quoted for the shell and for Hydra's override grammar (sweep job
    directories hold = and ,)."""
    path = str(run_dir.path.resolve())
    if any(c in path for c in "=,'\"[]{}() "):
        return f"pg-lab \"resume='{path}'\""
    return f"pg-lab resume={path}"


def stop_sweep(sweep_dir: str) -> None:
    """Tell the sweep's jobs not yet started not to start (pg_lab.sweeps removes the marker at its end)."""
    marker = Path(sweep_dir) / STOP_MARKER
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.touch()


def guard_idle_worker(sweep_dir: str) -> None:
    """In a launcher's worker process (joblib), a signal that arrives between jobs would kill the worker, and
    joblib would then abort the jobs still running elsewhere, unrecorded: there, it stops the sweep instead.
    Handlers someone else installed (the sweep's own process, submitit's) are left alone."""
    if threading.current_thread() is not threading.main_thread():
        return
    for s in (signal.SIGINT, signal.SIGTERM):
        if signal.getsignal(s) in (signal.SIG_DFL, signal.default_int_handler):
            signal.signal(s, lambda signum, frame: stop_sweep(sweep_dir))


def task_wrapper(task: Callable[[DictConfig, RunDir], float]) -> Callable[[DictConfig], float]:
    """The Hydra task function's failure handling (lightning-hydra-template's habit)."""

    @functools.wraps(task)
    def wrapped(cfg: DictConfig) -> float:
        hc = HydraConfig.get()
        run_dir = RunDir(hc.runtime.output_dir)
        multirun = hc.mode == RunMode.MULTIRUN
        if multirun:
            guard_idle_worker(hc.sweep.dir)
        if multirun and (Path(hc.sweep.dir) / STOP_MARKER).exists():
            # not through the job's log: that would create train.log, and the directory should stay empty
            print(f"the sweep was stopped by a signal: {run_dir} not started", file=sys.stderr, flush=True)
            run_dir.remove_if_empty()
            return math.nan
        try:
            return task(cfg, run_dir)
        except Exception as e:  # noqa: BLE001 - sorted below by mode and kind
            if not multirun:
                if isinstance(e, REFUSALS):
                    print(f"pg-lab: error: {e}", file=sys.stderr)
                    run_dir.remove_if_empty()  # a refused command leaves no directory behind
                    sys.exit(2)
                raise
            log.error("job failed: %s: %s", type(e).__name__, e)
            if isinstance(e, (ConfigMismatch, RunDirBusy)):  # the record there is another run's: leave it be
                run_dir.mark_refused(f"{type(e).__name__}: {e}")
                return math.nan
            # one job of a sweep: record the failure in its directory and let the others go on
            if not run_dir.is_run():
                run_dir.write_record(cfg, hc, list(hc.overrides.task))
            if run_dir.read_summary() is None:
                run_dir.write_summary({"status": "failed", "error": f"{type(e).__name__}: {e}"})
                run_dir.write_error(traceback.format_exc())
            return math.nan

    return wrapped


def set_debug(debug: bool) -> None:
    """algo.debug: autograd anomaly detection and torch.distributions argument validation (slow)."""
    torch.autograd.set_detect_anomaly(debug)
    torch.distributions.Distribution.set_default_validate_args(debug)

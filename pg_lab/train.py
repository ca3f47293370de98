"""The `pg-lab` entrypoint: compose (Hydra) → validate → build → train loop → run directory.

`train` only sequences: collect a batch on-policy → `Reinforce.update` (returns, baseline, policy step,
critic step, observation statistics) → record (metrics.jsonl, W&B, progress bar) → checkpoint. The run's
record and its end, however it ends, belong to pg_lab.session; the update to pg_lab.reinforce.
"""

from __future__ import annotations

import logging
import math
import random
import time
from pathlib import Path

import hydra
import numpy as np
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.core.plugins import Plugins
from omegaconf import DictConfig

from hydra_plugins.pg_lab_sweepers.optuna_sweeper import OptunaSweeper
from pg_lab.builder import build
from pg_lab.config import Batching, ConfigError, register_schema, validate
from pg_lab.resume import Interrupted, Progress, batch_seed, load_state, resume_target
from pg_lab.rollout import DeviceStepCollector, EpisodeCollector, StepCollector
from pg_lab.rundir import RunDir
from pg_lab.session import RunSession, set_debug, task_wrapper
from pg_lab.tracking import job_identity

log = logging.getLogger("pg_lab")


def _conf_dir() -> str:
    """The primary config directory: pg_lab/conf in an installed wheel (pyproject maps the repository's conf/
    there), the repository's conf/ in a source checkout or an editable install. A lab's own configs compose on
    top of it with `--config-dir DIR` (or `hydra.searchpath`)."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "conf", here.parent / "conf"):
        if (candidate / "config.yaml").is_file():
            return str(candidate)
    raise FileNotFoundError(f"pg_lab's configs are missing: neither {here / 'conf'} nor {here.parent / 'conf'} "
                            "holds config.yaml (a broken install? reinstall pg_lab)")


CONF_DIR = _conf_dir()


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def train(cfg: DictConfig, run_dir: RunDir, resumed: bool = False) -> float:
    """One run in `run_dir`, which this process holds alone; resumes from its checkpoint if there is one.
    Returns final_return_mean. `resumed`: the config came from the directory (`resume=`), so Hydra's record of
    this command (its overrides) is not the run's and is not written."""
    validate(cfg)
    with run_dir.locked():
        run_dir.check_record(cfg, fresh=cfg.fresh)  # a record of another config is refused (or moved aside)
        run_dir.refused.unlink(missing_ok=True)  # this launch takes the job: an earlier refusal no longer holds
        return _train(cfg, run_dir, resumed)


def _train(cfg: DictConfig, run_dir: RunDir, resumed: bool) -> float:
    job = job_identity(cfg)
    previous = run_dir.read_summary()
    # a finished record is kept even without its checkpoint (`python -m pg_lab.archive restore` brings records back
    # without one): the config matched above, so running it again would only repeat it
    if previous and previous.get("status") == "finished" and previous.get("total_steps", 0) >= cfg.total_steps:
        log.info("%s already finished (%d steps, final return %s)%s: nothing to do", run_dir,
                 previous["total_steps"], previous.get("final_return_mean"),
                 "" if run_dir.has_checkpoint() else ", its record restored without a checkpoint")
        return previous.get("final_return_mean") or math.nan
    ckpt = run_dir.load_checkpoint() if run_dir.has_checkpoint() else None
    set_debug(cfg.algo.debug)
    # the same threads under every launcher (joblib's workers inherit other defaults): weights built and
    # trained with a different thread count differ in the last bits, and a resume would no longer be exact
    torch.set_num_threads(cfg.torch_threads)
    seed_everything(cfg.seed)
    envs, algorithm = build(cfg, job.env_choice)
    by_steps = cfg.algo.batching == Batching.steps
    if getattr(envs, "on_device", False):  # env.backend=warp: the worlds live on the run's device
        if not by_steps:
            envs.close()
            raise ConfigError("env.backend=warp collects fixed-length rollouts: set algo.batching=steps (with "
                              "baseline=gae or value)")
        collector = DeviceStepCollector(envs, batch_seed(cfg.seed, 0))
    else:
        collector = StepCollector(envs, batch_seed(cfg.seed, 0)) if by_steps else EpisodeCollector(envs)
    progress = Progress()
    if ckpt is not None:
        try:
            load_state(algorithm, progress, ckpt)
            collector.load_state_dict(ckpt.get("rollout", {}), batch_seed(cfg.seed, progress.update))
        except (RuntimeError, KeyError, ValueError) as e:
            envs.close()
            raise ConfigError(f"{run_dir.checkpoint} does not fit this config ({str(e).splitlines()[0]}): "
                              "move it away, or use another run directory") from None
        log.info("resuming %s at step %d (update %d)", run_dir, progress.step, progress.update)
    hc = HydraConfig.get()
    run_dir.write_record(cfg, None if resumed else hc, None if resumed else list(hc.overrides.task))

    with RunSession(cfg, run_dir, job, algorithm, progress, envs, collector, ckpt) as session:
        while progress.step < cfg.total_steps:
            session.boundary()
            if cfg.algo.anneal_lr:
                algorithm.anneal(1.0 - progress.step / cfg.total_steps)
            left = cfg.total_steps - progress.step
            num_steps = min(cfg.algo.num_steps, math.ceil(left / envs.num_envs))
            t0 = time.perf_counter()
            torch.set_num_threads(1)  # per-step inference on a few envs is fastest on one thread
            if by_steps:
                batch = collector.collect(algorithm.policy, num_steps, algorithm.device)
            else:
                batch = collector.collect(algorithm.policy, num_steps, batch_seed(cfg.seed, progress.update),
                                          algorithm.device, session.stop, budget=left)
            if batch is None:
                raise Interrupted(session.stop.signum)
            t1 = time.perf_counter()
            torch.set_num_threads(cfg.torch_threads)
            metrics = algorithm.update(batch)
            metrics.update(rollout_s=t1 - t0, update_s=time.perf_counter() - t1)
            session.record(batch, metrics)
    return session.final_return


register_schema()
Plugins.instance().register(OptunaSweeper)  # Hydra's own scan finds it too, except in editable installs


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="config")
@task_wrapper
def main(cfg: DictConfig, run_dir: RunDir) -> float:
    if cfg.resume:
        cfg, run_dir = resume_target(cfg, HydraConfig.get())
        return train(cfg, run_dir, resumed=True)
    return train(cfg, run_dir)


if __name__ == "__main__":
    main()

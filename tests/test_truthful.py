"""A run's record cannot lie: one process per directory, records tied to their config, runs that say what
they did, refusals that leave nothing behind, signals that stop a whole sweep, launcher-independent results."""

import errno
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import cli
import psutil
import pytest
import torch
from test_entrypoint import PG_LAB, pg_lab
from test_reliability import max_diff

from pg_lab.rundir import ConfigMismatch, RunDir, atomic_write
from pg_lab.tracking import wandb_mode


def test_a_successful_run_ends_with_one_line_saying_what_it_did(tmp_path):
    run = tmp_path / "run"
    proc = pg_lab(run, "total_steps=3000")
    last = proc.stderr.strip().splitlines()[-1]
    summary = json.loads((run / "summary.json").read_text())
    assert "finished:" in last and f"{summary['total_steps']:,} env steps" in last and str(run) in last
    assert f"final return {summary['final_return_mean']:.1f}" in last
    assert "finished:" in (run / "train.log").read_text()  # the job's log is not empty


@pytest.mark.parametrize("override", ["+algo.gama=0.9", "env.num_envs=0"])  # refused in validation / in the build
def test_a_refused_command_leaves_no_directory_behind(tmp_path, override):
    run = tmp_path / "run"
    proc = pg_lab(run, override, check=False)
    assert proc.returncode == 2 and override.split("=")[0].lstrip("+") in proc.stderr
    assert not run.exists()


def test_a_refusal_while_the_env_is_built_leaves_no_directory_behind(tmp_path):
    """The legged env imports MuJoCo's renderer, whose PyOpenGL logged a line at INFO: the job's log was opened."""
    run = tmp_path / "run"
    proc = pg_lab(run, "env=go1", "env.kwargs.task=dance", check=False)
    assert proc.returncode == 2 and "env.kwargs.task" in proc.stderr
    assert not run.exists()
    assert "OpenGL" not in proc.stderr


def test_a_directory_holding_only_a_refused_jobs_log_is_removed_and_a_run_is_not(tmp_path):
    lone = RunDir(tmp_path / "lone")
    lone.path.mkdir()
    lone.log.write_text("[INFO] - a library's line\n")
    lone.remove_if_empty()
    assert not lone.path.exists()
    run = RunDir(tmp_path / "run")
    (run.path / ".hydra").mkdir(parents=True)
    run.config.write_text("seed: 0\n")
    run.log.write_text("finished\n")
    run.remove_if_empty()
    assert run.log.is_file() and run.config.is_file()


@pytest.mark.slow
def test_a_second_process_on_a_run_directory_is_refused(tmp_path):
    run = tmp_path / "run"
    first = cli.popen([PG_LAB, "seed=0", "total_steps=200000", "wandb.mode=disabled", "progress_bar=false",
                              f"hydra.run.dir={run}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while not (run / "metrics.jsonl").exists() and time.time() < deadline:
            time.sleep(0.1)
        second = pg_lab(run, "seed=1", "total_steps=2000", check=False)
        assert second.returncode == 2
        assert f"in use by pid {first.pid} on host" in second.stderr
        assert "seed: 0" in (run / ".hydra" / "config.yaml").read_text()  # the record is the first run's
    finally:
        first.send_signal(signal.SIGTERM)
        first.wait(timeout=60)
    assert json.loads((run / "summary.json").read_text())["seed"] == 0


def test_a_record_of_another_config_is_refused_then_moved_aside_with_fresh(tmp_path, train_in_process):
    run = tmp_path / "run"
    train_in_process("total_steps=2000", run_dir=run)
    record = (run / ".hydra" / "config.yaml").read_text(), (run / "summary.json").read_text()
    with pytest.raises(ConfigMismatch, match=r"algo.gamma: 0.99 -> 0.9.*fresh=true"):
        train_in_process("total_steps=2000", "algo.gamma=0.9", run_dir=run)
    with pytest.raises(ConfigMismatch, match=r"env.id: 'CartPole-v1' -> 'Pendulum-v1'"):  # not a size mismatch
        train_in_process("total_steps=2000", "env=pendulum", run_dir=run)
    assert ((run / ".hydra" / "config.yaml").read_text(), (run / "summary.json").read_text()) == record
    # bookkeeping keys and a longer budget are the same run
    train_in_process("total_steps=4000", "checkpoint_every=2", run_dir=run)
    evaluation = ("eval.json", "eval_commands.json", "eval_rough.json", "tracking.png")
    for name in evaluation:  # pg-lab-eval's results (a labelled one too) describe that run too
        (run / name).write_text("{}")
    train_in_process("total_steps=2000", "algo.gamma=0.9", "fresh=true", run_dir=run)
    (aside,) = tmp_path.glob("run.replaced-*")
    for name in evaluation:
        assert (aside / name).exists() and not (run / name).exists()
    assert json.loads((aside / "summary.json").read_text())["total_steps"] >= 4000
    assert "gamma: 0.99" in (aside / ".hydra" / "config.yaml").read_text()
    assert "gamma: 0.9\n" in (run / ".hydra" / "config.yaml").read_text()
    assert json.loads((run / "summary.json").read_text())["config"]["algo.gamma"] == 0.9
    from pg_lab.compare import load_runs
    (run / ".hydra" / "overrides.yaml").write_text("[]\n")  # both in one group, as a sweep job and its replaced record
    (aside / ".hydra" / "overrides.yaml").write_text("[]\n")
    runs, skipped = load_runs([tmp_path])
    assert [r.path for r in runs] == [run] and [d for d, _ in skipped] == [aside]  # compare leaves it out


def test_a_checkpoint_that_does_not_fit_is_refused_naming_the_file(tmp_path, train_in_process):
    """A checkpoint without a recorded config (an older pg_lab) from another env: a message, not a raw error."""
    from pg_lab.config import ConfigError
    run = tmp_path / "run"
    train_in_process("total_steps=1000", run_dir=run)
    state = RunDir(run).load_checkpoint()
    del state["config"]
    RunDir(run).save_checkpoint(state)
    (run / "summary.json").unlink()
    with pytest.raises(ConfigError, match=r"checkpoint.pt does not fit this config"):
        train_in_process("total_steps=2000", "env=pendulum", run_dir=run)


def test_a_full_disk_is_reported_as_such_naming_the_file(tmp_path, monkeypatch):
    def torch_writer_on_a_full_disk(obj, f):
        raise RuntimeError("[enforce fail at inline_container.cc:672] unexpected pos 64 vs 0")

    class Full:
        f_bavail, f_frsize = 0, 4096
    monkeypatch.setattr(torch, "save", torch_writer_on_a_full_disk)
    monkeypatch.setattr(os, "statvfs", lambda path: Full())
    with pytest.raises(OSError, match="no space left on device: cannot write .*checkpoint.pt") as err:
        RunDir(tmp_path).save_checkpoint({"w": torch.ones(1)})
    assert err.value.errno == errno.ENOSPC
    assert [p.name for p in tmp_path.iterdir()] == []  # no temp file left


def test_an_interrupted_write_leaves_no_temp_file(tmp_path):
    def interrupted(f):
        raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        atomic_write(tmp_path / "summary.json", interrupted)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_the_same_config_gives_the_same_weights_whatever_the_thread_defaults(tmp_path):
    """A joblib worker inherits OMP_NUM_THREADS=1, a shell does not: the weights must not depend on it."""
    for threads in ("1", "2"):
        cli.run([PG_LAB, "env=pendulum", "baseline=gae", "seed=1", "total_steps=2000", "wandb.mode=disabled",
                        "progress_bar=false", f"hydra.run.dir={tmp_path / threads}"], check=True, capture_output=True,
                env={**os.environ, "OMP_NUM_THREADS": threads}, timeout=300)
    assert max_diff(tmp_path / "1" / "checkpoint.pt", tmp_path / "2" / "checkpoint.pt") == 0.0


def test_wandb_mode_precedence(compose, monkeypatch):
    cfg = compose()  # wandb.mode: offline in the config
    monkeypatch.delenv("WANDB_MODE", raising=False)
    assert wandb_mode(cfg, []) == ("offline", "wandb.mode in the config")
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert wandb_mode(cfg, []) == ("disabled", "WANDB_MODE in the environment")
    assert wandb_mode(compose("wandb.mode=online"), ["wandb.mode=online"]) == ("online",
                                                                               "wandb.mode on the command line")
    monkeypatch.setenv("WANDB_MODE", "dryrun")  # W&B's old name for offline
    assert wandb_mode(cfg, [])[0] == "offline"


@pytest.mark.slow
def test_wandb_mode_disabled_in_the_environment_writes_no_wandb_files(tmp_path):
    run = tmp_path / "run"
    cli.run([PG_LAB, "total_steps=1000", "progress_bar=false", f"hydra.run.dir={run}"], check=True,
            capture_output=True, env={**os.environ, "WANDB_MODE": "disabled"}, timeout=300)
    assert not (run / "wandb").exists()
    assert json.loads((run / "summary.json").read_text())["wandb_mode"] == "disabled"


def _sweep_cmd(sweep_dir: Path, *overrides: str) -> list[str]:
    return [PG_LAB, "-m", "hydra/launcher=joblib", *overrides, "wandb.mode=disabled", "progress_bar=false",
            f"hydra.sweep.dir={sweep_dir}"]


@pytest.mark.slow
@pytest.mark.parametrize("how", ["SIGTERM to the launcher", "SIGINT to the process group (Ctrl-C)"])
def test_a_signal_stops_every_job_of_a_sweep_with_a_checkpoint_and_prints_the_table(tmp_path, how):
    # four jobs on two workers: short ones (a worker then idles: a signal must not kill it) and long ones
    proc = cli.popen(_sweep_cmd(tmp_path, "seed=0,1", "total_steps=3000,400000", "checkpoint_every=1"),
                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    short, long = tmp_path / "seed=0,total_steps=3000", tmp_path / "seed=0,total_steps=400000"
    deadline = time.time() + 180
    while not ((short / "summary.json").exists() and (long / "checkpoint.pt").exists()) and time.time() < deadline:
        time.sleep(0.2)
    time.sleep(1.0)
    workers = psutil.Process(proc.pid).children()
    signum = signal.SIGTERM if how.startswith("SIGTERM") else signal.SIGINT
    if signum == signal.SIGTERM:
        proc.send_signal(signum)
    else:
        os.killpg(proc.pid, signum)  # what a terminal's Ctrl-C does: every process of the group gets it
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signum, err[-2000:]
    jobs = sorted(tmp_path.glob("seed=*"))  # a job that had not started left no directory
    statuses = {job.name: json.loads((job / "summary.json").read_text())["status"] for job in jobs}
    assert statuses[short.name] == "finished" and statuses[long.name] == "interrupted", statuses
    assert set(statuses.values()) <= {"finished", "interrupted"}
    for job in jobs:
        summary = json.loads((job / "summary.json").read_text())
        assert RunDir(job).load_checkpoint()["progress"]["step"] == summary["total_steps"]
        assert not list(job.glob(".*.tmp"))
    finished = sum(v == "finished" for v in statuses.values())
    assert "interrupted" in out and f"{finished}/{len(jobs)} jobs finished" in out  # the table, after a signal
    time.sleep(1)
    assert not [w for w in workers if w.is_running() and w.status() != psutil.STATUS_ZOMBIE]  # no orphans
    assert not (tmp_path / ".stop").exists()


@pytest.mark.slow
def test_a_relaunched_sweep_with_another_config_leaves_finished_jobs_alone(tmp_path):
    job = tmp_path / "seed=0,total_steps=2000"
    first = cli.run(_sweep_cmd(tmp_path, "seed=0", "total_steps=2000"), capture_output=True, text=True,
                    timeout=300)
    assert first.returncode == 0, first.stderr[-2000:]
    record = (job / ".hydra" / "config.yaml").read_text(), (job / "summary.json").read_text()
    # experiment= is not part of the job's directory name, so this lands on the finished job
    presets = tmp_path.parent / f"{tmp_path.name}-presets"
    (presets / "experiment").mkdir(parents=True)
    (presets / "experiment" / "longer.yaml").write_text("# @package _global_\nalgo:\n  num_steps: 1000\n")
    again = cli.run(_sweep_cmd(tmp_path, "seed=0", "total_steps=2000", "experiment=longer",
                                      f"hydra.searchpath=[file://{presets}]"),
                    capture_output=True, text=True, timeout=300)
    assert again.returncode != 0
    assert ((job / ".hydra" / "config.yaml").read_text(), (job / "summary.json").read_text()) == record
    assert "refused" in again.stdout and "algo.num_steps: 128 -> 1000" in again.stdout
    same = cli.run(_sweep_cmd(tmp_path, "seed=0", "total_steps=2000"), capture_output=True, text=True,
                   timeout=300)
    assert same.returncode == 0 and "reused" in same.stdout


def test_rendering_the_quadruped_needs_no_gl_setting_and_exits_cleanly():
    import ctypes.util
    if not (ctypes.util.find_library("OSMesa") or ctypes.util.find_library("EGL")):
        pytest.skip("no offscreen GL")
    env = {k: v for k, v in os.environ.items() if k not in ("MUJOCO_GL", "PYOPENGL_PLATFORM")}
    code = ("import gymnasium as gym, pg_lab\n"
            "e = gym.make('pg_lab/Quadruped-v0', render_mode='rgb_array', width=64, height=48)\n"
            "e.reset(seed=0)\nprint(e.render().shape)\n")
    proc = subprocess.run([str(Path(PG_LAB).parent / "python"), "-c", code], capture_output=True, text=True,
                          env=env, timeout=120)
    assert proc.returncode == 0 and "(48, 64, 3)" in proc.stdout, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and "Exception ignored" not in proc.stderr

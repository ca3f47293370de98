"""The real `pg-lab` entrypoint, as a user runs it: in processes of its own (forked from a server that has
imported torch once, see cli.py; the console scripts themselves in plain subprocesses)."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cli
import pytest

PG_LAB = shutil.which("pg-lab") or str(Path(sys.executable).parent / "pg-lab")
WANDB = str(Path(sys.executable).parent / "wandb")
TIME_KEYS = {"steps_per_s", "time_s", "rollout_s", "update_s"}


def pg_lab(run_dir: Path, *overrides: str, check: bool = True, timeout: int = 300) -> subprocess.CompletedProcess:
    cmd = [PG_LAB, *overrides, f"hydra.run.dir={run_dir}", "progress_bar=false"]
    if not any(o.startswith("wandb.mode=") for o in overrides):
        cmd.append("wandb.mode=disabled")
    env = {**os.environ, "WANDB_SILENT": "true"}
    proc = cli.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    if check and proc.returncode != 0:
        raise AssertionError(f"{cmd} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc


def metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_a_run_writes_the_run_directory_contract_and_an_offline_wandb_run(tmp_path):
    run = tmp_path / "run"
    pg_lab(run, "env=cartpole", "total_steps=3000", "wandb.mode=offline")
    rows = metrics(run)
    assert rows and all("step" in r and "episode_return_mean" in r for r in rows)
    assert [r["step"] for r in rows] == sorted({r["step"] for r in rows})
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["total_steps"] == rows[-1]["step"] >= 3000
    assert summary["wall_time_s"] > 0 and summary["steps_per_s"] > 0
    assert summary["final_return_mean"] > 0
    assert (run / "checkpoint.pt").stat().st_size > 0
    assert (run / ".hydra" / "config.yaml").exists()
    (offline,) = (run / "wandb").glob("offline-run-*")
    out = subprocess.run([WANDB, "leet", "inspect", "--summary", "--json", str(offline)], capture_output=True,
                         text=True, check=True, timeout=120).stdout
    record = json.loads(out)
    assert record["summary"]["episode_return_mean"] == pytest.approx(rows[-1]["episode_return_mean"])
    assert record["summary"]["step"] == rows[-1]["step"]
    # the time series, namespaced as dashboards group them; summary.json's fields in the summary
    assert record["summary"]["charts/episode_return_mean"] == pytest.approx(rows[-1]["episode_return_mean"])
    assert record["summary"]["losses/policy_loss"] == pytest.approx(rows[-1]["policy_loss"])
    assert record["summary"]["diagnostics/grad_norm"] == pytest.approx(rows[-1]["grad_norm"])
    assert record["summary"]["status"] == "finished" and record["summary"]["final_return_mean"] == pytest.approx(
        summary["final_return_mean"])
    assert record["config"]["env"]["id"] == "CartPole-v1" and record["config"]["total_steps"] == 3000
    assert record["name"] == "env=cartpole,total_steps=3000"


def test_same_seed_same_metrics_and_another_seed_differs(tmp_path, train_in_process):
    """One run through the entrypoint, two in this process (a process start costs more than these runs): the seed
    alone fixes the numbers, across processes too."""
    def strip(rows):
        return [{k: v for k, v in r.items() if k not in TIME_KEYS} for r in rows]
    overrides = ("env=pendulum", "total_steps=2400", "baseline=gae")
    pg_lab(tmp_path / "a", *overrides, "seed=1")
    train_in_process(*overrides, "seed=1", run_dir=tmp_path / "b")
    train_in_process(*overrides, "seed=2", run_dir=tmp_path / "c")
    runs = {name: strip(metrics(tmp_path / name)) for name in "abc"}
    assert runs["a"] == runs["b"]
    assert runs["a"] != runs["c"]


@pytest.mark.slow
def test_default_job_learns_cartpole(tmp_path):
    """The learning check: the default configuration reaches a mean return of 195 in 40k steps."""
    pg_lab(tmp_path / "r", "total_steps=40000", "seed=0")
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["final_return_mean"] >= 195, summary


@pytest.mark.parametrize("overrides,word", [
    (["env=nosuchenv"], "nosuchenv"),
    (["+gama=0.9"], "gama"),
    (["total_steps=-5"], "total_steps"),
    (["env=cartpole", "policy=gaussian"], "gaussian"),
    (["algo.gamma=1.5"], "gamma"),
])
def test_bad_input_is_refused_before_training(tmp_path, overrides, word):
    run = tmp_path / "run"
    proc = pg_lab(run, *overrides, check=False)
    assert proc.returncode != 0
    assert word in proc.stderr
    assert not (run / "summary.json").exists() and not (run / "metrics.jsonl").exists()


def test_a_forked_command_is_a_process_of_its_own_in_the_environment_it_was_given(tmp_path):
    """cli.run forks pg_lab's commands from a server that imported torch once: the command must still get the
    environment, working directory and exit code a subprocess would, and settings that the server's libraries
    read at import (thread counts) must send it to a plain subprocess instead."""
    proc = cli.run([PG_LAB, "total_steps=300", "progress_bar=false", "hydra.run.dir=run"], cwd=tmp_path,
                   env={**os.environ, "WANDB_MODE": "disabled"}, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "WANDB_MODE in the environment" in proc.stderr and (tmp_path / "run" / "summary.json").exists()
    assert cli.run([PG_LAB, "no_such_key=1"], cwd=tmp_path, capture_output=True, timeout=300).returncode == 1
    assert cli.entry_point([PG_LAB]) == ("pg_lab.train:main", [PG_LAB])
    target, argv = cli.entry_point([sys.executable, "-m", "pg_lab", "seed=1"])
    assert target == "pg_lab.train:main" and argv[0].endswith("__main__.py") and argv[1:] == ["seed=1"]
    assert cli.entry_point([WANDB, "--version"]) is None
    assert cli.changes_import_time_env({**os.environ, "OMP_NUM_THREADS": "3"})
    assert not cli.changes_import_time_env({**os.environ, "X": "1"}) and not cli.changes_import_time_env(None)


def test_python_dash_m_and_hydra_cli():
    out = cli.run([sys.executable, "-m", "pg_lab", "--cfg", "job", "env=hopper"], capture_output=True,
                  text=True, check=True, timeout=120).stdout
    assert "Hopper-v5" in out and "GaussianPolicy" in out
    # the installed console script itself, started as a user starts it
    help_text = subprocess.run([PG_LAB, "--help"], capture_output=True, text=True, check=True, timeout=120).stdout
    assert "env: " in help_text and "policy: " in help_text

"""Multiruns through the real entrypoint: Hydra's launchers and sweepers, W&B grouping, failures, resume."""

import json
import os
import subprocess
from pathlib import Path

import cli
import pytest
import yaml
from test_entrypoint import PG_LAB, WANDB

pytestmark = pytest.mark.filterwarnings("ignore")


def sweep(sweep_dir: Path, *overrides: str, timeout: int = 300) -> subprocess.CompletedProcess:
    cmd = [PG_LAB, "-m", *overrides, f"hydra.sweep.dir={sweep_dir}", "progress_bar=false"]
    if not any(o.startswith("wandb.mode=") for o in overrides):
        cmd.append("wandb.mode=disabled")
    return cli.run(cmd, capture_output=True, text=True, timeout=timeout,
                   env={**os.environ, "WANDB_SILENT": "true"})


def summaries(sweep_dir: Path) -> dict[str, dict]:
    return {p.parent.name: json.loads(p.read_text()) for p in sweep_dir.glob("*/summary.json")}


def wandb_run_record(offline_dir: Path) -> dict:
    out = subprocess.run([WANDB, "leet", "inspect", "--json", str(offline_dir)], capture_output=True, text=True,
                         check=True, timeout=120).stdout
    return next(json.loads(line)["run"] for line in out.splitlines() if '"type":"run"' in line.replace(" ", ""))


@pytest.mark.slow  # subprocess-heavy: `make test-slow` (CI) runs it
def test_joblib_sweep_one_wandb_run_per_job_in_one_group(tmp_path):
    proc = sweep(tmp_path, "hydra/launcher=joblib", "env=cartpole", "seed=0,1", "total_steps=2000",
                 "wandb.mode=offline", "name=joblib_test")
    assert proc.returncode == 0, proc.stderr[-2000:]
    jobs = summaries(tmp_path)
    assert set(jobs) == {"env=cartpole,seed=0,total_steps=2000", "env=cartpole,seed=1,total_steps=2000"}
    assert all(s["status"] == "finished" for s in jobs.values())
    records = [wandb_run_record(p) for p in tmp_path.glob("*/wandb/offline-run-*")]
    assert len(records) == 2
    assert {r["run_group"] for r in records} == {"joblib_test"}
    assert {r["display_name"] for r in records} == set(jobs)
    assert {r["job_type"] for r in records} == {"env=cartpole,total_steps=2000"}  # seeds sit together
    assert all("env:cartpole" in r["tags"] for r in records)
    assert sorted(r["config"]["update"]["seed"] for r in records) == [0, 1]  # config logged resolved
    # the sweep's closing table lists each job
    assert "2/2 jobs finished" in proc.stdout and (tmp_path / "sweep_summary.csv").exists()
    # and per configuration, seeds collapsed, by the same key as W&B's job_type
    assert "per configuration" in proc.stdout
    assert any(line.startswith("env=cartpole,total_steps=2000  2/2") for line in proc.stdout.splitlines())


def test_a_sweep_name_that_leaves_outputs_is_refused_before_any_directory_is_made(tmp_path):
    proc = cli.run([PG_LAB, "-m", "name=../../escaped", "total_steps=2000", "wandb.mode=disabled"],
                   capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 2 and "name='../../escaped'" in proc.stderr
    assert not (tmp_path / "escaped").exists() and not (tmp_path.parent / "escaped").exists()


def test_sweeping_over_a_bookkeeping_key_is_refused(tmp_path):
    """torch_threads is left out of job directory names: two values would share one directory."""
    proc = sweep(tmp_path, "torch_threads=1,2", "total_steps=2000")
    assert proc.returncode != 0 and "cannot sweep over torch_threads" in proc.stderr
    assert not list(tmp_path.glob("*/summary.json"))


@pytest.mark.slow  # subprocess-heavy: `make test-slow` (CI) runs it
def test_submitit_local_sweep(tmp_path):
    proc = sweep(tmp_path, "hydra/launcher=submitit_local", "seed=0,1", "total_steps=2000")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert [s["status"] for s in summaries(tmp_path).values()] == ["finished", "finished"]


def test_a_failing_job_does_not_sink_the_sweep_but_shows(tmp_path):
    # the basic launcher (jobs in this process): joblib's workers are covered by the slow test above
    proc = sweep(tmp_path, "env=cartpole,pendulum", "policy=categorical",
                 "total_steps=2000")
    assert proc.returncode != 0
    jobs = summaries(tmp_path)
    ok = jobs["env=cartpole,policy=categorical,total_steps=2000"]
    bad = jobs["env=pendulum,policy=categorical,total_steps=2000"]
    assert ok["status"] == "finished"
    assert bad["status"] == "failed" and "policy=categorical" in bad["error"]
    assert "Traceback" in (tmp_path / "env=pendulum,policy=categorical,total_steps=2000" / "error.txt").read_text()
    assert "1/2 jobs finished" in proc.stdout and "failed" in proc.stdout


@pytest.mark.slow  # subprocess-heavy: `make test-slow` (CI) runs it
def test_relaunching_a_sweep_runs_only_what_is_left(tmp_path):
    assert sweep(tmp_path, "seed=0", "total_steps=2000").returncode == 0
    first = tmp_path / "seed=0,total_steps=2000"
    before = (first / "summary.json").read_text(), (first / "metrics.jsonl").stat().st_mtime_ns
    proc = sweep(tmp_path, "seed=0,1", "total_steps=2000")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert ((first / "summary.json").read_text(), (first / "metrics.jsonl").stat().st_mtime_ns) == before
    assert summaries(tmp_path)["seed=1,total_steps=2000"]["status"] == "finished"
    assert "already finished" in (first / "train.log").read_text()
    # the first launch's record stays beside the second's (other overrides); the second's is the current one
    (kept,) = tmp_path.glob("multirun.*.yaml")
    assert "seed=0" in yaml.safe_load(kept.read_text())["hydra"]["overrides"]["task"]
    assert "seed=0,1" in yaml.safe_load((tmp_path / "multirun.yaml").read_text())["hydra"]["overrides"]["task"]
    assert "kept as multirun." in proc.stderr
    # a relaunch with the same overrides (to resume) replaces its own record: nothing more is kept
    assert sweep(tmp_path, "seed=0,1", "total_steps=2000").returncode == 0
    assert len(list(tmp_path.glob("multirun.*.yaml"))) == 1


def test_a_job_another_process_is_running_is_not_counted_as_this_launchs_failure(tmp_path):
    from pg_lab.rundir import RunDir
    from pg_lab.sweeps import job_rows

    job = RunDir(tmp_path / "env=humanoid,seed=1")  # started by another launch into the same sweep directory
    job.overrides.parent.mkdir(parents=True)
    job.overrides.write_text("- env=humanoid\n- seed=1\n")
    job.log.write_text("training\n")  # its log grows while it runs: as if this launch had visited it
    assert [r["status"] for r in job_rows(tmp_path)] == ["failed"]  # no holder: a job that died before training
    holder = RunDir(job.path)
    holder.lock()
    try:
        assert job.is_busy() and job_rows(tmp_path) == []
        job.mark_refused("in use by another process")  # a job this launch was refused: still its row
        assert [r["status"] for r in job_rows(tmp_path)] == ["refused"]
    finally:
        holder.unlock()
    assert not job.is_busy()

"""A real Slurm: sweeps through `hydra/launcher=slurm`, and a pre-empted (re-queued) job that resumes exactly.

Needs a cluster: `scripts/local_slurm.sh up` brings up a single-node one here (`make test-slurm` does it all;
CI runs it). Marked `slurm`, so `make test` leaves these out; without a reachable cluster they are skipped.
"""

import json
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from test_entrypoint import PG_LAB, TIME_KEYS, metrics
from test_reliability import max_diff

pytestmark = pytest.mark.slurm

RUN = ["env=cartpole", "total_steps=40000", "checkpoint_every=1", "wandb.mode=disabled", "progress_bar=false"]


@pytest.fixture(scope="module", autouse=True)
def cluster():
    if shutil.which("sinfo") is None or subprocess.run(["sinfo", "-h"], capture_output=True).returncode != 0:
        pytest.skip("no Slurm cluster reachable (scripts/local_slurm.sh up starts one)")


def squeue() -> list[str]:
    return subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True, text=True, check=True).stdout.split()


def comparable(run: Path) -> list[dict]:
    return [{k: v for k, v in m.items() if k not in TIME_KEYS} for m in metrics(run)]


def test_a_requeued_sweep_job_resumes_from_its_checkpoint_and_ends_as_if_never_stopped(tmp_path):
    sweep = tmp_path / "sweep"
    launcher = subprocess.Popen(
        [PG_LAB, "-m", "hydra/launcher=slurm", "hydra.launcher.cpus_per_task=1", "hydra.launcher.mem_gb=2",
         "name=preempt", "seed=0,1", *RUN, f"hydra.sweep.dir={sweep}"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    job_dir = sweep / "env=cartpole,seed=0,total_steps=40000"
    deadline, job = time.time() + 240, None
    while time.time() < deadline and launcher.poll() is None:
        m = job_dir / "metrics.jsonl"
        if m.exists() and (job_dir / "checkpoint.pt").exists() and len(m.read_text().splitlines()) >= 5:
            job = next((j for j in squeue() if j.endswith("_0")), None)  # array task 0 is the first job, seed=0
            break
        time.sleep(0.2)
    assert job, "the job never reached a checkpoint while running"
    first_line = (job_dir / "metrics.jsonl").read_text().splitlines()[0]
    subprocess.run(["scontrol", "requeue", job], check=True, capture_output=True)
    # Slurm holds a re-queued job back for about two minutes; let it start as soon as it is pending again
    for _ in range(300):
        state = subprocess.run(["squeue", "-h", "-j", job, "-o", "%T"], capture_output=True, text=True).stdout
        if state.strip() == "PENDING":
            subprocess.run(["scontrol", "update", f"JobId={job}", "StartTime=now"], capture_output=True)
            break
        time.sleep(0.2)
    out, _ = launcher.communicate(timeout=400)
    assert launcher.returncode == 0, out[-3000:]

    # the same run, uninterrupted and without Slurm
    straight = tmp_path / "straight"
    subprocess.run([PG_LAB, "seed=0", *RUN, f"hydra.run.dir={straight}"], check=True, capture_output=True, timeout=300)

    summary = json.loads((job_dir / "summary.json").read_text())
    assert summary["status"] == "finished"
    steps = [m["step"] for m in metrics(job_dir)]
    assert steps == sorted(set(steps)), "metrics repeat or go back after the requeue"
    assert (job_dir / "metrics.jsonl").read_text().splitlines()[0] == first_line  # continued, not restarted
    assert "resum" in (job_dir / "train.log").read_text().lower()  # it says it resumed
    assert comparable(job_dir) == comparable(straight)
    assert max_diff(straight / "checkpoint.pt", job_dir / "checkpoint.pt") == 0.0
    other = json.loads((sweep / "env=cartpole,seed=1,total_steps=40000" / "summary.json").read_text())
    assert other["status"] == "finished"


def test_an_optuna_study_on_shared_storage_fed_by_parallel_slurm_jobs(tmp_path):
    """Two trials x two seeds as four Slurm jobs at once; the study (a journal file) holds both trials, each
    the mean of its seeds."""
    import optuna
    from optuna.trial import TrialState

    from pg_lab.tuning import open_storage

    storage = tmp_path / "shared" / "study.journal"
    proc = subprocess.run(
        [PG_LAB, "-m", "experiment=tune_cartpole", "hydra/launcher=slurm", "hydra.launcher.cpus_per_task=1",
         "hydra.launcher.mem_gb=1", "hydra.sweeper.n_trials=2", "hydra.sweeper.n_jobs=2", "hydra.sweeper.seeds=[0,1]",
         f"hydra.sweeper.storage={storage}", "total_steps=2048", "wandb.mode=disabled", "progress_bar=false",
         f"hydra.sweep.dir={tmp_path / 'sweep'}"], capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    trials = optuna.load_study(study_name="tune_cartpole", storage=open_storage(str(storage), tmp_path)).trials
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 2
    for t in trials:
        finals = [json.loads((Path(d) / "summary.json").read_text())["final_return_mean"]
                  for d in t.user_attrs["job_dirs"]]
        assert len(finals) == 2 and t.value == sum(finals) / 2
    assert len(list((tmp_path / "sweep" / ".submitit").iterdir())) >= 1  # they went through Slurm

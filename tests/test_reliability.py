"""Exact resume, atomic checkpoints, signals, NaN tripwires, and a corpus of bad inputs."""

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import cli
import numpy as np
import pytest
import torch
from hydra.errors import HydraException
from omegaconf.errors import OmegaConfBaseException
from test_entrypoint import PG_LAB, metrics

from pg_lab.config import ConfigError
from pg_lab.envs.quadruped import DEFAULT_XML
from pg_lab.rollout import NonFiniteError
from pg_lab.rundir import RunDir, atomic_write


def load_checkpoint(path: Path) -> dict:
    return RunDir(path.parent).load_checkpoint()


def save_checkpoint(path: Path, state: dict) -> None:
    RunDir(path.parent).save_checkpoint(state)


# with a learning-rate schedule: a resume must not apply it twice (base rates are the configured ones)
ARGS = ["env=cartpole", "seed=3", "total_steps=20000", "algo.anneal_lr=true", "wandb.mode=disabled",
        "progress_bar=false"]


def tensors(x, path=""):
    if isinstance(x, torch.Tensor):
        yield path, x.detach().double().numpy()
    elif isinstance(x, np.ndarray) and x.dtype.kind in "fiub":
        yield path, x.astype(float)
    elif isinstance(x, dict):
        for k, v in x.items():
            yield from tensors(v, f"{path}/{k}")
    elif isinstance(x, (list, tuple)):
        for i, v in enumerate(x):
            yield from tensors(v, f"{path}/{i}")


def max_diff(a: Path, b: Path) -> float:
    ta, tb = dict(tensors(load_checkpoint(a))), dict(tensors(load_checkpoint(b)))
    assert ta.keys() == tb.keys() and ta
    return max(float(np.abs(ta[k] - tb[k]).max()) if ta[k].size else 0.0 for k in ta)


def start(run_dir: Path, args: list[str] = ARGS) -> subprocess.Popen:
    return cli.popen([PG_LAB, *args, f"hydra.run.dir={run_dir}"], stdout=subprocess.DEVNULL,
                     stderr=subprocess.PIPE, text=True)


def wait_for_checkpoint_after_first_update(proc: subprocess.Popen, run_dir: Path) -> None:
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        m, c = run_dir / "metrics.jsonl", run_dir / "checkpoint.pt"
        if m.exists() and c.exists() and c.stat().st_mtime_ns >= m.stat().st_mtime_ns - 10**9 and \
                len(m.read_text().splitlines()) >= 5:
            return
        time.sleep(0.02)
    raise AssertionError("the run ended (or stalled) before a mid-run checkpoint appeared")


@pytest.fixture(scope="module")
def straight(tmp_path_factory) -> Path:
    """The uninterrupted run that interrupted ones must equal."""
    run = tmp_path_factory.mktemp("straight") / "run"
    cli.run([PG_LAB, *ARGS, f"hydra.run.dir={run}"], check=True, capture_output=True, timeout=300)
    return run


def test_kill_9_and_relaunch_is_bit_identical_to_an_uninterrupted_run(tmp_path, straight):
    killed = tmp_path / "killed"
    proc = start(killed)
    wait_for_checkpoint_after_first_update(proc, killed)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (killed / "summary.json").exists()
    first_line = (killed / "metrics.jsonl").read_text().splitlines()[0]
    cli.run([PG_LAB, *ARGS, f"hydra.run.dir={killed}"], check=True, capture_output=True, timeout=300)
    assert max_diff(straight / "checkpoint.pt", killed / "checkpoint.pt") == 0.0
    steps = [m["step"] for m in metrics(killed)]
    assert steps == [m["step"] for m in metrics(straight)]  # every step once, none missing
    assert (killed / "metrics.jsonl").read_text().splitlines()[0] == first_line  # kept, not rewritten
    assert json.loads((killed / "summary.json").read_text())["status"] == "finished"


STEP_MODE = {  # episodes that straddle checkpoints: the envs' state is in the checkpoint
    "cartpole": pytest.param(["env=cartpole", "algo.batching=steps", "seed=3", "total_steps=20000"],
                             marks=pytest.mark.slow),
    "half_cheetah": pytest.param(["env=half_cheetah", "baseline=gae", "algo.batching=steps", "env.num_envs=4",
                                  "algo.num_steps=64", "seed=1", "total_steps=12000", "checkpoint_every=2"],
                                 marks=pytest.mark.slow),
}


@pytest.mark.parametrize("args", list(STEP_MODE.values()), ids=list(STEP_MODE))
def test_kill_9_and_relaunch_is_bit_identical_in_step_batching(tmp_path, args):
    args = [*args, "wandb.mode=disabled", "progress_bar=false"]
    cli.run([PG_LAB, *args, f"hydra.run.dir={tmp_path / 'straight'}"], check=True, capture_output=True,
            timeout=300)
    killed = tmp_path / "killed"
    proc = start(killed, args)
    wait_for_checkpoint_after_first_update(proc, killed)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert RunDir(killed).load_checkpoint()["rollout"]["envs"] is not None  # episodes in progress were saved
    cli.run([PG_LAB, *args, f"hydra.run.dir={killed}"], check=True, capture_output=True, timeout=300)
    assert max_diff(tmp_path / "straight" / "checkpoint.pt", killed / "checkpoint.pt") == 0.0
    assert [m["step"] for m in metrics(killed)] == [m["step"] for m in metrics(tmp_path / "straight")]
    strip = [{k: v for k, v in m.items() if not k.endswith("_s")} for m in metrics(killed)]
    assert strip == [{k: v for k, v in m.items() if not k.endswith("_s")} for m in metrics(tmp_path / "straight")]


@pytest.mark.slow  # subprocess-heavy: `make test-slow` (CI) runs it
def test_sigterm_checkpoints_and_says_interrupted_then_resumes(tmp_path, straight):
    run = tmp_path / "run"
    proc = start(run)
    wait_for_checkpoint_after_first_update(proc, run)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM
    assert f"resume with  pg-lab resume={run}" in err  # the exact command, the directory named
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "interrupted" and 0 < summary["total_steps"] < 20000
    assert load_checkpoint(run / "checkpoint.pt")["progress"]["step"] == summary["total_steps"]
    cli.run([PG_LAB, *ARGS, f"hydra.run.dir={run}"], check=True, capture_output=True, timeout=300)
    assert json.loads((run / "summary.json").read_text())["status"] == "finished"
    assert max_diff(straight / "checkpoint.pt", run / "checkpoint.pt") == 0.0


@pytest.mark.slow  # subprocess-heavy: `make test-slow` (CI) runs it
def test_resume_option_continues_a_run_dir(tmp_path):
    run = tmp_path / "first"
    cli.run([PG_LAB, "total_steps=3000", "wandb.mode=disabled", f"hydra.run.dir={run}"], check=True,
            capture_output=True, timeout=300)
    steps = load_checkpoint(run / "checkpoint.pt")["progress"]["step"]
    cli.run([PG_LAB, f"resume={run}", "total_steps=6000", f"hydra.run.dir={tmp_path / 'other'}"],
            check=True, capture_output=True, timeout=300)
    assert load_checkpoint(run / "checkpoint.pt")["progress"]["step"] > steps >= 3000
    assert [m["step"] for m in metrics(run)][-1] >= 6000
    # an override that would change the run is refused, not silently ignored
    proc = cli.run([PG_LAB, f"resume={run}", "total_steps=9000", "algo.gamma=0.5",
                           f"hydra.run.dir={tmp_path / 'other2'}"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "algo.gamma=0.5 would change it" in proc.stderr


def test_a_crash_during_the_checkpoint_write_leaves_the_previous_one_loadable(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, {"w": torch.ones(3)})

    def torn_write(obj, f):
        f.write(b"half a checkpoint")
        raise OSError("disk full")
    monkeypatch.setattr(torch, "save", torn_write)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, {"w": torch.zeros(3)})
    assert torch.equal(load_checkpoint(path)["w"], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]  # no temp file left behind


def test_atomic_write_replaces_whole_files(tmp_path):
    target = tmp_path / "summary.json"
    atomic_write(target, lambda f: f.write("one"))
    atomic_write(target, lambda f: f.write("two"))
    assert target.read_text() == "two"


def test_an_env_that_emits_nan_stops_the_run_naming_the_env(tmp_path, train_in_process):
    run = tmp_path / "run"
    with pytest.raises(NonFiniteError, match="environment returned a non-finite observation"):
        train_in_process("env.id=pg_lab_test/Count-v0", "+env.kwargs.nan_after=700", "+env.kwargs.max_len=20",
                         "env.num_envs=1", "algo.num_steps=100", "checkpoint_every=1", "total_steps=5000",
                         run_dir=run)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "failed" and "non-finite observation" in summary["error"]
    ckpt = load_checkpoint(run / "checkpoint.pt")  # the last good checkpoint is kept
    assert 0 < ckpt["progress"]["step"] <= 700
    assert "Traceback" in (run / "error.txt").read_text()


def test_a_policy_forced_to_nan_stops_the_run_naming_the_model(tmp_path, train_in_process, monkeypatch):
    from pg_lab import reinforce
    real = reinforce.policy_loss
    monkeypatch.setattr(reinforce, "policy_loss", lambda *a, **k: real(*a, **k) * float("nan"))
    with pytest.raises(NonFiniteError, match="non-finite policy loss.*the model, not the env"):
        train_in_process("total_steps=3000", run_dir=tmp_path / "run")
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["status"] == "failed"


def test_non_finite_parameters_are_caught_after_the_step(tmp_path, train_in_process, monkeypatch):
    real_step = torch.optim.Adam.step

    def poisoned(self, *a, **k):
        out = real_step(self, *a, **k)
        with torch.no_grad():
            self.param_groups[0]["params"][0].fill_(float("inf"))
        return out
    monkeypatch.setattr(torch.optim.Adam, "step", poisoned)
    with pytest.raises(NonFiniteError, match=r"non-finite policy parameters after the update: \['net.0.weight'\]"):
        train_in_process("total_steps=3000", run_dir=tmp_path / "run")


def test_wandb_failing_to_start_does_not_stop_training(tmp_path, train_in_process, monkeypatch, caplog):
    for key in ("WANDB_API_KEY", "WANDB_MODE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc: online mode has no key
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb-config"))
    ret = train_in_process("wandb.mode=online", "total_steps=3000", run_dir=tmp_path / "run")
    assert np.isfinite(ret)
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["status"] == "finished"
    assert len(metrics(tmp_path / "run")) > 0
    assert "W&B is off for this run" in caplog.text


# --------------------------------------------------------------------------------------------- bad inputs

def _malformed_mjcf(tmp: Path) -> str:
    (tmp / "bad.xml").write_text("<mujoco><worldbody><body>")
    return str(tmp / "bad.xml")


def _no_actuators_mjcf(tmp: Path) -> str:
    text = DEFAULT_XML.read_text()
    (tmp / "noact.xml").write_text(text[:text.index("<actuator>")] + "</mujoco>\n")
    return str(tmp / "noact.xml")


BAD_INPUTS = [  # (overrides, words the refusal must contain)
    (["env=nosuchenv"], ["nosuchenv"]),
    (["policy=nosuchhead"], ["nosuchhead"]),
    (["baseline=nosuchbaseline"], ["nosuchbaseline"]),
    (["optimizer=nosuchopt"], ["nosuchopt"]),
    (["gama=0.9"], ["gama"]),
    (["+gama=0.9"], ["gama"]),
    (["algo.gama=0.9"], ["gama"]),
    (["total_steps=abc"], ["total_steps"]),
    (["total_steps=-5"], ["total_steps"]),
    (["total_steps=0"], ["total_steps"]),
    (["seed=minus"], ["seed"]),
    (["seed=-1"], ["seed"]),
    (["algo.gamma=1.5"], ["algo.gamma"]),
    (["algo.gamma=0"], ["algo.gamma"]),
    (["algo.num_steps=0"], ["algo.num_steps"]),
    (["algo.ent_coef=-0.1"], ["algo.ent_coef"]),
    (["algo.max_grad_norm=-1"], ["algo.max_grad_norm"]),
    (["algo.estimator=causal"], ["estimator"]),
    (["baseline=gae", "algo.estimator=trajectory", "algo.batching=episodes"],
     ["baseline=gae", "algo.estimator=trajectory"]),
    (["baseline=none"], ["algo.batching=steps", "baseline=none"]),  # CartPole's default batching cuts episodes
    (["wandb.mode=sometimes"], ["mode"]),
    (["device=tpu"], ["device"]),
    (["env=cartpole", "policy=gaussian"], ["gaussian", "cartpole"]),
    (["env=pendulum", "policy=categorical"], ["categorical", "pendulum"]),
    (["env=cartpole", "policy=beta"], ["beta", "cartpole"]),
    (["+policy.hiden_sizes=[8]"], ["hiden_sizes"]),
    (["policy.hidden_sizes=abc"], ["policy.hidden_sizes"]),
    (["policy.activation=sigmoidx"], ["activation"]),
    (["env=pendulum", "policy=beta", "policy.init_std=0.9"], ["init_std"]),
    (["baseline=gae", "baseline.lam=2"], ["baseline.lam"]),
    (["baseline=mean", "baseline.momentum=1.5", "algo.batching=episodes"], ["baseline.momentum"]),
    (["baseline.lr=fast"], ["baseline.lr"]),
    (["env.num_envs=0"], ["env.num_envs"]),
    (["env.vectorization=threads"], ["env.vectorization"]),
    (["env.id=NoSuchEnv-v0"], ["NoSuchEnv"]),
    (["env=quadruped", "env.kwargs.xml_file=/nonexistent/robot.xml"], ["xml_file", "/nonexistent/robot.xml"]),
    (["env=quadruped", "env.kwargs.xml_file={malformed}"], ["bad.xml"]),
    (["env=quadruped", "env.kwargs.xml_file={noact}"], ["xml_file", "no actuators"]),
    # typos however they are added (Hydra's own hint for algo.gama suggests +algo.gama)
    (["+algo.gama=0.9"], ["algo.gama"]),
    (["+wandb.projct=x"], ["wandb.projct"]),
    # values that would fail at update 1, or train something meaningless, name their key before training
    (["optimizer.lr=inf"], ["optimizer.lr"]),
    (["optimizer.lr=-1"], ["optimizer.lr"]),
    (["baseline.lr=nan"], ["baseline.lr"]),
    (["algo.ent_coef=nan"], ["algo.ent_coef"]),
    (["algo.max_grad_norm=nan"], ["algo.max_grad_norm"]),
    (["algo.gamma=nan"], ["algo.gamma"]),
    (["policy.hidden_sizes=[0]"], ["policy.hidden_sizes"]),
    (["baseline.hidden_sizes=[64,-1]"], ["baseline.hidden_sizes"]),
    (["seed=4294967296"], ["seed"]),
    (["name=../../../x"], ["name"]),
    (["total_steps=2500.5"], ["total_steps", "1e6"]),
    (["env=gymnasium"], ["env.id"]),
]


@pytest.mark.parametrize("overrides,words", BAD_INPUTS, ids=[" ".join(o) for o, _ in BAD_INPUTS])
def test_bad_input_is_refused_before_training(tmp_path, train_in_process, overrides, words):
    overrides = [o.format(malformed=_malformed_mjcf(tmp_path), noact=_no_actuators_mjcf(tmp_path))
                 for o in overrides]
    run = tmp_path / "run"
    with pytest.raises((ConfigError, HydraException, OmegaConfBaseException)) as err:
        train_in_process("total_steps=2000", *overrides, run_dir=run)
    for word in words:
        assert word in str(err.value), f"{overrides}: {err.value}"
    assert not (run / "summary.json").exists() and not (run / "metrics.jsonl").exists()
    assert not (run / "checkpoint.pt").exists()


def test_total_steps_in_scientific_notation_is_accepted_when_integral(tmp_path, train_in_process):
    train_in_process("total_steps=2e3", run_dir=tmp_path / "run")
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["total_steps"] >= 2000
    assert "total_steps: 2000\n" in (tmp_path / "run" / ".hydra" / "config.yaml").read_text()  # stored as an int


def test_device_cuda_without_a_gpu_is_refused(tmp_path, train_in_process):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(ConfigError, match="device=cuda"):
        train_in_process("device=cuda", run_dir=tmp_path / "run")


def test_device_auto_picks_what_exists():
    from pg_lab.builder import resolve_device
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cpu").type == "cpu"


def test_resume_without_a_checkpoint_and_a_corrupt_checkpoint_are_refused(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    proc = cli.run([PG_LAB, f"resume={empty}", f"hydra.run.dir={tmp_path / 'x'}"], capture_output=True,
                   text=True, timeout=120)
    assert proc.returncode != 0 and f"resume={empty}: no checkpoint.pt" in proc.stderr
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "checkpoint.pt").write_bytes(b"not a checkpoint")
    proc = cli.run([PG_LAB, "wandb.mode=disabled", f"hydra.run.dir={corrupt}"], capture_output=True,
                   text=True, timeout=120)
    assert proc.returncode != 0 and "checkpoint" in proc.stderr and "corrupt" in proc.stderr
    assert not (corrupt / "summary.json").exists()


def test_an_unwritable_output_dir_is_refused(tmp_path):
    if os.geteuid() == 0:
        target = "/proc/pg_lab_cannot_write_here"  # even root cannot create directories in /proc
        named = "pg_lab_cannot_write_here"
    else:
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        target, named = str(locked / "run"), "locked"
    proc = cli.run([PG_LAB, "wandb.mode=disabled", f"hydra.run.dir={target}"], capture_output=True,
                   text=True, timeout=120)
    assert proc.returncode != 0
    assert named in proc.stderr + proc.stdout


def test_debug_turns_on_anomaly_detection_and_argument_validation(tmp_path, train_in_process, monkeypatch):
    from pg_lab.reinforce import Reinforce
    seen = []
    real = Reinforce.update

    def spy(*a, **k):
        seen.append((torch.is_anomaly_enabled(), torch.distributions.Distribution._validate_args))
        return real(*a, **k)
    monkeypatch.setattr(Reinforce, "update", spy)
    try:
        train_in_process("algo.debug=true", "total_steps=1000", run_dir=tmp_path / "run")
    finally:
        torch.autograd.set_detect_anomaly(False)
        torch.distributions.Distribution.set_default_validate_args(False)
    assert seen and all(a and v for a, v in seen)


def test_the_cuda_generator_is_part_of_the_rng_state(monkeypatch):
    """With device=cuda the policy samples from CUDA's generator: a resume must restore it too."""
    from pg_lab import resume
    saved, restored = [torch.tensor([1, 2, 3], dtype=torch.uint8)], []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: saved)
    monkeypatch.setattr(torch.cuda, "set_rng_state_all", restored.append)
    rng = resume.capture_rng()
    assert rng["cuda"] is saved
    resume.restore_rng(rng)
    assert restored == [saved]

"""pg_lab/Quadruped-v0: the env's contract, training through the entrypoint, evaluation with video."""

import ctypes.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cli
import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from test_entrypoint import pg_lab as run_pg_lab

import pg_lab  # noqa: F401  (registers the env)
from pg_lab.envs.quadruped import DEFAULT_XML

EVAL = str(Path(sys.executable).parent / "pg-lab-eval")


@pytest.fixture(scope="module")
def env():
    e = gym.make("pg_lab/Quadruped-v0")
    yield e
    e.close()


def test_checker_and_action_space(env):
    check_env(env.unwrapped, skip_render_check=True)
    assert env.action_space.shape == (12,)
    assert np.isfinite(env.action_space.low).all() and np.isfinite(env.action_space.high).all()
    assert env.observation_space.shape == (35,)
    assert env.spec.max_episode_steps == 1000


def test_reset_with_a_seed_is_deterministic(env):
    a, _ = env.reset(seed=3)
    b, _ = env.reset(seed=3)
    c, _ = env.reset(seed=4)
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_random_rollout_stays_finite_and_standing_pose_stands(env):
    env.reset(seed=0)
    env.action_space.seed(0)
    for _ in range(1000):
        obs, reward, terminated, truncated, _ = env.step(env.action_space.sample())
        assert np.isfinite(obs).all() and np.isfinite(reward)
        if terminated or truncated:
            env.reset()
    env.reset(seed=0)
    for _ in range(200):  # holding the middle of every action range keeps it up
        obs, _, terminated, _, _ = env.step(env.unwrapped.stand_pose)
        assert not terminated
    assert obs[0] > 0.2  # trunk height


def test_a_fallen_trunk_terminates(env):
    env.reset(seed=0)
    u = env.unwrapped
    qpos, qvel = u.data.qpos.copy(), u.data.qvel.copy()
    qpos[2] = 0.08                      # trunk on the floor ...
    qpos[3:7] = [0.0, 1.0, 0.0, 0.0]    # ... upside down
    u.set_state(qpos, qvel)
    _, _, terminated, _, _ = env.step(u.stand_pose)
    assert terminated


def test_control_cost_is_motor_effort(env):
    env.reset(seed=0)
    _, _, _, _, info = env.step(env.action_space.high)
    u = env.unwrapped
    effort = u.data.actuator_force / u._torque_limit
    assert info["reward_ctrl"] == pytest.approx(-u._ctrl_cost_weight * np.sum(effort**2))


@pytest.fixture(scope="module")
def trained_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("quadruped")
    for policy in ("gaussian", "beta"):
        run_pg_lab(root / policy, "env=quadruped", f"policy={policy}", "env.num_envs=2", "algo.num_steps=100",
                   "total_steps=1500")
    return root


@pytest.mark.parametrize("policy", ["gaussian", "beta"])
def test_trains_through_the_entrypoint(trained_runs, policy):
    summary = json.loads((trained_runs / policy / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["total_steps"] >= 1500


def test_a_user_mjcf_resolves_from_the_launch_directory(tmp_path):
    shutil.copy(DEFAULT_XML, tmp_path / "robot.xml")
    cmd = [sys.executable, "-m", "pg_lab", "env=quadruped", "env.kwargs.xml_file=robot.xml", "env.num_envs=1",
           "algo.num_steps=50", "total_steps=200", "wandb.mode=disabled", "hydra.run.dir=run", "progress_bar=false"]
    proc = cli.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    cmd[3] = "env.kwargs.xml_file=missing.xml"
    cmd[-2] = "hydra.run.dir=run2"
    proc = cli.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0 and "xml_file" in proc.stderr and "missing.xml" in proc.stderr


def _offscreen_gl() -> bool:
    return bool(ctypes.util.find_library("OSMesa") or ctypes.util.find_library("EGL"))


@pytest.mark.skipif(not _offscreen_gl(), reason="no offscreen GL (apt-get install libosmesa6, or EGL)")
def test_eval_writes_a_decodable_mp4(trained_runs):
    import imageio.v3 as iio
    run = trained_runs / "beta"
    video = run / "eval.mp4"
    proc = cli.run([EVAL, str(run), "--episodes", "2", "--max-steps", "15", "--video"],  # default path
                   capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    frames = np.stack(list(iio.imiter(video)))
    assert frames.shape[0] == 15 and frames.shape[-1] == 3 and frames.std() > 1  # an image, not a blank
    report = json.loads((run / "eval.json").read_text())
    assert len(report["episodes"]) == 2 and report["episodes"][0]["length"] == 15
    assert report["forward_speed_mean"] is not None
    assert "mean return" in proc.stdout


def test_eval_refuses_a_directory_without_a_checkpoint(tmp_path):
    proc = cli.run([EVAL, str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "must be a pg-lab run directory with a checkpoint" in proc.stderr


@pytest.mark.slow
@pytest.mark.skipif(not _offscreen_gl(), reason="no offscreen GL (apt-get install libosmesa6, or EGL)")
def test_eval_logs_results_and_video_to_wandb(trained_runs):
    run = trained_runs / "gaussian"
    proc = cli.run([EVAL, str(run), "--episodes", "1", "--max-steps", "10", "--video", str(run / "e.mp4"),
                           "--wandb"], capture_output=True, text=True, timeout=300,
                   env={**os.environ, "WANDB_SILENT": "true"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    (offline,) = (run / "wandb").glob("offline-run-*")  # the training run had W&B disabled: a new offline run
    assert list(offline.rglob("*.mp4")), "the video was not logged"
    out = subprocess.run([str(Path(sys.executable).parent / "wandb"), "leet", "inspect", "--summary", "--json",
                          str(offline)], capture_output=True, text=True, check=True, timeout=120).stdout
    assert json.loads(out)["summary"]["eval/length_mean"] == 10

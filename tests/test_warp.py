"""env.backend=warp (pg_lab.envs.warp_legged): the legged task's worlds on MuJoCo Warp compute what the CPU env
computes, reset as Gymnasium's same-step autoreset does, and train and resume through pg-lab.

Marked `warp` (make test-warp, which installs the `gpu` extra): MuJoCo Warp compiles its kernels once per machine
(about 1.5 min on 2 CPU cores) and then runs them on the CPU, slowly, which is how these tests run without a GPU.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from test_entrypoint import pg_lab as run_pg_lab

pytest.importorskip("mujoco_warp")
pytestmark = pytest.mark.warp

from pg_lab.envs.warp_legged import WarpLeggedVecEnv  # noqa: E402

DEVICE = os.environ.get("PG_LAB_WARP_DEVICE", "cpu")  # scripts/gpu_warp.sh runs the first two on cuda


@pytest.fixture(scope="module", params=["forward", "velocity"])
def pair(request):
    """A CPU env and two Warp worlds of the same task."""
    # the velocity task with its linear tracking term on too, so that every term is compared
    kwargs = {"task": request.param, **({"rewards": {"command_progress": 2.0}} if request.param == "velocity" else {})}
    cpu = gym.make("pg_lab/Legged-v0", **kwargs)
    warp = WarpLeggedVecEnv(2, device=DEVICE, **kwargs)
    yield cpu, warp
    cpu.close()
    warp.close()


def copy_state(cpu_env, warp: WarpLeggedVecEnv) -> None:
    """The CPU env's simulator and task state into every Warp world."""
    u = cpu_env.unwrapped
    f = lambda x: torch.as_tensor(np.asarray(x), dtype=torch.float32)  # noqa: E731
    for k in range(warp.num_envs):
        warp.qpos[k], warp.qvel[k] = f(u.data.qpos), f(u.data.qvel)
        warp.ctrl[k], warp.qacc_warmstart[k] = f(u.data.ctrl), f(u.data.qacc_warmstart)
    warp.command[:], warp.last_action[:], warp.air_time[:] = f(u.command), f(u.last_action), f(u.air_time)


def tilt(cpu_env, degrees: float) -> None:
    """Roll the CPU env's trunk by `degrees` about its x axis and drop it to the floor (a fall under way)."""
    u = cpu_env.unwrapped
    qpos, qvel = u.data.qpos.copy(), u.data.qvel.copy()
    half = np.deg2rad(degrees) / 2
    qpos[u.free_qpos + 3:u.free_qpos + 7] = [np.cos(half), np.sin(half), 0, 0]
    qpos[u.free_qpos + 2] = 0.12
    u.set_state(qpos, qvel)


def compare_steps(cpu, warp: WarpLeggedVecEnv, steps: int, tilt_at: int | None = None) -> dict[str, int]:
    """Step both backends from the CPU env's state, `steps` times, asserting that they agree; returns how often
    a fall, a collision and a touchdown were among the steps compared."""
    rng = np.random.default_rng(0)
    seen = {"fell": 0, "collision": 0, "feet_air_time": 0}
    for i in range(steps):
        if i == tilt_at:
            tilt(cpu, 75.0)
        copy_state(cpu, warp)
        action = rng.uniform(-1, 1, warp.nj)
        obs, reward, fell, _, info = cpu.step(action)
        w_obs, w_reward, w_fell, _, w_info = warp.step(torch.tensor(np.stack([action] * warp.num_envs)).float())
        w_final = w_info["final_obs"][0].cpu().numpy()
        # joint velocities are O(10) rad/s: a relative tolerance for them, an absolute one for the rest
        np.testing.assert_allclose(w_final, obs, rtol=1e-3, atol=2e-4, err_msg=f"observation, step {i}")
        assert float(w_reward[0]) == pytest.approx(reward, rel=1e-3, abs=1e-5), f"reward, step {i}"
        assert bool(w_fell[0]) == fell, f"termination, step {i}"
        terms = {k: v for k, v in info.items() if k.startswith("reward_")}
        assert set(terms) == {k for k in w_info if k.startswith("reward_")}
        for k, v in terms.items():
            assert float(w_info[k][0]) == pytest.approx(v, rel=1e-3, abs=1e-6), f"{k}, step {i}"
        seen["fell"] += fell
        seen["collision"] += info.get("reward_collision", 0.0) != 0.0
        seen["feet_air_time"] += info.get("reward_feet_air_time", 0.0) != 0.0
        if fell:
            cpu.reset(seed=i)
            warp.set_params(slice(None), **cpu.unwrapped.episode_params)
    return seen


def test_the_warp_worlds_compute_what_the_cpu_env_computes(pair):
    """From the same state and action, one env step of each backend gives the same observation, reward, reward
    terms and termination, within float32 tolerance (MuJoCo Warp runs in float32), step after step: standing,
    walking on random actions (touchdowns, the heading command) and falling (tilt, collisions, termination)."""
    cpu, warp = pair
    cpu.reset(seed=3)
    warp.reset(seed=3)
    seen = compare_steps(cpu, warp, 24, tilt_at=16)
    assert all(seen.values()), f"the steps compared did not exercise every case: {seen}"


def test_randomised_worlds_simulate_their_own_episode_parameters():
    """Friction, added trunk mass and motor strength are per world: a world given the CPU env's episode
    parameters steps as that env does; worlds draw their own at reset, within the ranges."""
    rand = {"friction": [0.5, 1.25], "added_mass": [-1.0, 2.0], "motor_strength": [0.8, 1.2]}
    cpu = gym.make("pg_lab/Legged-v0", randomization=rand)
    warp = WarpLeggedVecEnv(2, device=DEVICE, randomization=rand)
    warp.reset(seed=0)
    for k, (lo, hi) in rand.items():
        drawn = warp.params[k].cpu()
        assert ((drawn >= lo) & (drawn <= hi)).all() and drawn[0] != drawn[1], k
    cpu.reset(seed=5)
    params = cpu.unwrapped.episode_params
    assert params["motor_strength"] != 1.0 and params["added_mass"] != 0.0
    warp.set_params(slice(None), **params)
    compare_steps(cpu, warp, 6)
    cpu.close()
    warp.close()


def test_pushes_and_observation_noise_on_the_device():
    warp = WarpLeggedVecEnv(2, device=DEVICE, randomization={"push_interval_s": 0.04, "push_velocity": 0.5,
                                                              "obs_noise": 1.0})
    warp.reset(seed=0)
    warp._simulate = lambda: None  # the physics frozen: only the pushes move the trunk's velocity
    zero = torch.zeros(2, warp.nj, device=warp.device)
    before = warp.qvel[:, :2].clone()
    warp.step(zero)
    assert torch.equal(warp.qvel[:, :2], before)  # 0.02 s: not yet
    warp.step(zero)
    kick = (warp.qvel[:, :2] - before).abs()
    assert (kick > 0).all() and (kick <= 0.5).all()  # 0.04 s: a push of up to 0.5 m/s
    clean = warp.randomization["obs_noise"]
    noisy = warp._obs(warp._rotation())
    warp.randomization["obs_noise"] = 0.0
    exact = warp._obs(warp._rotation())
    warp.randomization["obs_noise"] = clean
    err = (noisy - exact).abs()[:, :-(warp.nj + 3)]  # the sensed parts; the last action and command are exact
    assert (err > 0).all() and (err <= warp.noise_levels + 1e-6).all()


def test_worlds_that_end_are_reset_in_the_same_step():
    """A fall or the time limit ends a world's episode; the step returns its last observation in final_obs and
    the new episode's first observation in obs (Gymnasium's SAME_STEP autoreset), and only those worlds reset."""
    envs = WarpLeggedVecEnv(3, device=DEVICE, max_episode_steps=4)
    obs, _ = envs.reset(seed=0)
    start = envs.qpos.clone()
    zero = torch.zeros(3, envs.nj, device=envs.device)
    for _ in range(2):
        envs.step(zero)
    envs.qpos[1, envs.fq + 2] = 0.05  # world 1 is on the ground: it falls at the next step
    obs, _, fell, truncated, info = envs.step(zero)
    assert fell.tolist() == [False, True, False] and not truncated.any()
    assert envs.elapsed.tolist() == [3, 0, 3]  # it starts again; the others go on
    assert torch.allclose(envs.qpos[1, envs.fq:envs.fq + 3], start[1, envs.fq:envs.fq + 3])
    assert not torch.equal(obs[1], info["final_obs"][1])
    assert torch.equal(obs[0], info["final_obs"][0])
    obs, _, fell, truncated, info = envs.step(zero)  # the 4th step of worlds 0 and 2: the time limit
    assert truncated.tolist() == [True, False, True] and not fell.any()
    assert envs.elapsed.tolist() == [0, 1, 0]


def test_the_command_curriculum_advances_each_world_by_the_cpu_envs_rule():
    """legged_gym's curriculum, per world: after an episode tracked well (no fall at its end, mean tracking
    kernel >= threshold) a world's level rises by `step` and its next command is drawn from that level's ranges;
    a world that fell or tracked poorly stays. The CPU env's rule gives the same levels for the same episodes,
    the tracking is accumulated from the steps, and the levels travel with the state."""
    from pg_lab.envs.legged import LeggedEnv

    curriculum = {"step": 0.25}
    warp = WarpLeggedVecEnv(3, device=DEVICE, task="velocity", command_curriculum=curriculum)
    warp.reset(seed=0)
    command = warp.command.cpu()
    assert ((command[:, 0] >= 0.5) & (command[:, 0] <= 1.0)).all() and (command[:, 1:] == 0).all()  # the start
    zero = torch.zeros(3, warp.nj, device=warp.device)
    _, _, fell, _, info = warp.step(zero)
    assert not fell.any() and warp.tracked_steps.tolist() == [1, 1, 1]
    kernel = info["reward_tracking_lin_vel"] / (warp.dt * warp.weights["tracking_lin_vel"])
    assert torch.allclose(warp.tracking.float(), kernel.float())
    assert info["curriculum_command_level"].tolist() == [0, 0, 0]
    # three finished episodes of 10 steps: tracked well, tracked well but fell at the end, tracked poorly
    episodes = [(9.0, 10, False), (9.0, 10, True), (5.0, 10, False)]
    for k, (total, steps, fell_at_end) in enumerate(episodes):
        warp.tracking[k], warp.tracked_steps[k], warp.last_fell[k] = total, steps, fell_at_end
    warp._reset_worlds(torch.ones(3, dtype=torch.bool, device=warp.device))
    cpu = LeggedEnv("go1", task="velocity", command_curriculum=curriculum)
    expected = []
    for total, steps, fell_at_end in episodes:
        cpu.command_level, cpu.episode_tracking = 0.0, [total, steps, fell_at_end]
        cpu._advance_curriculum()
        expected.append(cpu.command_level)
    cpu.close()
    assert warp.level.tolist() == expected == [0.25, 0.0, 0.0]
    assert warp.tracked_steps.tolist() == [0, 0, 0]
    vx, vy = warp.command[0, 0].item(), warp.command[0, 1].item()  # level 0.25: 3/4 of the start's, 1/4 of the full
    assert 0.75 * 0.5 + 0.25 * -1.0 <= vx <= 0.75 * 1.0 + 0.25 * 1.5 and abs(vy) <= 0.25 * 0.5 + 1e-6
    assert (warp.command[1:, 1:] == 0).all()
    state = warp.get_state()
    other = WarpLeggedVecEnv(3, device=DEVICE, task="velocity", command_curriculum=curriculum)
    other.set_state(state)
    assert other.level.tolist() == [0.25, 0.0, 0.0]
    warp.close()
    other.close()


def test_command_stages_advance_each_world_by_the_cpu_envs_rule():
    """Per world, as the CPU env: an episode tracked well raises its own stage's level (a turning one only if the
    yaw rate was tracked too); the next command comes from the newest open stage (focus 1), one of its boxes."""
    from pg_lab.envs.legged import LeggedEnv

    stages = [{"vx": [0.0, 0.0]}, [{"yaw": [0.5, 1.0]}, {"yaw": [-1.0, -0.5]}], {"vx": [-1.0, 1.5]}]
    curriculum = {"step": 0.5, "stages": stages, "focus": 1.0}
    warp = WarpLeggedVecEnv(4, device=DEVICE, task="velocity", command_curriculum=curriculum)
    warp.reset(seed=0)
    assert (warp.episode_stage == 0).all() and (warp.command == 0).all()
    _, _, _, _, info = warp.step(torch.zeros(4, warp.nj, device=warp.device))
    yaw_kernel = info["reward_tracking_ang_vel"] / (warp.dt * warp.weights["tracking_ang_vel"])
    assert torch.allclose(warp.yaw_tracking.float(), yaw_kernel.float())
    # (stage levels before, the episode's stage, its yaw command, linear and yaw kernel sums over 10 steps, a fall)
    episodes = [([0.5, 0.0, 0.0], 0, 0.0, 9.0, 0.0, False),   # straight, tracked: stage 0 passes, yaw not asked
                ([1.0, 0.0, 0.0], 1, 0.8, 9.0, 2.0, False),   # turning, yaw rate not tracked: stays
                ([1.0, 0.5, 0.0], 1, -0.8, 9.0, 9.0, False),  # turning, tracked: stage 1 passes
                ([1.0, 0.0, 0.0], 1, 0.8, 9.0, 9.0, True)]    # fell
    cpu = LeggedEnv("go1", task="velocity", command_curriculum=curriculum)
    expected = []
    for k, (levels, stage, yaw, lin, yaw_sum, fell) in enumerate(episodes):
        warp.stage_levels[k] = torch.tensor(levels, dtype=torch.float64)
        warp.episode_stage[k], warp.command[k] = stage, torch.tensor([0.0, 0.0, yaw])
        warp.tracking[k], warp.yaw_tracking[k], warp.tracked_steps[k], warp.last_fell[k] = lin, yaw_sum, 10, fell
        cpu.stage_levels, cpu.episode_stage, cpu.command = np.array(levels), stage, np.array([0.0, 0.0, yaw])
        cpu.episode_tracking, cpu.episode_yaw_tracking = [lin, 10, fell], yaw_sum
        cpu._advance_curriculum()
        expected.append((cpu.stage_levels.tolist(), cpu._newest_stage()))
    cpu.close()
    warp._reset_worlds(torch.ones(4, dtype=torch.bool, device=warp.device))
    assert [(levels, newest) for levels, newest in zip(warp.stage_levels.tolist(), warp.episode_stage.tolist())] \
        == expected == [([1.0, 0.0, 0.0], 1), ([1.0, 0.0, 0.0], 1), ([1.0, 1.0, 0.0], 2), ([1.0, 0.0, 0.0], 1)]
    command = warp.command.cpu()
    turning = command[[0, 1, 3]]
    assert (turning[:, :2] == 0).all() and ((turning[:, 2].abs() >= 0.5) & (turning[:, 2].abs() <= 1.0)).all()
    assert -1.0 <= command[2, 0] <= 1.5 and command[2, 1:].tolist() == [0.0, 0.0]
    assert warp.level.tolist() == [1 / 3, 1 / 3, 2 / 3, 1 / 3]
    other = WarpLeggedVecEnv(4, device=DEVICE, task="velocity", command_curriculum=curriculum)
    other.set_state(warp.get_state())
    assert torch.equal(other.stage_levels, warp.stage_levels) and torch.equal(other.episode_stage, warp.episode_stage)
    warp.close()
    other.close()


def test_a_training_run_on_warp_records_and_resumes_exactly(tmp_path):
    """pg-lab trains on the Warp backend (step batching, GAE) and a run continued from its checkpoint ends
    bit-identical to one that went straight through (the worlds' state is part of the checkpoint)."""
    common = ["env=go1", "env.backend=warp", "env.num_envs=3", "algo.num_steps=4", "algo.anneal_lr=false",
              "checkpoint_every=1"]
    straight, split = tmp_path / "straight", tmp_path / "split"
    run_pg_lab(straight, *common, "total_steps=24")
    run_pg_lab(split, *common, "total_steps=12")
    run_pg_lab(split, *common, "total_steps=24")
    a = torch.load(straight / "checkpoint.pt", weights_only=False)
    b = torch.load(split / "checkpoint.pt", weights_only=False)
    for key in a["policy"]:
        assert torch.equal(a["policy"][key], b["policy"][key]), key
    assert torch.equal(a["rollout"]["envs"]["qpos"], b["rollout"]["envs"]["qpos"])
    lines = (straight / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 2 and '"reward/forward_velocity"' in lines[-1]
    # pg-lab-eval evaluates a Warp-trained run on the CPU env (the same task)
    proc = subprocess.run([str(Path(sys.executable).parent / "pg-lab-eval"), str(straight), "--episodes", "1",
                           "--max-steps", "5"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and "forward speed" in proc.stdout, proc.stderr[-2000:]


def test_warp_needs_step_batching_and_the_legged_task(tmp_path):
    out = run_pg_lab(tmp_path / "a", "env=go1", "env.backend=warp", "algo.batching=episodes", "baseline=none",
                     "total_steps=8", check=False)
    assert out.returncode == 2 and "algo.batching=steps" in out.stderr
    out = run_pg_lab(tmp_path / "b", "env=cartpole", "env.backend=warp", "total_steps=8", check=False)
    assert out.returncode == 2 and "env.backend=warp runs the legged task" in out.stderr

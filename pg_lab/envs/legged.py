"""`pg_lab/Legged-v0`: any 12-joint (or n-joint) quadruped MJCF, with legged-robot RL's conventions.

The conventions of legged_gym, MuJoCo Playground and mjlab:
- **Actions** are joint-position offsets around the model's default pose (its `home` keyframe, or `default_pose`),
  in [-1, 1] per joint, scaled by `action_scale` radians. Torque-actuated models (`<motor>`) get a PD controller
  (`kp`, `kd`) that runs at every physics step inside MuJoCo: each motor becomes an affine actuator
  τ = kp (q* − q) − kd q̇, limited to the motor's own torque range. Position-servo models take the targets as they are.
- **Control rate** decoupled from physics: `control_dt` seconds per env step (50 Hz by default), physics at the
  MJCF's own timestep or `physics_dt`, with the MJCF's solver options unless `solver` sets some of them
  (`iterations`, `ls_iterations`, `cone`, `impratio`: fewer solver iterations are cheaper per step, above all on a
  GPU, where a batch of worlds runs as long as its slowest; env.backend=warp copies the same model).
- **Observations** in the trunk frame: projected gravity (3), linear velocity (3), angular velocity (3), joint
  positions relative to the default pose (n), joint velocities (n), the last action (n), the command
  (vx, vy, yaw rate) (3): 48 numbers for 12 joints.

Everything about the robot is read from the MJCF or named in config: the trunk (the body with the free joint, or
`trunk`), the feet (`feet`, or the collision geom of each leaf body), the default pose (the `home` keyframe, another
keyframe or a list of angles; a model with no keyframes stands at the middle of its joint ranges), the nominal
trunk height (the pose's, or `nominal_height`), the torque limits.

Tasks (`task`):
- `forward`: walk forward as fast as possible (reward `forward_velocity` × the trunk's velocity along the world x
  axis, capped at `max_forward_speed`), holding the heading: the `heading` penalty is the squared heading error
  (rad²), and the command's yaw entry tells the policy where to turn, as legged_gym's heading command: 0.5 × the
  heading error, clipped to ±1 rad/s. Without it the policy cannot see its heading at all (nothing in the
  trunk-frame observation tells yaw): a Go2 policy walked a circle of about 8 m radius (1.4 m/s of progress along x
  over its first 8 s, −0.12 m/s over a 20 s episode). The penalty is on the heading, not on the yaw rate: a
  yaw-rate tracking bonus (legged_gym's `tracking_ang_vel`) pays 0.5/s for standing still and takes part of it
  back for every step's wobble; with it Go1 and Go2 both stood at 0.4M and 0.54M steps.
- `velocity`: track a command (vx, vy, yaw rate) sampled per episode from `command_ranges`, with legged_gym's
  exponential tracking rewards (width `tracking_sigma`), and optionally `command_progress`, the forward task's
  linear reward along the command (|c| − |c − v|: 0 standing, |c| on it). `command_curriculum` (a dict, see
  CURRICULUM) draws the commands from narrow `start` ranges first and widens them towards `command_ranges` by
  `step` after every episode the env tracked well, as legged_gym's curriculum does; its level is in the step's
  info (`curriculum_command_level`, logged as curriculum/command_level). Both are off in this class and on in
  `env=quadruped_velocity`: alone, the linear term did not make Go1 track at 1M steps; with the curriculum it
  tracked forward commands of 0.5-1.5 m/s (docs/results/tuning_legged.md rows 24, 25).
Both add the usual regularisers (orientation, base height, vertical and roll/pitch velocity, torques, joint
acceleration, action rate, feet air time, collisions of other bodies with the ground), each a weight in
`rewards`; the reward per step is control_dt × Σ weight × term (legged_gym's scale), clipped at 0 from below
(`only_positive_rewards`, legged_gym's default: otherwise a young policy learns to fall at once, since an ended
episode collects no more penalties — seen here on Go1: episodes shrank from 1000 to 35 steps within 80k steps),
and a fall costs `termination` once, after the clip. An episode terminates on a fall: the trunk below
`termination_height` × nominal height, or tilted past `max_tilt_deg`. The alive bonus (`alive`, per second not
fallen) is off by default: it paid standing about as much as a first clumsy gait earns, and Go2 stood through
1.45M steps with it at 1.0; with the fall penalty instead, Go2 walked (0.60 m/s at 2M) and Go1 still did
(2.24 m/s at 2M) (docs/results/tuning_legged.md, rows 15–18).

Robustness (`randomization`, all off by default, drawn per episode): friction scale, added trunk mass (kg),
motor strength scale (the PD gains and torque limits), pushes (a random trunk velocity every `push_interval_s`),
observation noise. `terrain: rough` replaces a flat floor by a random height field.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import mujoco
import numpy as np
from gymnasium import spaces
from gymnasium.envs.mujoco.mujoco_env import MujocoEnv

from pg_lab.envs.quadruped import resolve_path

ASSETS = Path(__file__).with_name("assets")
MODELS = {"go1": ASSETS / "unitree_go1" / "go1.xml", "go2": ASSETS / "unitree_go2" / "go2.xml"}

REWARDS = {  # per second (× control_dt per step): legged_gym's regulariser weights; task and alive terms tuned here
    "forward_velocity": 2.0,    # task=forward: the trunk's velocity along the world x axis, capped at max_forward_speed
    "tracking_lin_vel": 1.0,    # task=velocity: exp(-|v_xy - command_xy|² / tracking_sigma)
    "tracking_ang_vel": 0.5,    # task=velocity: exp(-(yaw rate - command)² / tracking_sigma)
    "command_progress": 0.0,    # task=velocity: |command_xy| - |command_xy - v_xy| (m/s): 0 standing, |command| on it
    "heading": -0.25,           # task=forward: (heading error)², rad² (at -1.0 a drifting Go2's steps all clipped to 0)
    "alive": 0.0,               # per second not fallen (off: it paid for standing; the fall penalty does its job)
    "termination": -2.0,        # per fall, not per second, added after the clip (legged_gym's)
    "lin_vel_z": -2.0,          # vertical trunk velocity²
    "ang_vel_xy": -0.05,        # roll and pitch rates²
    "orientation": -1.0,        # |projected gravity xy|²: tilt
    "base_height": -10.0,       # (trunk height - nominal height)²
    "torques": -2.0e-4,         # Σ τ²
    "dof_acc": -2.5e-7,         # Σ q̈²
    "action_rate": -0.01,       # Σ (a_t - a_{t-1})²
    "feet_air_time": 1.0,       # Σ (min(air time, 1 s) - 0.5 s) at each touchdown (steps, not shuffles)
    "collision": -1.0,          # trunk, hip and thigh geoms touching the ground (not the feet or shanks)
}
RANDOMIZATION = {
    "friction": None,           # [low, high]: a scale of every geom's sliding friction
    "added_mass": None,         # [low, high] kg on the trunk
    "motor_strength": None,     # [low, high]: a scale of kp, kd and the torque limits
    "push_interval_s": None,    # seconds between pushes
    "push_velocity": 0.5,       # m/s: the largest horizontal trunk velocity a push adds
    "obs_noise": 0.0,           # scale of uniform noise on the observation (× each part's level below)
}
CURRICULUM = {  # task=velocity, `command_curriculum`: legged_gym's command curriculum, per env
    # the ranges at level 0: forward commands a standing robot cannot track (its kernel at 0.5 m/s is e^-1 < 0.8),
    # so only walking raises the level
    "start": {"vx": [0.5, 1.0], "vy": [0.0, 0.0], "yaw": [0.0, 0.0]},
    "step": 0.1,        # the level's rise (0 -> 1: start -> command_ranges) after each episode tracked well
    "threshold": 0.8,   # tracked well: no fall, and the tracking_lin_vel kernel's mean over the episode >= this
    # instead of `start`: commands learned one group at a time. A list of stages, each a box of ranges
    # ({vx: [lo, hi], ...}; a key left out is 0) or a list of boxes (one drawn per episode). Each stage has its own
    # level, raised by `step` only by episodes of that stage tracked well (no fall, the linear kernel's mean >=
    # threshold and, for a turning command, the yaw kernel's too: a standing robot cannot pass a turning stage, and
    # a trot's yaw wobble does not fail a straight one); the next stage opens when it reaches 1. An episode draws
    # the newest open stage with probability `focus`, else any open stage (rehearsal).
    "stages": None,
    "focus": 0.5,
}
COMMAND_KEYS = ("vx", "vy", "yaw")
SOLVER = {"iterations": int, "ls_iterations": int, "cone": {"pyramidal": mujoco.mjtCone.mjCONE_PYRAMIDAL,
                                                           "elliptic": mujoco.mjtCone.mjCONE_ELLIPTIC},
          "impratio": float}  # `solver`: the MJCF's <option> attributes it may override
_COMPILED: dict[tuple, tuple[mujoco.MjModel, list[bool]]] = {}
HEADING_GAIN = 0.5  # legged_gym's heading command: yaw rate = 0.5 × heading error, clipped to ±1 rad/s
# terrain=rough: the height field reaches this far from the start in x and y (m). A 20-s episode at Go1's 2.3 m/s
# covers 46 m; at 20 m the trained runners ran off its edge and fell (docs/results/tuning_legged.md row 33)
TERRAIN_HALF_SIZE = 50.0
NOISE_LEVELS = {"gravity": 0.05, "lin_vel": 0.1, "ang_vel": 0.2, "joint_pos": 0.01, "joint_vel": 1.5}


class LeggedEnv(MujocoEnv):
    metadata = {"render_modes": ["human", "rgb_array", "depth_array", "rgbd_tuple"]}

    def __init__(self, xml_file: str | Path | None = None, task: str = "forward", trunk: str | None = None,
                 feet: list[str] | None = None, default_pose: str | list[float] = "home",
                 nominal_height: float | None = None, kp: float = 20.0, kd: float = 0.5, action_scale: float = 0.5,
                 control_dt: float = 0.02, physics_dt: float | None = None, solver: dict[str, Any] | None = None,
                 max_forward_speed: float = 2.0,
                 command_ranges: dict[str, list[float]] | None = None, tracking_sigma: float = 0.25,
                 command_curriculum: dict[str, Any] | None = None,
                 rewards: dict[str, float] | None = None, only_positive_rewards: bool = True,
                 termination_height: float = 0.5,
                 max_tilt_deg: float = 60.0, reset_noise_scale: float = 0.05,
                 randomization: dict[str, Any] | None = None, terrain: str = "flat", terrain_roughness: float = 0.04,
                 render_mode: str | None = None, width: int = 480, height: int = 360, **kwargs):
        if task not in ("forward", "velocity"):
            raise ValueError(f"env.kwargs.task must be 'forward' or 'velocity', got {task!r}")
        if terrain not in ("flat", "rough"):
            raise ValueError(f"env.kwargs.terrain must be 'flat' or 'rough', got {terrain!r}")
        unknown = set(rewards or {}) - set(REWARDS)
        unknown |= {f"randomization.{k}" for k in set(randomization or {}) - set(RANDOMIZATION)}
        unknown |= {f"solver.{k}" for k in set(solver or {}) - set(SOLVER)}
        unknown |= {f"command_curriculum.{k}" for k in set(command_curriculum or {}) - set(CURRICULUM)}
        unknown |= {f"command_curriculum.start.{k}"
                    for k in set((command_curriculum or {}).get("start") or {}) - set(CURRICULUM["start"])}
        stages = _stages((command_curriculum or {}).get("stages"))
        unknown |= {f"command_curriculum.stages.{k}" for stage in stages or [] for box in stage
                    for k in set(box) - set(COMMAND_KEYS)}
        if unknown:
            raise ValueError(f"env.kwargs: unknown {', '.join(sorted(unknown))} (rewards: {', '.join(REWARDS)}; "
                             f"randomization: {', '.join(RANDOMIZATION)}; command_curriculum: "
                             f"{', '.join(CURRICULUM)}; solver: {', '.join(SOLVER)})")
        if (solver or {}).get("cone", "pyramidal") not in SOLVER["cone"]:
            raise ValueError(f"env.kwargs.solver.cone must be one of {', '.join(SOLVER['cone'])}, "
                             f"got {solver['cone']!r}")
        if command_curriculum is not None and task != "velocity":
            raise ValueError("env.kwargs.command_curriculum is for task=velocity (the forward task has no commands)")
        if xml_file is None or str(xml_file) in MODELS:
            path = MODELS[str(xml_file or "go1")]
        else:
            path = resolve_path(xml_file)
        self.task, self.kp, self.kd, self.action_scale = task, kp, kd, action_scale
        self.terrain, self.terrain_roughness = terrain, terrain_roughness
        self.max_forward_speed, self.tracking_sigma = max_forward_speed, tracking_sigma
        self.command_ranges = {"vx": [-1.0, 1.5], "vy": [-0.5, 0.5], "yaw": [-1.0, 1.0], **(command_ranges or {})}
        self.curriculum = None if command_curriculum is None else {**CURRICULUM, **command_curriculum}
        if self.curriculum is not None:  # a range left out of `start` starts as CURRICULUM's
            self.curriculum["start"] = {**CURRICULUM["start"], **(command_curriculum.get("start") or {})}
        self.command_level = 0.0 if self.curriculum else 1.0  # 1: the full command_ranges (stages: all passed)
        self.episode_tracking = [0.0, 0, False]  # the tracking kernel's sum over the episode, its steps, a fall
        self.stages = stages
        self.stage_levels = np.zeros(len(stages or []))  # stages: each one's level (1: passed, the next one open)
        self.episode_stage, self.episode_yaw_tracking = 0, 0.0  # stages: this episode's, the yaw kernel's sum
        self.weights = {**REWARDS, **(rewards or {})}
        self.only_positive_rewards = only_positive_rewards
        self.randomization = {**RANDOMIZATION, **(randomization or {})}
        self.termination_height, self.max_tilt = termination_height, np.deg2rad(max_tilt_deg)
        self.reset_noise_scale = reset_noise_scale
        self._trunk_name, self._feet_names, self._pose_spec = trunk, feet, default_pose
        self._nominal_height = nominal_height
        camera = {"distance": 1.5, "elevation": -15.0, "azimuth": 90.0}
        super().__init__(str(path), 1, observation_space=None, render_mode=render_mode, width=width,
                         height=height, default_camera_config=camera, **kwargs)
        if physics_dt is not None:
            self.model.opt.timestep = physics_dt
        for key, value in (solver or {}).items():
            setattr(self.model.opt, key, SOLVER[key][value] if key == "cone" else SOLVER[key](value))
        self.frame_skip = max(1, round(control_dt / self.model.opt.timestep))  # physics steps per control step
        self._control_dt = self.model.opt.timestep * self.frame_skip
        self.metadata = {**self.metadata, "render_fps": round(1 / self.dt)}
        n = self.nj
        self.action_space = spaces.Box(-1.0, 1.0, (n,), np.float32)
        self.observation_space = spaces.Box(-np.inf, np.inf, (9 + 3 * n + 3,), np.float64)
        self.command = np.zeros(3)
        self.last_action = np.zeros(n)
        self.air_time = np.zeros(len(self.feet))
        self.steps_since_push = 0
        self.episode_params = {"friction": 1.0, "added_mass": 0.0, "motor_strength": 1.0}

    # -- building the model ------------------------------------------------------------------------------------------
    def _initialize_simulation(self):
        """Compile the MJCF once per process and settings (meshes make it slow: ~1 s for Go1) and give each env
        its own copy (randomisation changes it)."""
        key = (self.fullpath, Path(self.fullpath).stat().st_mtime, self.terrain, self.terrain_roughness, self.kp,
               self.kd)
        if key not in _COMPILED:
            _COMPILED[key] = self._compile()
        model, self.pd = _COMPILED[key]
        model = copy.copy(model)
        model.vis.global_.offwidth = max(model.vis.global_.offwidth, self.width)
        model.vis.global_.offheight = max(model.vis.global_.offheight, self.height)
        data = mujoco.MjData(model)
        self._read_robot(model)
        return model, data

    def _compile(self) -> tuple[mujoco.MjModel, list[bool]]:
        try:
            spec = mujoco.MjSpec.from_file(self.fullpath)
        except ValueError as e:
            raise ValueError(f"env.kwargs.xml_file: MuJoCo cannot load {self.fullpath}: {e}") from None
        world_geoms = spec.worldbody.geoms
        has_floor = any(g.type in (mujoco.mjtGeom.mjGEOM_PLANE, mujoco.mjtGeom.mjGEOM_HFIELD) for g in world_geoms)
        if self.terrain == "rough":
            for g in world_geoms:
                if g.type == mujoco.mjtGeom.mjGEOM_PLANE:
                    g.delete()
            self._add_terrain(spec)
        elif not has_floor:  # a robot-only MJCF: a checkered floor (the checks show the motion on video)
            tex = spec.add_texture(name="pg_lab_grid", type=mujoco.mjtTexture.mjTEXTURE_2D, width=300, height=300,
                                   builtin=mujoco.mjtBuiltin.mjBUILTIN_CHECKER, rgb1=[0.85, 0.85, 0.85],
                                   rgb2=[0.7, 0.7, 0.7], mark=mujoco.mjtMark.mjMARK_EDGE, markrgb=[0.5, 0.5, 0.5])
            mat = spec.add_material(name="pg_lab_grid", texrepeat=[8, 8], texuniform=True)
            mat.textures[mujoco.mjtTextureRole.mjTEXROLE_RGB] = tex.name
            spec.worldbody.add_geom(name="floor", type=mujoco.mjtGeom.mjGEOM_PLANE, size=[0, 0, 0.05],
                                    material=mat.name)
        if not any(True for _ in spec.worldbody.lights):
            spec.worldbody.add_light(pos=[0, 0, 5], dir=[0, 0, -1], type=mujoco.mjtLightType.mjLIGHT_DIRECTIONAL)
        pd = []
        for act in spec.actuators:
            motor = act.biastype == mujoco.mjtBias.mjBIAS_NONE and act.gaintype == mujoco.mjtGain.mjGAIN_FIXED
            pd.append(motor)
            if motor:  # τ = kp (target - q) - kd q̇, limited to the motor's torque range
                lo, hi = act.ctrlrange
                limit = max(abs(lo), abs(hi)) if hi > lo and act.ctrllimited != mujoco.mjtLimited.mjLIMITED_FALSE \
                    else np.inf
                act.gainprm[0] = self.kp
                act.biastype = mujoco.mjtBias.mjBIAS_AFFINE
                act.biasprm[:3] = [0.0, -self.kp, -self.kd]
                if np.isfinite(limit):
                    act.forcelimited = mujoco.mjtLimited.mjLIMITED_TRUE
                    act.forcerange = [-limit, limit]
                act.ctrllimited = mujoco.mjtLimited.mjLIMITED_FALSE
        try:
            model = spec.compile()
        except ValueError as e:
            raise ValueError(f"env.kwargs.xml_file: MuJoCo cannot compile {self.fullpath}: {e}") from None
        return model, pd

    def _add_terrain(self, spec) -> None:
        """A fixed random height field centred on the start, 0.25 m cells, TERRAIN_HALF_SIZE m to each side."""
        rng = np.random.default_rng(0)
        size = TERRAIN_HALF_SIZE
        rows = int(round(2 * size / 0.25))
        heights = rng.uniform(0, 1, (rows, rows))
        heights = (heights + np.roll(heights, 1, 0) + np.roll(heights, 1, 1) + np.roll(heights, (1, 1), (0, 1))) / 4
        spec.add_hfield(name="terrain", size=[size, size, max(self.terrain_roughness, 1e-3), 0.1], nrow=rows,
                        ncol=rows, userdata=heights.ravel().tolist())
        spec.worldbody.add_geom(name="floor", type=mujoco.mjtGeom.mjGEOM_HFIELD, hfieldname="terrain",
                                pos=[0, 0, -self.terrain_roughness / 2], rgba=[0.6, 0.55, 0.5, 1])

    def _read_robot(self, model) -> None:
        free = [j for j in range(model.njnt) if model.jnt_type[j] == mujoco.mjtJoint.mjJNT_FREE]
        if not free:
            raise ValueError(f"env.kwargs.xml_file: {self.fullpath} has no free joint (a floating trunk)")
        self.trunk = model.body(self._trunk_name).id if self._trunk_name else int(model.jnt_bodyid[free[0]])
        if model.nu == 0:
            raise ValueError(f"env.kwargs.xml_file: {self.fullpath} has no actuators")
        joints = model.actuator_trnid[:, 0]
        self.nj = model.nu
        self.qpos_idx, self.qvel_idx = model.jnt_qposadr[joints], model.jnt_dofadr[joints]
        self.joint_range = model.jnt_range[joints].copy()
        limited = model.jnt_limited[joints].astype(bool)
        self.joint_range[~limited] = [-np.inf, np.inf]
        if isinstance(self._pose_spec, str):
            key = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_KEY, self._pose_spec)
            if key < 0 and (self._pose_spec != "home" or model.nkey > 0):
                raise ValueError(f"env.kwargs.default_pose: {self.fullpath} has no keyframe {self._pose_spec!r}: "
                                 "name one of its keyframes, or give the joint angles as a list")
            self.key_qpos = model.qpos0.copy()
            key_given = key >= 0
            if key >= 0:
                self.key_qpos = model.key(key).qpos.copy()
            else:  # a model without keyframes: stand at the middle of each joint's range, as the MJCF places it
                mid = self.joint_range.mean(axis=1)
                self.key_qpos[self.qpos_idx] = np.where(np.isfinite(mid), mid, 0.0)
        else:
            self.key_qpos, key_given = model.qpos0.copy(), False
            pose = np.asarray(self._pose_spec, dtype=float)
            if pose.shape != (self.nj,):
                raise ValueError(f"env.kwargs.default_pose: {len(pose)} angles for {self.nj} actuated joints")
            self.key_qpos[self.qpos_idx] = pose
        self.default_pose = self.key_qpos[self.qpos_idx].copy()
        self.free_qpos, self.free_qvel = int(model.jnt_qposadr[free[0]]), int(model.jnt_dofadr[free[0]])
        self.nominal_height = float(self._nominal_height or (self.key_qpos[self.free_qpos + 2] if key_given
                                                             else self._settled_height(model)))
        self.feet = self._find_feet(model)
        # collisions: ground contacts of the trunk, hips and thighs; the feet's bodies and the shanks that carry them
        # are left out (Go1's calf capsule touches the ground beside the foot when it stands at its home pose)
        foot_bodies = set(model.geom_bodyid[self.feet].tolist())
        lower_leg = foot_bodies | {int(model.body_parentid[b]) for b in foot_bodies}
        self.foot_body_geoms = {g for g in range(model.ngeom) if int(model.geom_bodyid[g]) in lower_leg}
        self.is_floor = model.geom_bodyid == 0  # world geoms: the floor or terrain
        self.base_kp, self.base_kd = model.actuator_gainprm[:, 0].copy(), -model.actuator_biasprm[:, 2].copy()
        self.base_force = model.actuator_forcerange.copy()
        self.base_friction = model.geom_friction[:, 0].copy()
        self.base_mass = float(model.body_mass[self.trunk])

    def _settled_height(self, model, seconds: float = 1.0) -> float:
        """The trunk height after holding the default pose for `seconds` (a pose without a keyframe's height: the
        MJCF places the robot above the floor)."""
        data = mujoco.MjData(model)
        data.qpos[:] = self.key_qpos
        data.ctrl[:] = self.default_pose
        mujoco.mj_step(model, data, nstep=int(seconds / model.opt.timestep))
        return float(data.qpos[self.free_qpos + 2])

    def _find_feet(self, model) -> np.ndarray:
        if self._feet_names:
            return np.array([model.geom(n).id for n in self._feet_names])
        parents = set(model.body_parentid[1:])
        leaves = [b for b in range(1, model.nbody) if b not in parents and b != self.trunk]
        feet = []
        for b in leaves:
            geoms = [g for g in range(model.ngeom) if model.geom_bodyid[g] == b
                     and (model.geom_contype[g] or model.geom_conaffinity[g])]
            spheres = [g for g in geoms if model.geom_type[g] == mujoco.mjtGeom.mjGEOM_SPHERE]
            if spheres or geoms:
                feet.append((spheres or geoms)[0])
        if not feet:
            raise ValueError(f"env.kwargs.feet: no foot geoms found in {self.fullpath}: name them")
        return np.array(feet)

    # -- the env -----------------------------------------------------------------------------------------------------
    @property
    def dt(self) -> float:
        """Seconds per env step (MujocoEnv's own property reads the model on each of ~15 calls a step)."""
        return self.__dict__.get("_control_dt") or super().dt

    @property
    def rotation(self) -> np.ndarray:
        return self.data.xmat[self.trunk].reshape(3, 3)

    def _gravity(self) -> np.ndarray:
        """Gravity's direction in the trunk frame, Rᵀ (0, 0, −1): minus the rotation's last row."""
        return -self.data.xmat[self.trunk][6:9]

    def _velocities(self) -> tuple[np.ndarray, np.ndarray]:
        """The trunk's linear and angular velocity in its own frame."""
        r = self.rotation
        lin = r.T @ self.data.qvel[self.free_qvel:self.free_qvel + 3]
        ang = self.data.qvel[self.free_qvel + 3:self.free_qvel + 6]  # a free joint's angular velocity is local
        return lin, ang

    def _get_obs(self) -> np.ndarray:
        lin, ang = self._velocities()
        parts = {"gravity": self._gravity(), "lin_vel": lin, "ang_vel": ang,
                 "joint_pos": self.data.qpos[self.qpos_idx] - self.default_pose,
                 "joint_vel": self.data.qvel[self.qvel_idx]}
        noise = self.randomization["obs_noise"]
        if noise:
            parts = {k: v + noise * NOISE_LEVELS[k] * self.np_random.uniform(-1, 1, v.shape)
                     for k, v in parts.items()}
        return np.concatenate([*parts.values(), self.last_action, self.command])

    def step(self, action):
        action = np.clip(np.asarray(action, dtype=np.float64), -1.0, 1.0)
        target = np.clip(self.default_pose + self.action_scale * action, *self.joint_range.T)
        qvel_before = self.data.qvel[self.qvel_idx].copy()
        self._maybe_push()
        self.do_simulation(target, self.frame_skip)
        lin, ang = self._velocities()
        world_vel = self.data.qvel[self.free_qvel:self.free_qvel + 3]
        terms = self._reward_terms(action, lin, ang, world_vel, qvel_before)  # for the command it was given
        if self.task == "forward":
            self.command[2] = self._heading_command()
        dt, weights = self.dt, self.weights
        reward = dt * sum(weights[k] * v for k, v in terms.items())
        if self.only_positive_rewards:  # legged_gym's guard: penalties never make ending the episode early pay
            reward = max(reward, 0.0)
        self.last_action = action
        gravity = self._gravity()
        height = self.data.qpos[self.free_qpos + 2]
        fell = bool(height < self.termination_height * self.nominal_height or
                    np.arccos(np.clip(-gravity[2], -1, 1)) > self.max_tilt)
        if self.curriculum is not None:
            self.episode_tracking = [self.episode_tracking[0] + self._tracking_kernel(lin),
                                     self.episode_tracking[1] + 1, fell]
            if self.stages is not None:
                self.episode_yaw_tracking += float(np.exp(-(self.command[2] - ang[2]) ** 2 / self.tracking_sigma))
        if weights["termination"]:  # after the clip, as in legged_gym: a fall costs this however the step went
            terms_info = {"termination": weights["termination"] if fell else 0.0}
            reward += terms_info["termination"]
        else:
            terms_info = {}
        info = {"x_position": float(self.data.qpos[self.free_qpos]), "x_velocity": float(world_vel[0]),
                "forward_speed": float(lin[0]), "velocity": np.array([lin[0], lin[1], ang[2]]),
                "command": self.command.copy(), "fall": fell,
                **{f"reward_{k}": dt * weights[k] * v for k, v in terms.items()},
                **{f"reward_{k}": v for k, v in terms_info.items()}}
        if self.curriculum is not None:  # logged: curriculum/command_level (0: the start ranges, 1: command_ranges)
            info["curriculum_command_level"] = self.command_level
        if self.render_mode == "human":
            self.render()
        return self._get_obs(), float(reward), fell, False, info

    def _reward_terms(self, action, lin, ang, world_vel, qvel_before) -> dict[str, float]:
        d = self.data
        terms = {}
        if self.task == "forward":  # progress along the world's x axis: running in circles earns nothing (in the
            # trunk's own frame it would: a Go1 policy learned to circle at 1.9 m/s while getting 0.17 m/s ahead)
            terms["forward_velocity"] = min(world_vel[0], self.max_forward_speed)
            terms["heading"] = self._yaw() ** 2
        else:
            terms["tracking_lin_vel"] = self._tracking_kernel(lin)
            terms["tracking_ang_vel"] = np.exp(-(self.command[2] - ang[2]) ** 2 / self.tracking_sigma)
            # the forward task's reward along the command: it grows linearly from standing (0) to tracking
            # (|command|), where the exponential kernels above are flat far from the command
            terms["command_progress"] = float(np.hypot(*self.command[:2]) - np.hypot(*(self.command[:2] - lin[:2])))
        dt = self.dt
        gravity = self._gravity()
        torque = d.actuator_force
        contact_geoms = self._ground_contacts()
        in_contact = np.array([f in contact_geoms for f in self.feet])
        self.air_time += dt
        touchdown = in_contact & (self.air_time > dt)
        # capped at 1 s a step: a foot held up for seconds is no gait (a Go1 policy learned to hold one up)
        air = float((np.minimum(self.air_time, 1.0) - 0.5) @ touchdown)
        if self.task == "velocity" and np.linalg.norm(self.command[:2]) < 0.1:
            air = 0.0  # standing still is no reason to step
        self.air_time[in_contact] = 0.0
        acc = (d.qvel[self.qvel_idx] - qvel_before) / dt
        rate = action - self.last_action
        terms.update({  # squared norms as dot products: np.sum's dispatch costs more than the sums of 2-12 numbers
            "alive": 1.0,
            "lin_vel_z": lin[2] ** 2,
            "ang_vel_xy": ang[0] ** 2 + ang[1] ** 2,
            "orientation": gravity[0] ** 2 + gravity[1] ** 2,
            "base_height": (d.qpos[self.free_qpos + 2] - self.nominal_height) ** 2,
            "torques": float(torque @ torque),
            "dof_acc": float(acc @ acc),
            "action_rate": float(rate @ rate),
            "feet_air_time": air,
            "collision": float(len(contact_geoms - self.foot_body_geoms)),
        })
        return {k: float(v) for k, v in terms.items() if self.weights.get(k, 0.0) != 0.0}

    def _tracking_kernel(self, lin) -> float:
        """legged_gym's linear-velocity tracking kernel, 1 on the command."""
        return float(np.exp(-np.sum((self.command[:2] - lin[:2]) ** 2) / self.tracking_sigma))

    def _command_ranges_now(self) -> dict[str, list[float]]:
        """The ranges commands are drawn from: the curriculum's, between its start (level 0) and command_ranges."""
        if self.curriculum is None:
            return self.command_ranges
        a, start = self.command_level, self.curriculum["start"]
        return {k: [(1 - a) * s + a * e for s, e in zip(start[k], self.command_ranges[k])] for k in start}

    def _advance_curriculum(self) -> None:
        """At an episode's end: one `step` up after an episode tracked well (no fall, mean kernel >= threshold);
        with stages, the level of the episode's stage, and for a turning command only if the yaw rate was tracked as
        well (a Go1 trot on straight commands tracked its zero yaw rate with a mean kernel of 0.75)."""
        total, steps, fell = self.episode_tracking
        threshold = self.curriculum["threshold"]
        well = steps and not fell and total / steps >= threshold
        if self.stages is None:
            if well:
                self.command_level = min(1.0, self.command_level + self.curriculum["step"])
        else:
            if well and (self.command[2] == 0.0 or self.episode_yaw_tracking / steps >= threshold):
                s = self.episode_stage
                self.stage_levels[s] = min(1.0, self.stage_levels[s] + self.curriculum["step"])
            self.command_level = float(self.stage_levels.mean())
            self.episode_yaw_tracking = 0.0
        self.episode_tracking = [0.0, 0, False]

    def _newest_stage(self) -> int:
        """The first stage not passed yet (the last one once all are)."""
        open_ = np.flatnonzero(self.stage_levels < 1.0)
        return int(open_[0]) if len(open_) else len(self.stages) - 1

    def _draw_staged_command(self) -> np.ndarray:
        newest = self._newest_stage()
        rehearse = self.np_random.random() >= self.curriculum["focus"]
        self.episode_stage = int(self.np_random.integers(newest + 1)) if rehearse else newest
        boxes = self.stages[self.episode_stage]
        box = boxes[int(self.np_random.integers(len(boxes)))]
        return np.array([self.np_random.uniform(*box[k]) if k in box else 0.0 for k in COMMAND_KEYS])

    def _yaw(self) -> float:
        """The trunk's heading, radians from the world's x axis."""
        w, x, y, z = self.data.qpos[self.free_qpos + 3:self.free_qpos + 7]
        return float(np.arctan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z)))

    def _heading_command(self) -> float:
        """The yaw rate that turns the trunk back to heading 0 (the world's x axis)."""
        return float(np.clip(-HEADING_GAIN * self._yaw(), -1.0, 1.0))

    def _ground_contacts(self) -> set[int]:
        """Robot geoms touching the floor."""
        pairs = self.data.contact.geom[:self.data.ncon]
        on_floor = self.is_floor[pairs]
        return set(pairs[on_floor[:, 0], 1].tolist()) | set(pairs[on_floor[:, 1], 0].tolist())

    def _maybe_push(self) -> None:
        interval = self.randomization["push_interval_s"]
        if not interval:
            return
        self.steps_since_push += 1
        if self.steps_since_push * self.dt >= interval:
            self.steps_since_push = 0
            push = self.randomization["push_velocity"]
            self.data.qvel[self.free_qvel:self.free_qvel + 2] += self.np_random.uniform(-push, push, 2)

    def reset_model(self) -> np.ndarray:
        self._randomize()
        qpos = self.key_qpos.copy()
        noise = self.reset_noise_scale
        qpos[self.qpos_idx] += self.np_random.uniform(-noise, noise, self.nj)
        qvel = np.zeros(self.model.nv)
        qvel[self.qvel_idx] = self.np_random.uniform(-noise, noise, self.nj)
        self.set_state(qpos, qvel)
        self.data.ctrl[:] = self.default_pose
        self.last_action = np.zeros(self.nj)
        self.air_time = np.zeros(len(self.feet))
        self.steps_since_push = 0
        if self.task == "velocity":
            if self.curriculum is not None:
                self._advance_curriculum()
            if self.stages is not None:
                self.command = self._draw_staged_command()
            else:
                r = self._command_ranges_now()
                self.command = np.array([self.np_random.uniform(*r[k]) for k in COMMAND_KEYS])
        else:
            self.command = np.array([0.0, 0.0, self._heading_command()])
        return self._get_obs()

    def render(self):
        """The default camera follows the trunk (side view)."""
        if self.render_mode in ("rgb_array", "depth_array", "rgbd_tuple", "human") and \
                self.mujoco_renderer.camera_id in (None, -1):
            self.mujoco_renderer._get_viewer(self.render_mode).cam.lookat[:] = self.data.xpos[self.trunk]
        return super().render()

    def _get_reset_info(self) -> dict:
        return {"x_position": float(self.data.qpos[self.free_qpos]), "command": self.command.copy()}

    def set_command(self, vx: float, vy: float = 0.0, yaw: float = 0.0) -> np.ndarray:
        """Fix the command (evaluation; the next reset samples a new one) and return the observation with it."""
        self.command = np.array([vx, vy, yaw], dtype=float)
        return self._get_obs()

    def _randomize(self) -> None:
        r = self.randomization
        p = {"friction": 1.0, "added_mass": 0.0, "motor_strength": 1.0}
        for k in p:
            if r[k] is not None:
                p[k] = float(self.np_random.uniform(*r[k]))
        self._apply_params(p)

    def _apply_params(self, p: dict) -> None:
        m = self.model
        m.geom_friction[:, 0] = self.base_friction * p["friction"]
        m.body_mass[self.trunk] = self.base_mass + p["added_mass"]
        pd = np.array(self.pd)
        m.actuator_gainprm[pd, 0] = self.base_kp[pd] * p["motor_strength"]
        m.actuator_biasprm[pd, 1] = -self.base_kp[pd] * p["motor_strength"]
        m.actuator_biasprm[pd, 2] = -self.base_kd[pd] * p["motor_strength"]
        m.actuator_forcerange[pd] = self.base_force[pd] * p["motor_strength"]
        self.episode_params = p

    # -- exact resume (pg_lab.envs.state) ----------------------------------------------------------------------------
    def extra_state(self) -> dict:
        return {"command": self.command.copy(), "last_action": self.last_action.copy(),
                "air_time": self.air_time.copy(), "steps_since_push": self.steps_since_push,
                "episode_params": dict(self.episode_params), "command_level": self.command_level,
                "episode_tracking": list(self.episode_tracking), "stage_levels": self.stage_levels.copy(),
                "episode_stage": self.episode_stage, "episode_yaw_tracking": self.episode_yaw_tracking}

    def load_extra_state(self, state: dict) -> None:
        self.command, self.last_action = state["command"].copy(), state["last_action"].copy()
        self.air_time, self.steps_since_push = state["air_time"].copy(), state["steps_since_push"]
        if "command_level" in state:  # checkpoints from before the curriculum had none
            self.command_level, self.episode_tracking = state["command_level"], list(state["episode_tracking"])
        if "stage_levels" in state:  # and before its stages
            self.stage_levels = state["stage_levels"].copy()
            self.episode_stage, self.episode_yaw_tracking = state["episode_stage"], state["episode_yaw_tracking"]
        self._apply_params(state["episode_params"])


def _stages(stages) -> list[list[dict[str, list[float]]]] | None:
    """`command_curriculum.stages` as lists of boxes (a stage given as one box is a list of one)."""
    if stages is None:
        return None
    if not isinstance(stages, Sequence) or isinstance(stages, str) or not stages:
        raise ValueError("env.kwargs.command_curriculum.stages must be a non-empty list of stages, each a box of "
                         "command ranges ({vx: [lo, hi], vy: ..., yaw: ...}) or a list of such boxes")
    out = []
    for i, stage in enumerate(stages):
        boxes = list(stage) if isinstance(stage, Sequence) else [stage]
        for box in boxes:
            bad = [k for k, r in dict(box).items() if k in COMMAND_KEYS and (len(r) != 2 or r[0] > r[1])]
            if bad:
                raise ValueError(f"env.kwargs.command_curriculum.stages[{i}].{bad[0]} must be [low, high], "
                                 f"got {list(dict(box)[bad[0]])}")
        out.append([{k: [float(r[0]), float(r[1])] for k, r in dict(box).items()} for box in boxes])
    return out

"""`env.backend=warp`: N worlds of `pg_lab/Legged-v0` stepped as one batch on MuJoCo Warp, on a GPU (or, slowly,
on the CPU), with observations, rewards, terminations and resets computed on the device as torch tensors.

The same task as pg_lab.envs.legged, term for term: the model is the one a `LeggedEnv` builds from the same
`env.kwargs` (the MJCF, the PD actuators, the physics step), and the robot's facts (trunk, feet, default pose,
nominal height, collision geoms) are read by that env, so the two backends cannot drift apart in what they
simulate. What they compute from the state is written twice, once in NumPy per env (legged.py) and once in torch
per batch (here); tests/test_warp.py steps both from the same states and compares every observation, reward term
and termination.

Each `step` is: the joint targets into `ctrl` → `frame_skip` MuJoCo Warp steps (one CUDA graph on a GPU) → the
reward terms, falls and time limits of all worlds at once → the worlds that ended are reset in the same step
(Gymnasium's SAME_STEP autoreset: `info["final_obs"]` holds their last observation). Nothing goes to the host:
the rollout (pg_lab.rollout.DeviceStepCollector) keeps the batch on the device.

Randomisation is per world, as the CPU env's is per env: friction, added trunk mass and motor strength are drawn
at each world's reset into per-world copies of the model fields they change (MuJoCo Warp's batched model fields);
pushes and observation noise are drawn on the device. The velocity task's command curriculum is per world too,
by the CPU env's rule. Not supported here (a clear error): rough terrain (one
height field would be shared by every world); and rendering (evaluate and render with the CPU env: it is the same
task, `pg-lab-eval` does that).
"""

from __future__ import annotations

import math
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces

from pg_lab.envs.legged import COMMAND_KEYS, HEADING_GAIN, NOISE_LEVELS, LeggedEnv


def _require_warp():
    try:
        import mujoco_warp
        import warp
    except ImportError:
        raise ImportError("env.backend=warp needs MuJoCo Warp: pip install 'pg_lab[gpu]' (mujoco-warp)") from None
    return warp, mujoco_warp


def quat_to_mat(q: torch.Tensor) -> torch.Tensor:
    """[..., 4] unit quaternions (w, x, y, z) → [..., 3, 3] rotation matrices (MuJoCo's convention)."""
    w, x, y, z = q.unbind(-1)
    return torch.stack([
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
    ], -1).reshape(*q.shape[:-1], 3, 3)


class WarpLeggedVecEnv:
    """A vector env of `num_envs` legged worlds on MuJoCo Warp: `reset` and `step` take and return torch tensors
    on `device` (observations float32 [N, obs_dim], rewards float32 [N], terminated / truncated bool [N])."""

    on_device = True  # pg_lab.train collects from it with DeviceStepCollector

    def __init__(self, num_envs: int, device: str | torch.device = "cuda", max_episode_steps: int | None = 1000,
                 nconmax: int = 32, njmax: int = 160, cuda_graph: bool = True, **kwargs: Any):
        wp, mjw = _require_warp()
        if kwargs.get("terrain", "flat") != "flat":
            raise ValueError("env.backend=warp runs on flat ground for now (one height field would be shared by "
                             f"every world): got terrain={kwargs['terrain']!r}; use env.backend=mujoco for it")
        self.template = env = LeggedEnv(**kwargs)  # builds the model and reads the robot, as the CPU env does
        self.randomization = r = env.randomization
        # per-episode model parameters need per-world copies of the fields they change
        batched = {"friction": ("geom_friction",), "added_mass": ("body_mass",),
                   "motor_strength": ("actuator_gainprm", "actuator_biasprm", "actuator_forcerange")}
        batch_sizes = {f: num_envs for k, fields in batched.items() if r[k] is not None for f in fields}
        self.num_envs, self.max_episode_steps = num_envs, max_episode_steps
        self.device = torch.device(device)
        self.single_observation_space = spaces.Box(-np.inf, np.inf, env.observation_space.shape, np.float32)
        self.single_action_space = env.action_space
        self.action_space = gym.vector.utils.batch_space(env.action_space, num_envs)
        self.observation_space = gym.vector.utils.batch_space(self.single_observation_space, num_envs)
        self.wp, self.mjw = wp, mjw
        self.wp_device = "cpu" if self.device.type == "cpu" else f"cuda:{self.device.index or 0}"
        with wp.ScopedDevice(self.wp_device):
            self.m = mjw.put_model(env.model, batch_sizes=batch_sizes)
            self.d = mjw.make_data(env.model, nworld=num_envs, nconmax=nconmax, njmax=njmax)
        d = self.d
        # torch views of MuJoCo Warp's arrays (no copies: writing to them writes the simulator's state)
        self.qpos, self.qvel, self.ctrl = wp.to_torch(d.qpos), wp.to_torch(d.qvel), wp.to_torch(d.ctrl)
        self.xmat, self.actuator_force = wp.to_torch(d.xmat), wp.to_torch(d.actuator_force)
        self.time, self.qacc_warmstart = wp.to_torch(d.time), wp.to_torch(d.qacc_warmstart)
        self.act = wp.to_torch(d.act) if env.model.na else None
        self.contact_geom, self.contact_world = wp.to_torch(d.contact.geom), wp.to_torch(d.contact.worldid)
        self.nacon = wp.to_torch(d.nacon)
        self.cuda_graph = cuda_graph and self.device.type == "cuda"
        self._graph = None

        t = lambda x, dtype=torch.float32: torch.as_tensor(np.asarray(x), dtype=dtype, device=self.device)  # noqa: E731
        self.qpos_idx, self.qvel_idx = t(env.qpos_idx, torch.long), t(env.qvel_idx, torch.long)
        self.fq, self.fv = env.free_qpos, env.free_qvel
        self.key_qpos, self.default_pose = t(env.key_qpos), t(env.default_pose)
        lo, hi = env.joint_range.T
        self.lo, self.hi = t(np.where(np.isfinite(lo), lo, -1e9)), t(np.where(np.isfinite(hi), hi, 1e9))
        self.feet = t(env.feet, torch.long)
        ngeom = env.model.ngeom
        self.ngeom, self.is_floor = ngeom, t(env.is_floor, torch.bool)
        # collision: ground contacts of geoms outside the lower legs (pg_lab.envs.legged)
        others = np.ones(ngeom, dtype=bool)
        others[list(env.foot_body_geoms)] = False
        self.counted = t(others, torch.bool)
        self.dt, self.frame_skip, self.nj = env.dt, env.frame_skip, env.nj
        self.weights = {k: v for k, v in env.weights.items() if v}
        self.ranges = t([env.command_ranges[k] for k in ("vx", "vy", "yaw")])  # [3, 2]
        n = num_envs
        # the command curriculum (task=velocity), per world as the CPU env's is per env: each world's level (float64,
        # so that its steps add up as the CPU env's do) and its episode's tracking so far (kernel sum, steps, fall)
        self.curriculum = env.curriculum
        if self.curriculum is not None:
            self.start = t([self.curriculum["start"][k] for k in ("vx", "vy", "yaw")])  # [3, 2]
        self.level = torch.full((n,), 0.0 if self.curriculum else 1.0, dtype=torch.float64, device=self.device)
        # with stages: each world's level per stage, its episode's stage, the yaw kernel's sum; the boxes as one tensor
        # [stages, most boxes in a stage, 3, 2] (a stage's boxes repeated to fill it; a key left out is [0, 0])
        self.stages = env.stages
        if self.stages is not None:
            most = max(len(stage) for stage in self.stages)
            self.boxes = t([[[box.get(k, [0.0, 0.0]) for k in COMMAND_KEYS] for box in (stage * most)[:most]]
                            for stage in self.stages])
            self.box_counts = torch.tensor([len(stage) for stage in self.stages], device=self.device)
            self.stage_levels = torch.zeros(n, len(self.stages), dtype=torch.float64, device=self.device)
            self.episode_stage = torch.zeros(n, dtype=torch.long, device=self.device)
            self.yaw_tracking = torch.zeros(n, dtype=torch.float64, device=self.device)
        self.tracking = torch.zeros(n, dtype=torch.float64, device=self.device)
        self.tracked_steps = torch.zeros(n, dtype=torch.long, device=self.device)
        self.last_fell = torch.zeros(n, dtype=torch.bool, device=self.device)
        self.command = torch.zeros(n, 3, device=self.device)
        self.last_action = torch.zeros(n, self.nj, device=self.device)
        self.air_time = torch.zeros(n, len(env.feet), device=self.device)
        self.elapsed = torch.zeros(n, dtype=torch.long, device=self.device)
        self.since_push = torch.zeros(n, dtype=torch.long, device=self.device)
        self.params = {"friction": torch.ones(n, device=self.device), "added_mass": torch.zeros(n, device=self.device),
                       "motor_strength": torch.ones(n, device=self.device)}  # each world's episode parameters
        self.noise_levels = torch.cat([torch.full((k,), NOISE_LEVELS[name], device=self.device) for name, k in
                                       (("gravity", 3), ("lin_vel", 3), ("ang_vel", 3), ("joint_pos", self.nj),
                                        ("joint_vel", self.nj))])
        m = self.m
        self.model_views = {f: wp.to_torch(getattr(m, f)) for f in batch_sizes}
        self.pd = t(np.flatnonzero(env.pd), torch.long)
        self.base = {"friction": t(env.base_friction), "kp": t(env.base_kp), "kd": t(env.base_kd),
                     "force": t(env.base_force), "mass": env.base_mass}
        self.generator = torch.Generator(device=self.device)

    # -- the physics -------------------------------------------------------------------------------------------------
    def _simulate(self) -> None:
        """frame_skip physics steps of every world. On a GPU: on Warp's own stream (a CUDA graph cannot be captured
        on torch's default stream), ordered after torch's work and before torch's next, with no host wait; the
        steps are one CUDA graph after the first call."""
        wp = self.wp
        with wp.ScopedDevice(self.wp_device):
            if self.device.type != "cuda":
                for _ in range(self.frame_skip):
                    self.mjw.step(self.m, self.d)
                return
            torch_stream = torch.cuda.current_stream(self.device)
            warp_stream = wp.get_stream(self.wp_device)
            warp_stream.wait_stream(wp.stream_from_torch(torch_stream))
            with wp.ScopedStream(warp_stream):
                if not self.cuda_graph:
                    for _ in range(self.frame_skip):
                        self.mjw.step(self.m, self.d)
                elif self._graph is None:
                    self.mjw.step(self.m, self.d)  # compiles and loads the kernels before the capture
                    with wp.ScopedCapture() as capture:
                        for _ in range(self.frame_skip):
                            self.mjw.step(self.m, self.d)
                    self._graph = capture.graph  # recorded, not run: only the warm-up step moved the state
                else:
                    wp.capture_launch(self._graph)
            torch_stream.wait_stream(wp.stream_to_torch(warp_stream))

    def _prepare_graph(self) -> None:
        """Capture the CUDA graph (after one warm-up step on a throwaway state) before a reset or a restore sets
        the real state."""
        if self.cuda_graph and self._graph is None:
            self._simulate()
            torch.cuda.synchronize(self.device)

    # -- what the task computes from the state -----------------------------------------------------------------------
    def _rotation(self, fresh: torch.Tensor | None = None) -> torch.Tensor:
        """The trunk's rotation as the CPU env reads it: `xmat` from the last physics step's forward pass; for
        worlds just reset (`fresh`), from their new quaternion (the CPU env's reset runs mj_forward)."""
        r = self.xmat[:, self.template.trunk]
        if fresh is not None:
            r = torch.where(fresh[:, None, None], quat_to_mat(self.qpos[:, self.fq + 3:self.fq + 7]), r)
        return r

    def _obs(self, r: torch.Tensor) -> torch.Tensor:
        gravity = -r[:, 2, :]
        lin = torch.einsum("nji,nj->ni", r, self.qvel[:, self.fv:self.fv + 3])
        ang = self.qvel[:, self.fv + 3:self.fv + 6]
        sensed = torch.cat([gravity, lin, ang, self.qpos[:, self.qpos_idx] - self.default_pose,
                            self.qvel[:, self.qvel_idx]], 1)
        noise = self.randomization["obs_noise"]
        if noise:  # uniform, scaled per part as in the CPU env (NOISE_LEVELS)
            u = torch.rand(sensed.shape, device=self.device, generator=self.generator) * 2 - 1
            sensed = sensed + noise * self.noise_levels * u
        return torch.cat([sensed, self.last_action, self.command], 1)

    def set_params(self, world: int | slice | torch.Tensor, friction=1.0, added_mass=0.0,
                   motor_strength=1.0) -> None:
        """Episode parameters of `world` (an index, a slice or a mask), as the CPU env's `_apply_params`: the scale
        of every geom's sliding friction, kg added to the trunk, the scale of the PD gains and torque limits."""
        for k, x in (("friction", friction), ("added_mass", added_mass), ("motor_strength", motor_strength)):
            self.params[k][world] = torch.as_tensor(x, dtype=torch.float32, device=self.device)
        v, b, p, pd = self.model_views, self.base, self.params, self.pd
        if "geom_friction" in v:
            v["geom_friction"][:, :, 0] = b["friction"] * p["friction"][:, None]
        if "body_mass" in v:
            v["body_mass"][:, self.template.trunk] = b["mass"] + p["added_mass"]
        if "actuator_gainprm" in v and len(pd):
            strength = p["motor_strength"][:, None]
            kp = b["kp"][pd] * strength
            v["actuator_gainprm"][:, pd, 0] = kp
            v["actuator_biasprm"][:, pd, 1] = -kp
            v["actuator_biasprm"][:, pd, 2] = -b["kd"][pd] * strength
            v["actuator_forcerange"][:, pd, :] = b["force"][pd] * strength[:, :, None]

    def _randomize(self, mask: torch.Tensor) -> None:
        """New episode parameters for the worlds in `mask`, drawn as the CPU env draws them (uniform in range)."""
        r, n = self.randomization, self.num_envs
        if not self.model_views:
            return
        draw = {}
        for k, default in (("friction", 1.0), ("added_mass", 0.0), ("motor_strength", 1.0)):
            if r[k] is None:
                draw[k] = torch.full((n,), default, device=self.device)
            else:
                lo, hi = r[k]
                draw[k] = lo + (hi - lo) * torch.rand(n, device=self.device, generator=self.generator)
            draw[k] = torch.where(mask, draw[k], self.params[k])
        self.set_params(slice(None), **draw)

    def _maybe_push(self) -> None:
        """Every `push_interval_s`, a random horizontal trunk velocity of up to `push_velocity` m/s (each world's
        own clock, restarted at its reset, as the CPU env's)."""
        interval = self.randomization["push_interval_s"]
        if not interval:
            return
        self.since_push += 1
        due = self.since_push * self.dt >= interval
        push = self.randomization["push_velocity"]
        kick = (torch.rand(self.num_envs, 2, device=self.device, generator=self.generator) * 2 - 1) * push
        self.qvel[:, self.fv:self.fv + 2] += torch.where(due[:, None], kick, 0.0)
        self.since_push = torch.where(due, 0, self.since_push)

    def _yaw(self) -> torch.Tensor:
        w, x, y, z = self.qpos[:, self.fq + 3:self.fq + 7].unbind(1)
        return torch.atan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z))

    def _ground_contacts(self) -> torch.Tensor:
        """[N, ngeom] bool: the robot geoms touching the floor in each world (a geom pair with one world geom)."""
        n, g = self.num_envs, self.ngeom
        geom, world = self.contact_geom.long(), self.contact_world.long()
        live = torch.arange(len(world), device=self.device) < self.nacon[0]
        on0, on1 = self.is_floor[geom[:, 0]], self.is_floor[geom[:, 1]]
        touching = torch.zeros(n * g + 1, dtype=torch.bool, device=self.device)
        trash = torch.full_like(world, n * g)
        for floor, other in ((on0, geom[:, 1]), (on1, geom[:, 0])):
            idx = torch.where(live & floor, world * g + other, trash)
            touching[idx] = True
        return touching[:-1].view(n, g)

    def _reward_terms(self, action, lin, ang, world_vel, gravity, qvel_before) -> dict[str, torch.Tensor]:
        terms, dt = {}, self.dt
        if self.template.task == "forward":
            terms["forward_velocity"] = world_vel[:, 0].clamp(max=self.template.max_forward_speed)
            terms["heading"] = self._yaw() ** 2
        else:
            sigma = self.template.tracking_sigma
            terms["tracking_lin_vel"] = torch.exp(-((self.command[:, :2] - lin[:, :2]) ** 2).sum(1) / sigma)
            terms["tracking_ang_vel"] = torch.exp(-(self.command[:, 2] - ang[:, 2]) ** 2 / sigma)
            terms["command_progress"] = self.command[:, :2].norm(dim=1) - (self.command[:, :2] - lin[:, :2]).norm(dim=1)
        touching = self._ground_contacts()
        in_contact = touching[:, self.feet]
        self.air_time += dt
        touchdown = in_contact & (self.air_time > dt)
        air = ((self.air_time.clamp(max=1.0) - 0.5) * touchdown).sum(1)
        if self.template.task == "velocity":
            air = torch.where(self.command[:, :2].norm(dim=1) < 0.1, 0.0, air)
        self.air_time = torch.where(in_contact, 0.0, self.air_time)
        torque = self.actuator_force
        acc = (self.qvel[:, self.qvel_idx] - qvel_before) / dt
        terms.update({
            "alive": torch.ones_like(air),
            "lin_vel_z": lin[:, 2] ** 2,
            "ang_vel_xy": ang[:, 0] ** 2 + ang[:, 1] ** 2,
            "orientation": gravity[:, 0] ** 2 + gravity[:, 1] ** 2,
            "base_height": (self.qpos[:, self.fq + 2] - self.template.nominal_height) ** 2,
            "torques": (torque * torque).sum(1),
            "dof_acc": (acc * acc).sum(1),
            "action_rate": ((action - self.last_action) ** 2).sum(1),
            "feet_air_time": air,
            "collision": (touching & self.counted).sum(1).float(),
        })
        return {k: v for k, v in terms.items() if k in self.weights and k != "termination"}

    # -- the vector env ------------------------------------------------------------------------------------------------
    def _reset_worlds(self, mask: torch.Tensor) -> None:
        """New episodes in the worlds where `mask` is set: the default pose with uniform joint noise (the CPU env's
        reset_model), zero velocities, a fresh solver warm start, the task's command."""
        env, n = self.template, self.num_envs
        self._randomize(mask)
        self.since_push = torch.where(mask, 0, self.since_push)
        noise = env.reset_noise_scale
        u = lambda *shape: torch.rand(*shape, device=self.device, generator=self.generator) * 2 - 1  # noqa: E731
        qpos = self.key_qpos.expand(n, -1).clone()
        qpos[:, self.qpos_idx] += noise * u(n, self.nj)
        qvel = torch.zeros_like(self.qvel)
        qvel[:, self.qvel_idx] = noise * u(n, self.nj)
        m = mask[:, None]
        self.qpos.copy_(torch.where(m, qpos, self.qpos))
        self.qvel.copy_(torch.where(m, qvel, self.qvel))
        self.ctrl.copy_(torch.where(m, self.default_pose.expand(n, -1), self.ctrl))
        self.qacc_warmstart.copy_(torch.where(m, 0.0, self.qacc_warmstart))
        self.time.copy_(torch.where(mask, 0.0, self.time))
        if self.act is not None:
            self.act.copy_(torch.where(m, 0.0, self.act))
        self.last_action = torch.where(m, 0.0, self.last_action)
        self.air_time = torch.where(m, 0.0, self.air_time)
        self.elapsed = torch.where(mask, 0, self.elapsed)
        if env.task == "velocity":
            lo, hi = self.ranges[:, 0], self.ranges[:, 1]
            if self.curriculum is not None:
                self._advance_curriculum(mask)
                if self.stages is not None:
                    lo, hi = self._staged_ranges(mask)
                else:
                    a = self.level.float()[:, None]  # each world's ranges, between the start's (0) and the full (1)
                    lo, hi = (1 - a) * self.start[:, 0] + a * lo, (1 - a) * self.start[:, 1] + a * hi
            command = lo + (hi - lo) * torch.rand(n, 3, device=self.device, generator=self.generator)
        else:
            command = torch.zeros(n, 3, device=self.device)
            command[:, 2] = (-HEADING_GAIN * self._yaw()).clamp(-1.0, 1.0)
        self.command = torch.where(m, command, self.command)

    def _advance_curriculum(self, mask: torch.Tensor) -> None:
        """The CPU env's `_advance_curriculum` for the worlds in `mask`: one `step` up after an episode tracked
        well (steps taken, no fall at its end, mean tracking kernel >= threshold); their tracking starts over."""
        c = self.curriculum
        good = mask & (self.tracked_steps > 0) & ~self.last_fell & \
            (self.tracking / self.tracked_steps.clamp(min=1) >= c["threshold"])
        if self.stages is None:
            self.level = torch.where(good, (self.level + c["step"]).clamp(max=1.0), self.level)
        else:  # the episode's stage only, and for a turning command only if its yaw rate was tracked too
            yaw_ok = (self.command[:, 2] == 0) | \
                (self.yaw_tracking / self.tracked_steps.clamp(min=1) >= c["threshold"])
            raised = torch.nn.functional.one_hot(self.episode_stage, len(self.stages)).bool() & \
                (good & yaw_ok)[:, None]
            self.stage_levels = torch.where(raised, (self.stage_levels + c["step"]).clamp(max=1.0), self.stage_levels)
            self.level = self.stage_levels.mean(1)
            self.yaw_tracking = torch.where(mask, 0.0, self.yaw_tracking)
        self.tracking = torch.where(mask, 0.0, self.tracking)
        self.tracked_steps = torch.where(mask, 0, self.tracked_steps)
        self.last_fell = torch.where(mask, False, self.last_fell)

    def _staged_ranges(self, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The CPU env's `_draw_staged_command` per world: the newest open stage with probability `focus`, else any
        open one; a box of that stage. Returns each world's [N, 3] low and high ranges (a world outside `mask`
        keeps its stage)."""
        n, count = self.num_envs, len(self.stages)
        u = torch.rand(n, 3, device=self.device, generator=self.generator)
        still_open = self.stage_levels < 1.0
        newest = torch.where(still_open.any(1), still_open.double().argmax(1), count - 1)
        rehearsed = (u[:, 1] * (newest + 1)).long().clamp(max=count - 1)
        stage = torch.where(u[:, 0] >= self.curriculum["focus"], torch.minimum(rehearsed, newest), newest)
        self.episode_stage = torch.where(mask, stage, self.episode_stage)
        box = (u[:, 2] * self.box_counts[self.episode_stage]).long()
        ranges = self.boxes[self.episode_stage, torch.minimum(box, self.box_counts[self.episode_stage] - 1)]
        return ranges[..., 0], ranges[..., 1]

    def reset(self, seed: int | None = None, options: dict | None = None) -> tuple[torch.Tensor, dict]:
        self._prepare_graph()
        if seed is not None:
            self.generator.manual_seed(seed)
        everyone = torch.ones(self.num_envs, dtype=torch.bool, device=self.device)
        self._reset_worlds(everyone)
        return self._obs(self._rotation(everyone)), {}

    def step(self, action: torch.Tensor):
        action = action.to(self.device, torch.float32).clamp(-1.0, 1.0)
        self.ctrl.copy_(torch.minimum(torch.maximum(self.default_pose + self.template.action_scale * action,
                                                    self.lo), self.hi))
        qvel_before = self.qvel[:, self.qvel_idx].clone()
        self._maybe_push()
        self._simulate()
        r = self._rotation()
        gravity = -r[:, 2, :]
        world_vel = self.qvel[:, self.fv:self.fv + 3]
        lin = torch.einsum("nji,nj->ni", r, world_vel)
        ang = self.qvel[:, self.fv + 3:self.fv + 6]
        terms = self._reward_terms(action, lin, ang, world_vel, gravity, qvel_before)
        if self.template.task == "forward":
            self.command[:, 2] = (-HEADING_GAIN * self._yaw()).clamp(-1.0, 1.0)
        reward = self.dt * sum(self.weights[k] * v for k, v in terms.items())
        if self.template.only_positive_rewards:
            reward = reward.clamp(min=0.0)
        self.last_action = action
        env = self.template
        tilt = torch.arccos((-gravity[:, 2]).clamp(-1.0, 1.0))
        fell = (self.qpos[:, self.fq + 2] < env.termination_height * env.nominal_height) | (tilt > env.max_tilt)
        info = {f"reward_{k}": self.dt * self.weights[k] * v for k, v in terms.items()}
        if self.curriculum is not None:
            sigma = self.template.tracking_sigma
            self.tracking += torch.exp(-((self.command[:, :2] - lin[:, :2]) ** 2).sum(1) / sigma).double()
            self.tracked_steps += 1
            self.last_fell = fell
            if self.stages is not None:
                self.yaw_tracking += torch.exp(-(self.command[:, 2] - ang[:, 2]) ** 2 / sigma).double()
            info["curriculum_command_level"] = self.level.float()  # before the reset below, as the CPU env's
        if "termination" in self.weights:
            info["reward_termination"] = self.weights["termination"] * fell.float()
            reward = reward + info["reward_termination"]
        self.elapsed += 1
        truncated = self.elapsed >= self.max_episode_steps if self.max_episode_steps else torch.zeros_like(fell)
        obs = self._obs(r)
        done = fell | truncated
        info["final_obs"] = obs
        info["x_velocity"] = world_vel[:, 0].clone()  # before the reset: world_vel is a view of qvel
        self._reset_worlds(done)
        obs = torch.where(done[:, None], self._obs(self._rotation(done)), obs)
        return obs, reward, fell, truncated, info

    # -- state, for checkpoints --------------------------------------------------------------------------------------
    def get_state(self) -> dict[str, torch.Tensor]:
        """The worlds' integration state and the task's, on the CPU (a checkpoint's part)."""
        state = {"qpos": self.qpos, "qvel": self.qvel, "ctrl": self.ctrl, "qacc_warmstart": self.qacc_warmstart,
                 "time": self.time, "command": self.command, "last_action": self.last_action,
                 "air_time": self.air_time, "elapsed": self.elapsed, "since_push": self.since_push,
                 "generator": self.generator.get_state(), **{f"param_{k}": v for k, v in self.params.items()},
                 "level": self.level, "tracking": self.tracking, "tracked_steps": self.tracked_steps,
                 "last_fell": self.last_fell}
        if self.stages is not None:
            state.update(stage_levels=self.stage_levels, episode_stage=self.episode_stage,
                         yaw_tracking=self.yaw_tracking)
        if self.act is not None:
            state["act"] = self.act
        return {k: v.detach().cpu().clone() for k, v in state.items()}

    def set_state(self, state: dict[str, torch.Tensor]) -> None:
        self._prepare_graph()
        for k in ("qpos", "qvel", "ctrl", "qacc_warmstart", "time", "act"):
            if k in state:
                getattr(self, k).copy_(state[k].to(self.device))
        for k in ("command", "last_action", "air_time", "elapsed", "since_push"):
            setattr(self, k, state[k].to(self.device).clone())
        for k in ("level", "tracking", "tracked_steps", "last_fell",  # absent from checkpoints made before them
                  "stage_levels", "episode_stage", "yaw_tracking"):
            if k in state:
                setattr(self, k, state[k].to(self.device).clone())
        if self.model_views:
            self.set_params(slice(None), **{k: state[f"param_{k}"] for k in self.params})
        self.generator.set_state(state["generator"])
        with self.wp.ScopedDevice(self.wp_device):
            self.mjw.forward(self.m, self.d)  # xmat and contacts of the restored state, as the CPU env's restore

    def close(self) -> None:
        self.template.close()
        self._graph = None


def steps_per_second(num_envs: int, device: str, steps: int = 50, **kwargs) -> float:
    """Env steps per second of `num_envs` worlds stepping random actions (for scripts/bench_gpu.py)."""
    envs = WarpLeggedVecEnv(num_envs, device=device, **kwargs)
    envs.reset(seed=0)
    gen = torch.Generator(device=envs.device).manual_seed(0)
    action = lambda: torch.rand(num_envs, envs.nj, device=envs.device, generator=gen) * 0.6 - 0.3  # noqa: E731
    envs.step(action())
    if envs.device.type == "cuda":
        torch.cuda.synchronize()
    import time
    t0 = time.perf_counter()
    for _ in range(steps):
        envs.step(action())
    if envs.device.type == "cuda":
        torch.cuda.synchronize()
    rate = num_envs * steps / (time.perf_counter() - t0)
    envs.close()
    return rate if math.isfinite(rate) else 0.0

"""`pg_lab/Quadruped-v0`: a 12-joint quadruped learning to move forward.

Built on Gymnasium's Ant-v5 locomotion env (same reward machinery, any MJCF through `xml_file`), with the
defaults of a small quadruped and two changes that a position-servoed robot needs:
- reset starts from a standing pose (the middle of each actuator's range), not from straight legs;
- the control cost penalises motor effort, Σ (torque / torque limit)², not the commanded angles.

Observation (35 numbers with the default model): trunk height z, trunk orientation quaternion (4),
12 joint angles, trunk linear velocity (3), trunk angular velocity (3), 12 joint velocities. Joints and
actions come leg by leg, FR, FL, RR, RL, each as (hip abduction, hip flexion "thigh", knee "calf").
Action: the 12 joints' target angles (radians), bounded by the actuators' ctrlrange.

Reward per step = forward velocity of the trunk (m/s) + healthy_reward − ctrl_cost − contact_cost.
The episode terminates when the trunk height leaves healthy_z_range (a fall) and is truncated at 1000
steps. Physics at 200 Hz (timestep 0.005), control at 40 Hz (frame_skip 5).
"""

from __future__ import annotations

import atexit
import weakref
from pathlib import Path

import numpy as np
from gymnasium.envs.mujoco.ant_v5 import AntEnv

DEFAULT_XML = Path(__file__).with_name("assets") / "quadruped.xml"


def resolve_path(path: str | Path) -> Path:
    """Relative paths resolve from where the user launched pg-lab, not from Hydra's output directory."""
    p = Path(path).expanduser()
    if not p.is_absolute():
        try:
            from hydra.utils import get_original_cwd
            p = Path(get_original_cwd()) / p
        except (ImportError, ValueError):  # Hydra not running
            p = Path.cwd() / p
    if not p.is_file():
        raise FileNotFoundError(f"env.kwargs.xml_file: no MJCF file at {p}")
    return p


def _close_if_alive(ref: weakref.ref) -> None:
    env = ref()
    if env is not None:
        env.close()


class QuadrupedEnv(AntEnv):
    def __init__(self, xml_file: str | Path | None = None, frame_skip: int = 5,
                 ctrl_cost_weight: float = 0.05, contact_cost_weight: float = 5e-4, healthy_reward: float = 0.5,
                 healthy_z_range: tuple[float, float] = (0.15, 1.0), reset_noise_scale: float = 0.05,
                 main_body: int | str = 1, stand_pose: list[float] | None = None, **kwargs):
        path = resolve_path(xml_file) if xml_file else DEFAULT_XML
        try:
            super().__init__(
                xml_file=str(path), frame_skip=frame_skip, ctrl_cost_weight=ctrl_cost_weight,
                contact_cost_weight=contact_cost_weight, healthy_reward=healthy_reward,
                healthy_z_range=tuple(healthy_z_range), reset_noise_scale=reset_noise_scale, main_body=main_body,
                include_cfrc_ext_in_observation=False, camera_name=kwargs.pop("camera_name", self._camera(path)),
                default_camera_config=kwargs.pop("default_camera_config", {"distance": 2.5, "elevation": -20.0}),
                **kwargs)
        except ValueError as e:  # MuJoCo's XML and compile errors
            raise ValueError(f"env.kwargs.xml_file: MuJoCo cannot load {path}: {e}") from None
        if self.model.nu == 0:
            raise ValueError(f"env.kwargs.xml_file: {path} has no actuators")
        low, high = self.model.actuator_ctrlrange.T
        pose = np.asarray(stand_pose, dtype=np.float64) if stand_pose is not None else (low + high) / 2
        # start standing: joint targets and joint angles at the pose; the free joint as the model places it
        joint_qpos = self.model.jnt_qposadr[self.model.actuator_trnid[:, 0]]
        self.init_qpos[joint_qpos] = pose
        self.stand_pose = pose
        force = np.abs(self.model.actuator_forcerange).max(axis=1)
        self._torque_limit = np.where(force > 0, force, 1.0)
        # an offscreen renderer freed during interpreter shutdown prints a traceback: close it before then
        atexit.register(_close_if_alive, weakref.ref(self))

    @staticmethod
    def _camera(path: Path) -> str | None:
        return "track" if "name=\"track\"" in path.read_text() else None

    def control_cost(self, action: np.ndarray) -> float:
        effort = self.data.actuator_force / self._torque_limit
        return self._ctrl_cost_weight * float(np.sum(np.square(effort)))

    def reset_model(self) -> np.ndarray:
        obs = super().reset_model()
        self.data.ctrl[:] = self.stand_pose
        return obs

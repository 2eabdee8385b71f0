"""An SO-101 in end-effector space: observations and actions as LeRobot's kinematic processor steps
name them, so a dataset can be recorded, a policy trained and run with the gripper's pose as its
state and action, on the real, virtual or simulated arm alike.

Features (LeRobot's `ForwardKinematicsJointsToEE` / `InverseKinematicsEEToJoints`): `ee.x, ee.y, ee.z`
(metres, `gripper_frame_link` in `base_link`), `ee.wx, ee.wy, ee.wz` (its orientation as a rotation
vector, radians) and `ee.gripper_pos` (the gripper's 0..100). The rotation vector is kept continuous along a trajectory
(`unwrap_rotvec`): the same rotation, never the jump of 2 pi a downward grasp otherwise makes. `EESpaceRobot` wraps a joint-space
robot: it observes forward kinematics of the measured joints, and turns each end-effector action into
joints as `EEBoundsAndSafety` + `InverseKinematicsEEToJoints` do: the position is clipped to the
workspace box and may not lead the measured position by more than `max_ee_step_m`, IK is seeded
from the last joints sent (the arm stays on its branch), a target out of reach or not finite holds the
arm where it was sent last (no NaN reaches a motor), and the action it returns (what is recorded) is
the pose of the joints actually sent, after the robot's own clamps. `JointsToEETeleop` turns a
joint-space teleoperator (leader arm, scripted expert, keyboard) into one that gives end-effector
targets, as LeRobot's EE recording examples do with the leader's joints.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import mujoco
import numpy as np

from jrobot.features import SO101_JOINT_KEYS
from jrobot.kinematics.ee_control import DEFAULT_BOUNDS_M, check_ee_settings

if TYPE_CHECKING:
    from jrobot.kinematics.so101 import SO101Kinematics

EE_KEYS = ("ee.x", "ee.y", "ee.z", "ee.wx", "ee.wy", "ee.wz", "ee.gripper_pos")
ARM_KEYS = SO101_JOINT_KEYS[:5]
GRIPPER_KEY = SO101_JOINT_KEYS[5]


def rotvec_from_matrix(rotation: np.ndarray) -> np.ndarray:
    """The rotation vector (axis times angle, radians) of a 3x3 rotation matrix."""
    quat = np.zeros(4)
    mujoco.mju_mat2Quat(quat, np.ascontiguousarray(rotation, np.float64).reshape(9))
    vec = np.zeros(3)
    mujoco.mju_quat2Vel(vec, quat, 1.0)
    return vec


def matrix_from_rotvec(rotvec: Sequence[float]) -> np.ndarray:
    """The 3x3 rotation matrix of a rotation vector."""
    v = np.asarray(rotvec, np.float64)
    angle = float(np.linalg.norm(v))
    quat = np.array([1.0, 0.0, 0.0, 0.0])
    if angle > 0.0:
        mujoco.mju_axisAngle2Quat(quat, v / angle, angle)
    mat = np.zeros(9)
    mujoco.mju_quat2Mat(mat, quat)
    return mat.reshape(3, 3)


def unwrap_rotvec(rotvec: np.ndarray, reference: np.ndarray | None) -> np.ndarray:
    """Of the rotation vectors of one rotation ((angle + 2 pi k) * axis), the one nearest `reference`.

    A rotation vector jumps from (0, pi, 0) to (0, -pi, 0) as a downward gripper tilts through
    vertical: the SO-101's usual grasp sits on that seam. Unwrapped against the previous value, a
    trajectory stays continuous (what a policy can learn) and still names the same rotation, so an IK
    step (LeRobot's too) reads it unchanged.
    """
    angle = float(np.linalg.norm(rotvec))
    if reference is None or angle < 1e-9:
        return rotvec
    axis = rotvec / angle
    candidates = [(angle + 2.0 * np.pi * k) * axis for k in (-2, -1, 0, 1, 2)]
    return min(candidates, key=lambda c: float(np.linalg.norm(c - reference)))


def pose_to_ee(pose: np.ndarray, gripper: float, reference: np.ndarray | None = None) -> dict[str, float]:
    """End-effector features of a 4x4 pose; the rotation vector unwrapped against `reference`."""
    rotvec = unwrap_rotvec(rotvec_from_matrix(pose[:3, :3]), reference)
    values = [*pose[:3, 3], *rotvec, gripper]
    return dict(zip(EE_KEYS, map(float, values), strict=True))


@dataclasses.dataclass
class EESpaceConfig:
    """`--robot.space=ee` and its safety settings (LeRobot's `EEBoundsAndSafety`)."""

    space: str = "joints"  # joints: the robot as it is; ee: observed and driven in end-effector space
    ee_bounds: str | None = None  # a find_joint_limits file whose end-effector box bounds the targets
    max_ee_step_m: float = 0.05  # how far a target may lead the measured position (LeRobot's default)
    bounds_m: tuple[Sequence[float], Sequence[float]] = DEFAULT_BOUNDS_M

    def __post_init__(self) -> None:
        if self.space not in ("joints", "ee"):
            raise ValueError(f"space must be 'joints' or 'ee', got {self.space!r}")
        check_ee_settings(self.bounds_m, max_ee_step_m=self.max_ee_step_m)


class EESpaceRobot:
    """A joint-space SO-101 robot observed and driven in end-effector space (module docstring)."""

    def __init__(
        self, robot: Any, config: EESpaceConfig | None = None, kinematics: SO101Kinematics | None = None
    ) -> None:
        missing = [k for k in SO101_JOINT_KEYS if k not in robot.action_features]
        if missing:
            raise ValueError(
                f"end-effector space needs an SO-101's joints; {getattr(robot, 'name', robot)} lacks {missing}"
            )
        from jrobot.kinematics.so101 import SO101Kinematics

        self.robot = robot
        self.config = config or EESpaceConfig(space="ee")
        self.kin = kinematics or SO101Kinematics()
        self.lower, self.upper = (np.asarray(b, np.float64) for b in self.config.bounds_m)
        self._measured: np.ndarray | None = None  # arm joints (degrees) of the last observation
        self._sent: np.ndarray | None = None  # arm joints of the last action sent
        self._gripper = 0.0
        self._rotvec: np.ndarray | None = None  # the last rotation vector given out (unwrap_rotvec)
        self.held_actions = 0  # actions not finite: the arm held where it was sent last
        self.unreached_actions = 0  # targets IK could not reach within 1 mm: its best effort was sent

    def __getattr__(self, name: str) -> Any:  # task, is_success, fps, cameras, ...: the robot's own
        if name == "robot":
            raise AttributeError(name)
        return getattr(self.robot, name)

    @property
    def name(self) -> str:
        return self.robot.name

    @property
    def observation_features(self) -> dict[str, Any]:
        rest = {k: v for k, v in self.robot.observation_features.items() if k not in SO101_JOINT_KEYS}
        return {**dict.fromkeys(EE_KEYS, float), **rest}

    @property
    def action_features(self) -> dict[str, Any]:
        return dict.fromkeys(EE_KEYS, float)

    @property
    def is_connected(self) -> bool:
        return self.robot.is_connected

    def connect(self, calibrate: bool = True) -> None:
        self.robot.connect(calibrate=calibrate)

    def disconnect(self) -> None:
        self.robot.disconnect()

    def reset(self, seed: int | None = None) -> None:
        """A new episode of an episodic robot: the arm starts again from wherever it is put."""
        self._measured = self._sent = self._rotvec = None
        self.robot.reset(seed=seed)

    def ee_of(self, joints: Mapping[str, float]) -> dict[str, float]:
        """The end-effector features of SO-101 joint values, continuous with the last ones given."""
        arm = [float(joints[k]) for k in ARM_KEYS]
        ee = pose_to_ee(self.kin.forward(arm), float(joints[GRIPPER_KEY]), self._rotvec)
        self._rotvec = np.array([ee["ee.wx"], ee["ee.wy"], ee["ee.wz"]])
        return ee

    def get_observation(self) -> dict[str, Any]:
        obs = self.robot.get_observation()
        self._measured = np.array([float(obs[k]) for k in ARM_KEYS])
        self._gripper = float(obs[GRIPPER_KEY])
        rest = {k: v for k, v in obs.items() if k not in SO101_JOINT_KEYS}
        return {**self.ee_of(obs), **rest}

    def send_action(self, action: Mapping[str, float]) -> dict[str, float]:
        missing = [k for k in EE_KEYS if k not in action]
        if missing:
            raise KeyError(f"end-effector action lacks {missing} (it has {sorted(action)})")
        if self._measured is None:
            self.get_observation()
        seed = self._sent if self._sent is not None else self._measured
        values = np.array([float(action[k]) for k in EE_KEYS])
        joints = seed
        if np.all(np.isfinite(values)):
            reached = self.kin.position(self._measured)
            target = np.clip(values[:3], self.lower, self.upper)
            lead = target - reached
            norm = float(np.linalg.norm(lead))
            if norm > self.config.max_ee_step_m:
                target = reached + lead * (self.config.max_ee_step_m / norm)
            pose = np.eye(4)
            pose[:3, :3], pose[:3, 3] = matrix_from_rotvec(values[3:6]), target
            from jrobot.kinematics.so101 import IKError

            try:
                joints = self.kin.inverse(pose, seed)
            except IKError as e:  # LeRobot's IK step sends its best effort too; the next tick goes on
                self.unreached_actions += 1
                joints = e.best_deg if np.all(np.isfinite(e.best_deg)) else seed
            self._gripper = float(np.clip(values[6], 0.0, 100.0))
        else:
            self.held_actions += 1
        command = {**dict(zip(ARM_KEYS, map(float, joints), strict=True)), GRIPPER_KEY: self._gripper}
        sent = self.robot.send_action(command)
        self._sent = np.array([float(sent[k]) for k in ARM_KEYS])
        return self.ee_of(sent)


class JointsToEETeleop:
    """A joint-space teleoperator whose actions are given as end-effector targets (forward kinematics)."""

    def __init__(self, teleop: Any, kinematics: SO101Kinematics | None = None) -> None:
        from jrobot.kinematics.so101 import SO101Kinematics

        self.teleop = teleop
        self.kin = kinematics or SO101Kinematics()
        self._rotvec: np.ndarray | None = None

    def __getattr__(self, name: str) -> Any:  # name, connect, disconnect, is_done, press, ...
        if name == "teleop":
            raise AttributeError(name)
        return getattr(self.teleop, name)

    @property
    def external_keys(self) -> bool:
        return bool(getattr(self.teleop, "external_keys", False))

    @external_keys.setter
    def external_keys(self, value: bool) -> None:
        self.teleop.external_keys = value

    @property
    def action_features(self) -> dict[str, Any]:
        return dict.fromkeys(EE_KEYS, float)

    def get_action(self) -> dict[str, float]:
        joints = self.teleop.get_action()
        arm = [float(joints[k]) for k in ARM_KEYS]
        ee = pose_to_ee(self.kin.forward(arm), float(joints[GRIPPER_KEY]), self._rotvec)
        self._rotvec = np.array([ee["ee.wx"], ee["ee.wy"], ee["ee.wz"]])
        return ee

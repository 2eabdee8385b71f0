"""End-effector control of the SO-101: Cartesian steps in, joint targets out, as LeRobot's processor
steps do it (`EEReferenceAndDelta`, `EEBoundsAndSafety`, `InverseKinematicsEEToJoints`,
`GripperVelocityToJoint` in `robots/so_follower/robot_kinematic_processor.py`).

Each tick a teleoperator gives `{"delta_x", "delta_y", "delta_z"}` in -1..1 and `gripper` in 0..2
(0 close, 1 stay, 2 open). The target moves by `step_m` per unit, is clipped to the workspace box
(`bounds_m`; the keyboard teleoperator takes it from a `find_joint_limits` file), may not lead the arm by more than
`max_ee_step_m`, keeps the orientation the gripper had when control began, and becomes joints by IK
seeded from the last joints sent (the arm stays on its branch; a target out of reach leaves the arm
where it is). The gripper moves `gripper_speed` units (0..100) per tick. Non-finite input counts as
zero: no NaN ever reaches a joint target.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from jrobot.features import SO101_JOINT_KEYS

if TYPE_CHECKING:
    from jrobot.kinematics.so101 import SO101Kinematics

DELTA_KEYS = ("delta_x", "delta_y", "delta_z")
# a box around the SO-101's reach in its base frame (metres): in front of the base, above the table
DEFAULT_BOUNDS_M = ((0.05, -0.35, 0.0), (0.45, 0.35, 0.40))


def check_ee_settings(bounds_m: tuple[Sequence[float], Sequence[float]], **positive: float) -> None:
    """The checks every end-effector config shares: each of `positive` is a finite number > 0, and
    `bounds_m` is two finite (x, y, z) corners with min < max. Raises ValueError naming the field."""
    for name, value in positive.items():
        if not (np.isfinite(value) and value > 0):
            raise ValueError(f"{name} must be a positive number, got {value!r}")
    lo, hi = (np.asarray(b, np.float64) for b in bounds_m)
    if lo.shape != (3,) or hi.shape != (3,) or not np.all(np.isfinite(lo)) or np.any(hi <= lo):
        raise ValueError(f"bounds_m must be two (x, y, z) corners, min < max, got {bounds_m}")


@dataclasses.dataclass
class EEControlConfig:
    step_m: float = 0.005  # target displacement per tick at full delta (LeRobot's end_effector_step_sizes)
    max_ee_step_m: float = 0.05  # how far the target may lead the arm (LeRobot's max_ee_step_m)
    gripper_speed: float = 5.0  # gripper units (0..100) per tick at full open/close
    bounds_m: tuple[Sequence[float], Sequence[float]] = DEFAULT_BOUNDS_M

    def __post_init__(self) -> None:
        check_ee_settings(
            self.bounds_m,
            step_m=self.step_m,
            max_ee_step_m=self.max_ee_step_m,
            gripper_speed=self.gripper_speed,
        )


class EEDeltaToJoints:
    """Turns end-effector steps into SO-101 joint actions (`"<motor>.pos"`, degrees; gripper 0..100)."""

    def __init__(
        self, config: EEControlConfig | None = None, kinematics: SO101Kinematics | None = None
    ) -> None:
        from jrobot.kinematics.so101 import SO101Kinematics  # (MuJoCo: only once control begins)

        self.config = config or EEControlConfig()
        self.kin = kinematics or SO101Kinematics()
        self.lower, self.upper = (np.asarray(b, np.float64) for b in self.config.bounds_m)
        self._joints: np.ndarray | None = None  # the last arm joints sent (degrees)
        self._gripper = 0.0
        self._target: np.ndarray | None = None
        self._rotation: np.ndarray | None = None

    @property
    def target_m(self) -> np.ndarray | None:
        return None if self._target is None else self._target.copy()

    def reset(self, joints: Mapping[str, float]) -> None:
        """Start from measured joints (the arm's present pose becomes the reference)."""
        values = np.array([float(joints[k]) for k in SO101_JOINT_KEYS])
        if not np.all(np.isfinite(values)):
            raise ValueError(f"the measured joints are not finite: {values}")
        self._joints = values[:5].copy()
        self._gripper = float(np.clip(values[5], 0.0, 100.0))
        pose = self.kin.forward(self._joints)
        self._rotation = pose[:3, :3].copy()
        self._target = np.clip(pose[:3, 3], self.lower, self.upper)

    def __call__(self, delta: Mapping[str, Any]) -> dict[str, float]:
        if self._joints is None or self._target is None or self._rotation is None:
            raise RuntimeError("EEDeltaToJoints: call reset(measured joints) first")
        step = np.array([_finite(delta.get(k, 0.0)) for k in DELTA_KEYS]).clip(-1.0, 1.0)
        reached = self.kin.position(self._joints)
        target = np.clip(self._target + step * self.config.step_m, self.lower, self.upper)
        lead = target - reached
        norm = float(np.linalg.norm(lead))
        if norm > self.config.max_ee_step_m:
            target = reached + lead * (self.config.max_ee_step_m / norm)
        from jrobot.kinematics.so101 import IKError

        pose = np.eye(4)
        pose[:3, :3], pose[:3, 3] = self._rotation, target
        try:
            self._joints = self.kin.inverse(pose, self._joints)
            self._target = target
        except IKError as e:  # out of reach: stay, and pull the target back to where the arm is
            self._target = self.kin.position(e.best_deg) if np.all(np.isfinite(e.best_deg)) else reached
        gripper = _finite(delta.get("gripper", 1.0), default=1.0)
        self._gripper = float(
            np.clip(self._gripper + (np.clip(gripper, 0, 2) - 1.0) * self.config.gripper_speed, 0, 100)
        )
        return {
            **dict(zip(SO101_JOINT_KEYS[:5], map(float, self._joints), strict=True)),
            SO101_JOINT_KEYS[5]: self._gripper,
        }


class EEDeltaTeleop:
    """What the keyboard and gamepad teleoperators share: their actions are the follower's joints, made
    from each tick's end-effector step by `EEDeltaToJoints`, starting from the follower's measured pose
    at the first action (so the teleoperator can connect before the robot does)."""

    def __init__(self, config: EEControlConfig, robot: Any) -> None:
        self.config = config
        self.robot = robot
        self._control: EEDeltaToJoints | None = None

    @property
    def action_features(self) -> dict[str, Any]:
        return self.robot.action_features

    def _start_control(self) -> None:
        self._control = EEDeltaToJoints(self.config)

    def _joints_for(self, delta: Mapping[str, Any]) -> dict[str, float]:
        if self._control is None:
            raise RuntimeError(f"{type(self).__name__}: connect() first")
        if self._control.target_m is None:
            self._control.reset(self.robot.get_observation())
        return self._control(delta)


def _finite(value: Any, default: float = 0.0) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return default
    return v if np.isfinite(v) else default

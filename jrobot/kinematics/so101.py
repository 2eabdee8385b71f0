"""Forward and inverse kinematics of the real SO-101 in LeRobot's conventions.

LeRobot (`lerobot.model.kinematics`) runs placo on TheRobotStudio's `so101_new_calib.urdf`: joints in
degrees, the end effector is the `gripper_frame_link` frame, positions in metres in the URDF's
`base_link` frame, the gripper joint passed through untouched. jrobot loads the same URDF's kinematic
chain (`so101_new_calib.urdf` beside this module: links, inertials and joints, no meshes) into MuJoCo,
marks `gripper_frame_link` with a site, and solves with the one damped-least-squares solver of
`jrobot.kinematics.arm` (the simulator's expert uses it too), orientation weighted 0.01 as LeRobot
weights it and seeded from the present joints. Agreement with LeRobot's own numbers
(tests/fixtures/kinematics, placo 0.9.8): 4e-16 m. No jax, no placo: it runs in the control loop.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

import mujoco
import numpy as np

from jrobot.kinematics.arm import ARM_JOINTS, ArmKinematics

URDF = Path(__file__).resolve().parent / "so101_new_calib.urdf"
FRAME = "gripper_frame_link"
ORIENTATION_WEIGHT = 0.01  # LeRobot's IK weight of orientation against position


class IKError(ValueError):
    """A target the arm cannot reach (the message says how far it stayed; `best_deg` holds the joints)."""

    def __init__(self, message: str, best_deg: np.ndarray) -> None:
        super().__init__(message)
        self.best_deg = best_deg


def load_model(urdf: Path = URDF) -> mujoco.MjModel:
    """The URDF's chain in MuJoCo, with a site on `gripper_frame_link` (its origin and axes)."""
    spec = mujoco.MjSpec.from_file(str(urdf))
    spec.body(FRAME).add_site(name=FRAME)
    return spec.compile()


class SO101Kinematics:
    """FK/IK of the five arm joints (degrees) for `gripper_frame_link` in the base frame; thread-safe."""

    def __init__(self, urdf: Path = URDF) -> None:
        self._kin = ArmKinematics(load_model(urdf), site=FRAME)
        self._lock = threading.Lock()
        self.lower_deg = np.rad2deg(self._kin.lower)
        self.upper_deg = np.rad2deg(self._kin.upper)

    @staticmethod
    def _joints(joints_deg: Sequence[float], what: str) -> np.ndarray:
        q = np.asarray(joints_deg, np.float64)
        if q.shape != (len(ARM_JOINTS),) or not np.all(np.isfinite(q)):
            raise ValueError(
                f"{what}: expected {len(ARM_JOINTS)} finite angles in degrees {ARM_JOINTS}, got {q}"
            )
        return q

    def forward(self, joints_deg: Sequence[float]) -> np.ndarray:
        """The 4x4 pose of `gripper_frame_link` in the base frame for the arm joints (degrees)."""
        q = np.deg2rad(self._joints(joints_deg, "forward kinematics"))
        with self._lock:
            position, rotation = self._kin.forward(q)
        pose = np.eye(4)
        pose[:3, :3], pose[:3, 3] = rotation, position
        return pose

    def position(self, joints_deg: Sequence[float]) -> np.ndarray:
        """The (x, y, z) of the end effector in metres."""
        return self.forward(joints_deg)[:3, 3]

    def inverse(
        self,
        target: np.ndarray,
        seed_deg: Sequence[float],
        *,
        orientation_weight: float = ORIENTATION_WEIGHT,
        tol_m: float = 1e-3,
        max_iters: int = 200,
    ) -> np.ndarray:
        """Arm joints (degrees, within the URDF's limits) putting `gripper_frame_link` at `target`: a
        4x4 pose, or an (x, y, z) alone (the orientation then stays the seed's). The search starts at
        `seed_deg` (the present joints), so the arm stays on its branch. IKError when the position
        ends farther than `tol_m`."""
        seed = self._joints(seed_deg, "IK seed")
        target = np.asarray(target, np.float64)
        if target.shape not in ((4, 4), (3,)) or not np.all(np.isfinite(target)):
            raise ValueError(f"IK target: a finite 4x4 pose or (x, y, z), got shape {target.shape}")
        pose = target if target.shape == (4, 4) else None
        with self._lock:
            if pose is None:
                _, rotation = self._kin.forward(np.deg2rad(seed))
                position = target
            else:
                position, rotation = pose[:3, 3], pose[:3, :3]
            weight = orientation_weight if pose is not None else 1e-3
            result = self._kin.solve(
                position, rotation, np.deg2rad(seed), rot_weight=weight, max_iters=max_iters
            )
        q = np.rad2deg(result.qpos)
        if result.position_error > tol_m:
            raise IKError(
                f"IK: the target {np.round(position, 4).tolist()} m is out of reach; the arm stays "
                f"{result.position_error * 1e3:.1f} mm away",
                q,
            )
        return q

"""Inverse kinematics of the SO-101's gripper (`tcp` site) by damped least squares on MuJoCo Jacobians.

The scripted expert plans in Cartesian space (where the cube is, where the bin is) and needs joint
targets; this solver works on its own `MjData`, so planning never disturbs the simulation state.
Targets are a position and a "fingers down" orientation with a yaw: the SO-101 has five arm joints,
and a top-down grasp with a chosen yaw is exactly five constraints (position, pitch, yaw), so the
6-D residual below is consistent whenever the pose is reachable.
"""

from __future__ import annotations

import dataclasses

import mujoco
import numpy as np

ARM_JOINTS = ("shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll")


def top_down_rotation(yaw: float, tilt: float = 0.0) -> np.ndarray:
    """Rotation (3x3, world frame) of the tcp with the fingers pointing down.

    The gripper's closing direction (the tcp x axis) is horizontal at angle `yaw` from the world x axis;
    `tilt` leans the fingers about the tcp y axis (positive: the fingertips towards -x of the yaw frame).
    """
    cz, sz = np.cos(yaw), np.sin(yaw)
    ct, st = np.cos(tilt), np.sin(tilt)
    rz = np.array([[cz, -sz, 0.0], [sz, cz, 0.0], [0.0, 0.0, 1.0]])
    ry = np.array([[ct, 0.0, st], [0.0, 1.0, 0.0], [-st, 0.0, ct]])
    return rz @ ry


@dataclasses.dataclass(frozen=True)
class IKResult:
    qpos: np.ndarray  # the five arm joints, radians
    position_error: float  # metres
    rotation_error: float  # radians
    iterations: int

    def ok(self, pos_tol: float = 1e-3, rot_tol: float = 1e-2) -> bool:
        return self.position_error <= pos_tol and self.rotation_error <= rot_tol


class ArmKinematics:
    """Forward and inverse kinematics of the tcp site over the five arm joints of a model."""

    def __init__(self, model: mujoco.MjModel, site: str = "tcp") -> None:
        self.model = model
        self.data = mujoco.MjData(model)
        self.site_id = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_SITE, site)
        if self.site_id < 0:
            raise ValueError(f"model has no site {site!r}")
        joint_ids = [mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, j) for j in ARM_JOINTS]
        if min(joint_ids) < 0:
            raise ValueError(f"model lacks one of the joints {ARM_JOINTS}")
        self.qpos_adr = np.array([model.jnt_qposadr[j] for j in joint_ids])
        self.dof_adr = np.array([model.jnt_dofadr[j] for j in joint_ids])
        self.lower = model.jnt_range[joint_ids, 0].copy()
        self.upper = model.jnt_range[joint_ids, 1].copy()
        self._jacp = np.zeros((3, model.nv))
        self._jacr = np.zeros((3, model.nv))

    def forward(self, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Position (3,) and rotation (3, 3) of the tcp for arm joints `q` (radians)."""
        self.data.qpos[self.qpos_adr] = q
        mujoco.mj_kinematics(self.model, self.data)
        return self.data.site_xpos[self.site_id].copy(), self.data.site_xmat[self.site_id].reshape(
            3, 3
        ).copy()

    def solve(
        self,
        position: np.ndarray,
        rotation: np.ndarray,
        q_init: np.ndarray,
        *,
        rot_weight: float = 0.1,
        damping: float = 1e-4,
        max_iters: int = 100,
        tol: float = 1e-5,
    ) -> IKResult:
        """Joint angles that put the tcp at `position` with `rotation`, starting the search at `q_init`.

        `rot_weight` (metres per radian) trades orientation against position error; joint limits are
        enforced by clipping every step. Returns the best iterate with its residuals.
        """
        q = np.clip(np.asarray(q_init, dtype=np.float64).copy(), self.lower, self.upper)
        target_p = np.asarray(position, dtype=np.float64)
        target_r = np.asarray(rotation, dtype=np.float64)
        quat = np.zeros(4)
        rot_err = np.zeros(3)
        eye = np.eye(6)
        best = (np.inf, q.copy(), np.inf, np.inf)
        iterations = 0
        for iterations in range(1, max_iters + 1):  # noqa: B007 (reported after the loop)
            p, r = self.forward(q)
            pos_err = target_p - p
            mujoco.mju_mat2Quat(quat, (target_r @ r.T).reshape(-1))
            mujoco.mju_quat2Vel(rot_err, quat, 1.0)
            pe, re = float(np.linalg.norm(pos_err)), float(np.linalg.norm(rot_err))
            cost = pe + rot_weight * re
            if cost < best[0]:
                best = (cost, q.copy(), pe, re)
            if pe < tol and re < tol / rot_weight:
                break
            mujoco.mj_comPos(self.model, self.data)
            mujoco.mj_jacSite(self.model, self.data, self._jacp, self._jacr, self.site_id)
            jac = np.vstack([self._jacp[:, self.dof_adr], rot_weight * self._jacr[:, self.dof_adr]])
            err = np.concatenate([pos_err, rot_weight * rot_err])
            dq = jac.T @ np.linalg.solve(jac @ jac.T + damping * eye, err)
            q = np.clip(q + dq, self.lower, self.upper)
        _, q_best, pe, re = best
        return IKResult(qpos=q_best, position_error=pe, rotation_error=re, iterations=iterations)

"""The bare SO-101 MuJoCo model as a joint-space plant in radians, for code that emulates the servos.

The virtual servo bus keeps encoder ticks and asks a dynamics model to move the joints; `ArmSim`
is that model backed by MuJoCo (the arm standing on the table, gravity, STS3215-like position
servos). It matches `jrobot.sim.servo_dynamics.RadianJointModel`: `reset(q)` then
`step(dt, q_target, driven) -> (q, qd, effort)`, all in bus order (`SO101_MOTORS`), joint angles in
radians with each joint's zero at mid-range (LeRobot's calibration zero; see `jrobot.sim.units`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import mujoco
import numpy as np

from jrobot.features import SO101_MOTORS
from jrobot.sim.model import MAX_TIMESTEP, arm_dof_adr, arm_qpos_adr, load_model

N = len(SO101_MOTORS)


class ArmSim:
    """The SO-101 on a table: position-servo joints stepped toward goal angles (radians).

    `driven[i] = False` makes joint i limp (torque off: the servo applies no force, so the joint moves
    under gravity and contacts only). `effort` is each actuator's force as a fraction of its force
    limit (-1..1), what a servo reports as load.
    """

    joint_names: tuple[str, ...] = SO101_MOTORS

    def __init__(self, q: Sequence[float] | None = None, *, timestep: float = MAX_TIMESTEP / 2) -> None:
        self.model = load_model("arm")
        self.model.opt.timestep = float(timestep)
        self.data = mujoco.MjData(self.model)
        self._qadr = arm_qpos_adr(self.model)
        self._vadr = arm_dof_adr(self.model)
        self.lower = self.model.jnt_range[[self.model.joint(n).id for n in SO101_MOTORS], 0].copy()
        self.upper = self.model.jnt_range[[self.model.joint(n).id for n in SO101_MOTORS], 1].copy()
        self._gain = self.model.actuator_gainprm[:N, 0].copy()
        self._bias = self.model.actuator_biasprm[:N, :3].copy()
        self._force_limit = np.abs(self.model.actuator_forcerange[:N]).max(axis=1)
        self._driven = np.ones(N, dtype=bool)
        self.reset(np.zeros(N) if q is None else q)

    def reset(self, q: np.ndarray | Sequence[float]) -> None:
        """Put the joints at `q` (radians, at rest) with the servos holding that position."""
        q = np.asarray(q, dtype=np.float64).reshape(-1)
        if q.shape != (N,) or not np.all(np.isfinite(q)):
            raise ValueError(
                f"q must be {N} finite joint angles in radians (bus order {SO101_MOTORS}), got {q}"
            )
        mujoco.mj_resetData(self.model, self.data)
        self.data.qpos[self._qadr] = q
        self.data.ctrl[:N] = np.clip(q, self.lower, self.upper)
        mujoco.mj_forward(self.model, self.data)
        self._t_goal = 0.0

    def _set_driven(self, driven: np.ndarray) -> None:
        if np.array_equal(driven, self._driven):
            return
        self._driven = driven.copy()
        self.model.actuator_gainprm[:N, 0] = np.where(driven, self._gain, 0.0)
        self.model.actuator_biasprm[:N, :3] = np.where(driven[:, None], self._bias, 0.0)

    def step(
        self,
        dt: float,
        q_target: np.ndarray | Sequence[float],
        driven: np.ndarray | Sequence[bool] | None = None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Advance `dt` seconds toward `q_target` (radians, clipped to the joint limits) and return
        (q, qd, effort) in bus order."""
        target = np.asarray(q_target, dtype=np.float64).reshape(-1)
        if target.shape != (N,) or not np.all(np.isfinite(target)):
            raise ValueError(f"q_target must be {N} finite joint angles in radians, got {target}")
        self._set_driven(
            np.ones(N, dtype=bool) if driven is None else np.asarray(driven, dtype=bool).reshape(N)
        )
        self.data.ctrl[:N] = np.clip(target, self.lower, self.upper)
        # Step until the model's clock catches up with the requested time, so that many calls with
        # arbitrary dt (wall-clock driven) neither drift nor accumulate rounding.
        self._t_goal += max(0.0, float(dt))
        n = math.floor((self._t_goal - self.data.time) / self.model.opt.timestep + 0.5)
        if n > 0:
            mujoco.mj_step(self.model, self.data, nstep=n)
        return self.q, self.qd, self.effort

    @property
    def q(self) -> np.ndarray:
        return self.data.qpos[self._qadr].copy()

    @property
    def qd(self) -> np.ndarray:
        return self.data.qvel[self._vadr].copy()

    @property
    def effort(self) -> np.ndarray:
        return np.clip(self.data.actuator_force[:N] / self._force_limit, -1.0, 1.0)

    @property
    def time(self) -> float:
        return float(self.data.time)

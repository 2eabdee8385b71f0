"""How the virtual arm's joints move: a pluggable dynamics interface and its default.

The virtual servo bus (`jrobot.sim.virtual_arm`) keeps, for each servo, the continuous *actual* joint
angle in encoder ticks (4096 per turn, unwrapped) and asks a `ServoDynamics` to advance it by `dt`
given what the servos are commanded to do. The default, `RateLimitedDynamics`, is a first-order
position loop with the STS3215's speed and acceleration limits; it needs nothing but numpy.

To drive the joints with a physics model instead, implement `RadianJointModel` (joint angles in
radians, the model's zero at mid-range) and wrap it in `RadianModelDynamics`, which converts ticks
<-> radians with each joint's zero tick and direction. `jrobot.sim.arm.ArmSim` (MuJoCo) is such a
model; `jrobot.sim.virtual_arm.mujoco_dynamics()` wires it up.

A dynamics step runs while a servo reply waits, so it must stay well under the host's packet timeout
(~34-50 ms): one call should take a few milliseconds at most, whatever `dt` is.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np

TICKS_PER_TURN = 4096
TICKS_PER_RAD = TICKS_PER_TURN / (2.0 * math.pi)
# STS3215 at 12 V: 0.222 s / 60 deg no-load -> ~270 deg/s ~= 3070 ticks/s.
STS3215_MAX_SPEED = 3000.0
ACCELERATION_UNIT = 100.0  # the Acceleration register counts 100 ticks/s^2; 0 means "no limit"


@dataclasses.dataclass
class JointCommands:
    """What each servo is asked to do, one entry per joint (numpy arrays of equal length).

    - `torque_on`: the servo drives the joint; off, the joint is free (back-drivable).
    - `mode`: Operating_Mode (0 position, 1 velocity; 2 PWM and 3 step are held in place).
    - `target`: position-mode target as a continuous actual angle in ticks.
    - `velocity`: velocity-mode speed in ticks/s (signed).
    - `max_velocity`: speed limit in ticks/s (Goal_Velocity, or the motor's maximum when 0).
    - `acceleration`: ticks/s^2; `inf` when unlimited.
    - `torque_limit`: 0..1 fraction of the maximum torque.
    - `stiffness`: P_Coefficient / 32 (the factory gain is 1.0).
    """

    torque_on: np.ndarray
    mode: np.ndarray
    target: np.ndarray
    velocity: np.ndarray
    max_velocity: np.ndarray
    acceleration: np.ndarray
    torque_limit: np.ndarray
    stiffness: np.ndarray


@runtime_checkable
class ServoDynamics(Protocol):
    """Advance the joints by `dt` seconds; return new (position, velocity, load) arrays.

    Positions and velocities are in actual-angle ticks and ticks/s; load is the signed fraction of
    maximum torque the servo applies (-1..1), reported as Present_Load.
    """

    def step(
        self, dt: float, position: np.ndarray, velocity: np.ndarray, cmd: JointCommands
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]: ...


class RateLimitedDynamics:
    """First-order position loop with speed and acceleration limits (the default dynamics).

    Position mode: the commanded speed is `(target - position) / tau`, with `tau` shrinking as the P
    gain grows, limited to `max_velocity`; the speed changes no faster than `acceleration`; a step never
    overshoots the target. Velocity mode tracks `velocity`. A joint with torque off keeps its position
    (the arm's friction holds it) unless something else moves it.

    A long `dt` is split into at most `max_substeps` steps, so one update costs well under a
    millisecond however long the bus was idle (a servo reply must never wait on the simulation:
    the host times out after ~34-50 ms); the no-overshoot rule keeps large steps stable.
    """

    def __init__(self, time_constant: float = 0.04, substep: float = 0.002, max_substeps: int = 40) -> None:
        if time_constant <= 0 or substep <= 0:
            raise ValueError("time_constant and substep must be positive")
        self.time_constant = float(time_constant)
        self.substep = float(substep)
        self.max_substeps = int(max_substeps)

    def step(
        self, dt: float, position: np.ndarray, velocity: np.ndarray, cmd: JointCommands
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        pos = np.array(position, dtype=np.float64)
        vel = np.array(velocity, dtype=np.float64)
        if dt <= 0:
            return pos, vel, self._load(pos, cmd)
        n = min(self.max_substeps, max(1, math.ceil(dt / self.substep)))
        h = dt / n
        # Plain floats per joint: for six joints this is several times faster than small-array numpy.
        for i in range(len(pos)):
            mode = int(cmd.mode[i])
            if not (cmd.torque_on[i] and mode in (0, 1)):
                vel[i] = 0.0
                continue
            p, v = float(pos[i]), float(vel[i])
            target, vmax = float(cmd.target[i]), float(cmd.max_velocity[i])
            dv_max = float(cmd.acceleration[i]) * h
            tau = self.time_constant / max(float(cmd.stiffness[i]), 1e-3)
            for _ in range(n):
                err = target - p
                v_des = err / tau if mode == 0 else float(cmd.velocity[i])
                v_des = min(vmax, max(-vmax, v_des))
                v += min(dv_max, max(-dv_max, v_des - v))
                step = v * h
                if mode == 0 and abs(step) >= abs(err):  # never overshoot: snap, and stop when there
                    step = err
                    if abs(err) < 0.5:
                        v = 0.0
                p += step
            pos[i], vel[i] = p, v
        return pos, vel, self._load(pos, cmd)

    @staticmethod
    def _load(pos: np.ndarray, cmd: JointCommands) -> np.ndarray:
        err = np.where(cmd.mode == 0, cmd.target - pos, 0.0)
        load = np.clip(err / 400.0 * cmd.stiffness, -1.0, 1.0) * cmd.torque_limit
        return np.where(cmd.torque_on, load, 0.0)


@runtime_checkable
class RadianJointModel(Protocol):
    """A joint-space model in radians (e.g. MuJoCo), one entry per joint in bus order.

    `step` advances the model by `dt` with position targets `q_target` for the joints whose
    `driven` flag is set (the others are free) and returns (q, qd, effort), effort as a fraction of
    the actuator's force range (-1..1). `q` must start from the positions given by `reset(q)`.
    """

    def reset(self, q: np.ndarray) -> None: ...

    def step(
        self, dt: float, q_target: np.ndarray, driven: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]: ...


class RadianModelDynamics:
    """Adapter: runs a `RadianJointModel` as the virtual arm's `ServoDynamics`.

    `zero_ticks[i]` is the actual encoder tick at which joint i is at the model's zero (mid-range,
    LeRobot's calibration convention) and `directions[i]` (+1/-1) maps increasing ticks to the
    model's joint axis. When something outside the model moves a joint (a scripted hand), the
    adapter notices that the positions it is given differ from the model's and resets the model.
    """

    def __init__(
        self,
        model: RadianJointModel,
        zero_ticks: Sequence[float],
        directions: Sequence[int] | None = None,
        *,
        ticks_per_rad: float = TICKS_PER_RAD,
        max_dt: float = 0.5,
    ) -> None:
        self.model = model
        self.ticks_per_rad = float(ticks_per_rad)
        self.max_dt = float(max_dt)  # longer idle gaps are not simulated (the servos were holding)
        self.zero_ticks = np.asarray(zero_ticks, dtype=np.float64)
        n = len(self.zero_ticks)
        self.directions = np.asarray(directions if directions is not None else [1] * n, dtype=np.float64)
        if self.directions.shape != (n,) or not np.all(np.abs(self.directions) == 1):
            raise ValueError(f"directions must be {n} values of +1/-1, got {directions}")
        self._last_pos: np.ndarray | None = None

    def to_radians(self, ticks: np.ndarray) -> np.ndarray:
        return (np.asarray(ticks, dtype=np.float64) - self.zero_ticks) / self.ticks_per_rad * self.directions

    def to_ticks(self, q: np.ndarray) -> np.ndarray:
        return np.asarray(q, dtype=np.float64) * self.directions * self.ticks_per_rad + self.zero_ticks

    def step(
        self, dt: float, position: np.ndarray, velocity: np.ndarray, cmd: JointCommands
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        position = np.asarray(position, dtype=np.float64)
        if self._last_pos is None or np.max(np.abs(self._last_pos - position)) > 0.5:
            self.model.reset(self.to_radians(position))
        driven = cmd.torque_on & (cmd.mode == 0)
        q, qd, effort = self.model.step(min(dt, self.max_dt), self.to_radians(cmd.target), driven)
        pos = self.to_ticks(q)
        vel = np.asarray(qd, dtype=np.float64) * self.directions * self.ticks_per_rad
        self._last_pos = pos.copy()
        load = np.clip(np.asarray(effort, dtype=np.float64), -1.0, 1.0) * cmd.torque_limit
        return pos, vel, np.where(cmd.torque_on, load, 0.0)

"""Joint motion of the virtual arm: servo-like dynamics, a scripted hand, and the pluggable model hook."""

from __future__ import annotations

import numpy as np
import pytest

from jrobot.sim.servo_dynamics import RadianModelDynamics, RateLimitedDynamics
from jrobot.sim.virtual_arm import SO101_MECHANICS, VirtualArm, mujoco_dynamics


class ManualClock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t

    def advance(self, dt: float) -> None:
        self.t += dt


@pytest.fixture
def clock():
    return ManualClock()


@pytest.fixture
def arm(clock):
    # No pty needed: the dynamics are stepped whenever the arm is looked at.
    return VirtualArm(wire_timing=False, clock=clock)


def torque_on(arm: VirtualArm, id_: int, goal: int) -> None:
    arm.set_register(id_, "Torque_Enable", 1)
    arm.set_register(id_, "Goal_Position", goal)


def test_position_follows_goal_with_rate_limit(arm, clock):
    torque_on(arm, 1, 1100)  # 1000 ticks below the start (2100)
    clock.advance(0.05)
    p = arm.register(1, "Present_Position")
    assert 2100 - 3000 * 0.05 - 1 <= p < 2100  # at most the STS3215's ~3000 ticks/s
    assert arm.register(1, "Moving") == 1
    assert arm.register(1, "Present_Velocity") < 0  # sign-magnitude decoded
    assert arm.register(1, "Present_Load") < 0
    clock.advance(2.0)
    assert arm.register(1, "Present_Position") == 1100
    assert arm.register(1, "Moving") == 0


def test_free_joint_does_not_move_toward_goal(arm, clock):
    arm.set_register(2, "Goal_Position", 500)
    clock.advance(1.0)
    assert arm.register(2, "Present_Position") == 1950


def test_goal_velocity_limits_speed(arm, clock):
    torque_on(arm, 3, 3000)
    arm.set_register(3, "Goal_Velocity", 500)
    clock.advance(0.5)
    moved = arm.register(3, "Present_Position") - 2230
    assert 200 <= moved <= 251


def test_acceleration_register_limits_acceleration(arm, clock):
    torque_on(arm, 4, 3000)
    arm.set_register(4, "Acceleration", 10)  # 10 x 100 ticks/s^2
    clock.advance(0.1)
    moved = arm.register(4, "Present_Position") - 1870
    assert 3 <= moved <= 7  # 1/2 a t^2 = 5 ticks


def test_higher_p_gain_is_stiffer(clock):
    def moved_after(p_gain: int) -> int:
        a = VirtualArm(wire_timing=False, clock=clock)
        a.set_register(1, "P_Coefficient", p_gain)
        torque_on(a, 1, 2150)
        clock.advance(0.02)
        return a.register(1, "Present_Position") - 2100

    assert moved_after(64) > moved_after(16)


def test_velocity_mode_turns_continuously(arm, clock):
    arm.set_register(5, "Operating_Mode", 1)
    arm.set_register(5, "Torque_Enable", 1)
    arm.set_register(5, "Goal_Velocity", -400)
    clock.advance(0.5)
    assert arm.actual_positions()[5] == pytest.approx(2048 - 200, abs=2)


def test_hand_moves_a_free_joint(arm, clock):
    arm.move_by_hand({6: 2500}, duration_s=1.0)
    clock.advance(0.5)
    assert arm.register(6, "Present_Position") == pytest.approx((1400 + 2500) / 2, abs=1)
    clock.advance(0.6)
    assert arm.register(6, "Present_Position") == 2500
    arm.wait_for_hand()


def test_hand_is_stopped_by_mechanical_limits(arm):
    arm.move_by_hand({1: 0}, frame="actual")
    assert arm.actual_positions()[1] == SO101_MECHANICS[0].lower


def test_hand_overpowers_torque_then_servo_returns(arm, clock):
    torque_on(arm, 2, 1950)
    arm.move_by_hand({2: 1500}, duration_s=0.2)
    clock.advance(0.1)
    assert arm.register(2, "Present_Load") == 1000  # full load while held away from the goal
    clock.advance(0.15)
    arm.register(2, "Present_Position")  # hand released at 1500
    clock.advance(2.0)
    assert arm.register(2, "Present_Position") == 1950


def test_queued_hand_motion_sweeps(arm, clock):
    arm.move_by_hand({1: 1000}, duration_s=0.1, queue=True)
    arm.move_by_hand({1: 3000}, duration_s=0.1, queue=True)
    seen = []
    for _ in range(25):
        clock.advance(0.01)
        seen.append(arm.register(1, "Present_Position"))
    assert min(seen) == 1000 and max(seen) == 3000
    assert seen[-1] == 3000


class FirstOrderRadians:
    """A stand-in joint-space model (what a MuJoCo arm would provide): q' = (target - q) / 0.05."""

    def __init__(self) -> None:
        self.q = np.zeros(6)
        self.resets = 0

    def reset(self, q: np.ndarray) -> None:
        self.q = np.array(q, dtype=float)
        self.resets += 1

    def step(self, dt, q_target, driven):
        a = min(1.0, dt / 0.05)
        new_q = np.where(driven, self.q + a * (q_target - self.q), self.q)
        qd = (new_q - self.q) / dt
        self.q = new_q
        return self.q.copy(), qd, np.where(driven, 0.1, 0.0)


def test_radian_model_drives_the_joints(clock):
    model = FirstOrderRadians()
    zeros = [m.zero for m in SO101_MECHANICS]
    dyn = RadianModelDynamics(model, zeros, directions=[1, -1, 1, 1, 1, 1])
    arm = VirtualArm(wire_timing=False, clock=clock, dynamics=dyn)
    torque_on(arm, 2, 1950 + 512)  # +45 deg in ticks
    clock.advance(1.0)
    assert arm.register(2, "Present_Position") == 1950 + 512
    assert model.q[1] == pytest.approx(-np.pi / 4, abs=1e-3)  # direction -1
    assert arm.register(2, "Present_Load") == 100  # 0.1 effort x torque limit 1.0
    resets = model.resets
    arm.move_by_hand({3: 2000})  # moved outside the model: it must be re-synchronised
    clock.advance(0.01)
    arm.register(3, "Present_Position")
    assert model.resets == resets + 1
    assert model.q[2] == pytest.approx((2000 - zeros[2]) * 2 * np.pi / 4096, abs=1e-6)


def test_dynamics_parameters_are_validated():
    with pytest.raises(ValueError):
        RateLimitedDynamics(time_constant=0)
    with pytest.raises(ValueError, match="directions"):
        RadianModelDynamics(FirstOrderRadians(), [0] * 6, directions=[1, 2, 1, 1, 1, 1])


def test_mujoco_model_drives_the_virtual_arm(clock):
    arm = VirtualArm(wire_timing=False, clock=clock, dynamics=mujoco_dynamics())
    torque_on(arm, 1, 2100 + 300)  # shoulder_pan: a vertical axis, gravity does not load it
    for _ in range(20):
        clock.advance(0.05)
        arm.register(1, "Present_Position")
    assert arm.register(1, "Present_Position") == pytest.approx(2400, abs=3)
    assert abs(arm.register(1, "Present_Load")) < 200
    # shoulder_lift had torque off: limp, it sagged under gravity as an unpowered arm does
    assert abs(arm.actual_positions()[2] - 1950) > 20

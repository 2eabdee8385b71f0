"""ArmSim: the MuJoCo arm as a joint-space plant (radians) for servo emulation."""

from __future__ import annotations

import numpy as np
import pytest

from jrobot.sim.arm import ArmSim


def test_steps_toward_the_goal_and_reports_effort():
    arm = ArmSim()
    goal = np.array([0.5, -0.4, 0.6, 0.3, -1.0, 0.8])
    q, qd, effort = arm.step(0.5, goal)
    np.testing.assert_allclose(q, goal, atol=0.02)
    assert np.all(np.abs(qd) < 0.5)
    assert arm.time == pytest.approx(0.5, abs=arm.model.opt.timestep)
    assert np.all(np.abs(effort) <= 1.0)
    # holding the upper arm against gravity takes effort on shoulder_lift
    assert abs(effort[1]) > 0.01


def test_many_small_steps_do_not_drift():
    arm = ArmSim()
    for _ in range(1000):
        arm.step(0.0013, np.zeros(6))
    assert arm.time == pytest.approx(1.3, abs=arm.model.opt.timestep)


def test_limp_joint_falls_under_gravity():
    arm = ArmSim(q=[0.0, 0.0, 0.0, 0.0, 0.0, 0.0])
    driven = np.array([True, False, True, True, True, True])
    q, _, effort = arm.step(1.0, np.zeros(6), driven)
    assert abs(q[1]) > 0.3  # the shoulder gave way
    assert effort[1] == 0.0
    q, *_ = arm.step(1.5, np.zeros(6))  # torque back on: it returns
    assert abs(q[1]) < 0.02


def test_reset_and_validation():
    arm = ArmSim()
    arm.reset([0.1, 0.2, 0.3, 0.4, 0.5, 0.6])
    np.testing.assert_allclose(arm.q, [0.1, 0.2, 0.3, 0.4, 0.5, 0.6])
    with pytest.raises(ValueError, match="6 finite"):
        arm.reset([0.0] * 5)
    with pytest.raises(ValueError, match="finite"):
        arm.step(0.01, [np.nan] * 6)


def test_matches_the_servo_bus_model_protocol():
    from jrobot.sim import servo_dynamics

    assert isinstance(ArmSim(), servo_dynamics.RadianJointModel)

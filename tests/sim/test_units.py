"""LeRobot units in the sim: degrees with zero at mid-range, gripper 0 (closed) .. 100 (open)."""

from __future__ import annotations

import mujoco
import numpy as np
import pytest

from jrobot.features import SO101_JOINT_KEYS
from jrobot.sim.simulator import SO101Sim
from jrobot.sim.units import (
    JOINT_RANGES_RAD,
    from_joint_dict,
    joint_limits,
    lerobot_to_rad,
    rad_to_lerobot,
    to_joint_dict,
)


def test_degrees_are_the_joint_angle_and_zero_is_mid_range():
    lo, hi = joint_limits(use_degrees=True)
    # shoulder_pan .. wrist_flex have symmetric ranges: zero is exactly mid-range
    np.testing.assert_allclose((lo[:4] + hi[:4]) / 2, 0.0, atol=1e-9)
    np.testing.assert_allclose(hi[:4], np.degrees(JOINT_RANGES_RAD[:4, 1]))
    q = np.array([0.1, -0.2, 0.3, -0.4, 0.5, 0.0])
    np.testing.assert_allclose(rad_to_lerobot(q)[:5], np.degrees(q[:5]))
    assert (lo[5], hi[5]) == pytest.approx((0.0, 100.0))


def test_range_mode_maps_limits_to_plus_minus_100():
    lo, hi = joint_limits(use_degrees=False)
    np.testing.assert_allclose(lo, [-100, -100, -100, -100, -100, 0])
    np.testing.assert_allclose(hi, [100, 100, 100, 100, 100, 100])
    mid = JOINT_RANGES_RAD.mean(axis=1)
    np.testing.assert_allclose(rad_to_lerobot(mid, use_degrees=False)[:5], 0.0, atol=1e-9)


@pytest.mark.parametrize("use_degrees", [True, False])
def test_round_trip(use_degrees):
    rng = np.random.default_rng(0)
    q = rng.uniform(JOINT_RANGES_RAD[:, 0], JOINT_RANGES_RAD[:, 1], size=(50, 6))
    back = lerobot_to_rad(rad_to_lerobot(q, use_degrees=use_degrees), use_degrees=use_degrees)
    np.testing.assert_allclose(back, q, atol=1e-12)


def _pad_gap(sim: SO101Sim) -> float:
    """Distance between the fixed and the moving jaw pad centres."""
    m, d = sim.model, sim.data
    return float(np.linalg.norm(d.geom_xpos[m.geom("fixed_pad").id] - d.geom_xpos[m.geom("moving_pad").id]))


def test_gripper_0_is_closed_and_100_is_open_in_the_physics():
    sim = SO101Sim("reach", cameras=())
    gaps = {}
    for pct in (0.0, 50.0, 100.0):
        target = sim.joint_positions()
        target[5] = pct
        for _ in range(30):
            sim.set_joint_targets(target)
            sim.step()
        assert sim.joint_positions()[5] == pytest.approx(pct, abs=1.5)
        gaps[pct] = _pad_gap(sim)
    assert gaps[0.0] < 0.01 < gaps[50.0] < gaps[100.0]


def test_present_position_follows_the_goal_in_degrees():
    sim = SO101Sim("reach", cameras=())
    goal = np.array([20.0, -30.0, 40.0, 60.0, -45.0, 30.0])
    for _ in range(45):
        sim.set_joint_targets(goal)
        sim.step()
    np.testing.assert_allclose(sim.joint_positions(), goal, atol=1.0)
    qpos = sim.data.qpos[[sim.model.joint(k.removesuffix(".pos")).qposadr[0] for k in SO101_JOINT_KEYS]]
    np.testing.assert_allclose(np.degrees(qpos[:5]), sim.joint_positions()[:5])
    assert sim.model.opt.timestep * sim.n_substeps == pytest.approx(1 / 30)
    assert mujoco.mj_name2id(sim.model, mujoco.mjtObj.mjOBJ_SITE, "tcp") >= 0


def test_joint_dict_round_trip_and_errors():
    v = np.arange(6, dtype=float)
    d = to_joint_dict(v)
    assert list(d) == list(SO101_JOINT_KEYS)
    np.testing.assert_array_equal(from_joint_dict(d), v)
    with pytest.raises(ValueError, match=r"missing \['gripper.pos'\]"):
        from_joint_dict({k: 0.0 for k in SO101_JOINT_KEYS[:5]})
    with pytest.raises(ValueError, match=r"unknown \['elbow.pos'\]"):
        from_joint_dict({**d, "elbow.pos": 1.0})
    with pytest.raises(ValueError, match=r"action\['wrist_roll.pos'\] must be finite"):
        from_joint_dict({**d, "wrist_roll.pos": float("nan")})
    with pytest.raises(ValueError, match="must be a number"):
        from_joint_dict({**d, "gripper.pos": "open"})

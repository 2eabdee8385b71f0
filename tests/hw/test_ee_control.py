"""End-effector control (`--teleop.type=keyboard_ee`): Cartesian steps become joint targets through IK in
LeRobot's frame, within the workspace box and the step limit, never NaN; driven from a terminal on the
simulated arm."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest

from jrobot.features import SO101_JOINT_KEYS
from jrobot.kinematics.ee_control import EEControlConfig, EEDeltaToJoints
from jrobot.kinematics.so101 import SO101Kinematics
from jrobot.recording.keyboard import KeyboardEETeleop, parse_keys

START = dict(zip(SO101_JOINT_KEYS, [0.0, -20.0, 30.0, 40.0, 0.0, 20.0], strict=True))


@pytest.fixture(scope="module")
def kin():
    return SO101Kinematics()


def arm(action):
    return [action[k] for k in SO101_JOINT_KEYS[:5]]


def test_steps_move_the_gripper_along_the_base_axes_keeping_its_orientation(kin):
    control = EEDeltaToJoints(EEControlConfig(step_m=0.005), kin)
    control.reset(START)
    start = kin.forward(arm(START))
    for axis, key in enumerate(("delta_x", "delta_y", "delta_z")):
        control.reset(START)
        for _ in range(10):
            action = control({key: 1.0})
        moved = kin.forward(arm(action))
        expected = start[:3, 3].copy()
        expected[axis] += 0.05
        np.testing.assert_allclose(moved[:3, 3], expected, atol=1e-3)
        # five joints cannot hold all six pose constraints: orientation (weighted 0.01 against position,
        # as LeRobot weights it) gives way by a few degrees, the yaw of a sideways move most
        angle = np.degrees(np.arccos(np.clip((np.trace(moved[:3, :3] @ start[:3, :3].T) - 1) / 2, -1, 1)))
        assert angle < 10.0, (key, angle)
        assert action["gripper.pos"] == START["gripper.pos"]


def test_bounds_step_limit_unreachable_targets_and_bad_input(kin):
    here = kin.position(arm(START))
    box = (tuple(here - 0.01), tuple(here + 0.01))
    control = EEDeltaToJoints(EEControlConfig(step_m=0.005, bounds_m=box), kin)
    control.reset(START)
    for _ in range(20):
        action = control({"delta_x": 1.0, "delta_z": -1.0})
    reached = kin.position(arm(action))
    assert np.all(reached <= np.array(box[1]) + 1e-3) and np.all(reached >= np.array(box[0]) - 1e-3)
    assert reached[0] == pytest.approx(box[1][0], abs=1e-3) and reached[2] == pytest.approx(
        box[0][2], abs=1e-3
    )

    big = EEDeltaToJoints(
        EEControlConfig(step_m=0.2, max_ee_step_m=0.05, bounds_m=((-1, -1, -1), (1, 1, 1))), kin
    )
    big.reset(START)
    last = kin.position(arm(START))
    for _ in range(12):  # toward and beyond the edge of the reach
        action = big({"delta_x": 1.0})
        now = kin.position(arm(action))
        assert np.linalg.norm(now - last) <= 0.05 + 1e-3  # never more than max_ee_step_m a tick
        assert all(np.isfinite(v) for v in action.values())
        last = now
    assert last[0] > kin.position(arm(START))[0] + 0.1  # it went as far as the arm reaches

    control.reset(START)
    before = control({})
    for bad in (
        {"delta_x": float("nan")},
        {"delta_y": "x"},
        {"delta_z": float("inf"), "gripper": float("nan")},
    ):
        assert control(bad) == pytest.approx(before, abs=1e-6)
    with pytest.raises(ValueError, match="not finite"):
        control.reset({**START, "elbow_flex.pos": float("nan")})
    with pytest.raises(ValueError, match="step_m must be a positive number"):
        EEControlConfig(step_m=0.0)
    with pytest.raises(ValueError, match="min < max"):
        EEControlConfig(bounds_m=((0, 0, 0), (0, 1, 1)))


def test_the_gripper_opens_and_closes_at_its_speed_within_0_100(kin):
    control = EEDeltaToJoints(EEControlConfig(gripper_speed=30.0), kin)
    control.reset(START)
    values = [control({"gripper": 2.0})["gripper.pos"] for _ in range(4)]
    assert values == [50.0, 80.0, 100.0, 100.0]
    values = [control({"gripper": 0.0})["gripper.pos"] for _ in range(5)]
    assert values == [70.0, 40.0, 10.0, 0.0, 0.0]


def test_parse_keys_with_letters():
    assert parse_keys(b"wW\x1b[Cq", letters=True) == ["w", "w", "right", "q"]
    assert parse_keys(b"wW\x1b[Cq") == ["right"]


def test_keys_from_a_terminal_drive_the_simulated_arm(kin):
    from jrobot.sim.robot import SimRobot

    robot = SimRobot(cameras=())
    read_end, write_end = os.pipe()
    teleop = KeyboardEETeleop(EEControlConfig(step_m=0.004), robot, fd=read_end)
    robot.connect()
    teleop.connect()
    try:
        for _ in range(40):  # settle at the start pose
            robot.send_action(START)
        start = kin.position(arm(robot.get_observation()))
        for key in b"rrrrrrrrrr" + b"eeee":
            os.write(write_end, bytes([key]))
            deadline = time.monotonic() + 2.0
            while not teleop._pending and time.monotonic() < deadline:
                time.sleep(0.002)
            robot.send_action(teleop.get_action())
        for _ in range(40):  # no keys: the target holds, the arm gets there
            action = teleop.get_action()
            robot.send_action(action)
        measured = robot.get_observation()
        moved = kin.position(arm(measured)) - start
        assert moved[2] == pytest.approx(0.04, abs=0.006) and abs(moved[0]) < 0.006 and abs(moved[1]) < 0.006
        assert action["gripper.pos"] == pytest.approx(START["gripper.pos"] + 4 * 5.0, abs=0.01)  # 4 e presses
    finally:
        teleop.disconnect()
        robot.disconnect()
        os.close(write_end)
        os.close(read_end)


def test_the_keyboard_teleop_takes_its_box_from_a_find_joint_limits_file(tmp_path):
    from jrobot.recording.devices import KeyboardEEConfig
    from jrobot.recording.joint_limits import write_limits

    path = tmp_path / "limits.json"
    box = {
        "min": [0.1, -0.2, 0.02],
        "max": [0.3, 0.2, 0.25],
        "link": "gripper_frame_link",
        "frame": "base_link",
    }
    write_limits(path, {"joints": {"a.pos": {"min": 0, "max": 1}}, "ee_position_m": box})
    assert KeyboardEEConfig(ee_bounds=path).bounds_m == (tuple(box["min"]), tuple(box["max"]))
    write_limits(
        path,
        {
            "joints": {"a.pos": {"min": 0, "max": 1}},
            "ee_position_m": {"min": box["min"], "max": box["max"], "site": "tcp", "frame": "base"},
        },
    )
    with pytest.raises(ValueError, match="not LeRobot's gripper_frame_link frame"):
        KeyboardEEConfig(ee_bounds=path)

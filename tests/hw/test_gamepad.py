"""Gamepad end-effector teleoperation: the kernel's joystick event stream (the bytes /dev/input/js*
gives) through a FIFO standing in for the device, driving the MuJoCo SO-101."""

from __future__ import annotations

import contextlib
import os
import time

import numpy as np
import pytest

from jrobot.features import SO101_JOINT_KEYS
from jrobot.kinematics.so101 import SO101Kinematics
from jrobot.recording.gamepad import (
    EVENT,
    JS_AXIS,
    JS_BUTTON,
    JS_INIT,
    GamepadEEConfig,
    GamepadEETeleop,
    GamepadError,
    GamepadNotFoundError,
    JoystickReader,
    find_gamepad,
)
from jrobot.sim.robot import SimRobot, SimRobotConfig


def _event(kind: int, number: int, value: int, t_ms: int = 0) -> bytes:
    return EVENT.pack(t_ms, value, kind, number)


@pytest.fixture
def pad(tmp_path):
    """A FIFO at <tmp>/js0 and its writing end, holding it open as the kernel's driver would."""
    path = tmp_path / "js0"
    os.mkfifo(path)
    fd = os.open(path, os.O_RDWR)  # a FIFO opened read-write never blocks and keeps a writer present
    # what joydev sends first on open: the initial state of every axis and button, marked JS_INIT
    init = b"".join(_event(JS_AXIS | JS_INIT, n, 0) for n in range(6))
    init += b"".join(_event(JS_BUTTON | JS_INIT, n, 0) for n in range(8))
    os.write(fd, init)
    yield path, fd
    with contextlib.suppress(OSError):
        os.close(fd)


def _wait_for(predicate, timeout=2.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return False


def test_find_gamepad_names_the_folder_when_there_is_none(tmp_path):
    with pytest.raises(GamepadNotFoundError, match=str(tmp_path)):
        find_gamepad(str(tmp_path))
    (tmp_path / "js1").touch()
    (tmp_path / "js0").touch()
    assert find_gamepad(str(tmp_path)) == str(tmp_path / "js0")
    with pytest.raises(GamepadNotFoundError, match="no such gamepad device"):
        JoystickReader(str(tmp_path / "js7"))


def test_reader_keeps_the_latest_state_across_split_events(pad):
    path, fd = pad
    reader = JoystickReader(str(path))
    try:
        assert _wait_for(lambda: len(reader.state()[0]) == 6 and len(reader.state()[1]) == 8)
        ev = _event(JS_AXIS, 1, -32767) + _event(JS_BUTTON, 5, 1)
        os.write(fd, ev[:5])  # an event cut in two by the pipe: kept until its other half arrives
        time.sleep(0.1)
        assert reader.state()[0][1] == 0.0
        os.write(fd, ev[5:])
        assert _wait_for(lambda: reader.state()[0][1] == -1.0 and reader.state()[1][5])
    finally:
        reader.close()


@pytest.fixture
def sim():
    robot = SimRobot(SimRobotConfig(cameras=(), seed=0))
    robot.connect()
    yield robot
    robot.disconnect()


def _drive(teleop, robot, ticks):
    for _ in range(ticks):
        robot.send_action(teleop.get_action())


def test_sticks_move_the_gripper_and_the_bumpers_work_it(pad, sim):
    path, fd = pad
    kin = SO101Kinematics()
    config = GamepadEEConfig(device=str(path), step_m=0.002)
    teleop = GamepadEETeleop(config, sim)
    teleop.connect()
    try:
        assert _wait_for(lambda: len(teleop._reader.state()[0]) == 6)

        def ee():
            obs = sim.get_observation()
            return kin.position([obs[k] for k in SO101_JOINT_KEYS[:5]])

        start = ee()
        os.write(fd, _event(JS_AXIS, 1, 3000))  # inside the deadzone: nothing moves
        time.sleep(0.05)
        _drive(teleop, sim, 10)
        assert np.linalg.norm(ee() - start) < 1e-3
        os.write(fd, _event(JS_AXIS, 1, -32767))  # left stick pushed away: forward, +x
        assert _wait_for(lambda: teleop.delta()["delta_x"] == 1.0)
        _drive(teleop, sim, 10)
        moved = ee() - start
        assert 0.012 < moved[0] < 0.024 and abs(moved[1]) < 3e-3 and abs(moved[2]) < 3e-3, moved
        os.write(fd, _event(JS_AXIS, 1, 0) + _event(JS_AXIS, 4, -32767))  # right stick up: +z
        assert _wait_for(lambda: teleop.delta()["delta_z"] == 1.0 and teleop.delta()["delta_x"] == 0.0)
        z0 = ee()[2]
        _drive(teleop, sim, 10)
        assert ee()[2] - z0 > 0.012
        grip0 = sim.get_observation()["gripper.pos"]
        os.write(fd, _event(JS_AXIS, 4, 0) + _event(JS_BUTTON, 4, 1))  # LB: open
        assert _wait_for(lambda: teleop.delta()["gripper"] == 2.0)
        _drive(teleop, sim, 10)
        assert sim.get_observation()["gripper.pos"] > grip0 + 10
        os.write(fd, _event(JS_BUTTON, 4, 0) + _event(JS_BUTTON, 5, 1))  # RB: close
        assert _wait_for(lambda: teleop.delta()["gripper"] == 0.0)
    finally:
        teleop.disconnect()


def test_an_unplugged_pad_ends_the_loop_instead_of_repeating_its_last_command(pad, sim):
    path, fd = pad
    teleop = GamepadEETeleop(GamepadEEConfig(device=str(path)), sim)
    teleop.connect()
    try:
        os.write(fd, _event(JS_AXIS, 1, -32767))
        assert _wait_for(lambda: teleop.delta()["delta_x"] == 1.0)
        os.close(fd)  # the last writer goes: what a read sees when the pad is pulled out
        with pytest.raises(GamepadError, match="went away"):
            assert _wait_for(lambda: teleop.get_action() is None, timeout=2.0)
    finally:
        teleop.disconnect()


def test_gamepad_config_checks_its_values():
    with pytest.raises(ValueError, match="deadzone"):
        GamepadEEConfig(deadzone=1.5)

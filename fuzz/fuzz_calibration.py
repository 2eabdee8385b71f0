"""Calibration JSON (LeRobot's format): the bytes are a calibration file, read by `load_calibration`
and checked against the SO-101's motor names and ids, as the robot does when it connects."""

from __future__ import annotations

from fuzz.harness import expect_own_error, scratch
from jrobot.features import SO101_MOTORS
from jrobot.hw.calibration import load_calibration
from jrobot.hw.errors import CalibrationError

MOTOR_IDS = {name: i + 1 for i, name in enumerate(SO101_MOTORS)}


def TestOneInput(data: bytes) -> None:
    path = scratch("calibration") / "so101_follower.json"
    path.write_bytes(data)
    expect_own_error(lambda: load_calibration(path, MOTOR_IDS), own=(CalibrationError,), names=str(path))

"""Sign-magnitude registers and LeRobot's normalization arithmetic (the reference's verified examples)."""

from __future__ import annotations

import pytest

from jrobot.hw.calibration import MotorCalibration
from jrobot.hw.encoding import (
    decode_register,
    decode_sign_magnitude,
    encode_register,
    encode_sign_magnitude,
    split_bytes,
)
from jrobot.hw.errors import CalibrationError
from jrobot.hw.normalization import MotorNormMode, normalize, unnormalize, value_limits

DEG, M100, R100 = MotorNormMode.DEGREES, MotorNormMode.RANGE_M100_100, MotorNormMode.RANGE_0_100


def cal(lo: int, hi: int, drive_mode: int = 0) -> MotorCalibration:
    return MotorCalibration(id=1, drive_mode=drive_mode, homing_offset=0, range_min=lo, range_max=hi)


def test_reference_sign_magnitude_examples():
    assert encode_sign_magnitude(-710, 11) == 2758 == 0xAC6
    assert encode_sign_magnitude(-1, 11) == 2049
    assert decode_sign_magnitude(0x8005, 15) == -5
    assert encode_register("Homing_Offset", -710) == 2758
    assert decode_register("Present_Load", 0x400 | 300) == -300  # bit 10
    assert decode_register("Present_Position", 0x8005) == -5
    assert encode_register("Min_Position_Limit", 758) == 758  # plain unsigned


@pytest.mark.parametrize("bit", [10, 11, 15])
def test_sign_magnitude_round_trip(bit):
    for v in range(-(1 << bit) + 1, 1 << bit, 37):
        assert decode_sign_magnitude(encode_sign_magnitude(v, bit), bit) == v


def test_sign_magnitude_overflow_raises():
    with pytest.raises(ValueError, match="2048 exceeds 2047"):
        encode_sign_magnitude(2048, 11)  # a raw 4095 at half-turn homing


def test_split_bytes_little_endian_and_checks():
    assert split_bytes(2758, 2) == [0xC6, 0x0A]
    assert split_bytes(0x01020304, 4) == [4, 3, 2, 1]
    with pytest.raises(ValueError, match="negative"):
        split_bytes(-1, 2)
    with pytest.raises(ValueError, match="does not fit"):
        split_bytes(256, 1)


def test_degrees_examples():
    c = cal(1000, 3000)
    assert normalize(2000, DEG, c) == 0.0
    assert normalize(3500, DEG, c) == pytest.approx(131.87, abs=0.005)  # unclamped
    assert unnormalize(87.9, DEG, c) == 2999  # int() truncates 2999.86
    assert unnormalize(-0.05, DEG, c) == 1999  # int() truncates toward zero: 1999.43
    assert normalize(2047, DEG, cal(0, 4095)) == pytest.approx(-0.044, abs=0.0005)  # wrist_roll


def test_range_examples():
    c = cal(1000, 3000)
    assert normalize(2500, M100, c) == 50
    assert normalize(500, M100, c) == -100  # clamped
    assert normalize(2700, R100, cal(2000, 3400)) == 50  # gripper
    assert unnormalize(50, M100, c) == 2500
    assert unnormalize(150, M100, c) == 3000  # clamped to +100
    assert unnormalize(-20, R100, c) == 1000


def test_drive_mode_inverts_range_modes_only():
    c = cal(1000, 3000, drive_mode=1)
    assert normalize(2500, M100, c) == -50
    assert normalize(2500, R100, c) == 25
    assert normalize(2500, DEG, c) == normalize(2500, DEG, cal(1000, 3000))
    assert unnormalize(-50, M100, c) == 2500


def test_equal_range_is_an_error():
    with pytest.raises(CalibrationError, match="'elbow_flex'"):
        normalize(1, M100, cal(5, 5), name="elbow_flex")


def test_value_limits_match_the_range():
    assert value_limits(M100, cal(1000, 3000)) == (-100, 100)
    lo, hi = value_limits(DEG, cal(1000, 3000))
    assert lo == pytest.approx(-87.91, abs=0.01) and hi == pytest.approx(87.91, abs=0.01)

"""LeRobot's motor normalization modes, with exactly its arithmetic (int truncation included).

Only Goal_Position and Present_Position are normalized. With `min = range_min`, `max = range_max`:

| mode           | raw -> value                                      | value -> raw                              |
|----------------|---------------------------------------------------|-------------------------------------------|
| RANGE_M100_100 | clamp to [min, max]; (b-min)/(max-min)*200 - 100  | clamp to [-100, 100]; int((b+100)/200*(max-min)+min) |
| RANGE_0_100    | clamp to [min, max]; (b-min)/(max-min)*100        | clamp to [0, 100]; int(b/100*(max-min)+min) |
| DEGREES        | (v - mid) * 360 / 4095, mid = (min+max)/2, unclamped | int(x * 4095 / 360 + mid)              |

`drive_mode` inverts the range modes (LeRobot applies it for Feetech; it is 0 on SO arms) and is
ignored in DEGREES mode, as in LeRobot. `int()` truncates toward zero.
"""

from __future__ import annotations

import enum

from jrobot.hw.calibration import MotorCalibration
from jrobot.hw.errors import CalibrationError


class MotorNormMode(enum.StrEnum):
    RANGE_0_100 = "range_0_100"
    RANGE_M100_100 = "range_m100_100"
    DEGREES = "degrees"


def _check(name: str, cal: MotorCalibration) -> tuple[int, int]:
    if cal.range_max == cal.range_min:
        raise CalibrationError(f"invalid calibration for motor {name!r}: range_min and range_max are equal")
    return cal.range_min, cal.range_max


def normalize(
    raw: int, mode: MotorNormMode, cal: MotorCalibration, *, resolution: int = 4096, name: str = "?"
) -> float:
    """Raw position (sign-decoded) -> user units."""
    lo, hi = _check(name, cal)
    if mode is MotorNormMode.DEGREES:
        mid = (lo + hi) / 2
        return (raw - mid) * 360 / (resolution - 1)
    bounded = min(hi, max(lo, raw))
    if mode is MotorNormMode.RANGE_M100_100:
        norm = ((bounded - lo) / (hi - lo)) * 200 - 100
        return -norm if cal.drive_mode else norm
    if mode is MotorNormMode.RANGE_0_100:
        norm = ((bounded - lo) / (hi - lo)) * 100
        return 100 - norm if cal.drive_mode else norm
    raise ValueError(f"unknown normalization mode {mode!r}")


def unnormalize(
    value: float, mode: MotorNormMode, cal: MotorCalibration, *, resolution: int = 4096, name: str = "?"
) -> int:
    """User units -> raw position (before sign encoding)."""
    lo, hi = _check(name, cal)
    if mode is MotorNormMode.DEGREES:
        mid = (lo + hi) / 2
        return int((value * (resolution - 1) / 360) + mid)
    if mode is MotorNormMode.RANGE_M100_100:
        value = -value if cal.drive_mode else value
        bounded = min(100.0, max(-100.0, value))
        return int(((bounded + 100) / 200) * (hi - lo) + lo)
    if mode is MotorNormMode.RANGE_0_100:
        value = 100 - value if cal.drive_mode else value
        bounded = min(100.0, max(0.0, value))
        return int((bounded / 100) * (hi - lo) + lo)
    raise ValueError(f"unknown normalization mode {mode!r}")


def value_limits(
    mode: MotorNormMode, cal: MotorCalibration, *, resolution: int = 4096
) -> tuple[float, float]:
    """The user-unit interval that maps inside [range_min, range_max] (what the servo can reach)."""
    a = normalize(cal.range_min, mode, cal, resolution=resolution)
    b = normalize(cal.range_max, mode, cal, resolution=resolution)
    return (min(a, b), max(a, b))

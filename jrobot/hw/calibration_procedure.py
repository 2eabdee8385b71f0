"""LeRobot's interactive SO-arm calibration: half-turn homing, then range recording.

Steps (identical prompts and register writes to LeRobot 0.4.4's `SOFollower.calibrate`):
1. If a calibration file exists: ENTER writes its values to the motors; 'c' + ENTER recalibrates.
2. Torque off (EPROM unlocked) and position mode on every motor.
3. The user puts the arm in the middle of its range and presses ENTER: homing offsets are reset, the
   raw positions read, and `offset = position - 2047` written, so that pose reads 2047.
4. The user moves every joint except the full-turn one (wrist_roll) through its range; positions are
   read until ENTER. Min/max become range_min/range_max; wrist_roll gets 0..4095.
5. Offsets and limits are written to the motors; the caller saves the file.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from jrobot.hw.calibration import MotorCalibration
from jrobot.hw.feetech import FeetechBus
from jrobot.hw.prompts import Prompter
from jrobot.hw.tables import MODEL_RESOLUTION


def _table(positions: Mapping[str, int], mins: Mapping[str, int], maxes: Mapping[str, int]) -> str:
    lines = [
        "-------------------------------------------",
        f"{'NAME':<15} | {'MIN':>6} | {'POS':>6} | {'MAX':>6}",
    ]
    lines += [f"{m:<15} | {mins[m]:>6} | {positions[m]:>6} | {maxes[m]:>6}" for m in positions]
    return "\n".join(lines)


def run_calibration(
    bus: FeetechBus,
    *,
    label: str,
    device_id: str | None,
    existing: Mapping[str, MotorCalibration] | None,
    prompter: Prompter,
    full_turn_motors: Sequence[str] = ("wrist_roll",),
) -> tuple[dict[str, MotorCalibration], bool]:
    """Calibrate the motors on `bus`; returns (calibration, reused_existing_file).

    The bus must be connected. The new calibration is written to the motors and cached on the bus;
    saving it to a file is the caller's job (only when it is new).
    """
    if existing:
        answer = prompter.ask(
            f"Press ENTER to use provided calibration file associated with the id {device_id}, "
            "or type 'c' and press ENTER to run calibration: "
        )
        if answer.strip().lower() != "c":
            bus.disable_torque()
            bus.write_calibration(existing)
            return dict(existing), True

    prompter.show(f"\nRunning calibration of {label}")
    bus.disable_torque()
    bus.set_position_mode()
    prompter.ask(f"Move {label} to the middle of its range of motion and press ENTER....")
    homing_offsets = bus.set_half_turn_homings()

    ranged = [m for m in bus.motors if m not in full_turn_motors]
    names = ", ".join(f"'{m}'" for m in full_turn_motors)
    prompter.show(
        f"Move all joints except {names} sequentially through their entire ranges of motion.\n"
        "Recording positions. Press ENTER to stop..."
    )
    mins, maxes = bus.record_ranges_of_motion(
        ranged, stop=prompter.enter_pressed, on_sample=lambda p, lo, hi: prompter.live(_table(p, lo, hi))
    )
    for m in full_turn_motors:
        mins[m] = 0
        maxes[m] = MODEL_RESOLUTION[bus.motors[m].model] - 1

    calibration = {
        m: MotorCalibration(
            id=motor.id,
            drive_mode=0,
            homing_offset=int(homing_offsets[m]),
            range_min=int(mins[m]),
            range_max=int(maxes[m]),
        )
        for m, motor in bus.motors.items()
    }
    bus.write_calibration(calibration)
    return calibration, False

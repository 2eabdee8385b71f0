"""Calibrate an SO-101 follower or leader, LeRobot-style (`lerobot-calibrate`).

    python -m jrobot.calibrate --robot.type=so101_follower --robot.port=/dev/ttyACM0 --robot.id=black
    python -m jrobot.calibrate --teleop.type=so101_leader --teleop.port=/dev/ttyACM1 --teleop.id=blue

Prompts come from stdin (ENTER, or 'c' + ENTER to redo an existing calibration), so the procedure can
be scripted. The file is written in LeRobot's format and folders (see `jrobot.hw.calibration`).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

from jrobot.cli import Binder, run_tool
from jrobot.hw.safety import torque_safety
from jrobot.recording.devices import device_from_flags

USAGE = __doc__ or ""


def main(argv: Sequence[str]) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    binder = Binder.from_argv(argv)
    device = device_from_flags(binder)
    binder.finish()
    with torque_safety(device):
        device.connect(calibrate=False)
        device.calibrate()
    return 0


if __name__ == "__main__":
    sys.exit(run_tool(main, usage=USAGE))

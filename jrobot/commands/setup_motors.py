"""Give each motor of a new SO-101 arm its id and 1 Mbps, one motor at a time (`lerobot-setup-motors`).

    python -m jrobot.setup_motors --robot.type=so101_follower --robot.port=/dev/ttyACM0
    python -m jrobot.setup_motors --teleop.type=so101_leader --teleop.port=/dev/ttyACM1

For each motor, gripper first, the tool asks you to connect the board to that motor only and press
ENTER; it then finds the motor at whatever baud rate and id it has (broadcast ping), disables its
torque, writes its id and the bus baud rate, and checks it answers with them.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

from jrobot.cli import Binder, run_tool
from jrobot.recording.devices import device_from_flags

USAGE = __doc__ or ""


def main(argv: Sequence[str]) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    binder = Binder.from_argv(argv)
    device = device_from_flags(binder)
    binder.finish()
    device.setup_motors()
    return 0


if __name__ == "__main__":
    sys.exit(run_tool(main, usage=USAGE))

"""Find which serial port is the arm's servo board (`lerobot-find-port`).

    python -m jrobot.find_port [--dev_dir=/dev]

Lists the ports, asks you to unplug the board's USB cable and press ENTER, and names the port that
disappeared. USB serial adapters are listed with their description and vendor:product id.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Sequence

from jrobot.cli import Binder, run_tool
from jrobot.hw.ports import find_port_by_unplugging
from jrobot.hw.prompts import ConsolePrompter

USAGE = __doc__ or ""


@dataclasses.dataclass
class FindPortOptions:
    dev_dir: str = "/dev"
    settle_s: float = 0.5  # time for the OS to remove the device node


def main(argv: Sequence[str]) -> int:
    binder = Binder.from_argv(argv)
    opts = binder.build(FindPortOptions)
    binder.finish()
    port = find_port_by_unplugging(ConsolePrompter.shared(), opts.dev_dir, opts.settle_s)
    print(f"The port of this MotorsBus is '{port}'")
    print("Reconnect the USB cable.")
    return 0


if __name__ == "__main__":
    sys.exit(run_tool(main, usage=USAGE))

"""Find which serial port is the arm's servo board (`lerobot-find-port`).

    python -m jrobot.find_port [--dev_dir=/dev]

Lists the ports, asks you to unplug the board's USB cable and press ENTER, and names the port that
disappeared. USB serial adapters are listed with their description and vendor:product id.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Sequence

from jrobot.cli import Binder, run_tool
from jrobot.hw.ports import candidate_ports, usb_serial_ports
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
    prompter = ConsolePrompter.shared()
    print("Finding all available ports for the MotorsBus.")
    before = candidate_ports(opts.dev_dir)
    usb = usb_serial_ports()
    if usb:
        print("USB serial adapters: " + ", ".join(f"{d} ({desc})" for d, desc in usb))
    print("Ports before disconnecting:", before)
    prompter.ask("Remove the USB cable from your MotorsBus and press Enter when done.\n")
    time.sleep(opts.settle_s)
    after = candidate_ports(opts.dev_dir)
    gone = sorted(set(before) - set(after))
    if len(gone) == 1:
        print(f"The port of this MotorsBus is '{gone[0]}'")
        print("Reconnect the USB cable.")
        return 0
    if not gone:
        raise OSError("could not detect the port: no port disappeared (was the right cable unplugged?)")
    raise OSError(f"could not detect the port: several ports disappeared ({gone})")


if __name__ == "__main__":
    sys.exit(run_tool(main, usage=USAGE))

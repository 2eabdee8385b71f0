"""Serial-port discovery and the advice printed when a port cannot be used."""

from __future__ import annotations

import grp
import os
import platform
import stat
import time
from pathlib import Path
from typing import Any

from serial.tools import list_ports  # imported up front: error paths must not need new imports

from jrobot.hw.errors import PortNotFoundError


def candidate_ports(dev_dir: str | Path = "/dev") -> list[str]:
    """Ports a USB servo board can appear as, sorted (LeRobot's `find_available_ports`).

    On Linux and macOS that is every `tty*` entry under `dev_dir` (USB boards show up as ttyACM*,
    ttyUSB*, tty.usbmodem*); on Windows the COM ports pyserial lists.
    """
    if platform.system() == "Windows":
        return sorted(p.device for p in list_ports.comports())
    return sorted(str(p) for p in Path(dev_dir).glob("tty*"))


def usb_serial_ports() -> list[tuple[str, str]]:
    """(device, description) of the USB serial adapters pyserial can see."""
    out = []
    for p in list_ports.comports():
        if p.vid is None:
            continue
        desc = f"{p.description or ''} [{p.vid:04x}:{p.pid:04x}]".strip()
        out.append((p.device, desc))
    return sorted(out)


def describe_available_ports() -> str:
    usb = usb_serial_ports()
    if not usb:
        return "No USB serial adapter is visible (is the servo board plugged in and powered?)."
    return "USB serial ports present: " + ", ".join(f"{d} ({desc})" for d, desc in usb) + "."


def permission_help(port: str) -> str:
    """How to get access to `port` on this OS (group membership or a udev rule on Linux)."""
    if platform.system() != "Linux":
        return "Check that your user may open the device (on macOS, try unplugging/replugging the board)."
    group = "dialout"
    try:
        st = os.stat(port)
        if stat.S_ISCHR(st.st_mode):
            group = grp.getgrgid(st.st_gid).gr_name
    except (OSError, KeyError):
        pass
    ids = ""
    for device, desc in usb_serial_ports():
        if os.path.realpath(device) == os.path.realpath(port) and "[" in desc:
            vid, pid = desc.rsplit("[", 1)[1].rstrip("]").split(":")
            ids = f', ATTRS{{idVendor}}=="{vid}", ATTRS{{idProduct}}=="{pid}"'
    return (
        f"On Linux the port belongs to the '{group}' group. Either add yourself to it:\n"
        f"    sudo usermod -aG {group} $USER    (then log out and back in, or run `newgrp {group}`)\n"
        "or install a udev rule that opens it to your user:\n"
        f'    echo \'SUBSYSTEM=="tty"{ids}, MODE="0666"\' | sudo tee /etc/udev/rules.d/99-jrobot-so101.rules\n'
        "    sudo udevadm control --reload-rules && sudo udevadm trigger"
    )


def find_port_by_unplugging(
    prompter: Any, dev_dir: str | Path = "/dev", settle_s: float = 0.5, say: Any = print
) -> str:
    """The serial port that disappears while the user unplugs the arm's USB cable (`lerobot-find-port`)."""
    if not Path(dev_dir).is_dir():
        raise PortNotFoundError(f"{dev_dir}: no such device folder (the ports are listed under /dev)")
    say("Finding all available ports for the MotorsBus.")
    before = candidate_ports(dev_dir)
    usb = usb_serial_ports()
    if usb:
        say("USB serial adapters: " + ", ".join(f"{d} ({desc})" for d, desc in usb))
    say(f"Ports before disconnecting: {before}")
    prompter.ask("Remove the USB cable from your MotorsBus and press Enter when done.\n")
    time.sleep(settle_s)
    gone = sorted(set(before) - set(candidate_ports(dev_dir)))
    if len(gone) == 1:
        return gone[0]
    if not gone:
        raise OSError("could not detect the port: no port disappeared (was the right cable unplugged?)")
    raise OSError(f"could not detect the port: several ports disappeared ({gone})")

"""`python -m jrobot.virtual_arm` / `jrobot-virtual-arm`: a virtual SO-101 servo bus on a pty, for any tool.

It prints the pty's path as the first line of stdout and answers the Feetech protocol there as an
SO-101's bus does (`jrobot.sim.virtual_arm`), so jrobot's tools and LeRobot's run against it unmodified:

    python -m jrobot.virtual_arm --control /tmp/arm.sock        # then: --robot.port=<printed path>
    python -m jrobot.virtual_arm --factory --control /tmp/arm.sock   # loose motors for setup_motors

Ctrl-C or SIGTERM stop it. `--control` takes JSON commands on a Unix socket (`VirtualArmClient`).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Sequence
from typing import NoReturn

from jrobot.cli import CliError, run_tool
from jrobot.features import SO101_MOTORS
from jrobot.sim.sts3215 import BAUD_RATES, EpromLockPolicy, Sts3215
from jrobot.sim.virtual_arm import (
    SO101_MECHANICS,
    ControlServer,
    Faults,
    JointMechanics,
    VirtualArm,
    mujoco_dynamics,
)


def _parse_pairs(text: str, flag: str) -> dict[int, int]:
    out = {}
    for item in filter(None, text.split(",")):
        try:
            k, v = item.split(":")
            out[int(k)] = int(v)
        except ValueError as e:
            raise CliError(f"{flag}: expected 'id:value[,id:value]', got {text!r}") from e
    return out


def _build_arm(args: argparse.Namespace) -> VirtualArm:
    """The `VirtualArm` the command-line flags describe."""
    ids = [int(x) for x in args.ids.split(",") if x]
    if len(set(ids)) != len(ids) and not args.factory:
        raise CliError(f"--ids has duplicates: {args.ids}")
    major, _, minor = args.firmware.partition(".")
    fw = (int(major), int(minor or 0))
    firmware_of = {
        k: (v // 100, v % 100) for k, v in _parse_pairs(args.firmware_per_id, "--firmware-per-id").items()
    }
    models = _parse_pairs(args.model_per_id, "--model-per-id")
    policy = EpromLockPolicy(args.lock_policy)
    servos = []
    mechanics: list[JointMechanics | None] = []
    for slot, id_ in enumerate(ids):
        mech = SO101_MECHANICS[slot] if slot < len(SO101_MECHANICS) else None
        servos.append(
            Sts3215(
                1 if args.factory else id_,
                baudrate=args.baudrate,
                actual_position=mech.zero if mech else 2048.0,
                firmware=firmware_of.get(id_, fw),
                model_number=models.get(id_, 777),
                eprom_lock_policy=policy,
                name=SO101_MOTORS[slot] if slot < len(SO101_MOTORS) else f"servo{slot}",
            )
        )
        mechanics.append(None if args.factory else mech)
    faults = Faults(
        drop_rate=args.drop_rate,
        corrupt_rate=args.corrupt_rate,
        delay_s=args.delay_ms / 1000.0,
        seed=args.seed,
    )
    arm = VirtualArm(
        servos,
        mechanics=mechanics,
        dynamics=mujoco_dynamics() if args.dynamics == "mujoco" and not args.factory else None,
        faults=faults,
        wire_timing=not args.no_wire_timing,
        state_file=args.state,
        link=args.link,
    )
    for id_ in filter(None, args.absent_ids.split(",")):
        arm.unplug(arm.servos[ids.index(int(id_))])
    if args.factory:  # loose motors on the desk: plug them in one at a time (control socket, by slot)
        for servo in arm.servos:
            arm.unplug(servo)
    for id_, bits in _parse_pairs(args.error_bits, "--error-bits").items():
        arm.set_error_bits(arm.servos[ids.index(id_)], bits)
    arm.log_packets = args.log_packets
    return arm


class _Parser(argparse.ArgumentParser):
    """argparse whose errors are jrobot's one line (`run_tool`), not a usage dump and exit."""

    def error(self, message: str) -> NoReturn:
        raise CliError(message)


def make_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="python -m jrobot.virtual_arm",
        description="Virtual SO-101 servo bus on a pty. Prints the port path as the first line.",
    )
    p.add_argument("--ids", default="1,2,3,4,5,6", help="servo ids in joint order")
    p.add_argument("--baudrate", type=int, default=1_000_000, choices=sorted(BAUD_RATES.values()))
    p.add_argument(
        "--factory",
        action="store_true",
        help="factory-fresh loose servos for setup_motors: all id 1, all unplugged; plug them one at a time "
        'through the control socket ({"cmd": "plug", "slot": 5})',
    )
    p.add_argument("--firmware", default="3.10", help="firmware version major.minor of every servo")
    p.add_argument("--firmware-per-id", default="", help="id:MMmm pairs, e.g. 3:309 for 3.9 on servo 3")
    p.add_argument("--model-per-id", default="", help="id:model pairs, e.g. 2:2825 (an sts3250)")
    p.add_argument(
        "--lock-policy",
        default="volatile",
        choices=[e.value for e in EpromLockPolicy],
        help="EPROM writes while Lock=1: volatile (applied, not saved; the manual) or ignore (dropped)",
    )
    p.add_argument("--state", default=None, help="JSON file keeping saved EPROM and positions across runs")
    p.add_argument("--link", default=None, help="create this symlink to the pty (stable port name)")
    p.add_argument("--control", default=None, help="Unix socket path for scripting (see VirtualArmClient)")
    p.add_argument("--drop-rate", type=float, default=0.0, help="probability that a reply is dropped")
    p.add_argument("--corrupt-rate", type=float, default=0.0, help="probability of a corrupted checksum")
    p.add_argument("--delay-ms", type=float, default=0.0, help="extra delay before every reply")
    p.add_argument("--absent-ids", default="", help="servos that do not answer, e.g. 3,4")
    p.add_argument("--error-bits", default="", help="id:bits forced into status packets, e.g. 6:32")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--no-wire-timing", action="store_true", help="answer immediately instead of at UART speed"
    )
    p.add_argument("--log-packets", action="store_true", help="log every packet to stderr")
    p.add_argument(
        "--dynamics",
        default="servo",
        choices=["servo", "mujoco"],
        help="joint motion: 'servo' (rate-limited position loop) or 'mujoco' (the MuJoCo SO-101, for followers)",
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = make_parser().parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO if args.log_packets else logging.WARNING, stream=sys.stderr)
    arm = _build_arm(args)
    stop = threading.Event()

    def _stop(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    port = arm.start()
    control = ControlServer(arm, args.control) if args.control else None
    print(port, flush=True)
    if args.link:
        print(f"symlink {args.link} -> {port}", file=sys.stderr, flush=True)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        if control is not None:
            control.close()
        arm.stop()
    return 0


if __name__ == "__main__":
    sys.exit(run_tool(main, usage=make_parser().format_help()))

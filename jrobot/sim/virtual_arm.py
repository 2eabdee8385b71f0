"""A virtual SO-101 servo bus: six emulated STS3215 servos answering on a pseudo-terminal.

`python -m jrobot.virtual_arm` opens a pty, prints its path as the first line of stdout, and
answers the Feetech protocol there exactly as an SO-101's bus does, so the unmodified scservo_sdk and
all of `jrobot.hw` (calibration, follower/leader, setup_motors, teleoperate) run against it. Tests
use the same `VirtualArm` class in a thread of their own process (`with VirtualArm() as arm:`) and
script a "human" moving joints by hand through its Python API; a subprocess can be scripted the same
way through the optional control socket (`--control PATH`, see `VirtualArmClient`).

What is modelled (see `jrobot.sim.sts3215` for the servo itself):
- the line's baud rate is read from the pty's termios (the host's `setBaudRate` ioctl on the slave is
  visible on the master), and only servos set to that rate answer;
- replies are timed like the wire: request and reply bytes at 10 bits per byte, plus each servo's
  Return_Delay_Time (2 us units), unless `wire_timing=False`;
- joints move with a pluggable `ServoDynamics` (default: rate-limited first-order), stepped lazily
  from a clock whenever the bus or the API looks at them; free joints can be moved by a scripted hand;
- faults: dropped replies, corrupted checksums, extra delay, error bits, motors that disappear and
  come back (power-cycled: torque off, Lock=1, unsaved EPROM lost).
"""

from __future__ import annotations

import array
import contextlib
import dataclasses
import errno
import fcntl
import json
import logging
import math
import os
import random
import select
import socket
import sys
import termios
import threading
import time
import tty
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from jrobot.features import SO101_MOTORS
from jrobot.sim.servo_dynamics import (
    ACCELERATION_UNIT,
    STS3215_MAX_SPEED,
    JointCommands,
    RadianModelDynamics,
    RateLimitedDynamics,
    ServoDynamics,
)
from jrobot.sim.sts3215 import (
    INST_ACTION,
    INST_PING,
    INST_READ,
    INST_REG_WRITE,
    INST_SYNC_READ,
    INST_SYNC_WRITE,
    INST_WRITE,
    RESOLUTION,
    Packet,
    PacketParser,
    Reply,
    Sts3215,
    answer_packet,
    wire_seconds,
)
from jrobot.sim.units import JOINT_RANGES_RAD

logger = logging.getLogger(__name__)

_TCGETS2 = 0x802C542A  # Linux: struct termios2 with the exact c_ispeed / c_ospeed
_FRAME_TIMEOUT_S = 0.05  # a partial packet older than this is discarded (inter-byte timeout)

INSTRUCTION_NAMES = {
    INST_PING: "ping",
    INST_READ: "read",
    INST_WRITE: "write",
    INST_REG_WRITE: "reg_write",
    INST_ACTION: "action",
    INST_SYNC_READ: "sync_read",
    INST_SYNC_WRITE: "sync_write",
}


@dataclasses.dataclass(frozen=True)
class JointMechanics:
    """One joint of the assembled arm, in actual encoder ticks (continuous, unwrapped).

    `zero` is the tick at which the joint is at the MuJoCo model's zero (LeRobot's calibration zero:
    mid-range for the arm joints, hinge angle 0 for the gripper); `lower`/`upper` are the stops.
    """

    zero: float
    lower: float
    upper: float

    @property
    def middle(self) -> float:
        return 0.5 * (self.lower + self.upper)


# Ticks per radian as LeRobot's DEGREES mode counts them (4095 per turn), so that a virtual arm
# calibrated at its zero pose reads exactly the model's joint angles.
LEROBOT_TICKS_PER_RAD = 4095 / (2 * math.pi)
# Encoder ticks at each joint's zero: deliberately not 2048 (horns are never mounted exactly at the
# encoder's mid-point), so homing offsets are non-trivial.
SO101_ZERO_TICKS: tuple[int, ...] = (2100, 1950, 2230, 1870, 2048, 1400)
# The stops are the SO-101 model's joint ranges (jrobot.sim.units) around those zeros.
SO101_MECHANICS: tuple[JointMechanics, ...] = tuple(
    JointMechanics(float(z), z + lo * LEROBOT_TICKS_PER_RAD, z + hi * LEROBOT_TICKS_PER_RAD)
    for z, (lo, hi) in zip(SO101_ZERO_TICKS, JOINT_RANGES_RAD.tolist(), strict=True)
)


def mujoco_dynamics() -> ServoDynamics:
    """Joints driven by the MuJoCo SO-101 (`jrobot.sim.arm.ArmSim`: gravity, contacts, servo gains).

    Meant for a follower: with torque off its joints go limp and fall under gravity, so a leader arm
    moved by a scripted hand should keep the default dynamics.
    """
    from jrobot.sim.arm import ArmSim  # MuJoCo is only needed when asked for

    return RadianModelDynamics(
        ArmSim(), [m.zero for m in SO101_MECHANICS], ticks_per_rad=LEROBOT_TICKS_PER_RAD
    )


class LineBaudrate:
    """Reads the baud rate the host set on the pty slave, seen through the master."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def __call__(self) -> int:
        buf = array.array("i", [0] * 64)
        try:
            fcntl.ioctl(self.fd, _TCGETS2, buf)  # struct termios2: c_ospeed is the 11th int
            return int(buf[10]) or _legacy_speed(self.fd)
        except OSError:
            return _legacy_speed(self.fd)


def _legacy_speed(fd: int) -> int:
    speed = termios.tcgetattr(fd)[5]
    for name in dir(termios):
        if name.startswith("B") and name[1:].isdigit() and getattr(termios, name) == speed:
            return int(name[1:])
    return 0


class WireEvent(tuple):
    """One trace entry: `("rx" | "tx", bytes)`, compares equal to that plain tuple, plus `.t`.

    `t` is `time.monotonic()` when the request was received or the reply was written.
    """

    t: float

    def __new__(cls, direction: str, data: bytes, t: float) -> WireEvent:
        event = super().__new__(cls, (direction, data))
        event.t = t
        return event


# ---------------------------------------------------------------- faults
@dataclasses.dataclass
class Faults:
    """Fault injection, applied to replies as they leave a servo.

    Rates are probabilities per reply (seeded, so runs are repeatable); `drop_next` / `corrupt_next`
    deterministically hit the next N replies (optionally only from `ids`); `delay_s` adds latency.
    """

    drop_rate: float = 0.0
    corrupt_rate: float = 0.0
    delay_s: float = 0.0
    delay_ids: frozenset[int] | None = None  # None: delay every servo
    seed: int = 0
    _drop_next: int = 0
    _drop_ids: frozenset[int] | None = None
    _corrupt_next: int = 0
    _corrupt_ids: frozenset[int] | None = None
    dropped: int = 0
    corrupted: int = 0

    def __post_init__(self) -> None:
        for name in ("drop_rate", "corrupt_rate"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {v}")
        if self.delay_s < 0:
            raise ValueError(f"delay_s must be >= 0, got {self.delay_s}")
        self._rng = random.Random(self.seed)

    def drop_next(self, n: int, ids: Iterable[int] | None = None) -> None:
        self._drop_next, self._drop_ids = int(n), frozenset(ids) if ids is not None else None

    def corrupt_next(self, n: int, ids: Iterable[int] | None = None) -> None:
        self._corrupt_next, self._corrupt_ids = int(n), frozenset(ids) if ids is not None else None

    def clear(self) -> None:
        self.drop_rate = self.corrupt_rate = self.delay_s = 0.0
        self.delay_ids = None
        self._drop_next = self._corrupt_next = 0

    def delay_for(self, id_: int) -> float:
        if self.delay_ids is not None and id_ not in self.delay_ids:
            return 0.0
        return self.delay_s

    def apply(self, id_: int, data: bytes) -> bytes | None:
        """The bytes to send for one reply: unchanged, corrupted, or None (dropped)."""
        if self._drop_next > 0 and (self._drop_ids is None or id_ in self._drop_ids):
            self._drop_next -= 1
            self.dropped += 1
            return None
        if self.drop_rate and self._rng.random() < self.drop_rate:
            self.dropped += 1
            return None
        corrupt = False
        if self._corrupt_next > 0 and (self._corrupt_ids is None or id_ in self._corrupt_ids):
            self._corrupt_next -= 1
            corrupt = True
        elif self.corrupt_rate and self._rng.random() < self.corrupt_rate:
            corrupt = True
        if corrupt:
            self.corrupted += 1
            return data[:-1] + bytes([data[-1] ^ 0x5A])
        return data


# ---------------------------------------------------------------- hand scripting
@dataclasses.dataclass
class _Segment:
    t0: float
    t1: float
    p0: float | None  # None: start from wherever the joint is when the segment begins
    p1: float


class _Hand:
    """Piecewise-linear trajectories of joints held by a (scripted) human hand."""

    def __init__(self) -> None:
        self.segments: dict[int, list[_Segment]] = {}

    def add(self, slot: int, target: float, t_start: float, duration: float, queue: bool) -> None:
        segs = self.segments.setdefault(slot, [])
        if not queue:
            segs.clear()
        start = segs[-1].t1 if segs else t_start
        segs.append(_Segment(start, start + max(0.0, duration), None, target))

    def position(self, slot: int, now: float, current: float) -> float | None:
        segs = self.segments.get(slot)
        if not segs:
            return None
        while segs:
            seg = segs[0]
            if seg.p0 is None:
                seg.p0 = current
            if now >= seg.t1:
                current = seg.p1
                segs.pop(0)
                continue
            if now < seg.t0:
                return current
            a = (now - seg.t0) / (seg.t1 - seg.t0) if seg.t1 > seg.t0 else 1.0
            return seg.p0 + a * (seg.p1 - seg.p0)
        del self.segments[slot]
        return current


# ---------------------------------------------------------------- the arm
@dataclasses.dataclass
class BusStats:
    packets: dict[str, int] = dataclasses.field(default_factory=dict)
    replies: int = 0
    unanswered: int = 0  # replies lost because the host's input buffer was full
    bad_checksums: int = 0
    skipped_bytes: int = 0


class VirtualArm:
    """Six STS3215 servos (ids 1..6 by default) on a pty, with dynamics, a scriptable hand and faults.

    Args:
        servos: the servos on the bus, in joint order (default: an assembled SO-101, ids 1..6).
        mechanics: per-servo mechanical stops (None: unlimited, e.g. loose servos on a bench).
        dynamics: how joints move (default `RateLimitedDynamics()`).
        faults: fault injection settings (default: none).
        wire_timing: delay replies by the time the bytes would take on a real UART.
        clock: time source in seconds (monotonic); tests may pass a manual clock.
        state_file: JSON file that keeps the servos' saved EPROM and joint positions across runs.
        link: optional symlink path to create pointing at the pty (a stable port name).
    """

    def __init__(
        self,
        servos: Sequence[Sts3215] | None = None,
        *,
        mechanics: Sequence[JointMechanics | None] | None = None,
        dynamics: ServoDynamics | None = None,
        faults: Faults | None = None,
        wire_timing: bool = True,
        clock: Callable[[], float] = time.monotonic,
        state_file: str | Path | None = None,
        link: str | Path | None = None,
    ) -> None:
        if servos is None:
            servos = [
                Sts3215(i + 1, actual_position=m.zero, name=name)
                for i, (name, m) in enumerate(zip(SO101_MOTORS, SO101_MECHANICS, strict=True))
            ]
            if mechanics is None:
                mechanics = SO101_MECHANICS
        self.servos: list[Sts3215] = list(servos)
        mech = list(mechanics) if mechanics is not None else [None] * len(self.servos)
        if len(mech) != len(self.servos):
            raise ValueError(f"{len(mech)} mechanics for {len(self.servos)} servos")
        self.mechanics: list[JointMechanics | None] = mech
        self.dynamics: ServoDynamics = dynamics if dynamics is not None else RateLimitedDynamics()
        self.faults = faults if faults is not None else Faults()
        self.wire_timing = wire_timing
        self.clock = clock
        self.state_file = Path(state_file) if state_file else None
        self.link = Path(link) if link else None
        self.stats = BusStats()
        self.log_packets = False
        # When `trace` is a list, every instruction packet received and every reply sent is appended
        # as a `WireEvent` ("rx"/"tx", bytes, .t): a logic-analyser view of the wire.
        self.trace: list[WireEvent] | None = None
        self._hand = _Hand()
        self._lock = threading.RLock()
        self._served = threading.Condition(self._lock)
        self._served_count: dict[int, int] = {}
        self._t = self.clock()
        self._master = self._slave = -1
        self._wake_r = self._wake_w = -1
        self._thread: threading.Thread | None = None
        self._running = False
        self._saved_version = self._eprom_signature()
        self.port = ""
        if self.state_file and self.state_file.is_file():
            self._load_state()

    # ---- lifecycle
    def start(self) -> str:
        """Open the pty and start answering; returns the port path (the pty slave)."""
        if self._running:
            return self.port
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)  # no echo, no line discipline until the host configures it
        os.set_blocking(self._master, False)
        self.port = os.ttyname(self._slave)
        self._line_baud = LineBaudrate(self._master)
        self._wake_r, self._wake_w = os.pipe()
        if self.link is not None:
            with contextlib.suppress(FileNotFoundError):
                self.link.unlink()
            self.link.symlink_to(self.port)
        self._running = True
        self._thread = threading.Thread(target=self._serve_forever, name="virtual-arm", daemon=True)
        self._thread.start()
        return self.port

    def stop(self) -> None:
        """Stop answering, close the pty and save the state file."""
        if not self._running:
            return
        self._running = False
        os.write(self._wake_w, b"x")
        if self._thread is not None:
            self._thread.join(timeout=2.0)
        for fd in (self._master, self._slave, self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)
        if self.link is not None:
            with contextlib.suppress(FileNotFoundError):
                self.link.unlink()
        self._save_state()

    def __enter__(self) -> VirtualArm:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def line_baudrate(self) -> int:
        """The baud rate the host currently has set on the port."""
        return self._line_baud()

    # ---- servo lookup
    def servo(self, which: int | Sts3215) -> Sts3215:
        """The servo object by id (must be unique on the bus) or the object itself."""
        if isinstance(which, Sts3215):
            return which
        found = [s for s in self.servos if s.id == which]
        if len(found) != 1:
            raise KeyError(f"{len(found)} servos have id {which} (ids: {[s.id for s in self.servos]})")
        return found[0]

    def _slot(self, which: int | Sts3215) -> int:
        s = self.servo(which)
        return next(i for i, x in enumerate(self.servos) if x is s)

    def register(self, which: int | Sts3215, name: str) -> int:
        """A register's current value (decoded as the host would), after advancing the dynamics."""
        with self._lock:
            self._advance()
            s = self.servo(which)
            s.refresh()
            return s.get(name)

    def registers(self, name: str) -> dict[int, int]:
        """`register(id, name)` for every connected servo, keyed by id."""
        with self._lock:
            self._advance()
            out = {}
            for s in self.servos:
                s.refresh()
                out[s.id] = s.get(name)
            return out

    def set_register(self, which: int | Sts3215, name: str, value: int, *, save: bool = False) -> None:
        """Backdoor register write (bypasses Lock and read-only rules); `save` persists EPROM."""
        with self._lock:
            self.servo(which).set(name, value, save=save)

    # ---- the hand
    def move_by_hand(
        self,
        targets: Mapping[int, float],
        *,
        duration_s: float = 0.0,
        frame: str = "present",
        queue: bool = False,
    ) -> None:
        """Move joints as a person would: to `targets` (servo id -> position) over `duration_s`.

        `frame="present"` gives positions as the servo reports them (after its homing offset);
        `"actual"` gives raw encoder ticks (continuous). Positions are clamped to the mechanical
        stops. A held joint follows the hand even with torque on (the servo then reports full load)
        and is released when the motion ends; a torque-on servo then drives it back to its goal.
        `queue=True` appends after the joint's pending motion instead of replacing it.
        """
        if frame not in ("present", "actual"):
            raise ValueError(f"frame must be 'present' or 'actual', got {frame!r}")
        with self._lock:
            self._advance()
            now = self.clock()
            for id_, value in targets.items():
                slot = self._slot(int(id_))
                s = self.servos[slot]
                if frame == "present":
                    present_exact = (s.motion.position - s.homing_offset) % RESOLUTION
                    base = self._hand_end(slot) if queue else s.motion.position
                    base_present = (base - s.homing_offset) % RESOLUTION if queue else present_exact
                    actual = base + (float(value) - base_present)
                else:
                    actual = float(value)
                actual = self._clamp(slot, actual)
                self._hand.add(slot, actual, now, duration_s, queue)
                s.motion.held_by_hand = True
            if duration_s <= 0 and not queue:
                self._apply_hand(now)

    def _hand_end(self, slot: int) -> float:
        segs = self._hand.segments.get(slot)
        return segs[-1].p1 if segs else self.servos[slot].motion.position

    def wait_for_hand(self, timeout: float = 10.0) -> None:
        """Block until every scripted hand motion has finished (by the arm's clock)."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                self._advance()
                if not self._hand.segments:
                    return
            if time.monotonic() > deadline:
                raise TimeoutError("hand motion did not finish")
            time.sleep(0.005)

    def actual_positions(self) -> dict[int, float]:
        with self._lock:
            self._advance()
            return {s.id: s.motion.position for s in self.servos}

    def present_positions(self) -> dict[int, int]:
        with self._lock:
            self._advance()
            return {s.id: s.present_position() for s in self.servos}

    # ---- faults and power
    def unplug(self, which: int | Sts3215) -> None:
        """The servo disappears from the bus (cable pulled, brown-out): it stops answering."""
        with self._lock:
            self.servo(which).connected = False

    def plug(self, which: int | Sts3215, *, power_cycle: bool = True) -> None:
        """The servo comes back; by default it was power-cycled (torque off, unsaved EPROM lost)."""
        with self._lock:
            s = which if isinstance(which, Sts3215) else next(x for x in self.servos if x.id == which)
            if power_cycle:
                self._advance()
                s.power_cycle()
            s.connected = True

    def power_cycle(self) -> None:
        """Power-cycle every servo, as unplugging the arm's supply would."""
        with self._lock:
            self._advance()
            for s in self.servos:
                s.power_cycle()

    def set_error_bits(self, which: int | Sts3215, bits: int) -> None:
        """Force fault bits into this servo's status packets (e.g. 32 = overload)."""
        with self._lock:
            self.servo(which).injected_errors = int(bits) & 0x7F

    # ---- synchronisation with the host
    def served(self, instr: int | None = None) -> int:
        """How many packets (of one instruction, or all) the bus has processed so far."""
        with self._lock:
            if instr is None:
                return sum(self._served_count.values())
            return self._served_count.get(instr, 0)

    def wait_for_packets(self, count: int = 1, instr: int | None = None, timeout: float = 5.0) -> None:
        """Block until `count` more packets (of `instr`, or any) have been processed."""
        with self._served:
            target = self.served(instr) + count
            if not self._served.wait_for(lambda: self.served(instr) >= target, timeout=timeout):
                raise TimeoutError(
                    f"the host sent fewer than {count} {INSTRUCTION_NAMES.get(instr, 'packets')}"
                )

    # ---- internals: dynamics
    def _clamp(self, slot: int, value: float) -> float:
        m = self.mechanics[slot]
        return value if m is None else min(m.upper, max(m.lower, value))

    def _commands(self) -> JointCommands:
        n = len(self.servos)
        cmd = JointCommands(
            torque_on=np.zeros(n, dtype=bool),
            mode=np.zeros(n, dtype=np.int64),
            target=np.zeros(n),
            velocity=np.zeros(n),
            max_velocity=np.zeros(n),
            acceleration=np.zeros(n),
            torque_limit=np.zeros(n),
            stiffness=np.ones(n),
        )
        for i, s in enumerate(self.servos):
            cmd.torque_on[i] = s.torque_enabled and s.connected
            cmd.mode[i] = s.mem[33]
            cmd.target[i] = s.goal_actual()
            gv = s.get("Goal_Velocity")
            cmd.velocity[i] = gv
            cmd.max_velocity[i] = (
                min(abs(gv), STS3215_MAX_SPEED) if (gv and s.mem[33] == 0) else STS3215_MAX_SPEED
            )
            acc = s.mem[41]
            cmd.acceleration[i] = acc * ACCELERATION_UNIT if acc else np.inf
            cmd.torque_limit[i] = min(1000, s.get("Torque_Limit")) / 1000.0
            cmd.stiffness[i] = max(1, s.mem[21]) / 32.0
        return cmd

    def _advance(self) -> None:
        """Step the dynamics from the last update to now (called with the lock held)."""
        now = self.clock()
        dt = now - self._t
        self._t = now
        idle = not any(s.motion.held_by_hand or (s.connected and s.torque_enabled) for s in self.servos)
        if dt > 0 and idle:  # nothing drives any joint: they stay put (and this costs nothing)
            for s in self.servos:
                s.motion.velocity = 0.0
                s.motion.load = 0.0
        elif dt > 0:
            n = len(self.servos)
            pos = np.array([s.motion.position for s in self.servos])
            vel = np.array([s.motion.velocity for s in self.servos])
            new_pos, new_vel, load = self.dynamics.step(dt, pos, vel, self._commands())
            for i, s in enumerate(self.servos[:n]):
                p = self._clamp(i, float(new_pos[i]))
                s.motion.velocity = float(new_vel[i]) if p == float(new_pos[i]) else 0.0
                s.motion.position = p
                s.motion.load = float(load[i])
        self._apply_hand(now, dt)
        for s in self.servos:
            s.refresh()

    def _apply_hand(self, now: float, dt: float = 0.0) -> None:
        for i, s in enumerate(self.servos):
            if not s.motion.held_by_hand:
                continue
            p = self._hand.position(i, now, s.motion.position)
            if p is None:
                s.motion.held_by_hand = False
                s.motion.velocity = 0.0
                continue
            p = self._clamp(i, p)
            if dt > 0:
                s.motion.velocity = (p - s.motion.position) / dt
            s.motion.position = p
            if s.torque_enabled:
                s.motion.load = 1.0 if s.goal_actual() > p else -1.0
            if i not in self._hand.segments:
                s.motion.held_by_hand = False

    # ---- internals: the wire
    def _serve_forever(self) -> None:
        parser = PacketParser()
        poller = select.poll()
        poller.register(self._master, select.POLLIN)
        poller.register(self._wake_r, select.POLLIN)
        last_rx = 0.0
        while self._running:
            timeout_ms = int(_FRAME_TIMEOUT_S * 1000) if parser.pending else 200
            events = poller.poll(timeout_ms)
            if not self._running:
                break
            if not events:
                if parser.pending and time.monotonic() - last_rx > _FRAME_TIMEOUT_S:
                    parser.reset()
                continue
            for fd, _ in events:
                if fd != self._master:
                    continue
                try:
                    data = os.read(self._master, 4096)
                except BlockingIOError:
                    continue
                except OSError as e:
                    if e.errno == errno.EIO:
                        time.sleep(0.01)
                        continue
                    raise
                baud = self._line_baud()
                last_rx = time.monotonic()
                for packet in parser.feed(data):
                    self._serve(packet, baud)
                self.stats.bad_checksums = parser.bad_checksums
                self.stats.skipped_bytes = parser.skipped_bytes

    def _serve(self, packet: Packet, baud: int) -> None:
        t_rx = time.monotonic()
        with self._lock:
            self._advance()
            replies = answer_packet(self.servos, packet, baud)
            # Faults are decided in wire order under the lock so tests see deterministic effects.
            outgoing = [
                (r, self.faults.apply(r.servo.id, r.data), self.faults.delay_for(r.servo.id)) for r in replies
            ]
            name = INSTRUCTION_NAMES.get(packet.instr, f"0x{packet.instr:02x}")
            self.stats.packets[name] = self.stats.packets.get(name, 0) + 1
        if self.log_packets:
            logger.info("rx %s @%d: %s -> %d replies", name, baud, packet.raw.hex(" "), len(replies))
        trace = self.trace
        if trace is not None:
            trace.append(WireEvent("rx", packet.raw, t_rx))
        t_send = t_rx + (wire_seconds(len(packet.raw), baud) if self.wire_timing and baud > 0 else 0.0)
        for reply, data, extra_delay in outgoing:
            t_send += self._return_delay(reply) + extra_delay
            if data is not None:
                if self.wire_timing and baud > 0:
                    t_send += wire_seconds(len(data), baud)
                _sleep_until(t_send)
                if trace is not None:
                    trace.append(WireEvent("tx", data, time.monotonic()))
                self._write(data)
        with self._served:
            self._served_count[packet.instr] = self._served_count.get(packet.instr, 0) + 1
            self._served.notify_all()
        if self.state_file is not None:
            sig = self._eprom_signature()
            if sig != self._saved_version:
                self._saved_version = sig
                self._save_state()

    def _return_delay(self, reply: Reply) -> float:
        return reply.servo.mem[7] * 2e-6 if self.wire_timing else 0.0

    def _write(self, data: bytes) -> None:
        try:
            os.write(self._master, data)
            self.stats.replies += 1
        except BlockingIOError:
            self.stats.unanswered += 1

    # ---- state file
    def _eprom_signature(self) -> tuple[bytes, ...]:
        return tuple(s.saved for s in self.servos)

    def _save_state(self) -> None:
        if self.state_file is None:
            return
        with self._lock:
            state = {
                "servos": [
                    {"saved": s.saved.hex(), "position": s.motion.position, "name": s.name}
                    for s in self.servos
                ]
            }
        tmp = self.state_file.with_suffix(self.state_file.suffix + ".tmp")
        tmp.write_text(json.dumps(state, indent=1))
        os.replace(tmp, self.state_file)

    def _load_state(self) -> None:
        assert self.state_file is not None
        try:
            state = json.loads(self.state_file.read_text())
            entries = state["servos"]
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise ValueError(f"virtual arm state file {self.state_file} is not readable: {e}") from e
        if len(entries) != len(self.servos):
            raise ValueError(
                f"virtual arm state file {self.state_file} has {len(entries)} servos, the arm has {len(self.servos)}"
            )
        for s, entry in zip(self.servos, entries, strict=True):
            s.saved = bytes.fromhex(entry["saved"])
            s.motion.position = float(entry["position"])
            s.power_cycle()
        self._saved_version = self._eprom_signature()


def _sleep_until(t: float) -> None:
    # A sleep overshoots by ~0.05-0.5 ms of scheduler latency, so waits under 0.1 ms are skipped (the
    # reply then goes out up to 0.1 ms early) instead of making every short reply late.
    remaining = t - time.monotonic()
    if remaining > 1e-4:
        time.sleep(remaining)


# ---------------------------------------------------------------- control socket
class ControlServer:
    """Line-delimited JSON commands on a Unix socket, so a test can script a subprocess arm.

    Commands (`{"cmd": ..., ...}` -> `{"ok": true, ...}` or `{"ok": false, "error": ...}`):
    `status`, `register` (id, name), `registers` (name), `set_register` (id, name, value, save),
    `move` (targets {id: pos}, duration_s, frame, queue), `wait_hand` (timeout), `unplug` / `plug` (id or slot),
    `power_cycle`, `error_bits` (id, bits), `faults` (drop_rate, corrupt_rate, delay_ms, drop_next,
    corrupt_next, ids), `clear_faults`.
    """

    def __init__(self, arm: VirtualArm, path: str | Path) -> None:
        self.arm = arm
        self.path = Path(path)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(str(self.path))
        self.sock.listen(4)
        self._thread = threading.Thread(target=self._accept, name="virtual-arm-control", daemon=True)
        self._thread.start()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._handle_conn, args=(conn,), daemon=True).start()

    def _handle_conn(self, conn: socket.socket) -> None:
        with conn, conn.makefile("rw", encoding="utf-8") as f:
            for line in f:
                try:
                    reply = {"ok": True, **self.execute(json.loads(line))}
                except Exception as e:  # report any failure to the client instead of dying
                    reply = {"ok": False, "error": f"{type(e).__name__}: {e}"}
                f.write(json.dumps(reply) + "\n")
                f.flush()

    def _which(self, msg: Mapping[str, Any]) -> int | Sts3215:
        """A servo by `slot` (position on the bus, 0-based; works when ids repeat) or by `id`."""
        if "slot" in msg:
            return self.arm.servos[int(msg["slot"])]
        return int(msg["id"])

    def execute(self, msg: Mapping[str, Any]) -> dict[str, Any]:
        arm = self.arm
        cmd = msg.get("cmd")
        if cmd == "status":
            return {
                "port": arm.port,
                "baudrate": arm.line_baudrate,
                "present": arm.present_positions(),
                "torque": arm.registers("Torque_Enable"),
                "packets": dict(arm.stats.packets),
                "dropped": arm.faults.dropped,
                "corrupted": arm.faults.corrupted,
            }
        if cmd == "register":
            return {"value": arm.register(int(msg["id"]), str(msg["name"]))}
        if cmd == "registers":
            return {"values": arm.registers(str(msg["name"]))}
        if cmd == "set_register":
            arm.set_register(int(msg["id"]), str(msg["name"]), int(msg["value"]), save=bool(msg.get("save")))
            return {}
        if cmd == "move":
            arm.move_by_hand(
                {int(k): float(v) for k, v in msg["targets"].items()},
                duration_s=float(msg.get("duration_s", 0.0)),
                frame=str(msg.get("frame", "present")),
                queue=bool(msg.get("queue", False)),
            )
            return {}
        if cmd == "wait_hand":
            arm.wait_for_hand(float(msg.get("timeout", 10.0)))
            return {}
        if cmd == "unplug":
            arm.unplug(self._which(msg))
            return {}
        if cmd == "plug":
            arm.plug(self._which(msg), power_cycle=bool(msg.get("power_cycle", True)))
            return {}
        if cmd == "power_cycle":
            arm.power_cycle()
            return {}
        if cmd == "error_bits":
            arm.set_error_bits(int(msg["id"]), int(msg["bits"]))
            return {}
        if cmd == "faults":
            f = arm.faults
            ids = msg.get("ids")
            if "drop_rate" in msg:
                f.drop_rate = float(msg["drop_rate"])
            if "corrupt_rate" in msg:
                f.corrupt_rate = float(msg["corrupt_rate"])
            if "delay_ms" in msg:
                f.delay_s = float(msg["delay_ms"]) / 1000.0
                f.delay_ids = frozenset(int(i) for i in ids) if ids else None
            if "drop_next" in msg:
                f.drop_next(int(msg["drop_next"]), ids)
            if "corrupt_next" in msg:
                f.corrupt_next(int(msg["corrupt_next"]), ids)
            return {}
        if cmd == "clear_faults":
            arm.faults.clear()
            return {}
        raise ValueError(f"unknown command {cmd!r}")


class VirtualArmClient:
    """Client for `ControlServer`: script a virtual arm running in another process."""

    def __init__(self, path: str | Path, timeout: float = 10.0) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(str(path))
        self._f = self.sock.makefile("rw", encoding="utf-8")

    def call(self, cmd: str, **kwargs: Any) -> dict[str, Any]:
        self._f.write(json.dumps({"cmd": cmd, **kwargs}) + "\n")
        self._f.flush()
        line = self._f.readline()
        if not line:
            raise ConnectionError("virtual arm control socket closed")
        reply = json.loads(line)
        if not reply.pop("ok"):
            raise RuntimeError(f"virtual arm refused {cmd!r}: {reply.get('error')}")
        return reply

    def move(self, targets: Mapping[int, float], duration_s: float = 0.0, frame: str = "present") -> None:
        self.call("move", targets={str(k): v for k, v in targets.items()}, duration_s=duration_s, frame=frame)

    def register(self, id_: int, name: str) -> int:
        return int(self.call("register", id=id_, name=name)["value"])

    def registers(self, name: str) -> dict[int, int]:
        return {int(k): int(v) for k, v in self.call("registers", name=name)["values"].items()}

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._f.close()
            self.sock.close()

    def __enter__(self) -> VirtualArmClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


if __name__ == "__main__":  # the command's older name: `python -m jrobot.virtual_arm` is the command
    from jrobot.cli import run_tool
    from jrobot.commands.virtual_arm import main, make_parser

    sys.exit(run_tool(main, usage=make_parser().format_help()))

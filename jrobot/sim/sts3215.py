"""Emulation of one Feetech STS3215 servo: its control table and its answers to protocol-0 packets.

This module is the servo side of the wire; it has no I/O. `jrobot.sim.virtual_arm` puts six of these
on a pseudo-terminal so the real host stack (scservo_sdk + `jrobot.hw`) can be tested without an arm.
The register map is written down here independently of the host-side table in `jrobot.hw`, so a
mistake in one is caught by tests that talk through the other.

Behaviour modelled after the STS3215 manual and LeRobot's documented use of it:
- memory is a flat byte array; 2-byte registers are little-endian (protocol 0);
- EPROM registers (addresses 0-39 and the factory block 80-86) are protected by `Lock` (addr 55).
  With Lock=0 a write is saved and survives `power_cycle()`. With Lock=1 (the power-on value) the
  manual says the value is not saved: `EpromLockPolicy.VOLATILE` (default) applies it until the next
  power cycle, which is what LeRobot's "ENTER to use the calibration file" path relies on (it writes
  the file's values without unlocking); `EpromLockPolicy.IGNORE` drops such writes entirely, a stricter
  mode for tests that want to catch host code forgetting to unlock;
- read-only registers (versions, model number, present values) ignore writes;
- `Present_Position = (Actual - Homing_Offset) mod 4096`, Homing_Offset is sign-magnitude on bit 11,
  Goal/Present position and velocity on bit 15, Present_Load on bit 10;
- goals are clamped to [Min_Position_Limit, Max_Position_Limit] when Min < Max;
- a status reply carries the fault bits (voltage 1, angle sensor 2, overheat 4, over-current 8,
  overload 32); writes are answered only when Response_Status_Level is 1 (reads and pings always);
- a reply uses the ID and baud rate the servo had when the request arrived, so a write to `ID` or
  `Baud_Rate` is acknowledged the old way and takes effect after the reply (that is what LeRobot's
  `setup_motor` relies on);
- writing 128 to Torque_Enable sets the current position as the middle (2048), as the firmware does.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Iterable, Sequence

# ---------------------------------------------------------------- protocol constants
HEADER = b"\xff\xff"
BROADCAST_ID = 0xFE
MAX_ID = 0xFC

INST_PING = 0x01
INST_READ = 0x02
INST_WRITE = 0x03
INST_REG_WRITE = 0x04
INST_ACTION = 0x05
INST_SYNC_READ = 0x82
INST_SYNC_WRITE = 0x83

ERR_VOLTAGE = 1
ERR_ANGLE = 2
ERR_OVERHEAT = 4
ERR_OVERCURRENT = 8
ERR_OVERLOAD = 32

MODEL_NUMBER_STS3215 = 777
RESOLUTION = 4096
MEMORY_SIZE = 256
MAX_STATUS_PARAMS = 250 - 6  # the SDK rejects status packets longer than 250 bytes

# Baud_Rate register value -> bits per second (STS/SMS series).
BAUD_RATES: dict[int, int] = {
    0: 1_000_000,
    1: 500_000,
    2: 250_000,
    3: 128_000,
    4: 115_200,
    5: 57_600,
    6: 38_400,
    7: 19_200,
}
BAUD_CODES: dict[int, int] = {bps: code for code, bps in BAUD_RATES.items()}


def checksum(body: bytes | Sequence[int]) -> int:
    """Feetech checksum: bitwise NOT of the byte sum of ID..last parameter, low 8 bits."""
    return (~sum(body)) & 0xFF


def build_packet(id_: int, instr_or_error: int, params: bytes | Sequence[int] = b"") -> bytes:
    """`FF FF ID LEN INSTR/ERR params CHK` with LEN = len(params) + 2."""
    body = bytes([id_, len(params) + 2, instr_or_error]) + bytes(params)
    return HEADER + body + bytes([checksum(body)])


def encode_sign_magnitude(value: int, sign_bit: int) -> int:
    magnitude = abs(int(value))
    if magnitude >= (1 << sign_bit):
        raise ValueError(f"magnitude {magnitude} does not fit below sign bit {sign_bit}")
    return ((1 << sign_bit) if value < 0 else 0) | magnitude


def decode_sign_magnitude(raw: int, sign_bit: int) -> int:
    magnitude = raw & ((1 << sign_bit) - 1)
    return -magnitude if (raw >> sign_bit) & 1 else magnitude


# ---------------------------------------------------------------- control table
class Area(enum.Enum):
    EPROM = "eprom"  # saved across power cycles, protected by Lock
    SRAM = "sram"  # volatile
    FACTORY = "factory"  # saved, protected by Lock like EPROM


@dataclasses.dataclass(frozen=True)
class Register:
    name: str
    address: int
    size: int
    area: Area
    writable: bool
    default: int  # power-on value as the host reads it (already sign-encoded where relevant)
    sign_bit: int | None = None


def _r(
    name: str, addr: int, size: int, area: Area, writable: bool, default: int, sign_bit: int | None = None
):
    return Register(name, addr, size, area, writable, default, sign_bit)


E, S, F = Area.EPROM, Area.SRAM, Area.FACTORY
# Defaults are the STS3215 factory values (12 V version); factory-block values are not documented by
# Feetech and are the ones read from a stock servo's memory map where known.
CONTROL_TABLE: tuple[Register, ...] = (
    _r("Firmware_Major_Version", 0, 1, E, False, 3),
    _r("Firmware_Minor_Version", 1, 1, E, False, 10),
    _r("Model_Number", 3, 2, E, False, MODEL_NUMBER_STS3215),
    _r("ID", 5, 1, E, True, 1),
    _r("Baud_Rate", 6, 1, E, True, 0),
    _r("Return_Delay_Time", 7, 1, E, True, 250),
    _r("Response_Status_Level", 8, 1, E, True, 1),
    _r("Min_Position_Limit", 9, 2, E, True, 0),
    _r("Max_Position_Limit", 11, 2, E, True, 4095),
    _r("Max_Temperature_Limit", 13, 1, E, True, 70),
    _r("Max_Voltage_Limit", 14, 1, E, True, 140),
    _r("Min_Voltage_Limit", 15, 1, E, True, 40),
    _r("Max_Torque_Limit", 16, 2, E, True, 1000),
    _r("Phase", 18, 1, E, True, 12),
    _r("Unloading_Condition", 19, 1, E, True, 44),
    _r("LED_Alarm_Condition", 20, 1, E, True, 47),
    _r("P_Coefficient", 21, 1, E, True, 32),
    _r("D_Coefficient", 22, 1, E, True, 32),
    _r("I_Coefficient", 23, 1, E, True, 0),
    _r("Minimum_Startup_Force", 24, 2, E, True, 16),
    _r("CW_Dead_Zone", 26, 1, E, True, 1),
    _r("CCW_Dead_Zone", 27, 1, E, True, 1),
    _r("Protection_Current", 28, 2, E, True, 500),
    _r("Angular_Resolution", 30, 1, E, True, 1),
    _r("Homing_Offset", 31, 2, E, True, 0, sign_bit=11),
    _r("Operating_Mode", 33, 1, E, True, 0),
    _r("Protective_Torque", 34, 1, E, True, 20),
    _r("Protection_Time", 35, 1, E, True, 200),
    _r("Overload_Torque", 36, 1, E, True, 80),
    _r("Velocity_closed_loop_P_proportional_coefficient", 37, 1, E, True, 10),
    _r("Over_Current_Protection_Time", 38, 1, E, True, 200),
    _r("Velocity_closed_loop_I_integral_coefficient", 39, 1, E, True, 200),
    _r("Torque_Enable", 40, 1, S, True, 0),
    _r("Acceleration", 41, 1, S, True, 0),
    _r("Goal_Position", 42, 2, S, True, 0, sign_bit=15),
    _r("Goal_Time", 44, 2, S, True, 0),
    _r("Goal_Velocity", 46, 2, S, True, 0, sign_bit=15),
    _r("Torque_Limit", 48, 2, S, True, 1000),
    _r("Lock", 55, 1, S, True, 1),
    _r("Present_Position", 56, 2, S, False, 0, sign_bit=15),
    _r("Present_Velocity", 58, 2, S, False, 0, sign_bit=15),
    _r("Present_Load", 60, 2, S, False, 0, sign_bit=10),
    _r("Present_Voltage", 62, 1, S, False, 120),
    _r("Present_Temperature", 63, 1, S, False, 30),
    _r("Status", 65, 1, S, False, 0),
    _r("Moving", 66, 1, S, False, 0),
    _r("Present_Current", 69, 2, S, False, 0),
    _r("Goal_Position_2", 71, 2, S, False, 0),
    _r("Moving_Velocity", 80, 1, F, True, 2),
    _r("DTs", 81, 1, F, True, 32),
    _r("Velocity_Unit_factor", 82, 1, F, True, 1),
    _r("Hts", 83, 1, F, True, 20),
    _r("Maximum_Velocity_Limit", 84, 1, F, True, 254),
    _r("Maximum_Acceleration", 85, 1, F, True, 254),
    _r("Acceleration_Multiplier ", 86, 1, F, True, 1),
)
REGISTERS: dict[str, Register] = {r.name: r for r in CONTROL_TABLE}
# Per-address access, derived from the table: which bytes are writable and which are Lock-protected.
_WRITABLE = bytearray(MEMORY_SIZE)
_PROTECTED = bytearray(MEMORY_SIZE)
for _reg in CONTROL_TABLE:
    for _a in range(_reg.address, _reg.address + _reg.size):
        _WRITABLE[_a] = 1 if _reg.writable else 0
        _PROTECTED[_a] = 1 if _reg.area in (Area.EPROM, Area.FACTORY) else 0
_SAVED_ADDRESSES = [a for a in range(MEMORY_SIZE) if _PROTECTED[a]]


class EpromLockPolicy(enum.Enum):
    VOLATILE = "volatile"  # EPROM writes while Lock=1 take effect but are not saved (the manual; default)
    IGNORE = "ignore"  # they are dropped (strict mode for tests)


# ---------------------------------------------------------------- one servo
@dataclasses.dataclass
class MotionState:
    """The physical state the dynamics integrate, in encoder ticks of the *actual* (unhomed) angle.

    `position` is continuous: it is not wrapped, so a joint that turns past the 0/4095 seam keeps a
    monotonic value; the encoder reading is `round(position) mod 4096`.
    """

    position: float
    velocity: float = 0.0
    load: float = 0.0  # -1..1 fraction of max torque, sign = direction
    held_by_hand: bool = False


class Sts3215:
    """Register memory and instruction handling of one STS3215.

    The motion (`motion.position` etc.) is advanced by the owner (the virtual arm's dynamics); this
    class turns it into Present_* registers on demand and turns goal registers into commands.
    """

    def __init__(
        self,
        id_: int = 1,
        *,
        baudrate: int = 1_000_000,
        actual_position: float = 2048.0,
        firmware: tuple[int, int] = (3, 10),
        model_number: int = MODEL_NUMBER_STS3215,
        eprom_lock_policy: EpromLockPolicy = EpromLockPolicy.VOLATILE,
        overrides: dict[str, int] | None = None,
        name: str = "",
    ) -> None:
        if not 0 <= id_ <= MAX_ID:
            raise ValueError(f"servo id must be in 0..{MAX_ID}, got {id_}")
        if baudrate not in BAUD_CODES:
            raise ValueError(f"baudrate {baudrate} is not an STS3215 rate ({sorted(BAUD_CODES)})")
        self.name = name
        self.eprom_lock_policy = eprom_lock_policy
        self.mem = bytearray(MEMORY_SIZE)
        for reg in CONTROL_TABLE:
            self._poke(reg.address, reg.size, reg.default)
        self._poke(0, 1, firmware[0])
        self._poke(1, 1, firmware[1])
        self._poke(3, 2, model_number)
        self._poke(5, 1, id_)
        self._poke(6, 1, BAUD_CODES[baudrate])
        for key, value in (overrides or {}).items():
            reg = REGISTERS[key]
            self._poke(reg.address, reg.size, value)
        self.saved = bytes(self.mem)  # the EPROM image that survives a power cycle
        self.motion = MotionState(position=float(actual_position))
        self.injected_errors = 0  # fault bits forced by a test
        self.connected = True  # False: the servo has "disappeared" from the bus
        self._registered: tuple[int, bytes] | None = None  # pending REG_WRITE
        self.power_cycle()

    # ---- raw memory helpers
    def _poke(self, addr: int, size: int, value: int) -> None:
        self.mem[addr : addr + size] = int(value).to_bytes(size, "little")

    def _peek(self, addr: int, size: int) -> int:
        return int.from_bytes(self.mem[addr : addr + size], "little")

    def get(self, name: str) -> int:
        """Register value as the host would decode it (sign-magnitude registers are signed)."""
        reg = REGISTERS[name]
        raw = self._peek(reg.address, reg.size)
        return decode_sign_magnitude(raw, reg.sign_bit) if reg.sign_bit is not None else raw

    def set(self, name: str, value: int, *, save: bool = False) -> None:
        """Backdoor write (no protocol rules): for tests and fault setup. `save` also persists EPROM."""
        reg = REGISTERS[name]
        raw = encode_sign_magnitude(value, reg.sign_bit) if reg.sign_bit is not None else int(value)
        self._poke(reg.address, reg.size, raw)
        if save:
            self._save()

    def _save(self) -> None:
        saved = bytearray(self.saved)
        for a in _SAVED_ADDRESSES:
            saved[a] = self.mem[a]
        self.saved = bytes(saved)

    # ---- identity
    @property
    def id(self) -> int:
        return self.mem[5]

    @property
    def baudrate(self) -> int:
        return BAUD_RATES.get(self.mem[6], -1)

    @property
    def torque_enabled(self) -> bool:
        return self.mem[40] == 1

    @property
    def homing_offset(self) -> int:
        return self.get("Homing_Offset")

    @property
    def encoder(self) -> int:
        """The absolute encoder reading of the actual angle, 0..4095."""
        return round(self.motion.position) % RESOLUTION

    def present_position(self) -> int:
        return (self.encoder - self.homing_offset) % RESOLUTION

    def power_cycle(self) -> None:
        """Reload the saved EPROM and reset SRAM as at power-on: torque off, Lock=1, goal=present."""
        self.mem[:] = self.saved
        for reg in CONTROL_TABLE:
            if reg.area is Area.SRAM:
                self._poke(reg.address, reg.size, reg.default)
        self._poke(48, 2, self._peek(16, 2))  # Torque_Limit starts at Max_Torque_Limit
        self.motion.velocity = 0.0
        self.motion.load = 0.0
        self._registered = None
        self.refresh()
        self._poke(42, 2, self.present_position())

    # ---- state <-> registers
    def error_bits(self) -> int:
        bits = self.injected_errors
        voltage = self.mem[62]
        if not self.mem[15] <= voltage <= self.mem[14]:
            bits |= ERR_VOLTAGE
        if self.mem[63] > self.mem[13]:
            bits |= ERR_OVERHEAT
        return bits & 0x7F

    def refresh(self) -> None:
        """Write the motion state into the Present_* registers."""
        self._poke(56, 2, encode_sign_magnitude(self.present_position(), 15))
        vel = round(self.motion.velocity)
        vel = max(-32767, min(32767, vel))
        self._poke(58, 2, encode_sign_magnitude(vel, 15))
        load = max(-1000, min(1000, round(self.motion.load * 1000)))
        self._poke(60, 2, encode_sign_magnitude(load, 10))
        self.mem[66] = 1 if abs(self.motion.velocity) > max(1, self.mem[80]) else 0
        self._poke(69, 2, int(abs(self.motion.load) * 500))  # ~6.5 mA units at stall
        self.mem[65] = self.error_bits()

    def goal_actual(self) -> float:
        """Continuous actual-angle target for position mode, following the firmware's no-wrap rule.

        The goal is in the homed frame and clamped to the position limits; the servo moves in that
        frame without crossing the 0/4095 seam, so the target is `position + (goal - present)`.
        """
        goal = self.get("Goal_Position")
        lo, hi = self._peek(9, 2), self._peek(11, 2)
        if lo < hi:
            goal = min(hi, max(lo, goal))
        goal = min(RESOLUTION - 1, max(0, goal))
        present_exact = (self.motion.position - self.homing_offset) % RESOLUTION
        return self.motion.position + (goal - present_exact)

    # ---- protocol
    def read(self, addr: int, length: int) -> bytes:
        end = min(MEMORY_SIZE, addr + length)
        data = bytes(self.mem[addr:end])
        return data + bytes(length - len(data))

    def write(self, addr: int, data: bytes) -> None:
        """Apply a WRITE as the firmware does: byte-wise access rules, then side effects."""
        locked = self.mem[55] != 0
        before_torque = self.mem[40]
        touched_protected = False
        for i, b in enumerate(data):
            a = addr + i
            if a >= MEMORY_SIZE or not _WRITABLE[a]:
                continue
            if _PROTECTED[a]:
                if locked and self.eprom_lock_policy is EpromLockPolicy.IGNORE:
                    continue
                touched_protected = True
            self.mem[a] = b
        if touched_protected and not locked:
            self._save()
        if addr <= 40 < addr + len(data):
            self._on_torque_write(before_torque)

    def _on_torque_write(self, before: int) -> None:
        value = self.mem[40]
        if value == 128:  # "set the current position as 2048"
            offset = ((self.encoder - 2048 + 2048) % RESOLUTION) - 2048
            offset = max(-2047, min(2047, offset))
            self._poke(31, 2, encode_sign_magnitude(offset, 11))
            self._save()
            self.mem[40] = before
            self.refresh()
            self._poke(42, 2, self.present_position())
        elif value == 1 and before != 1:
            # Enabling torque holds the current position rather than jumping to a stale goal.
            self.refresh()
            self._poke(42, 2, self.present_position())
        elif value not in (0, 1):
            self.mem[40] = before

    def handle(self, instr: int, params: bytes, *, broadcast: bool) -> bytes | None:
        """Execute one unicast or broadcast instruction; return the status packet to send, if any.

        SYNC_READ and SYNC_WRITE are split by the bus (`answer_packet`) and arrive here as READ /
        WRITE for this servo, with `broadcast` telling whether a status reply is allowed.
        """
        error = self.error_bits()
        if instr == INST_PING:
            return build_packet(self.id, error)
        if instr == INST_READ:
            if len(params) != 2:
                return None
            addr, length = params[0], params[1]
            if length > MAX_STATUS_PARAMS:
                return None
            self.refresh()
            return build_packet(self.id, error, self.read(addr, length))
        if instr in (INST_WRITE, INST_REG_WRITE):
            if len(params) < 2:
                return None
            reply = None if broadcast or self.mem[8] == 0 else build_packet(self.id, error)
            if instr == INST_WRITE:
                self.write(params[0], bytes(params[1:]))
            else:
                self._registered = (params[0], bytes(params[1:]))
            return reply
        if instr == INST_ACTION:
            reply = None if broadcast or self.mem[8] == 0 else build_packet(self.id, error)
            if self._registered is not None:
                addr, data = self._registered
                self._registered = None
                self.write(addr, data)
            return reply
        return None  # unknown instruction: real servos stay silent


# ---------------------------------------------------------------- packet framing (host -> servos)
@dataclasses.dataclass(frozen=True)
class Packet:
    id: int
    instr: int
    params: bytes
    raw: bytes


class PacketParser:
    """Splits the byte stream coming from the host into instruction packets.

    Bytes before a header are skipped; a packet whose checksum fails is dropped (servos do not answer
    it) and counted. `feed` returns the complete packets; a partial packet stays buffered until the
    owner calls `reset()` after an inter-byte timeout.
    """

    def __init__(self) -> None:
        self.buf = bytearray()
        self.bad_checksums = 0
        self.skipped_bytes = 0

    def reset(self) -> None:
        self.skipped_bytes += len(self.buf)
        self.buf.clear()

    @property
    def pending(self) -> bool:
        return bool(self.buf)

    def feed(self, data: bytes) -> list[Packet]:
        self.buf += data
        out: list[Packet] = []
        while True:
            start = self.buf.find(HEADER)
            if start < 0:
                keep = 1 if self.buf.endswith(b"\xff") else 0
                self.skipped_bytes += len(self.buf) - keep
                del self.buf[: len(self.buf) - keep]
                return out
            if start:
                self.skipped_bytes += start
                del self.buf[:start]
            # FF FF FF ...: the id cannot be 0xFF, so slide by one and look again
            if len(self.buf) >= 3 and self.buf[2] == 0xFF:
                del self.buf[0]
                self.skipped_bytes += 1
                continue
            if len(self.buf) < 4:
                return out
            length = self.buf[3]
            if length < 2:
                del self.buf[:2]
                self.skipped_bytes += 2
                continue
            total = length + 4
            if len(self.buf) < total:
                return out
            raw = bytes(self.buf[:total])
            del self.buf[:total]
            if checksum(raw[2:-1]) != raw[-1]:
                self.bad_checksums += 1
                continue
            out.append(Packet(id=raw[2], instr=raw[4], params=raw[5:-1], raw=raw))


# ---------------------------------------------------------------- bus dispatch
@dataclasses.dataclass
class Reply:
    """One status packet to put on the wire, and who sent it (for fault injection and timing)."""

    servo: Sts3215
    data: bytes


def answer_packet(servos: Iterable[Sts3215], packet: Packet, baudrate: int) -> list[Reply]:
    """Every servo on the bus sees the packet; return the replies in wire order.

    Only connected servos whose baud rate matches the line's answer. For SYNC_READ the order is the
    order of the ids in the request; a unicast answered by two servos with the same id is garbled
    (both drive the line), which the host sees as a corrupt packet.
    """
    listening = [s for s in servos if s.connected and s.baudrate == baudrate]
    instr, params = packet.instr, packet.params
    if packet.id == BROADCAST_ID:
        if instr == INST_PING:
            replies = [Reply(s, s.handle(INST_PING, b"", broadcast=True) or b"") for s in listening]
            replies.sort(key=lambda r: r.servo.id)
            return replies
        if instr == INST_SYNC_READ:
            if len(params) < 2:
                return []
            addr, length = params[0], params[1]
            out: list[Reply] = []
            for id_ in params[2:]:
                for s in listening:
                    if s.id == id_:
                        data = s.handle(INST_READ, bytes([addr, length]), broadcast=False)
                        if data:
                            out.append(Reply(s, data))
            return out
        if instr == INST_SYNC_WRITE:
            if len(params) < 2:
                return []
            addr, length = params[0], params[1]
            body = params[2:]
            step = length + 1
            if length == 0 or len(body) % step:
                return []
            for i in range(0, len(body), step):
                id_, data = body[i], body[i + 1 : i + step]
                for s in listening:
                    if s.id == id_:
                        s.handle(INST_WRITE, bytes([addr]) + data, broadcast=True)
            return []
        if instr in (INST_WRITE, INST_REG_WRITE, INST_ACTION):
            for s in listening:
                s.handle(instr, params, broadcast=True)
        return []
    targets = [s for s in listening if s.id == packet.id]
    replies = [(s, s.handle(instr, params, broadcast=False)) for s in targets]
    sent = [Reply(s, r) for s, r in replies if r]
    if len(sent) > 1:  # bus collision
        garbled = bytearray(max(len(r.data) for r in sent))
        for r in sent:
            for i, b in enumerate(r.data):
                garbled[i] |= b
        garbled[-1] ^= 0xA5
        return [Reply(sent[0].servo, bytes(garbled))]
    return sent


def wire_seconds(n_bytes: int, baudrate: int) -> float:
    """Time to clock `n_bytes` over a UART at 8N1 (10 bits per byte)."""
    return n_bytes * 10.0 / float(baudrate)

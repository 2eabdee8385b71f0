"""Feetech STS/SMS servo bus on the unmodified scservo_sdk (protocol 0), LeRobot-compatible.

`FeetechBus` offers what LeRobot's `FeetechMotorsBus` does (read / write / sync read / sync write by
register name, sign-magnitude registers, normalization through a calibration, broadcast ping, baud
scan, one-motor-at-a-time setup, half-turn homing, range recording) with the same packets on the wire,
plus what a robot on a desk needs:

- bounded retries everywhere (`num_retry`, default 2), with the input buffer flushed before every
  transaction so a late reply can never be mistaken for the answer to the next request;
- LeRobot's per-packet timeout rule (`tx_time_per_byte * (len + 3) + 50 ms`), set on a PortHandler
  subclass instead of a monkeypatch;
- errors that say what to do: missing port (lists the serial ports), permission denied (dialout group
  or udev rule), port busy, missing motors (with what a broadcast ping did find), wrong model,
  firmware mismatch, and communication failures naming the register, motor, id and tries;
- sync reads that report which motor failed and log (not raise) status fault bits;
- a torque-off that first broadcasts Torque_Enable=0 (reaches every motor even if one is missing)
  and then confirms motor by motor, continuing past failures.

The class is thread-safe (one lock per bus) so a safety hook may switch torque off from another
thread while a control loop runs.
"""

from __future__ import annotations

import contextlib
import errno
import io
import logging
import os
import select
import stat
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import scservo_sdk as scs
import serial

from jrobot.hw import ports
from jrobot.hw.calibration import MotorCalibration, same_calibration
from jrobot.hw.encoding import decode_register, encode_register, join_bytes, split_bytes
from jrobot.hw.errors import (
    CalibrationError,
    CommunicationError,
    FirmwareMismatchError,
    MotorError,
    MotorNotFoundError,
    PortBusyError,
    PortError,
    PortNotFoundError,
    PortPermissionError,
    WrongMotorModelError,
)
from jrobot.hw.normalization import MotorNormMode, normalize, unnormalize
from jrobot.hw.tables import (
    DEFAULT_BAUDRATE,
    MODEL_BY_NUMBER,
    MODEL_NUMBER_TABLE,
    MODEL_PROTOCOL,
    MODEL_RESOLUTION,
    NORMALIZED_DATA,
    POSITION_MODE,
    SCAN_BAUDRATES,
    STS_SMS_BAUDRATE_TABLE,
    address,
    describe_error_bits,
)

logger = logging.getLogger(__name__)

MAX_RETRIES = 10
DEFAULT_TIMEOUT_MARGIN_MS = 50.0  # LeRobot's patched packet timeout margin
PTY_TIMEOUT_MS = 250.0  # margin when the port is a pseudo-terminal (a program answers, not a UART)
Value = int | float
NameOrId = str | int


@dataclass(frozen=True)
class Motor:
    """A motor on the bus: its id, model and how its position is normalized (LeRobot's `Motor`)."""

    id: int
    model: str = "sts3215"
    norm_mode: MotorNormMode = MotorNormMode.DEGREES


class _PortHandler(scs.PortHandler):
    """scservo_sdk's PortHandler with LeRobot's packet-timeout rule and an exclusive port lock.

    LeRobot patches `setPacketTimeout` to `tx_time_per_byte * (len + 3) + 50 ms` because the SDK's
    own rule (`+ 2 * 16 + 2 ms`) is too short for some adapters; `margin_ms` is that 50 ms. The port
    is opened with `exclusive=True` so a second program on the same port fails loudly instead of
    interleaving packets.
    """

    def __init__(self, port_name: str, margin_ms: float) -> None:
        super().__init__(port_name)
        self.margin_ms = float(margin_ms)

    def setPacketTimeout(self, packet_length: int) -> None:
        self.packet_start_time = self.getCurrentTime()
        self.packet_timeout = (
            self.tx_time_per_byte * packet_length + self.tx_time_per_byte * 3.0 + self.margin_ms
        )

    def readPort(self, length: int) -> bytes:
        """What has arrived, up to `length` bytes; with nothing there yet, first wait for input until
        the packet's deadline (or 5 ms) instead of returning at once.

        The SDK's `rxPacket` polls `readPort` in a loop until the reply is complete or late. With the
        port's `timeout=0` that loop spins: a core and the GIL held for the whole 1-10 ms a reply
        takes, taken from the camera and encoder threads of a recording (on a 2-core VM recording
        two 640x480 cameras at 30 fps, one 60 s run each: 52 missed ticks with the spin, 2 without).
        Waiting in `select` releases both; the deadline rule and the bytes returned are unchanged.
        """
        data = self.ser.read(length)
        if data or length <= 0:
            return data
        wait_ms = min(self.packet_timeout - self.getTimeSinceStart(), 5.0)
        if wait_ms > 0:
            try:
                select.select([self.ser.fileno()], [], [], wait_ms / 1000.0)
            except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
                return data  # no selectable descriptor (not POSIX): the SDK's own polling
            return self.ser.read(length)
        return data

    def setupPort(self, cflag_baud: int) -> bool:
        if self.is_open:
            self.closePort()
        self.ser = serial.Serial(
            port=self.port_name, baudrate=self.baudrate, bytesize=serial.EIGHTBITS, timeout=0, exclusive=True
        )
        self.is_open = True
        self.ser.reset_input_buffer()
        self.tx_time_per_byte = (1000.0 / self.baudrate) * 10.0
        return True


def is_pseudo_terminal(port: str) -> bool:
    """Whether `port` (symlinks resolved) is a Unix98 pty slave (major numbers 136-143)."""
    try:
        st = os.stat(port)
    except OSError:
        return False
    return stat.S_ISCHR(st.st_mode) and 136 <= os.major(st.st_rdev) <= 143


def _open_error(port: str, exc: BaseException) -> PortError:
    """Turn an exception from opening `port` into an error that says how to fix it."""
    err = getattr(exc, "errno", None)
    text = str(exc)
    if err == errno.ENOENT or "No such file" in text or (not os.path.exists(port) and os.name == "posix"):
        return PortNotFoundError(
            f"serial port {port!r} does not exist. {ports.describe_available_ports()}\n"
            "Check the USB cable, or run `python -m jrobot.find_port` to identify the arm's port."
        )
    if err in (errno.EACCES, errno.EPERM) or "Permission denied" in text:
        return PortPermissionError(
            f"permission denied opening serial port {port!r}.\n{ports.permission_help(port)}"
        )
    if err == errno.EBUSY or "exclusively lock" in text or "busy" in text.lower():
        return PortBusyError(
            f"serial port {port!r} is in use by another program (close other jrobot/LeRobot processes, "
            f"serial monitors or ModemManager; `fuser {port}` shows who holds it)."
        )
    return PortError(f"could not open serial port {port!r}: {exc}")


class FeetechBus:
    """A chain of Feetech STS/SMS servos on one serial port.

    Args:
        port: serial device, e.g. /dev/ttyACM0.
        motors: motor name -> `Motor`, in bus order.
        calibration: motor name -> `MotorCalibration`, needed to normalize positions.
        baudrate: line speed (the servos must be set to it; 1 Mbps after setup).
        num_retry: extra attempts per transaction before a `CommunicationError` (0..10).
        packet_timeout_ms: the per-packet timeout margin of LeRobot's rule. None: LeRobot's 50 ms
            on a real serial device, 250 ms on a pseudo-terminal, whose far end is a program (the
            virtual arm, a network bridge) that a busy machine can leave unscheduled for tens of ms.
        broadcast_timeout_ms: how long a broadcast ping listens; None uses LeRobot's bound
            (6*252 bytes of wire time + 3*252 + 16 ms, ~0.8 s at 1 Mbps).
    """

    def __init__(
        self,
        port: str,
        motors: Mapping[str, Motor],
        calibration: Mapping[str, MotorCalibration] | None = None,
        *,
        baudrate: int = DEFAULT_BAUDRATE,
        num_retry: int = 2,
        packet_timeout_ms: float | None = None,
        broadcast_timeout_ms: float | None = None,
        protocol_version: int = 0,
    ) -> None:
        if protocol_version != 0:
            raise ValueError("only Feetech protocol 0 (STS/SMS) is supported")
        self.port = str(port)
        self.motors: dict[str, Motor] = dict(motors)
        for name, m in self.motors.items():
            if m.model not in MODEL_NUMBER_TABLE:
                raise ValueError(
                    f"motor {name!r}: unknown model {m.model!r} (known: {sorted(MODEL_NUMBER_TABLE)})"
                )
            if MODEL_PROTOCOL[m.model] != protocol_version:
                raise ValueError(
                    f"motor {name!r}: model {m.model!r} does not use protocol {protocol_version}"
                )
        ids = [m.id for m in self.motors.values()]
        if len(ids) != len(set(ids)):
            raise ValueError(f"motors share an id: {self.motors}")
        self.calibration: dict[str, MotorCalibration] = dict(calibration or {})
        self.default_baudrate = int(baudrate)
        self.num_retry = self._check_retries(num_retry)
        self.broadcast_timeout_ms = broadcast_timeout_ms
        if packet_timeout_ms is None:
            packet_timeout_ms = PTY_TIMEOUT_MS if is_pseudo_terminal(self.port) else DEFAULT_TIMEOUT_MARGIN_MS
        self.packet_timeout_ms = float(packet_timeout_ms)
        self._ph = _PortHandler(self.port, self.packet_timeout_ms)
        self._ph.baudrate = self.default_baudrate
        self._pk = scs.PacketHandler(protocol_version)
        self._lock = threading.RLock()
        self._id_to_name = {m.id: name for name, m in self.motors.items()}
        self.last_status_errors: dict[str, int] = {}

    # ------------------------------------------------------------ basics
    def __repr__(self) -> str:
        return f"FeetechBus(port={self.port!r}, motors={list(self.motors)})"

    @staticmethod
    def _check_retries(n: int) -> int:
        if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n <= MAX_RETRIES:
            raise ValueError(f"num_retry must be an int in 0..{MAX_RETRIES}, got {n!r}")
        return n

    def _retries(self, n: int | None) -> int:
        return self.num_retry if n is None else self._check_retries(n)

    @property
    def is_connected(self) -> bool:
        return bool(self._ph.is_open)

    @property
    def ids(self) -> list[int]:
        return [m.id for m in self.motors.values()]

    def _motor_list(self, motors: NameOrId | Sequence[NameOrId] | None) -> list[str]:
        if motors is None:
            return list(self.motors)
        if isinstance(motors, str | int):
            motors = [motors]
        out = []
        for m in motors:
            if isinstance(m, int) and not isinstance(m, bool):
                if m not in self._id_to_name:
                    raise KeyError(f"no motor with id {m} on this bus (ids: {self.ids})")
                out.append(self._id_to_name[m])
            elif m in self.motors:
                out.append(m)
            else:
                raise KeyError(f"unknown motor {m!r}; this bus has {list(self.motors)}")
        return out

    def _label(self, id_: int) -> str:
        name = self._id_to_name.get(id_)
        return f"motor {name!r} (id {id_})" if name else f"motor id {id_}"

    def _require_open(self) -> None:
        if not self._ph.is_open:
            from jrobot.robot import DeviceNotConnectedError

            raise DeviceNotConnectedError(f"{self!r} is not connected; call connect() first")

    def _prepare(self) -> None:
        """Start a transaction on a clean line: no stale input, no stuck 'port in use' flag."""
        self._ph.is_using = False
        with contextlib.suppress(serial.SerialException, OSError, AttributeError):
            self._ph.ser.reset_input_buffer()

    def _drain(self) -> None:
        """After a failed attempt, let a late reply land and throw it away before trying again.

        Without this a reply that missed its timeout can arrive during the retry and be taken for
        the answer to the next request (same id, same length: the protocol cannot tell them apart).
        Waits until the line has been quiet for a short while, at most one packet timeout.
        """
        quiet_s = min(0.02, self.packet_timeout_ms / 1000.0)
        deadline = time.monotonic() + self.packet_timeout_ms / 1000.0
        last = time.monotonic()
        with contextlib.suppress(serial.SerialException, OSError, AttributeError):
            while time.monotonic() < deadline and time.monotonic() - last < quiet_s:
                if self._ph.ser.read(4096):
                    last = time.monotonic()
                else:
                    time.sleep(0.001)
        self._ph.is_using = False

    # ------------------------------------------------------------ connection
    def connect(self, handshake: bool = True) -> None:
        """Open the port at the bus baud rate; with `handshake`, check every motor answers as expected."""
        with self._lock:
            if self._ph.is_open:
                from jrobot.robot import DeviceAlreadyConnectedError

                raise DeviceAlreadyConnectedError(f"{self!r} is already connected")
            self._open()
            if handshake:
                try:
                    self._handshake()
                except BaseException:
                    self._close()
                    raise

    def check_port(self) -> None:
        """A PortNotFoundError naming the port now, before anyone is asked to plug anything in."""
        if os.name == "posix" and not os.path.exists(self.port):
            raise _open_error(self.port, FileNotFoundError(errno.ENOENT, "No such file", self.port))

    def _open(self) -> None:
        self.check_port()
        self._ph.baudrate = self.default_baudrate
        try:
            ok = self._ph.openPort()
        except (serial.SerialException, OSError) as e:
            raise _open_error(self.port, e) from e
        if not ok:
            raise PortError(
                f"could not open {self.port!r} at {self.default_baudrate} baud (unsupported rate?)"
            )

    def _close(self) -> None:
        with contextlib.suppress(Exception):
            self._ph.closePort()
        self._ph.is_open = False

    def close(self) -> None:
        """Close the port without touching the motors (after setup, or when torque must stay on)."""
        with self._lock:
            self._close()

    def _handshake(self) -> None:
        expected = {m.id: MODEL_NUMBER_TABLE[m.model] for m in self.motors.values()}
        found: dict[int, int] = {}
        for id_ in self.ids:
            model = self.ping(id_)
            if model is not None:
                found[id_] = model
        missing = [i for i in self.ids if i not in found]
        if missing:
            raise MotorNotFoundError(self._missing_report(missing, expected, found))
        wrong = {i: (expected[i], found[i]) for i in found if found[i] != expected[i]}
        if wrong:
            lines = [f"wrong motor model on port {self.port!r}:"]
            for i, (exp, got) in wrong.items():
                lines.append(
                    f"  - {self._label(i)}: expected model number {exp} ({MODEL_BY_NUMBER.get(exp)}), "
                    f"found {got} ({MODEL_BY_NUMBER.get(got, 'unknown model')})"
                )
            raise WrongMotorModelError("\n".join(lines))
        versions = self.read_firmware_versions()
        if len(set(versions.values())) > 1:
            listing = ", ".join(f"{self._label(i)}: {v}" for i, v in versions.items())
            raise FirmwareMismatchError(
                f"motors on {self.port!r} run different firmware versions ({listing}). Update them to the "
                "same version with Feetech's FD software (https://www.feetechrc.com/software)."
            )

    def _missing_report(self, missing: list[int], expected: dict[int, int], found: dict[int, int]) -> str:
        lines = [f"motor check failed on port {self.port!r} at {self.get_baudrate()} baud:"]
        lines.append("missing: " + ", ".join(self._label(i) for i in missing))
        try:
            seen = self.broadcast_ping() or {}
        except (CommunicationError, OSError):
            seen = {}
        if not found and not seen:
            lines.append(
                "No motor answered at all: check the power supply (the board's LED), the USB and 3-pin cables, "
                "and that this is the arm's port (`python -m jrobot.find_port`)."
            )
        elif seen and set(seen) - set(expected):
            lines.append(
                f"A broadcast ping found ids {sorted(seen)}: motors with unexpected ids (e.g. factory id 1) "
                "need `python -m jrobot.setup_motors`."
            )
        else:
            lines.append("Check the cable between the last answering motor and the missing one.")
        return "\n".join(lines)

    def disconnect(self, disable_torque: bool = True) -> None:
        """Optionally switch torque off (robustly, 5 retries), then close the port."""
        with self._lock:
            self._require_open()
            try:
                if disable_torque:
                    self.disable_torque(num_retry=5, raise_on_failure=False)
            finally:
                self._close()

    # ------------------------------------------------------------ low level, with retries
    def _fail(self, what: str, comm: int, tries: int) -> CommunicationError:
        return CommunicationError(
            f"{what} failed after {tries} {'try' if tries == 1 else 'tries'} on {self.port!r} at "
            f"{self.get_baudrate()} baud: {self._pk.getTxRxResult(comm)} "
            "Check the motor's power and cables; a motor that keeps dropping out may have a loose connector."
        )

    def _motor_error(self, what: str, id_: int, error: int) -> MotorError:
        return MotorError(
            f"{what}: {self._label(id_)} reports {describe_error_bits(error)} (status 0x{error:02x})"
        )

    def _read_raw(
        self,
        addr: int,
        length: int,
        id_: int,
        *,
        what: str,
        num_retry: int,
        raise_on_motor_error: bool = True,
    ) -> int:
        comm, error, data = scs.COMM_TX_FAIL, 0, []
        for _ in range(1 + num_retry):
            self._prepare()
            data, comm, error = self._pk.readTxRx(self._ph, id_, addr, length)
            if comm == scs.COMM_SUCCESS and len(data) != length:
                comm = scs.COMM_RX_CORRUPT
            if comm == scs.COMM_SUCCESS:
                break
            self._drain()
        if comm != scs.COMM_SUCCESS:
            raise self._fail(what, comm, 1 + num_retry)
        if error and raise_on_motor_error:
            raise self._motor_error(what, id_, error)
        return join_bytes(data)

    def _write_raw(
        self,
        addr: int,
        length: int,
        id_: int,
        value: int,
        *,
        what: str,
        num_retry: int,
        raise_on_motor_error: bool = True,
    ) -> None:
        data = split_bytes(value, length)
        comm, error = scs.COMM_TX_FAIL, 0
        for _ in range(1 + num_retry):
            self._prepare()
            comm, error = self._pk.writeTxRx(self._ph, id_, addr, length, data)
            if comm == scs.COMM_SUCCESS:
                break
            self._drain()
        if comm != scs.COMM_SUCCESS:
            raise self._fail(what, comm, 1 + num_retry)
        if error:
            if raise_on_motor_error:
                raise self._motor_error(what, id_, error)
            logger.warning("%s: %s reports %s", what, self._label(id_), describe_error_bits(error))

    def _sync_read_raw(
        self, addr: int, length: int, ids: list[int], *, what: str, num_retry: int
    ) -> dict[int, int]:
        comm, bad_id = scs.COMM_TX_FAIL, None
        for _ in range(1 + num_retry):
            self._prepare()
            comm = self._pk.syncReadTx(self._ph, addr, length, list(ids), len(ids))
            if comm != scs.COMM_SUCCESS:
                self._ph.is_using = False
                continue
            values: dict[int, int] = {}
            errors: dict[int, int] = {}
            for id_ in ids:
                data, comm, err = self._pk.readRx(self._ph, id_, length)
                if comm == scs.COMM_SUCCESS and len(data) != length:
                    comm = scs.COMM_RX_CORRUPT
                if comm != scs.COMM_SUCCESS:
                    bad_id = id_
                    break
                values[id_] = join_bytes(data)
                errors[id_] = err
            self._ph.is_using = False
            if comm == scs.COMM_SUCCESS:
                self._note_status(errors)
                return values
            self._drain()
        where = f" (first failure at {self._label(bad_id)})" if bad_id is not None else ""
        raise self._fail(what + where, comm, 1 + num_retry)

    def _note_status(self, errors: Mapping[int, int]) -> None:
        """Log fault bits seen in sync reads once per change, without failing the read."""
        for id_, err in errors.items():
            name = self._id_to_name.get(id_, str(id_))
            if self.last_status_errors.get(name, 0) != err:
                if err:
                    logger.warning("%s reports %s", self._label(id_), describe_error_bits(err))
                self.last_status_errors[name] = err

    def _sync_write_raw(
        self, addr: int, length: int, ids_values: Mapping[int, int], *, what: str, num_retry: int
    ) -> None:
        param: list[int] = []
        for id_, value in ids_values.items():
            param.append(id_)
            param.extend(split_bytes(value, length))
        comm = scs.COMM_TX_FAIL
        for _ in range(1 + num_retry):
            self._prepare()
            comm = self._pk.syncWriteTxOnly(self._ph, addr, length, param, len(param))
            self._ph.is_using = False
            if comm == scs.COMM_SUCCESS:
                return
        raise self._fail(what, comm, 1 + num_retry)

    # ------------------------------------------------------------ normalization
    def _calibration_of(self, motor: str) -> MotorCalibration:
        cal = self.calibration.get(motor)
        if cal is None:
            raise CalibrationError(
                f"motor {motor!r} has no calibration; run `python -m jrobot.calibrate` for this device first"
            )
        return cal

    def _normalize(self, motor: str, raw: int) -> float:
        m = self.motors[motor]
        return normalize(
            raw, m.norm_mode, self._calibration_of(motor), resolution=MODEL_RESOLUTION[m.model], name=motor
        )

    def _unnormalize(self, motor: str, value: float) -> int:
        m = self.motors[motor]
        return unnormalize(
            value, m.norm_mode, self._calibration_of(motor), resolution=MODEL_RESOLUTION[m.model], name=motor
        )

    def _to_raw(self, data_name: str, motor: str, value: Value, normalize_value: bool) -> int:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise TypeError(f"{data_name} for motor {motor!r} must be a number, got {value!r}")
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError(f"refusing to write non-finite {data_name}={value!r} to motor {motor!r}")
        if normalize_value and data_name in NORMALIZED_DATA:
            raw = self._unnormalize(motor, float(value))
        else:
            raw = int(value)
        try:
            return encode_register(data_name, raw)
        except ValueError as e:
            raise ValueError(f"{data_name}={value!r} for motor {motor!r} cannot be encoded: {e}") from e

    def _from_raw(self, data_name: str, motor: str, raw: int, normalize_value: bool) -> Value:
        decoded = decode_register(data_name, raw)
        if normalize_value and data_name in NORMALIZED_DATA:
            return self._normalize(motor, decoded)
        return decoded

    # ------------------------------------------------------------ public register access
    def read(
        self, data_name: str, motor: NameOrId, *, normalize: bool = True, num_retry: int | None = None
    ) -> Value:
        """One register of one motor (sign-decoded; positions normalized when `normalize`)."""
        (name,) = self._motor_list(motor)
        addr, length = address(data_name)
        id_ = self.motors[name].id
        with self._lock:
            self._require_open()
            raw = self._read_raw(
                addr,
                length,
                id_,
                what=f"reading {data_name} from {self._label(id_)}",
                num_retry=self._retries(num_retry),
            )
        return self._from_raw(data_name, name, raw, normalize)

    def write(
        self,
        data_name: str,
        motor: NameOrId,
        value: Value,
        *,
        normalize: bool = True,
        num_retry: int | None = None,
        raise_on_motor_error: bool = True,
    ) -> None:
        """Write one register and wait for the motor's acknowledgement."""
        (name,) = self._motor_list(motor)
        addr, length = address(data_name)
        raw = self._to_raw(data_name, name, value, normalize)
        id_ = self.motors[name].id
        with self._lock:
            self._require_open()
            self._write_raw(
                addr,
                length,
                id_,
                raw,
                what=f"writing {data_name}={value} to {self._label(id_)}",
                num_retry=self._retries(num_retry),
                raise_on_motor_error=raise_on_motor_error,
            )

    def sync_read(
        self,
        data_name: str,
        motors: NameOrId | Sequence[NameOrId] | None = None,
        *,
        normalize: bool = True,
        num_retry: int | None = None,
    ) -> dict[str, Value]:
        """One register from several motors in a single bus transaction (motor name -> value)."""
        names = self._motor_list(motors)
        addr, length = address(data_name)
        ids = [self.motors[n].id for n in names]
        with self._lock:
            self._require_open()
            raw = self._sync_read_raw(
                addr,
                length,
                ids,
                what=f"sync-reading {data_name} from ids {ids}",
                num_retry=self._retries(num_retry),
            )
        return {n: self._from_raw(data_name, n, raw[self.motors[n].id], normalize) for n in names}

    def sync_write(
        self,
        data_name: str,
        values: Value | Mapping[str, Value],
        *,
        normalize: bool = True,
        num_retry: int = 0,
    ) -> None:
        """One register on several motors in a single broadcast packet (no acknowledgement)."""
        if isinstance(values, Mapping):
            items = {self._motor_list(k)[0]: v for k, v in values.items()}
        else:
            items = dict.fromkeys(self.motors, values)
        addr, length = address(data_name)
        raw = {self.motors[n].id: self._to_raw(data_name, n, v, normalize) for n, v in items.items()}
        with self._lock:
            self._require_open()
            self._sync_write_raw(
                addr,
                length,
                raw,
                what=f"sync-writing {data_name} to ids {list(raw)}",
                num_retry=self._check_retries(num_retry),
            )

    # ------------------------------------------------------------ discovery
    def ping(self, motor: NameOrId, num_retry: int | None = None, raise_on_error: bool = False) -> int | None:
        """The motor's model number, or None if it does not answer (or raise with `raise_on_error`)."""
        id_ = self.motors[motor].id if isinstance(motor, str) else int(motor)
        comm, error, model = scs.COMM_TX_FAIL, 0, 0
        with self._lock:
            self._require_open()
            for _ in range(1 + self._retries(num_retry)):
                self._prepare()
                model, comm, error = self._ping_once(id_)
                if comm == scs.COMM_SUCCESS:
                    break
                self._drain()
        if comm != scs.COMM_SUCCESS:
            if raise_on_error:
                raise self._fail(f"pinging {self._label(id_)}", comm, 1 + self._retries(num_retry))
            return None
        if error:
            if raise_on_error:
                raise self._motor_error(f"pinging {self._label(id_)}", id_, error)
            logger.warning("%s answers a ping with %s", self._label(id_), describe_error_bits(error))
        return int(model)

    def _ping_once(self, id_: int) -> tuple[int, int, int]:
        """The SDK's `ping` (PING, then READ Model_Number), without its crash on a short reply.

        scservo_sdk indexes the READ reply's data without checking its length, so a stray 6-byte
        status (e.g. a late answer to an earlier request) raises IndexError inside the SDK.
        """
        tx = [0] * 6
        tx[scs.PKT_ID] = id_
        tx[scs.PKT_LENGTH] = 2
        tx[scs.PKT_INSTRUCTION] = scs.INST_PING
        _, comm, error = self._pk.txRxPacket(self._ph, tx)
        if comm != scs.COMM_SUCCESS:
            return 0, comm, error
        data, comm, error = self._pk.readTxRx(self._ph, id_, 3, 2)
        if comm == scs.COMM_SUCCESS and len(data) != 2:
            comm = scs.COMM_RX_CORRUPT
        return (join_bytes(data) if comm == scs.COMM_SUCCESS else 0), comm, error

    def broadcast_ping(
        self, num_retry: int = 0, raise_on_error: bool = False, *, idle_ms: float | None = None
    ) -> dict[int, int] | None:
        """Ping every id at once (protocol 0): {id: model number}, or None if nobody answered.

        It listens for the whole broadcast window (LeRobot's bound, or `broadcast_timeout_ms`), because
        servos may answer in id-ordered slots; `idle_ms` stops listening once a valid status arrived
        and the line then stayed quiet that long (safe when a single motor is connected).
        """
        with self._lock:
            self._require_open()
            statuses: dict[int, int] = {}
            comm = scs.COMM_RX_TIMEOUT
            for _ in range(1 + self._check_retries(num_retry)):
                statuses, comm = self._broadcast_ping_once(idle_ms)
                if comm == scs.COMM_SUCCESS:
                    break
            if comm != scs.COMM_SUCCESS:
                if raise_on_error:
                    raise self._fail("broadcast ping", comm, 1 + num_retry)
                return None
            for id_, err in statuses.items():
                if err:
                    logger.warning(
                        "%s answered the broadcast ping with %s", self._label(id_), describe_error_bits(err)
                    )
            models = {}
            for id_ in statuses:
                with contextlib.suppress(CommunicationError, MotorError):
                    models[id_] = self._read_raw(
                        3,
                        2,
                        id_,
                        what=f"reading Model_Number of id {id_}",
                        num_retry=self.num_retry,
                        raise_on_motor_error=False,
                    )
            return models

    def _broadcast_ping_once(self, idle_ms: float | None = None) -> tuple[dict[int, int], int]:
        ph = self._ph
        self._prepare()
        tx = [0] * 6
        tx[scs.PKT_ID] = scs.BROADCAST_ID
        tx[scs.PKT_LENGTH] = 2
        tx[scs.PKT_INSTRUCTION] = scs.INST_PING
        result = self._pk.txPacket(ph, tx)
        if result != scs.COMM_SUCCESS:
            ph.is_using = False
            return {}, result
        status_length = 6
        wait_length = status_length * scs.MAX_ID
        timeout_ms = self.broadcast_timeout_ms
        if timeout_ms is None:  # LeRobot's bound
            timeout_ms = wait_length * ph.tx_time_per_byte + 3.0 * scs.MAX_ID + 16.0
        ph.setPacketTimeoutMillis(timeout_ms)
        rx: list[int] = []
        last_rx = time.monotonic()
        while not ph.isPacketTimeout() and len(rx) < wait_length:
            chunk = ph.readPort(wait_length - len(rx))
            if chunk:
                rx.extend(chunk)
                last_rx = time.monotonic()
            elif (
                idle_ms is not None
                and len(rx) >= status_length
                and (time.monotonic() - last_rx) * 1e3 > idle_ms
            ):
                break
            else:
                time.sleep(0.0005)
        ph.is_using = False
        if not rx:
            return {}, scs.COMM_RX_TIMEOUT
        found: dict[int, int] = {}
        i = 0
        corrupt = False
        while i + status_length <= len(rx):
            if rx[i] == 0xFF and rx[i + 1] == 0xFF and rx[i + 3] == 2:
                body = rx[i + 2 : i + 5]
                if (~sum(body)) & 0xFF == rx[i + 5]:
                    found[rx[i + 2]] = rx[i + 4]
                    i += status_length
                    continue
                corrupt = True
            i += 1
        if not found:
            return {}, scs.COMM_RX_CORRUPT if corrupt or rx else scs.COMM_RX_TIMEOUT
        return found, scs.COMM_SUCCESS

    def read_firmware_versions(self) -> dict[int, str]:
        """{id: "major.minor"} for every motor, as LeRobot formats them."""
        out = {}
        for id_ in self.ids:
            major = self._read_raw(
                0, 1, id_, what=f"reading firmware version of {self._label(id_)}", num_retry=self.num_retry
            )
            minor = self._read_raw(
                1, 1, id_, what=f"reading firmware version of {self._label(id_)}", num_retry=self.num_retry
            )
            out[id_] = f"{major}.{minor}"
        return out

    def get_baudrate(self) -> int:
        return int(self._ph.getBaudRate())

    def set_baudrate(self, baudrate: int) -> None:
        """Change the line speed (the SDK reopens the port)."""
        with self._lock:
            if self._ph.getBaudRate() == baudrate and self._ph.is_open:
                return
            try:
                ok = self._ph.setBaudRate(baudrate)
            except (serial.SerialException, OSError) as e:
                raise _open_error(self.port, e) from e
            if not ok or self._ph.getBaudRate() != baudrate:
                raise ValueError(
                    f"cannot set {self.port!r} to {baudrate} baud (supported: {list(SCAN_BAUDRATES)})"
                )

    @classmethod
    def scan_port(
        cls, port: str, baudrates: Sequence[int] = SCAN_BAUDRATES, **kwargs: Any
    ) -> dict[int, dict[int, int]]:
        """{baud rate: {id: model}} for every rate at which something answers a broadcast ping."""
        bus = cls(port, {}, **kwargs)
        bus._open()
        try:
            out = {}
            for baud in baudrates:
                bus.set_baudrate(baud)
                found = bus.broadcast_ping()
                if found:
                    out[baud] = found
            return out
        finally:
            bus._close()

    def find_single_motor(self, motor: str, baudrates: Sequence[int] | None = None) -> tuple[int, int]:
        """(baud rate, id) of the only motor connected, which must be of `motor`'s model."""
        model = self.motors[motor].model
        expected = MODEL_NUMBER_TABLE[model]
        for baud in baudrates or list(STS_SMS_BAUDRATE_TABLE):
            self.set_baudrate(baud)
            found = self.broadcast_ping(idle_ms=20.0)
            if not found:
                continue
            if len(found) > 1:
                raise RuntimeError(
                    f"several motors answer at {baud} baud (ids {sorted(found)}); connect only the {motor!r} motor"
                )
            ((id_, number),) = found.items()
            if number != expected:
                raise WrongMotorModelError(
                    f"found one motor at {baud} baud with id {id_} but model number {number} "
                    f"({MODEL_BY_NUMBER.get(number, 'unknown')}); {motor!r} should be a {model} ({expected}). "
                    f"Make sure only the {motor!r} motor is connected."
                )
            return baud, id_
        raise MotorNotFoundError(
            f"motor {motor!r} ({model}) did not answer at any baud rate on {self.port!r}; check its cable and power"
        )

    def setup_motor(
        self, motor: str, initial_baudrate: int | None = None, initial_id: int | None = None
    ) -> None:
        """Give the only connected motor `motor`'s id and the bus baud rate (LeRobot's `setup_motor`).

        Finds it by broadcast ping (unless both initial values are given), disables its torque and
        unlocks its EPROM, writes ID, then Baud_Rate, and checks it answers with the new settings.
        """
        with self._lock:
            if not self._ph.is_open:
                self._open()
            if initial_baudrate is None or initial_id is None:
                initial_baudrate, initial_id = self.find_single_motor(
                    motor, [initial_baudrate] if initial_baudrate else None
                )
            m = self.motors[motor]
            self.set_baudrate(initial_baudrate)
            label = f"setting up {motor!r}"
            self._write_raw(40, 1, initial_id, 0, what=f"{label}: Torque_Enable=0", num_retry=self.num_retry)
            self._write_raw(55, 1, initial_id, 0, what=f"{label}: Lock=0", num_retry=self.num_retry)
            if initial_id != m.id:
                self._write_raw(5, 1, initial_id, m.id, what=f"{label}: ID={m.id}", num_retry=self.num_retry)
            code = STS_SMS_BAUDRATE_TABLE[self.default_baudrate]
            self._write_raw(6, 1, m.id, code, what=f"{label}: Baud_Rate={code}", num_retry=self.num_retry)
            self.set_baudrate(self.default_baudrate)
            model = self.ping(m.id)
            if model != MODEL_NUMBER_TABLE[m.model]:
                raise CommunicationError(
                    f"{motor!r} does not answer as id {m.id} at {self.default_baudrate} baud after setup (got {model})"
                )

    # ------------------------------------------------------------ torque and configuration
    def disable_torque(
        self,
        motors: NameOrId | Sequence[NameOrId] | None = None,
        num_retry: int | None = None,
        *,
        raise_on_failure: bool = True,
    ) -> None:
        """Torque_Enable=0 and Lock=0 on each motor (LeRobot's pairing).

        A broadcast Torque_Enable=0 goes out first, so every motor that can hear it stops even if
        another one is missing; then each motor is written and acknowledged. Failures do not stop
        the loop; they are raised together at the end (or logged with `raise_on_failure=False`).
        """
        names = self._motor_list(motors)
        retries = self._retries(num_retry)
        failures = []
        with self._lock:
            self._require_open()
            with contextlib.suppress(CommunicationError, ValueError):
                self._sync_write_raw(
                    40, 1, {self.motors[n].id: 0 for n in names}, what="broadcast torque off", num_retry=0
                )
            for n in names:
                id_ = self.motors[n].id
                try:
                    self._write_raw(
                        40,
                        1,
                        id_,
                        0,
                        what=f"Torque_Enable=0 on {self._label(id_)}",
                        num_retry=retries,
                        raise_on_motor_error=False,
                    )
                    self._write_raw(
                        55,
                        1,
                        id_,
                        0,
                        what=f"Lock=0 on {self._label(id_)}",
                        num_retry=retries,
                        raise_on_motor_error=False,
                    )
                except CommunicationError as e:
                    failures.append(e)
        if failures:
            if raise_on_failure:
                raise CommunicationError("could not confirm torque off:\n" + "\n".join(map(str, failures)))
            for e in failures:
                logger.error("torque off not confirmed: %s", e)

    def enable_torque(
        self, motors: NameOrId | Sequence[NameOrId] | None = None, num_retry: int | None = None
    ) -> None:
        """Torque_Enable=1 and Lock=1 on each motor."""
        for n in self._motor_list(motors):
            self.write("Torque_Enable", n, 1, num_retry=num_retry)
            self.write("Lock", n, 1, num_retry=num_retry)

    @contextlib.contextmanager
    def torque_disabled(self, motors: NameOrId | Sequence[NameOrId] | None = None) -> Iterator[None]:
        """Torque off (EPROM unlocked) inside the block, back on (locked) after it, even on error."""
        self.disable_torque(motors)
        try:
            yield
        finally:
            self.enable_torque(motors)

    def configure_motors(
        self, return_delay_time: int = 0, maximum_acceleration: int = 254, acceleration: int = 254
    ) -> None:
        """LeRobot's `configure_motors`: shortest return delay, fast acceleration (EPROM must be unlocked)."""
        for n in self.motors:
            self.write("Return_Delay_Time", n, return_delay_time)
            self.write("Maximum_Acceleration", n, maximum_acceleration)
            self.write("Acceleration", n, acceleration)

    def hold_position(self, motors: NameOrId | Sequence[NameOrId] | None = None) -> None:
        """Set each goal to the present position, so enabling torque cannot make the arm jump."""
        names = self._motor_list(motors)
        present = self.sync_read("Present_Position", names, normalize=False)
        self.sync_write("Goal_Position", present, normalize=False)

    # ------------------------------------------------------------ calibration
    def read_calibration(self) -> dict[str, MotorCalibration]:
        """Homing offset and position limits as stored in the motors (drive_mode is always 0)."""
        out = {}
        for n, m in self.motors.items():
            out[n] = MotorCalibration(
                id=m.id,
                drive_mode=0,
                homing_offset=int(self.read("Homing_Offset", n, normalize=False)),
                range_min=int(self.read("Min_Position_Limit", n, normalize=False)),
                range_max=int(self.read("Max_Position_Limit", n, normalize=False)),
            )
        return out

    def write_calibration(self, calibration: Mapping[str, MotorCalibration], cache: bool = True) -> None:
        """Write Homing_Offset and the position limits (EPROM: torque off / unlocked first)."""
        for n, cal in calibration.items():
            self.write("Homing_Offset", n, cal.homing_offset, normalize=False)
            self.write("Min_Position_Limit", n, cal.range_min, normalize=False)
            self.write("Max_Position_Limit", n, cal.range_max, normalize=False)
        if cache:
            self.calibration = dict(calibration)

    @property
    def is_calibrated(self) -> bool:
        """Whether the motors hold the offsets and ranges of `self.calibration`."""
        if not self.calibration or set(self.calibration) != set(self.motors):
            return False
        return same_calibration(self.read_calibration(), self.calibration, self.motors)

    def reset_calibration(self, motors: NameOrId | Sequence[NameOrId] | None = None) -> None:
        """Homing_Offset=0 and limits 0..4095, and forget the cached calibration."""
        for n in self._motor_list(motors):
            res = MODEL_RESOLUTION[self.motors[n].model]
            self.write("Homing_Offset", n, 0, normalize=False)
            self.write("Min_Position_Limit", n, 0, normalize=False)
            self.write("Max_Position_Limit", n, res - 1, normalize=False)
        self.calibration = {}

    def set_half_turn_homings(self, motors: NameOrId | Sequence[NameOrId] | None = None) -> dict[str, int]:
        """Make the current pose read mid-range (2047): offset = position - 2047 per motor."""
        names = self._motor_list(motors)
        self.reset_calibration(names)
        positions = self.sync_read("Present_Position", names, normalize=False)
        offsets = {}
        for n, pos in positions.items():
            half = int((MODEL_RESOLUTION[self.motors[n].model] - 1) / 2)
            offset = int(pos) - half
            if abs(offset) > 2047:
                raise CalibrationError(
                    f"motor {n!r} reads {pos}, which needs homing offset {offset}; the servo stores at most +-2047. "
                    "Move the joint a little off the encoder seam and start again."
                )
            offsets[n] = offset
        for n, offset in offsets.items():
            self.write("Homing_Offset", n, offset, normalize=False)
        return offsets

    def record_ranges_of_motion(
        self,
        motors: NameOrId | Sequence[NameOrId] | None = None,
        *,
        stop: Callable[[], bool],
        on_sample: Callable[[dict[str, int], dict[str, int], dict[str, int]], None] | None = None,
        period_s: float = 0.01,
    ) -> tuple[dict[str, int], dict[str, int]]:
        """Track min/max raw positions until `stop()` is true (the user pressed ENTER).

        `on_sample(positions, mins, maxes)` is called after every read (to draw a live table).
        Raises CalibrationError naming the motors that never moved.
        """
        names = self._motor_list(motors)
        start = self.sync_read("Present_Position", names, normalize=False)
        mins = {n: int(v) for n, v in start.items()}
        maxes = dict(mins)
        while True:
            positions = {
                n: int(v) for n, v in self.sync_read("Present_Position", names, normalize=False).items()
            }
            for n, p in positions.items():
                mins[n] = min(mins[n], p)
                maxes[n] = max(maxes[n], p)
            if on_sample is not None:
                on_sample(positions, mins, maxes)
            if stop():
                break
            time.sleep(period_s)
        still = [n for n in names if mins[n] == maxes[n]]
        if still:
            raise CalibrationError(f"these motors did not move while recording ranges (min == max): {still}")
        return mins, maxes

    def set_position_mode(self, motors: NameOrId | Sequence[NameOrId] | None = None) -> None:
        for n in self._motor_list(motors):
            self.write("Operating_Mode", n, POSITION_MODE)

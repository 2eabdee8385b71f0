"""Recording controls from the terminal itself: → ends the phase early, ← re-records, Esc stops.

LeRobot listens with pynput, which needs an X server (or accessibility permissions on macOS) and so
does nothing over SSH. These keys are read from the controlling terminal's stdin instead: the terminal
is put in cbreak mode (no echo, no line buffering) for the duration and restored afterwards, and the
arrow keys' escape sequences (ESC [ C / ESC [ D, or ESC O C / ESC O D) are told apart from a lone Esc
by a short inter-byte timeout. Works in any terminal, over SSH, in tmux/screen. When stdin is not a
terminal (a pipe), the same bytes are still read, so scripts and tests can drive a recording.
"""

from __future__ import annotations

import contextlib
import os
import select
import sys
import termios
import threading
import tty
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from jrobot.kinematics.ee_control import EEDeltaTeleop

_ESC = 0x1B
_SEQ_TIMEOUT_S = 0.05


@dataclass
class RecordEvents:
    """What the keys asked for; the record loop polls and clears these."""

    exit_early: bool = False
    rerecord_episode: bool = False
    stop_recording: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def press(self, key: str) -> None:
        with self._lock:
            if key == "right":
                self.exit_early = True
            elif key == "left":
                self.rerecord_episode = True
                self.exit_early = True
            elif key == "escape":
                self.stop_recording = True
                self.exit_early = True

    def take_exit_early(self) -> bool:
        with self._lock:
            value, self.exit_early = self.exit_early, False
            return value


def parse_keys(data: bytes, *, letters: bool = False) -> list[str]:
    """Key names in a chunk of terminal input ("right", "left", "escape", and with `letters` the
    lowercase letters "a".."z"); other bytes are ignored."""
    keys: list[str] = []
    i = 0
    while i < len(data):
        b = data[i]
        if letters and (ord("a") <= b <= ord("z") or ord("A") <= b <= ord("Z")):
            keys.append(chr(b).lower())
        elif b == _ESC:
            if i + 2 < len(data) and data[i + 1] in (ord("["), ord("O")):
                code = data[i + 2]
                if code == ord("C"):
                    keys.append("right")
                elif code == ord("D"):
                    keys.append("left")
                i += 3
                continue
            keys.append("escape")
        i += 1
    return keys


class TerminalKeys:
    """A thread reading key presses from `fd` (default: stdin) into `events` (the recording controls)
    and, when given, every key (letters too) to `on_key` (a keyboard teleoperator); a context manager.
    One reader per terminal: two would split its bytes between them."""

    def __init__(
        self, events: RecordEvents | None, fd: int | None = None, on_key: Callable[[str], None] | None = None
    ):
        self.events = events
        self.on_key = on_key
        self.fd = sys.stdin.fileno() if fd is None else fd
        self._saved: list | None = None
        self._stop_r, self._stop_w = os.pipe()
        self._thread = threading.Thread(target=self._run, name="jrobot-keys", daemon=True)
        self.enabled = True

    def __enter__(self) -> TerminalKeys:
        try:
            if os.isatty(self.fd):
                self._saved = termios.tcgetattr(self.fd)
                tty.setcbreak(self.fd)
        except (termios.error, OSError):
            self._saved = None
        try:
            os.fstat(self.fd)
        except OSError:
            self.enabled = False
            return self
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        os.write(self._stop_w, b"x")
        if self._thread.is_alive():
            self._thread.join(timeout=1)
        if self._saved is not None:
            with contextlib.suppress(termios.error, OSError):
                termios.tcsetattr(self.fd, termios.TCSADRAIN, self._saved)
        for fd in (self._stop_r, self._stop_w):
            with contextlib.suppress(OSError):
                os.close(fd)

    def _read_available(self, timeout: float | None) -> bytes:
        r, _, _ = select.select([self.fd, self._stop_r], [], [], timeout)
        if self._stop_r in r or self.fd not in r:
            return b""
        try:
            return os.read(self.fd, 64)
        except OSError:
            return b""

    def _run(self) -> None:
        while True:
            r, _, _ = select.select([self.fd, self._stop_r], [], [])
            if self._stop_r in r:
                return
            try:
                data = os.read(self.fd, 64)
            except OSError:
                return
            if not data:  # EOF on a pipe
                return
            if data[-1:] == bytes([_ESC]) or (len(data) >= 2 and data[-2] == _ESC):
                data += self._read_available(_SEQ_TIMEOUT_S)  # complete a split escape sequence
            for key in parse_keys(data, letters=self.on_key is not None):
                if self.events is not None:
                    self.events.press(key)
                if self.on_key is not None:
                    self.on_key(key)


# -- end-effector teleoperation from the keyboard ---------------------------------------------------

EE_KEYS = {
    "w": ("delta_x", 1.0), "s": ("delta_x", -1.0),  # forward / back
    "a": ("delta_y", 1.0), "d": ("delta_y", -1.0),  # left / right
    "r": ("delta_z", 1.0), "f": ("delta_z", -1.0),  # up / down
    "e": ("gripper", 2.0), "q": ("gripper", 0.0),   # open / close
}  # fmt: skip


class KeyboardEETeleop(EEDeltaTeleop):
    """Drives an SO-101 follower in Cartesian space from the terminal (`--teleop.type=keyboard_ee`).

    Each press of w/s, a/d, r/f moves the gripper's target one step along x, y, z of the base frame
    (held keys repeat), e/q open and close the gripper; the target becomes joints through
    `jrobot.kinematics.ee_control.EEDeltaToJoints` (bounds, step limit, IK seeded from the last
    joints). The arrows and Esc keep their recording meaning. It starts from the follower's measured
    pose at its first action, so it can connect before the robot does.
    """

    name = "keyboard_ee"

    def __init__(self, config: Any, robot: Any, *, fd: int | None = None) -> None:
        super().__init__(config, robot)
        self.fd = fd
        self.external_keys = False  # True: a recording's TerminalKeys feeds `press` (one reader)
        self._pending: list[str] = []
        self._lock = threading.Lock()
        self._keys: TerminalKeys | None = None
        self._connected = False

    @property
    def is_connected(self) -> bool:
        return self._connected

    def press(self, key: str) -> None:
        if key in EE_KEYS:
            with self._lock:
                self._pending.append(key)

    def connect(self, calibrate: bool = True) -> None:
        self._start_control()
        if not self.external_keys:
            self._keys = TerminalKeys(None, fd=self.fd, on_key=self.press).__enter__()
        self._connected = True
        print("keyboard end-effector control: w/s forward/back, a/d left/right, r/f up/down, e/q open/close")

    def get_action(self) -> dict[str, float]:
        with self._lock:
            keys, self._pending = self._pending, []
        delta = {"delta_x": 0.0, "delta_y": 0.0, "delta_z": 0.0, "gripper": 1.0}
        for key in keys:
            axis, value = EE_KEYS[key]
            delta[axis] = value if axis == "gripper" else delta[axis] + value
        return self._joints_for(delta)

    def disconnect(self) -> None:
        if self._keys is not None:
            self._keys.__exit__(None, None, None)
            self._keys = None
        self._connected = False

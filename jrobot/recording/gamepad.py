"""End-effector teleoperation from a gamepad (`--teleop.type=gamepad_ee`), as LeRobot's gamepad teleop.

The pad is read through Linux's joystick interface (`/dev/input/js*`, the kernel's joydev driver): a
stream of 8-byte events (u32 time in ms, s16 value, u8 type, u8 number; type 1 a button, 2 an axis,
0x80 marking the initial state sent on open). Any pad the kernel knows (Xbox, PlayStation, 8BitDo, ...)
appears there without a library or a display, so it works on the robot's computer over SSH, as the
keyboard teleop does. A background thread keeps the latest state; each tick the sticks become
end-effector steps through `jrobot.kinematics.ee_control.EEDeltaToJoints` (bounds, step limit, IK).

Default layout (an Xbox-style pad under the xpad driver; every index is a flag):
left stick up/down -> x (forward/back), left stick left/right -> y, right stick up/down -> z,
RB closes the gripper, LB opens it. A stick inside `deadzone` counts as centred. A pad unplugged
while driving ends the loop (ConnectionError: torque off as on any error), never a stale command.
"""

from __future__ import annotations

import dataclasses
import errno
import glob
import os
import select
import struct
import threading
from typing import Any

from jrobot.errors import InputError
from jrobot.kinematics.ee_control import EEDeltaTeleop
from jrobot.recording.joint_limits import EETeleopConfig

EVENT = struct.Struct("<IhBB")  # struct js_event: time, value, type, number
JS_BUTTON, JS_AXIS, JS_INIT = 0x01, 0x02, 0x80
AXIS_MAX = 32767.0


class GamepadError(ConnectionError):
    """The gamepad went away while driving."""


class GamepadNotFoundError(GamepadError, InputError):
    """No gamepad where one was looked for, or no permission to read it."""


@dataclasses.dataclass
class GamepadEEConfig(EETeleopConfig):
    """The pad (`device`, default the first /dev/input/js*) and its layout; the step sizes, bounds and
    gripper speed of `EEControlConfig`; `ee_bounds`, a find_joint_limits file, gives the box."""

    device: str | None = None
    deadzone: float = 0.15  # |stick| below this (of full travel) counts as centred
    axis_x: int = 1  # left stick vertical: pushed away (negative values) moves forward, +x
    axis_y: int = 0  # left stick horizontal: left (negative) moves +y
    axis_z: int = 4  # right stick vertical: up (negative) moves +z
    button_close: int = 5  # RB
    button_open: int = 4  # LB
    type: str = "gamepad_ee"

    def __post_init__(self) -> None:
        if not 0.0 <= self.deadzone < 1.0:
            raise ValueError(f"deadzone must be in [0, 1), got {self.deadzone}")
        super().__post_init__()


def find_gamepad(dev_dir: str = "/dev/input") -> str:
    """The first joystick device, or a GamepadError saying what to do."""
    found = sorted(glob.glob(os.path.join(dev_dir, "js*")))
    if not found:
        raise GamepadNotFoundError(
            f"no gamepad: nothing matches {dev_dir}/js* (plug one in, check `ls {dev_dir}`, "
            "or give --teleop.device=/dev/input/jsN)"
        )
    return found[0]


class JoystickReader:
    """The latest axes and buttons of a joystick device, kept by a background thread."""

    def __init__(self, path: str) -> None:
        self.path = path
        try:
            self._fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        except FileNotFoundError:
            raise GamepadNotFoundError(f"{path}: no such gamepad device") from None
        except PermissionError:
            raise GamepadNotFoundError(
                f"{path}: permission denied (add yourself to the 'input' group: sudo usermod -aG input $USER, "
                "then log in again)"
            ) from None
        self.axes: dict[int, float] = {}
        self.buttons: dict[int, bool] = {}
        self.error: str | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="gamepad", daemon=True)
        self._thread.start()

    def state(self) -> tuple[dict[int, float], dict[int, bool]]:
        with self._lock:
            if self.error is not None:
                raise GamepadError(self.error)
            return dict(self.axes), dict(self.buttons)

    def _run(self) -> None:
        pending = b""
        while not self._stop.is_set():
            ready, _, _ = select.select([self._fd], [], [], 0.05)
            if not ready:
                continue
            try:
                chunk = os.read(self._fd, EVENT.size * 64)
            except BlockingIOError:
                continue
            except OSError as e:  # ENODEV: unplugged
                self._fail(f"{self.path}: the gamepad went away ({errno.errorcode.get(e.errno, e)})")
                return
            if not chunk:
                self._fail(f"{self.path}: the gamepad went away")
                return
            pending += chunk
            usable = len(pending) - len(pending) % EVENT.size
            events, pending = pending[:usable], pending[usable:]
            with self._lock:
                for _, value, kind, number in EVENT.iter_unpack(events):
                    kind &= ~JS_INIT
                    if kind == JS_AXIS:
                        self.axes[number] = max(-1.0, min(1.0, value / AXIS_MAX))
                    elif kind == JS_BUTTON:
                        self.buttons[number] = bool(value)

    def _fail(self, message: str) -> None:
        with self._lock:
            self.error = message

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=1.0)
        os.close(self._fd)


class GamepadEETeleop(EEDeltaTeleop):
    """Drives an SO-101 follower in Cartesian space from a gamepad (module docstring). It starts from
    the follower's measured pose at its first action, so it can connect before the robot does."""

    name = "gamepad_ee"

    def __init__(self, config: GamepadEEConfig, robot: Any) -> None:
        super().__init__(config, robot)
        self._reader: JoystickReader | None = None

    @property
    def is_connected(self) -> bool:
        return self._reader is not None

    def connect(self, calibrate: bool = True) -> None:
        self._reader = JoystickReader(self.config.device or find_gamepad())
        self._start_control()
        print(
            f"gamepad end-effector control ({self._reader.path}): left stick x/y, right stick z, "
            "RB close, LB open"
        )

    def _stick(self, axes: dict[int, float], index: int) -> float:
        v = -axes.get(index, 0.0)  # pushed away / left / up read negative on every pad
        return 0.0 if abs(v) < self.config.deadzone else v

    def delta(self) -> dict[str, float]:
        """This tick's end-effector step (-1..1 per axis) and gripper command (0 close, 1 stay, 2 open)."""
        if self._reader is None:
            raise GamepadError("the gamepad is not connected")
        axes, buttons = self._reader.state()
        c = self.config
        gripper = 1.0
        if buttons.get(c.button_close):
            gripper = 0.0
        elif buttons.get(c.button_open):
            gripper = 2.0
        return {
            "delta_x": self._stick(axes, c.axis_x),
            "delta_y": self._stick(axes, c.axis_y),
            "delta_z": self._stick(axes, c.axis_z),
            "gripper": gripper,
        }

    def get_action(self) -> dict[str, float]:
        return self._joints_for(self.delta())

    def disconnect(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None

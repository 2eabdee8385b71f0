"""SO-101 (and SO-100) follower arm and leader arm on a Feetech bus, LeRobot-compatible.

`SO101Follower` implements `jrobot.robot.Robot` and `SO101Leader` implements
`jrobot.robot.Teleoperator`. They behave like LeRobot 0.4.4's `SOFollower` / `SOLeader` (same motors
and ids, same normalization, same `configure()` register values, same calibration prompts and file
format), with these deliberate differences:

- `name` is "so101_follower" / "so101_leader" (what jrobot writes as a dataset's robot_type); the
  config `type` may be so101_*, so100_* or so_*; calibration files are read from the type's own
  folder (LeRobot <= 0.4.2) and the shared so_* folder (LeRobot >= 0.4.3), and new ones are written
  to the shared folder, where current LeRobot looks;
- `send_action` returns the action actually sent (after `max_relative_target` and range clipping),
  and that is what gets recorded;
- an action with a NaN or infinite value is rejected as a whole: nothing is written, the arm holds
  its last goal, and the held goal is returned (`rejected_actions` counts them);
- goals are clipped to the calibrated range in user units (the servos clip there anyway, because the
  range is stored in their position limits), so the returned action is where the arm will go;
- torque is switched off on disconnect, Ctrl-C, SIGTERM/SIGHUP and interpreter exit (see
  `jrobot.hw.safety`), and before torque is enabled the goal is set to the present position so the
  arm never jumps to a stale goal.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from jrobot.features import SO101_MOTORS
from jrobot.hw import safety
from jrobot.hw.calibration import (
    ROBOTS,
    TELEOPERATORS,
    MotorCalibration,
    calibration_root,
    check_motors,
    find_calibration_file,
    load_calibration,
    save_calibration,
)
from jrobot.hw.calibration_procedure import run_calibration
from jrobot.hw.feetech import FeetechBus, Motor
from jrobot.hw.normalization import MotorNormMode, value_limits
from jrobot.hw.opencv_camera import OpenCVCamera, OpenCVCameraConfig
from jrobot.hw.prompts import ConsolePrompter, Prompter
from jrobot.robot import DeviceAlreadyConnectedError, DeviceNotConnectedError

logger = logging.getLogger(__name__)

FOLLOWER_TYPES = ("so101_follower", "so100_follower", "so_follower")
LEADER_TYPES = ("so101_leader", "so100_leader", "so_leader")
FULL_TURN_MOTOR = "wrist_roll"
GRIPPER = "gripper"


def so101_motors(use_degrees: bool = True) -> dict[str, Motor]:
    """The six STS3215s of an SO-100/SO-101 arm, ids 1..6, LeRobot's normalization modes."""
    body = MotorNormMode.DEGREES if use_degrees else MotorNormMode.RANGE_M100_100
    return {
        name: Motor(i + 1, "sts3215", MotorNormMode.RANGE_0_100 if name == GRIPPER else body)
        for i, name in enumerate(SO101_MOTORS)
    }


def _folders(kind_types: tuple[str, ...], config_type: str) -> list[str]:
    """Calibration folders to search for a config type.

    so101_* reads its own (LeRobot <= 0.4.2) folder and the shared so_* one (>= 0.4.3); so100_*
    likewise; so_* reads all three. An SO-101 never reads so100_* files: that would be another arm.
    """
    shared = kind_types[-1]  # so_follower / so_leader
    if config_type == shared:
        return [shared, *kind_types[:-1]]
    return [config_type, shared]


def validate_max_relative_target(
    value: Any, motors: tuple[str, ...] = SO101_MOTORS
) -> float | dict[str, float] | None:
    """LeRobot's rules: None, a float for every motor, or a dict with exactly the motor names.

    Like LeRobot, a bare int is a TypeError (write 10.0) and a dict with other keys a ValueError; in
    addition every cap must be a positive finite number.
    """
    if value is None:
        return None
    if isinstance(value, float):
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f"max_relative_target must be positive and finite, got {value}")
        return value
    if isinstance(value, Mapping):
        keys = set(value)
        if keys != set(motors):
            raise ValueError(
                f"max_relative_target keys must be exactly the motor names {list(motors)} (no '.pos'); "
                f"missing {sorted(set(motors) - keys)}, unexpected {sorted(keys - set(motors))}"
            )
        out = {}
        for k, v in value.items():
            if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) or v <= 0:
                raise ValueError(f"max_relative_target[{k!r}] must be a positive number, got {v!r}")
            out[str(k)] = float(v)
        return out
    raise TypeError(
        f"max_relative_target must be a float (e.g. 10.0) or a dict of per-motor floats, got {type(value).__name__} {value!r}"
    )


@dataclasses.dataclass
class SO101FollowerConfig:
    """LeRobot's `SOFollowerRobotConfig` fields, plus `num_retry` for the bus."""

    port: str
    id: str | None = None
    calibration_dir: Path | None = None
    disable_torque_on_disconnect: bool = True
    max_relative_target: float | dict[str, float] | None = None
    cameras: dict[str, OpenCVCameraConfig] = dataclasses.field(default_factory=dict)
    use_degrees: bool = True
    type: str = "so101_follower"
    num_retry: int = 2

    def __post_init__(self) -> None:
        if self.type not in FOLLOWER_TYPES:
            raise ValueError(f"follower type must be one of {FOLLOWER_TYPES}, got {self.type!r}")
        if not self.port:
            raise ValueError(f"{self.type}: 'port' is required (e.g. --robot.port=/dev/ttyACM0)")
        if self.calibration_dir is not None:
            self.calibration_dir = Path(self.calibration_dir)
        self.max_relative_target = validate_max_relative_target(self.max_relative_target)
        for key, cam in self.cameras.items():
            if not isinstance(cam, OpenCVCameraConfig):
                raise TypeError(f"camera {key!r} must be an OpenCVCameraConfig, got {type(cam).__name__}")
            missing = [a for a in ("width", "height", "fps") if getattr(cam, a) is None]
            if missing:
                raise ValueError(
                    f"camera {key!r} needs {', '.join(missing)} to be set (they define the dataset features)"
                )


@dataclasses.dataclass
class SO101LeaderConfig:
    """LeRobot's `SOLeaderTeleopConfig` fields, plus `num_retry` for the bus."""

    port: str
    id: str | None = None
    calibration_dir: Path | None = None
    use_degrees: bool = True
    type: str = "so101_leader"
    num_retry: int = 2

    def __post_init__(self) -> None:
        if self.type not in LEADER_TYPES:
            raise ValueError(f"leader type must be one of {LEADER_TYPES}, got {self.type!r}")
        if not self.port:
            raise ValueError(f"{self.type}: 'port' is required (e.g. --teleop.port=/dev/ttyACM1)")
        if self.calibration_dir is not None:
            self.calibration_dir = Path(self.calibration_dir)


class _SO101Arm:
    """What follower and leader share: bus, calibration file, calibrate(), setup_motors()."""

    name: str
    _kind: str
    _types: tuple[str, ...]
    _write_folder: str

    def __init__(
        self, config: SO101FollowerConfig | SO101LeaderConfig, prompter: Prompter | None = None
    ) -> None:
        self.config = config
        self.id = config.id
        self.prompter: Prompter = prompter if prompter is not None else ConsolePrompter.shared()
        found = find_calibration_file(
            self._kind, _folders(self._types, config.type), self.id, config.calibration_dir
        )
        if config.calibration_dir is not None:
            self.calibration_fpath = Path(config.calibration_dir) / f"{self.id}.json"
        else:
            self.calibration_fpath = (
                found or calibration_root() / self._kind / self._write_folder / f"{self.id}.json"
            )
        motors = so101_motors(config.use_degrees)
        self.calibration: dict[str, MotorCalibration] = {}
        if found is not None:
            self.calibration = load_calibration(found, {m: x.id for m, x in motors.items()})
            logger.info("%s: using calibration %s", self, found)
        self.bus = FeetechBus(config.port, motors, self.calibration, num_retry=config.num_retry)

    def __str__(self) -> str:
        return f"{self.id} {type(self).__name__}"

    @property
    def is_calibrated(self) -> bool:
        return self.bus.is_calibrated

    def calibrate(self) -> None:
        """Interactive calibration (see `jrobot.hw.calibration_procedure`); saves a new file."""
        calibration, reused = run_calibration(
            self.bus,
            label=str(self),
            device_id=self.id,
            existing=self.calibration or None,
            prompter=self.prompter,
            full_turn_motors=(FULL_TURN_MOTOR,),
        )
        self.calibration = calibration
        if not reused:
            check_motors(calibration, {m: x.id for m, x in self.bus.motors.items()}, source="new calibration")
            save_calibration(self.calibration_fpath, calibration)
            self.prompter.show(f"Calibration saved to {self.calibration_fpath}")

    def setup_motors(self) -> None:
        """Give each motor its id and 1 Mbps, one motor connected at a time (gripper first)."""
        self.bus.check_port()
        for motor in reversed(self.bus.motors):
            self.prompter.ask(f"Connect the controller board to the '{motor}' motor only and press enter.")
            self.bus.setup_motor(motor)
            self.prompter.show(f"'{motor}' motor id set to {self.bus.motors[motor].id}")
        self.bus.close()

    def _connect_bus(self) -> None:
        self.bus.connect()
        safety.register_bus(self.bus)
        safety.install_termination_handlers()

    def _calibrate_if_needed(self, calibrate: bool) -> None:
        if calibrate and not self.is_calibrated:
            logger.info("%s: motors and calibration file disagree (or no file): calibrating", self)
            self.calibrate()


class SO101Follower(_SO101Arm):
    """The follower arm (a `jrobot.robot.Robot`), with optional OpenCV cameras."""

    name = "so101_follower"
    config_class = SO101FollowerConfig
    _kind = ROBOTS
    _types = FOLLOWER_TYPES
    _write_folder = "so_follower"

    def __init__(self, config: SO101FollowerConfig, prompter: Prompter | None = None) -> None:
        super().__init__(config, prompter)
        self.config: SO101FollowerConfig = config
        self.cameras: dict[str, OpenCVCamera] = {k: OpenCVCamera(c) for k, c in config.cameras.items()}
        self.rejected_actions = 0
        self.clipped_actions = 0
        self._last_clip_warning = 0.0
        self._held_goal: dict[str, float] | None = None

    @property
    def observation_features(self) -> dict[str, Any]:
        cams = {k: (c.height, c.width, 3) for k, c in self.config.cameras.items()}
        return {**{f"{m}.pos": float for m in self.bus.motors}, **cams}

    @property
    def action_features(self) -> dict[str, Any]:
        return {f"{m}.pos": float for m in self.bus.motors}

    @property
    def is_connected(self) -> bool:
        return self.bus.is_connected and all(c.is_connected for c in self.cameras.values())

    def connect(self, calibrate: bool = True) -> None:
        """Bus handshake, calibration check, cameras, configure(). Torque is on afterwards."""
        if self.bus.is_connected:
            raise DeviceAlreadyConnectedError(f"{self} is already connected")
        self._connect_bus()
        try:
            self._calibrate_if_needed(calibrate)
            for cam in self.cameras.values():
                cam.connect()
            self.configure()
        except BaseException:
            self._teardown()
            raise
        logger.info("%s connected", self)

    def configure(self) -> None:
        """LeRobot's follower configuration, written with torque off; torque back on at the end."""
        bus = self.bus
        with bus.torque_disabled():
            bus.configure_motors()
            for motor in bus.motors:
                bus.write("Operating_Mode", motor, 0)
                bus.write("P_Coefficient", motor, 16)  # factory 32 shakes
                bus.write("I_Coefficient", motor, 0)
                bus.write("D_Coefficient", motor, 32)
                if motor == GRIPPER:
                    bus.write("Max_Torque_Limit", motor, 500)  # 50 % of max torque
                    bus.write("Protection_Current", motor, 250)  # 50 % of max current
                    bus.write("Overload_Torque", motor, 25)  # 25 % torque when overloaded
            bus.hold_position()
        self._held_goal = None

    def get_observation(self) -> dict[str, Any]:
        if not self.bus.is_connected:
            raise DeviceNotConnectedError(f"{self} is not connected")
        obs: dict[str, Any] = {
            f"{m}.pos": float(v) for m, v in self.bus.sync_read("Present_Position").items()
        }
        for key, cam in self.cameras.items():
            obs[key] = cam.read_latest()
        return obs

    def _goal_from_action(self, action: Mapping[str, Any]) -> dict[str, float] | None:
        goal: dict[str, float] = {}
        for key, value in action.items():
            if not key.endswith(".pos"):
                continue
            motor = key.removesuffix(".pos")
            if motor not in self.bus.motors:
                raise ValueError(
                    f"action key {key!r} does not name a motor of {self.name} ({list(self.action_features)})"
                )
            if isinstance(value, bool) or (
                not isinstance(value, int | float) and not hasattr(value, "__float__")
            ):
                raise TypeError(f"action {key!r} must be a number, got {value!r}")
            goal[motor] = float(value)
        if any(not math.isfinite(v) for v in goal.values()):
            return None
        return goal

    def _hold(self) -> dict[str, float]:
        if self._held_goal is None:
            self._held_goal = {m: float(v) for m, v in self.bus.sync_read("Goal_Position").items()}
        return {f"{m}.pos": v for m, v in self._held_goal.items()}

    def send_action(self, action: Mapping[str, Any]) -> dict[str, float]:
        """Move toward `action`; returns the goal actually sent (what should be recorded)."""
        if not self.bus.is_connected:
            raise DeviceNotConnectedError(f"{self} is not connected")
        goal = self._goal_from_action(action)
        if goal is None:
            self.rejected_actions += 1
            logger.warning(
                "%s: rejected an action with non-finite values %s; holding position", self, dict(action)
            )
            return self._hold()
        if not goal:
            return {}
        requested = dict(goal)
        cap = self.config.max_relative_target
        if cap is not None:
            present = self.bus.sync_read("Present_Position", list(goal))
            for m, g in goal.items():
                c = cap if isinstance(cap, float) else cap[m]
                goal[m] = present[m] + min(c, max(-c, g - present[m]))
        for m, g in goal.items():
            lo, hi = value_limits(self.bus.motors[m].norm_mode, self.bus.calibration[m])
            goal[m] = min(hi, max(lo, g))
        clipped = {m: (requested[m], goal[m]) for m in goal if abs(goal[m] - requested[m]) > 1e-4}
        if clipped:
            self.clipped_actions += 1
            now = time.monotonic()
            if now - self._last_clip_warning > 1.0:  # LeRobot warns every time; once a second is enough
                self._last_clip_warning = now
                logger.warning("%s: goals clipped to be safe (requested, sent): %s", self, clipped)
        self.bus.sync_write("Goal_Position", goal)
        if self._held_goal is None:
            self._held_goal = {}
        self._held_goal.update(goal)
        return {f"{m}.pos": v for m, v in goal.items()}

    def _teardown(self) -> None:
        try:
            if self.bus.is_connected:
                self.bus.disconnect(self.config.disable_torque_on_disconnect)
        finally:
            safety.unregister_bus(self.bus)
            for cam in self.cameras.values():
                if cam.is_connected or cam._thread is not None:
                    cam.disconnect()

    def disconnect(self) -> None:
        """Torque off (unless configured otherwise), close the port, stop the cameras."""
        if not self.bus.is_connected:
            raise DeviceNotConnectedError(f"{self} is not connected")
        self._teardown()
        logger.info("%s disconnected", self)


class SO101Leader(_SO101Arm):
    """The leader arm (a `jrobot.robot.Teleoperator`): torque off, read by hand motion."""

    name = "so101_leader"
    config_class = SO101LeaderConfig
    _kind = TELEOPERATORS
    _types = LEADER_TYPES
    _write_folder = "so_leader"

    @property
    def action_features(self) -> dict[str, Any]:
        return {f"{m}.pos": float for m in self.bus.motors}

    @property
    def feedback_features(self) -> dict[str, Any]:
        return {}

    @property
    def is_connected(self) -> bool:
        return self.bus.is_connected

    def connect(self, calibrate: bool = True) -> None:
        if self.bus.is_connected:
            raise DeviceAlreadyConnectedError(f"{self} is already connected")
        self._connect_bus()
        try:
            self._calibrate_if_needed(calibrate)
            self.configure()
        except BaseException:
            self._teardown()
            raise
        logger.info("%s connected", self)

    def configure(self) -> None:
        """Torque off (so the arm moves by hand), LeRobot's motor settings, position mode."""
        self.bus.disable_torque()
        self.bus.configure_motors()
        self.bus.set_position_mode()

    def get_action(self) -> dict[str, float]:
        if not self.bus.is_connected:
            raise DeviceNotConnectedError(f"{self} is not connected")
        return {f"{m}.pos": float(v) for m, v in self.bus.sync_read("Present_Position").items()}

    def _teardown(self) -> None:
        try:
            if self.bus.is_connected:
                self.bus.disconnect(True)
        finally:
            safety.unregister_bus(self.bus)

    def disconnect(self) -> None:
        if not self.bus.is_connected:
            raise DeviceNotConnectedError(f"{self} is not connected")
        self._teardown()
        logger.info("%s disconnected", self)


SO100Follower = SO101Follower
SO100Leader = SO101Leader

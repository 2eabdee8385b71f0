"""Robot and teleoperator types selectable with `--robot.type=...` / `--teleop.type=...`.

    so101_follower / so100_follower / so_follower   a real arm on a Feetech bus (jrobot.hw)
    virtual                                         a real-protocol follower on an in-process virtual
                                                    servo bus (MuJoCo-driven joints), auto-calibrated
    sim                                             the MuJoCo SO-101 with rendered cameras (jrobot.sim)

    so101_leader / so100_leader / so_leader         a real leader arm
    sim_expert                                      the scripted expert of a `sim` robot's task
                                                    (--teleop.regrasp_rate: recovery demos)
    keyboard_ee                                     the gripper moved in Cartesian space from the
                                                    terminal's keys (IK in LeRobot's frame), any SO-101
    gamepad_ee                                      the same from a gamepad's sticks (/dev/input/js*)

    --robot.space=ee                                any SO-101 robot above observed and driven in
                                                    end-effector space (ee.x..ee.wz, ee.gripper_pos;
                                                    jrobot.kinematics.ee_space); its teleoperator's
                                                    joints become end-effector targets

`record`, `teleoperate`-like loops and `run` build devices here, so adding a robot means adding an
entry to these two tables. Nothing here imports jax.
"""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path
from typing import Any

from jrobot.cli import Binder, CliError
from jrobot.hw.factory import ROBOT_CONFIGS as HW_ROBOTS
from jrobot.hw.factory import TELEOP_CONFIGS as HW_TELEOPS
from jrobot.hw.factory import make_robot as make_hw_robot
from jrobot.hw.factory import make_teleoperator as make_hw_teleop
from jrobot.hw.opencv_camera import OpenCVCameraConfig
from jrobot.hw.prompts import AcceptCalibrationFile, Prompter
from jrobot.hw.so101 import SO101Follower, SO101FollowerConfig, SO101Leader
from jrobot.kinematics.ee_space import EESpaceConfig, EESpaceRobot, JointsToEETeleop
from jrobot.recording.gamepad import GamepadEEConfig
from jrobot.recording.joint_limits import EETeleopConfig, ee_box
from jrobot.sim.expert import PickPlaceExpertConfig
from jrobot.sim.robot import SimExpertTeleop, SimRobot, SimRobotConfig
from jrobot.sim.tasks import make_task


@dataclasses.dataclass
class VirtualRobotConfig:
    """An SO-101 follower driven through the Feetech protocol against a virtual servo bus.

    The bus runs in this process (`jrobot.sim.virtual_arm.VirtualArm`) with MuJoCo joint dynamics unless
    `dynamics="servo"`. A LeRobot-format calibration matching the virtual arm is written to
    `calibration_dir` (a temporary folder by default), so no interactive calibration is needed.
    """

    id: str = "virtual"
    calibration_dir: Path | None = None
    dynamics: str = "mujoco"
    max_relative_target: float | dict[str, float] | None = None
    cameras: dict[str, OpenCVCameraConfig] = dataclasses.field(default_factory=dict)
    use_degrees: bool = True
    type: str = "virtual"

    def __post_init__(self) -> None:
        if self.dynamics not in ("mujoco", "servo"):
            raise ValueError(f"virtual robot dynamics must be 'mujoco' or 'servo', got {self.dynamics!r}")


@dataclasses.dataclass
class SimExpertConfig:
    """The scripted expert (it reads the sim robot it is attached to). `regrasp_rate`: the share of
    pick-and-place episodes whose first grasp is made to miss, so the demonstrations also show the
    recovery (`jrobot.sim.expert.PickPlaceExpertConfig`); 0 records the plain expert."""

    type: str = "sim_expert"
    regrasp_rate: float = 0.0

    def __post_init__(self) -> None:
        PickPlaceExpertConfig(regrasp_rate=self.regrasp_rate)  # checked where the expert checks it


@dataclasses.dataclass
class KeyboardEEConfig(EETeleopConfig):
    """End-effector control from the keyboard (`jrobot.recording.keyboard.KeyboardEETeleop`); the step sizes,
    bounds and gripper speed of `EEControlConfig`; `ee_bounds`, a find_joint_limits file, gives the box."""

    type: str = "keyboard_ee"


ROBOT_TYPES: dict[str, type] = {**HW_ROBOTS, "virtual": VirtualRobotConfig, "sim": SimRobotConfig}
TELEOP_TYPES: dict[str, type] = {
    **HW_TELEOPS,
    "sim_expert": SimExpertConfig,
    "keyboard_ee": KeyboardEEConfig,
    "gamepad_ee": GamepadEEConfig,
}


def virtual_calibration(use_degrees: bool = True) -> dict[str, Any]:
    """The calibration LeRobot's half-turn homing would produce on the virtual arm at its zero pose."""
    from jrobot.features import SO101_MOTORS
    from jrobot.hw.calibration import MotorCalibration
    from jrobot.sim.virtual_arm import SO101_MECHANICS

    cal = {}
    for i, (name, m) in enumerate(zip(SO101_MOTORS, SO101_MECHANICS, strict=True), start=1):
        homing = round(m.zero) - 2047
        if name == "wrist_roll":
            lo, hi = 0, 4095
        else:
            lo, hi = round(m.lower) - homing, round(m.upper) - homing
        cal[name] = MotorCalibration(id=i, drive_mode=0, homing_offset=homing, range_min=lo, range_max=hi)
    return cal


class VirtualRobot(SO101Follower):
    """`SO101Follower` on a virtual servo bus started (and stopped) with the robot."""

    name = "so101_follower"

    def __init__(self, config: VirtualRobotConfig):
        from jrobot.hw.calibration import save_calibration

        self.virtual_config = config
        cal_dir = Path(config.calibration_dir or tempfile.mkdtemp(prefix="jrobot-virtual-cal-"))
        save_calibration(cal_dir / f"{config.id}.json", virtual_calibration(config.use_degrees))
        self._arm = None
        super().__init__(
            SO101FollowerConfig(
                port="(virtual, assigned at connect)",
                id=config.id,
                calibration_dir=cal_dir,
                max_relative_target=config.max_relative_target,
                cameras=config.cameras,
                use_degrees=config.use_degrees,
            ),
            prompter=AcceptCalibrationFile(),
        )

    def connect(self, calibrate: bool = True) -> None:
        from jrobot.sim.virtual_arm import VirtualArm, mujoco_dynamics

        dyn = mujoco_dynamics() if self.virtual_config.dynamics == "mujoco" else None
        self._arm = VirtualArm(dynamics=dyn)
        port = self._arm.start()
        self.config.port = port
        from jrobot.hw.feetech import FeetechBus

        self.bus = FeetechBus(port, self.bus.motors, self.calibration, num_retry=self.config.num_retry)
        try:
            super().connect(calibrate=calibrate)
        except BaseException:
            self._arm.stop()
            self._arm = None
            raise

    def disconnect(self) -> None:
        try:
            super().disconnect()
        finally:
            if self._arm is not None:
                self._arm.stop()
                self._arm = None


def make_robot(config: Any) -> Any:
    if isinstance(config, SimRobotConfig):
        return SimRobot(config)
    if isinstance(config, VirtualRobotConfig):
        return VirtualRobot(config)
    return make_hw_robot(config)


def make_teleoperator(config: Any, robot: Any) -> Any:
    if isinstance(config, SimExpertConfig):
        if not isinstance(robot, SimRobot):
            raise CliError("--teleop.type=sim_expert drives the simulated arm: use it with --robot.type=sim")
        options = {"regrasp_rate": config.regrasp_rate} if config.regrasp_rate else {}
        if options and make_task(robot.config.task).name not in ("pick_place", "pick_color"):
            raise CliError(f"--teleop.regrasp_rate needs a pick-and-place task, not {robot.config.task!r}")
        return SimExpertTeleop(robot, options)
    if isinstance(config, KeyboardEEConfig):
        from jrobot.features import SO101_JOINT_KEYS
        from jrobot.recording.keyboard import KeyboardEETeleop

        if robot is None or not set(SO101_JOINT_KEYS) <= set(getattr(robot, "action_features", {})):
            raise CliError("--teleop.type=keyboard_ee drives an SO-101 follower (sim, virtual or real)")
        return KeyboardEETeleop(config, robot)
    if isinstance(config, GamepadEEConfig):
        from jrobot.features import SO101_JOINT_KEYS
        from jrobot.recording.gamepad import GamepadEETeleop

        if robot is None or not set(SO101_JOINT_KEYS) <= set(getattr(robot, "action_features", {})):
            raise CliError("--teleop.type=gamepad_ee drives an SO-101 follower (sim, virtual or real)")
        return GamepadEETeleop(config, robot)
    return make_hw_teleop(config)


def robot_from_flags(binder: Binder, *, required: bool = True) -> Any:
    """The `--robot.*` robot; with `--robot.space=ee` seen and driven in end-effector space
    (`jrobot.kinematics.ee_space`, bounded by `--robot.ee_bounds=<find_joint_limits file>`)."""
    cfg = binder.choice(ROBOT_TYPES, "robot", required=required)
    if cfg is None:
        return None
    space = binder.build(EESpaceConfig, "robot")
    robot = make_robot(cfg)
    if space.space == "joints":
        return robot
    if space.ee_bounds is not None:
        space.bounds_m = ee_box(space.ee_bounds)
    try:
        return EESpaceRobot(robot, space)
    except ValueError as e:
        raise CliError(f"--robot.space=ee: {e}") from e


def teleop_from_flags(binder: Binder, robot: Any, *, required: bool = True) -> Any:
    """The `--teleop.*` teleoperator; for a robot in end-effector space its joint actions become
    end-effector targets (forward kinematics, as LeRobot's EE recording examples do)."""
    cfg = binder.choice(TELEOP_TYPES, "teleop", required=required)
    if cfg is None:
        return None
    if isinstance(robot, EESpaceRobot):
        return JointsToEETeleop(make_teleoperator(cfg, robot.robot), robot.kin)
    return make_teleoperator(cfg, robot)


def device_from_flags(binder: Binder, prompter: Prompter | None = None) -> SO101Follower | SO101Leader:
    """The one device a tool such as calibrate or setup_motors acts on: `--robot.*` xor `--teleop.*`."""
    robot = binder.choice(HW_ROBOTS, "robot", required=False)
    teleop = binder.choice(HW_TELEOPS, "teleop", required=False)
    if (robot is None) == (teleop is None):
        raise CliError(
            "choose either a robot (--robot.type=...) or a teleoperator (--teleop.type=...), not both"
        )
    return make_hw_robot(robot, prompter) if robot is not None else make_hw_teleop(teleop, prompter)

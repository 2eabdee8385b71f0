"""Hardware robot and teleoperator types selectable from the command line (`--robot.type=...`).

These registries cover the real SO-100/SO-101 arms; `record`'s factory extends them with the sim
robot and the scripted expert. A virtual servo bus is used through the same types (its port is a pty).
"""

from __future__ import annotations

from jrobot.cli import Binder, CliError
from jrobot.hw.prompts import Prompter
from jrobot.hw.so101 import (
    FOLLOWER_TYPES,
    LEADER_TYPES,
    SO101Follower,
    SO101FollowerConfig,
    SO101Leader,
    SO101LeaderConfig,
)

ROBOT_CONFIGS: dict[str, type[SO101FollowerConfig]] = dict.fromkeys(FOLLOWER_TYPES, SO101FollowerConfig)
TELEOP_CONFIGS: dict[str, type[SO101LeaderConfig]] = dict.fromkeys(LEADER_TYPES, SO101LeaderConfig)


def make_robot(config: SO101FollowerConfig, prompter: Prompter | None = None) -> SO101Follower:
    if not isinstance(config, SO101FollowerConfig):
        raise TypeError(f"no hardware robot for config {type(config).__name__}")
    return SO101Follower(config, prompter)


def make_teleoperator(config: SO101LeaderConfig, prompter: Prompter | None = None) -> SO101Leader:
    if not isinstance(config, SO101LeaderConfig):
        raise TypeError(f"no hardware teleoperator for config {type(config).__name__}")
    return SO101Leader(config, prompter)


def device_from_flags(binder: Binder, prompter: Prompter | None = None) -> SO101Follower | SO101Leader:
    """The one device a tool such as calibrate or setup_motors acts on: `--robot.*` xor `--teleop.*`."""
    robot = binder.choice(ROBOT_CONFIGS, "robot", required=False)
    teleop = binder.choice(TELEOP_CONFIGS, "teleop", required=False)
    if (robot is None) == (teleop is None):
        raise CliError(
            "choose either a robot (--robot.type=...) or a teleoperator (--teleop.type=...), not both"
        )
    return make_robot(robot, prompter) if robot is not None else make_teleoperator(teleop, prompter)

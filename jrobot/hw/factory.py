"""Hardware robot and teleoperator types selectable from the command line (`--robot.type=...`).

These registries cover the real SO-100/SO-101 arms; `record`'s factory extends them with the sim
robot and the scripted expert. A virtual servo bus is used through the same types (its port is a pty).
Turning command-line flags into these configs is `jrobot.recording.devices`' job; nothing here parses flags.
"""

from __future__ import annotations

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

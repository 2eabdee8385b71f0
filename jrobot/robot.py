"""The robot and teleoperator interfaces every arm implements (real SO-101, MuJoCo sim, virtual bus).

Recording, teleoperation, policy execution and evaluation only talk to these protocols, so they do not
care whether the arm is real or simulated. Units and keys follow LeRobot's SO-101 classes:
joint positions are `"<motor>.pos"` floats (degrees for the arm joints by default, 0..100 for the
gripper) and cameras are `<camera key>` -> HxWx3 uint8 RGB arrays.

Feature dicts map a key to `float` for a scalar and to an `(H, W, 3)` tuple for a camera, exactly
like LeRobot's `observation_features` / `action_features`; `jrobot.features.dataset_features_for_robot`
turns them into dataset features.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable


class DeviceNotConnectedError(RuntimeError):
    """An operation needed a connected device."""


class DeviceAlreadyConnectedError(RuntimeError):
    """`connect()` was called twice."""


@runtime_checkable
class Robot(Protocol):
    """A follower arm: reads observations, executes joint-position actions."""

    name: str  # written to the dataset's robot_type

    @property
    def observation_features(self) -> dict[str, Any]: ...

    @property
    def action_features(self) -> dict[str, Any]: ...

    @property
    def is_connected(self) -> bool: ...

    def connect(self, calibrate: bool = True) -> None: ...

    def get_observation(self) -> dict[str, Any]: ...

    def send_action(self, action: dict[str, float]) -> dict[str, float]:
        """Execute `action`; returns the action actually sent (after clamping), which is what is recorded."""
        ...

    def disconnect(self) -> None: ...


@runtime_checkable
class Teleoperator(Protocol):
    """A leader device (leader arm, scripted expert) that produces actions for a robot."""

    name: str

    @property
    def action_features(self) -> dict[str, Any]: ...

    @property
    def is_connected(self) -> bool: ...

    def connect(self, calibrate: bool = True) -> None: ...

    def get_action(self) -> dict[str, float]: ...

    def disconnect(self) -> None: ...


@runtime_checkable
class EpisodicRobot(Protocol):
    """A robot whose episodes can be reset and scored (the simulated arm): record resets it between
    episodes and records its task; run and eval run it episode by episode, unpaced, and report success."""

    @property
    def task(self) -> str: ...

    def reset(self, seed: int | None = None) -> None: ...

    def is_success(self) -> bool: ...

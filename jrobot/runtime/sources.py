"""Where a command's policy comes from: a bundle folder run here, or a server (`--policy ws://...`).

`jrobot.run` and `jrobot.eval` open their policy here, so a served policy is driven by the same
controller, safety path and reports as a local one. Local bundles load jax (lazily); remote policies
need none.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from jrobot.cli import CliError


@dataclasses.dataclass
class RemoteOptions:
    """`--remote.*`: how to talk to a policy server (`--policy ws://HOST:PORT` or `openpi://HOST:PORT`)."""

    timeout_s: float = 2.0  # no fresh action for this long (server gone or slow): the run stops
    reconnect: bool = False  # reopen a dropped connection (the arm holds meanwhile, up to timeout_s)
    # openpi servers only: SERVER_KEY=FEATURE pairs, e.g.
    # "observation/image=observation.images.front,observation/state=observation.state"
    obs_map: str | None = None
    nested: bool = False  # send keys with "/" as nested maps (ALOHA-style servers)
    image_size: int = 224  # images go out HWC uint8, resized with padding to this square size
    fps: int | None = None  # control rate for an openpi policy (a jrobot server says its bundle's)

    def __post_init__(self) -> None:
        if self.timeout_s <= 0:
            raise ValueError(f"--remote.timeout_s must be > 0, got {self.timeout_s}")
        if self.image_size < 1:
            raise ValueError(f"--remote.image_size must be >= 1, got {self.image_size}")


def is_remote(policy: str | Path) -> bool:
    from jrobot.serving.client import is_remote as remote

    return remote(str(policy))


def open_policy(
    policy: str | Path,
    *,
    remote: RemoteOptions | None = None,
    token_file: Path | None = None,
    robot: Any = None,
) -> Any:
    """A `BundlePolicy` for a folder or hf://USER/REPO[@REV], a `RemotePolicy` for ws://, an
    `OpenpiPolicy` for openpi://.

    An openpi policy drives `robot`'s joints (its action names; state in its observation order).
    """
    remote = remote or RemoteOptions()
    if not is_remote(policy):
        if token_file is not None or remote.obs_map is not None:
            raise CliError(f"--token_file and --remote.* are for policy servers; {policy} is a bundle folder")
        from jrobot.hub import HubError, resolve_policy
        from jrobot.runtime.policy import BundlePolicy

        try:
            folder = resolve_policy(policy)  # a folder, or hf://USER/REPO[@REV] from the Hub's cache
        except HubError as e:
            raise CliError(str(e)) from e
        return BundlePolicy(folder)
    from jrobot.serving import protocol
    from jrobot.serving.client import OpenpiPolicy, RemotePolicy, parse_obs_map

    try:
        token = protocol.read_token(token_file)
    except protocol.ProtocolError as e:
        raise CliError(str(e)) from e
    url = str(policy)
    if not url.startswith("openpi://"):
        if remote.obs_map is not None:
            raise CliError("--remote.obs_map is for openpi servers (--policy openpi://HOST:PORT)")
        return RemotePolicy(url, token=token, timeout_s=remote.timeout_s, reconnect=remote.reconnect)
    if remote.obs_map is None:
        raise CliError(
            "an openpi server needs --remote.obs_map (e.g. "
            '"observation/image=observation.images.front,observation/state=observation.state")'
        )
    try:
        obs_map = parse_obs_map(remote.obs_map)
    except ValueError as e:
        raise CliError(str(e)) from e
    names, state = _robot_joints(robot)
    return OpenpiPolicy(
        url,
        obs_map=obs_map,
        action_names=names,
        state_names=state,
        image_size=(remote.image_size, remote.image_size),
        nested=remote.nested,
        token=token,
        timeout_s=remote.timeout_s,
        reconnect=remote.reconnect,
        fps=remote.fps or int(getattr(robot, "fps", 0) or 30),
    )


def _robot_joints(robot: Any) -> tuple[Sequence[str] | None, Sequence[str]]:
    """(action names, state names) of a robot; (None, ()) offline (actions are not cut, state given)."""
    if robot is None:
        return None, ()
    actions = list(robot.action_features)
    state = [k for k, v in robot.observation_features.items() if v is float]
    return actions, state or actions

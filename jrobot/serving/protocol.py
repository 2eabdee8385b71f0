"""What the two ends agree on: the protocol's name and version, headers, control messages, limits.

A jrobot client announces its protocol version in a request header; a server that speaks another
refuses the handshake (HTTP 400, saying both versions), and a client that receives metadata of another
version refuses it too. openpi clients send no header and are served (the frames are openpi's).
"""

from __future__ import annotations

import hmac
from pathlib import Path

from jrobot.errors import InputError

PROTOCOL = "jrobot-serve"
PROTOCOL_VERSION = 1
VERSION_HEADER = "X-Jrobot-Protocol"
AUTH_HEADER = "Authorization"
AUTH_SCHEME = "Api-Key"  # openpi-client's `Authorization: Api-Key <token>`
HEALTH_PATH = "/healthz"

CTRL_KEY = "__ctrl__"  # openpi's control messages: {"__ctrl__": "episode_start" | "episode_end", ...}
SEED_KEY = "__seed__"  # jrobot's addition to episode_start: the episode's random seed
TIMESTEP_KEY = "__timestep__"  # the control step of an observation (echoed as "timestep")
NOISE_KEY = "noise"
TASK_KEYS = ("task", "prompt")  # jrobot's name, openpi's name

DEFAULT_PORT = 8000
DEFAULT_MAX_MESSAGE_MB = 64.0


class ProtocolError(ValueError, InputError):
    """The other end speaks another protocol version, or refused the handshake."""


def read_token(path: str | Path | None) -> str | None:
    """The shared secret in a token file (surrounding whitespace stripped); None without a file."""
    if path is None:
        return None
    p = Path(path)
    try:
        token = p.read_text().strip()
    except OSError as e:
        raise ProtocolError(f"--token_file {p}: cannot read it ({e.strerror or e})") from e
    if not token:
        raise ProtocolError(f"--token_file {p}: the file is empty")
    if any(c.isspace() for c in token) or not token.isprintable():
        raise ProtocolError(f"--token_file {p}: the token must be one word of printable characters")
    return token


def auth_header(token: str) -> dict[str, str]:
    return {AUTH_HEADER: f"{AUTH_SCHEME} {token}"}


def token_matches(header: str | None, token: str) -> bool:
    """Whether an Authorization header carries `token` (constant-time comparison)."""
    if not header:
        return False
    scheme, _, given = header.strip().partition(" ")
    if scheme.lower() not in (AUTH_SCHEME.lower(), "bearer"):
        return False
    return hmac.compare_digest(given.strip().encode(), token.encode())

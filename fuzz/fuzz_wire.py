"""The policy server's messages: the bytes are one binary websocket frame, decoded by `decode_map`
(msgpack with openpi's numpy array maps), as the server decodes a request and the client a reply."""

from __future__ import annotations

from fuzz.harness import expect_own_error
from jrobot.serving.wire import WireError, decode_map


def TestOneInput(data: bytes) -> None:
    expect_own_error(lambda: decode_map(data, "request"), own=(WireError,))

"""Frames on the wire: msgpack maps with numpy arrays, byte-compatible with openpi-client's msgpack_numpy.

An array travels as the map `{b"__ndarray__": True, b"data": raw bytes, b"dtype": dtype.str, b"shape":
[...]}` and a numpy scalar as `{b"__npgeneric__": True, b"data": value, b"dtype": ...}` (bytes keys, as
openpi packs them; str keys are accepted too). Never pickle, never object arrays: only bool, integer,
unsigned and float dtypes are packed or unpacked, and a received array must be exactly as long as its
dtype and shape say. Decoding is the trust boundary: whatever a peer sends becomes a `WireError` that
says what was wrong, never an exception from deep inside numpy.
"""

from __future__ import annotations

import math
import re
from typing import Any

import msgpack
import numpy as np

ALLOWED_KINDS = frozenset("biuf")
_DTYPE = re.compile(
    r"[<>|=]?[biuf][1248]"
)  # dtype.str of bool, int, uint and float arrays  # bool, int, uint, float: no object, void, complex, str, datetime
MAX_DIMS = 8


class WireError(ValueError):
    """A frame that is not a valid message: bad msgpack, a bad array map, a forbidden dtype."""


def _dtype(value: Any, where: str) -> np.dtype:
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    if not isinstance(value, str):
        raise WireError(f"{where}: dtype must be a string like '<f4', got {type(value).__name__}")
    if not _DTYPE.fullmatch(value):  # np.dtype() parses far more (comma strings, via ast): not for peers
        raise WireError(f"{where}: dtype {value[:32]!r} is not allowed (only bool, int, uint and float)")
    try:
        dt = np.dtype(value)
    except (TypeError, ValueError, SyntaxError) as e:
        raise WireError(f"{where}: unknown dtype {value!r}") from e
    if dt.kind not in ALLOWED_KINDS or dt.hasobject or dt.fields is not None:
        raise WireError(f"{where}: dtype {value!r} is not allowed (only bool, int, uint and float)")
    return dt


def _pack_default(obj: Any) -> Any:
    if isinstance(obj, np.ndarray | np.generic) and obj.dtype.kind not in ALLOWED_KINDS:
        raise WireError(f"cannot send a numpy {obj.dtype} value (only bool, int, uint and float)")
    if isinstance(obj, np.ndarray):
        arr = np.ascontiguousarray(obj)
        return {b"__ndarray__": True, b"data": arr.tobytes(), b"dtype": arr.dtype.str, b"shape": arr.shape}
    if isinstance(obj, np.generic):
        return {b"__npgeneric__": True, b"data": obj.item(), b"dtype": obj.dtype.str}
    raise WireError(f"cannot send a {type(obj).__name__} value (maps, lists, str, numbers, numpy arrays)")


def _get(obj: dict, name: str) -> Any:
    key = name.encode()
    return obj[key] if key in obj else obj.get(name)


def _unpack_hook(obj: dict) -> Any:
    if _get(obj, "__ndarray__") is True:
        dt = _dtype(_get(obj, "dtype"), "array")
        shape = _get(obj, "shape")
        data = _get(obj, "data")
        if not isinstance(shape, list | tuple) or len(shape) > MAX_DIMS:
            raise WireError(f"array: shape must be a list of at most {MAX_DIMS} sizes, got {shape!r}")
        if not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in shape):
            raise WireError(f"array: shape must hold non-negative integers, got {shape!r}")
        if not isinstance(data, bytes):
            raise WireError("array: data must be raw bytes")
        want = math.prod(shape) * dt.itemsize
        if len(data) != want:
            raise WireError(
                f"array: {len(data)} bytes of data for shape {list(shape)} of {dt.str} ({want} bytes)"
            )
        # a read-only view of the frame's bytes, as openpi's decoder makes
        return np.frombuffer(data, dtype=dt).reshape(shape)
    if _get(obj, "__npgeneric__") is True:
        dt = _dtype(_get(obj, "dtype"), "scalar")
        value = _get(obj, "data")
        if not isinstance(value, bool | int | float):
            raise WireError(f"scalar: data must be a number, got {type(value).__name__}")
        try:
            return dt.type(value)
        except (OverflowError, ValueError) as e:
            raise WireError(f"scalar: {value!r} does not fit {dt.str}") from e
    return obj


def encode(message: Any) -> bytes:
    """One frame: `message` (maps, lists, str, numbers, numpy arrays and scalars) packed as openpi packs it."""
    try:
        return msgpack.packb(message, default=_pack_default)
    except WireError:
        raise
    except (TypeError, ValueError, OverflowError) as e:
        raise WireError(f"cannot pack the message: {e}") from e


def decode(frame: bytes | bytearray | memoryview) -> Any:
    """A received binary frame -> the message; `WireError` naming what was wrong for anything invalid."""
    try:
        return msgpack.unpackb(bytes(frame), object_hook=_unpack_hook, strict_map_key=False)
    except WireError:
        raise
    except msgpack.ExtraData as e:
        raise WireError("frame holds more than one msgpack message") from e
    except (ValueError, TypeError, msgpack.UnpackException, RecursionError) as e:
        raise WireError(f"not a valid msgpack frame ({type(e).__name__}: {e})") from e


def decode_map(frame: bytes | bytearray | memoryview, what: str = "message") -> dict[str, Any]:
    """A frame that must be a map with string keys (a request, a reply, the metadata)."""
    msg = decode(frame)
    if not isinstance(msg, dict):
        raise WireError(f"{what} must be a msgpack map, got {type(msg).__name__}")
    bad = [k for k in msg if not isinstance(k, str)]
    if bad:
        raise WireError(f"{what} keys must be strings, got {bad[0]!r}")
    return msg

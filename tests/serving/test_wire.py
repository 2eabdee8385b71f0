"""The wire format: openpi's msgpack-numpy frames, and what a hostile peer can send."""

from __future__ import annotations

import msgpack
import numpy as np
import pytest

from jrobot.serving.wire import WireError, decode, decode_map, encode


@pytest.mark.parametrize("dtype", ["uint8", "int32", "int64", "float32", "float64", "bool", ">f4"])
def test_arrays_round_trip_with_dtype_and_shape(dtype):
    x = (np.arange(24).reshape(2, 3, 4) % 2).astype(dtype)
    y = decode(encode({"x": x}))["x"]
    assert y.dtype == x.dtype and y.shape == x.shape
    np.testing.assert_array_equal(y, x)


def test_arrays_travel_as_openpi_maps_with_bytes_keys():
    raw = msgpack.unpackb(encode({"a": np.zeros((2, 3), np.float32), "s": np.float32(1.5)}))
    a = raw["a"]
    assert a[b"__ndarray__"] is True and a[b"dtype"] == "<f4" and a[b"shape"] == [2, 3]
    assert a[b"data"] == bytes(24)
    assert raw["s"] == {b"__npgeneric__": True, b"data": 1.5, b"dtype": "<f4"}
    assert decode(encode({"s": np.float32(1.5)}))["s"].dtype == np.float32


def test_non_contiguous_arrays_are_sent_as_their_values():
    x = np.arange(12).reshape(3, 4)[:, ::2]
    np.testing.assert_array_equal(decode(encode(x)), x)


@pytest.mark.parametrize(
    "value", [np.array([object()]), np.array([1 + 2j]), np.array(["a"]), {1, 2}, object()]
)
def test_what_cannot_be_sent_is_refused_by_name(value):
    with pytest.raises(WireError):
        encode({"x": value})


def _array_map(**fields):
    base = {b"__ndarray__": True, b"data": bytes(8), b"dtype": "<f4", b"shape": [2]}
    base.update({k.encode(): v for k, v in fields.items()})
    return msgpack.packb({"x": base})


@pytest.mark.parametrize(
    ("frame", "words"),
    [
        (_array_map(dtype="|O"), "not allowed"),
        (_array_map(dtype="<c8"), "not allowed"),
        (_array_map(dtype="V8"), "not allowed"),
        (_array_map(dtype="nonsense"), "not allowed"),
        (_array_map(dtype=">02"), "not allowed"),  # numpy would parse it with ast (found by fuzzing)
        (_array_map(dtype=7), "dtype must be a string"),
        (_array_map(shape=[3]), "8 bytes of data for shape [3]"),
        (_array_map(shape=[-1]), "non-negative"),
        (_array_map(shape="2"), "shape must be a list"),
        (_array_map(shape=[1] * 9), "at most 8"),
        (_array_map(data="text"), "raw bytes"),
        (msgpack.packb({"x": {b"__npgeneric__": True, b"data": "a", b"dtype": "<f4"}}), "must be a number"),
        (msgpack.packb({"x": {b"__npgeneric__": True, b"data": 300, b"dtype": "|u1"}}), "does not fit"),
        (b"\xc1", "not a valid msgpack frame"),
        (msgpack.packb({"a": 1})[:-1], "not a valid msgpack frame"),
        (msgpack.packb(1) + msgpack.packb(2), "more than one"),
    ],
)
def test_bad_frames_are_wire_errors_that_say_what_was_wrong(frame, words):
    with pytest.raises(WireError, match=None) as e:
        decode(frame)
    assert words in str(e.value)


def test_deep_nesting_is_refused_not_a_crash():
    frame = b"\x91" * 100_000 + b"\x00"  # 100k nested one-element lists
    with pytest.raises(WireError):
        decode(frame)


def test_a_request_must_be_a_map_with_string_keys():
    with pytest.raises(WireError, match="must be a msgpack map"):
        decode_map(msgpack.packb([1, 2]), "request")
    with pytest.raises(WireError, match="keys must be strings"):
        decode_map(msgpack.packb({1: 2}), "request")
    assert decode_map(msgpack.packb({"a": [1, "b"]})) == {"a": [1, "b"]}


def test_str_keyed_array_maps_are_read_too():
    frame = msgpack.packb({"x": {"__ndarray__": True, "data": bytes(4), "dtype": "<i4", "shape": [1]}})
    assert decode(frame)["x"].tolist() == [0]

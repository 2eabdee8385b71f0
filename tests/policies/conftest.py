"""Fixtures for the policy tests: the LeRobot ACT reference folder and its cases."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

ACT_FIXTURE = "act_so101_tiny"


@pytest.fixture(scope="session")
def act_fixture_dir(shared_dir: Path) -> Path:
    d = shared_dir / "fixtures" / "parity" / ACT_FIXTURE
    if not (d / "pretrained_model" / "config.json").is_file():
        pytest.fail(f"ACT parity fixture missing at {d}")
    return d


@pytest.fixture(scope="session")
def act_cases(act_fixture_dir: Path) -> dict[str, np.ndarray]:
    with np.load(act_fixture_dir / "cases.npz") as z:
        return {k: z[k] for k in z.files}


# ----------------------------------------------------------------------------------------------------
# A torch zip checkpoint writer that needs no torch: the pickle is assembled from protocol-2 opcodes the
# way torch.save lays it out (OrderedDict of `torch._utils._rebuild_tensor_v2(storage, offset, size,
# stride, requires_grad, hooks)`, storages as persistent ids ('storage', torch.<T>Storage, key, 'cpu', n)).

_STORAGE_NAMES = {
    np.dtype(np.float32): "FloatStorage",
    np.dtype(np.float64): "DoubleStorage",
    np.dtype(np.float16): "HalfStorage",
    np.dtype(np.int64): "LongStorage",
    np.dtype(np.int32): "IntStorage",
    np.dtype(np.uint8): "ByteStorage",
    np.dtype(np.bool_): "BoolStorage",
}


def _op_str(s: str) -> bytes:
    b = s.encode()
    return b"X" + len(b).to_bytes(4, "little") + b


def _op_int(i: int) -> bytes:
    return b"J" + int(i).to_bytes(4, "little", signed=True)


def _op_tuple(items: list[bytes]) -> bytes:
    return b"(" + b"".join(items) + b"t"


def _op_global(module: str, name: str) -> bytes:
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def torch_zip_bytes_pickle(
    entries: dict, storage_types: dict[str, str], storage_sizes: dict[str, int]
) -> bytes:
    """entries: name -> (storage key, offset, size, stride)."""
    out = b"\x80\x02" + _op_global("collections", "OrderedDict") + b")R"
    for name, (key, offset, size, stride) in entries.items():
        pid = _op_tuple(
            [
                _op_str("storage"),
                _op_global("torch", storage_types[key]),
                _op_str(key),
                _op_str("cpu"),
                _op_int(storage_sizes[key]),
            ]
        )
        args = [
            pid + b"Q",
            _op_int(offset),
            _op_tuple([_op_int(s) for s in size]),
            _op_tuple([_op_int(s) for s in stride]),
            b"\x89",
            _op_global("collections", "OrderedDict") + b")R",
        ]
        out += (
            _op_str(name) + _op_global("torch._utils", "_rebuild_tensor_v2") + _op_tuple(args) + b"R" + b"s"
        )
    return out + b"."


def write_torch_zip(
    path, tensors: dict[str, np.ndarray], extra_entries: dict | None = None, storages: dict | None = None
):
    """Write contiguous `tensors` (plus optional raw `extra_entries` over `storages`) as torch.save would."""
    import zipfile

    storages = dict(storages or {})
    entries = dict(extra_entries or {})
    for i, (name, arr) in enumerate(tensors.items()):
        arr = np.array(arr, order="C")  # (ascontiguousarray would turn 0-d into 1-d)
        key = f"t{i}"
        storages[key] = arr.reshape(-1)
        strides = tuple(s // arr.itemsize for s in arr.strides) if arr.ndim else ()
        entries[name] = (key, 0, arr.shape, strides)
    types = {k: _STORAGE_NAMES[v.dtype] for k, v in storages.items()}
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(
            "archive/data.pkl",
            torch_zip_bytes_pickle(entries, types, {k: v.size for k, v in storages.items()}),
        )
        zf.writestr("archive/byteorder", "little")
        zf.writestr("archive/version", "3\n")
        for k, v in storages.items():
            zf.writestr(f"archive/data/{k}", v.tobytes())


@pytest.fixture(scope="session")
def torch_zip_writer():
    return write_torch_zip

"""Read a torch `.pth`/`.pt` state dict (the zip format torch >= 1.6 writes) without torch, safely.

A torch checkpoint is a zip holding `<name>/data.pkl` (a pickle) and `<name>/data/<key>` (raw tensor
storages). Unpickling arbitrary files can run arbitrary code, so the unpickler here resolves only the
handful of globals a plain state dict needs (OrderedDict, torch's tensor/parameter rebuild functions and
storage types) and refuses everything else. Tensors come back as numpy arrays.

The legacy (pre-1.6, non-zip) format is refused with a clear message; convert such a file to
safetensors once with torch.
"""

from __future__ import annotations

import collections
import io
import math
import os
import pickle
import struct
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np

# how much larger than its stored bytes a member or a tensor may become once read (zip bombs, stride-0
# views of a tiny storage): torch stores members uncompressed and state dicts hold their own storages
MAX_EXPANSION = 64
# what a truncated or crafted zip, pickle or storage makes the standard library raise
_CORRUPT_FILE_ERRORS = (
    OSError,
    zipfile.BadZipFile,
    zlib.error,
    EOFError,
    LookupError,
    TypeError,
    AttributeError,
    OverflowError,
    NotImplementedError,  # zipfile: a member stored with a compression method it does not support
    RecursionError,
    struct.error,
)

_STORAGE_DTYPES: dict[str, np.dtype] = {
    "DoubleStorage": np.dtype(np.float64),
    "FloatStorage": np.dtype(np.float32),
    "HalfStorage": np.dtype(np.float16),
    "LongStorage": np.dtype(np.int64),
    "IntStorage": np.dtype(np.int32),
    "ShortStorage": np.dtype(np.int16),
    "CharStorage": np.dtype(np.int8),
    "ByteStorage": np.dtype(np.uint8),
    "BoolStorage": np.dtype(np.bool_),
}


def _bf16() -> np.dtype:
    import ml_dtypes

    return np.dtype(ml_dtypes.bfloat16)


class _StorageType:
    def __init__(self, name: str):
        self.name = name

    @property
    def dtype(self) -> np.dtype:
        if self.name == "BFloat16Storage":
            return _bf16()
        return _STORAGE_DTYPES[self.name]


def _rebuild_tensor_v2(
    storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None, metadata=None
):
    size, stride = tuple(int(s) for s in size), tuple(int(s) for s in stride)
    storage_offset = int(storage_offset)
    if len(size) != len(stride) or min((storage_offset, *size, *stride)) < 0:
        # negative strides or offsets would make as_strided read memory outside the storage
        raise pickle.UnpicklingError(
            f"tensor of size {size} / stride {stride} at {storage_offset} is invalid"
        )
    if not size:
        if storage_offset >= storage.size:
            raise pickle.UnpicklingError(f"scalar at {storage_offset} overruns its storage ({storage.size})")
        return np.array(storage[storage_offset], dtype=storage.dtype)
    itemsize = storage.dtype.itemsize
    needed = storage_offset + sum((n - 1) * s for n, s in zip(size, stride)) + 1
    if any(n == 0 for n in size):
        return np.zeros(size, storage.dtype)
    if needed > storage.size:
        raise pickle.UnpicklingError(
            f"tensor of size {size} / stride {stride} overruns its storage ({storage.size})"
        )
    if math.prod(size) > max(
        MAX_EXPANSION * storage.size, 1 << 16
    ):  # stride-0 views of a tiny storage, copied below
        raise pickle.UnpicklingError(f"tensor of size {size} is {MAX_EXPANSION}x larger than its storage")
    view = np.lib.stride_tricks.as_strided(
        storage[storage_offset:], shape=size, strides=tuple(s * itemsize for s in stride), writeable=False
    )
    return np.array(view)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None):
    return data


def _rebuild_parameter_with_state(data, requires_grad=False, backward_hooks=None, state=None):
    return data


_ALLOWED: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter_with_state,
}


class _SafeUnpickler(pickle.Unpickler):
    def __init__(self, file, zf: zipfile.ZipFile, prefix: str, byteorder: str, source: str):
        super().__init__(file)
        self._zf, self._prefix, self._byteorder, self._source = zf, prefix, byteorder, source

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED:
            return _ALLOWED[(module, name)]
        if module == "torch" and (name in _STORAGE_DTYPES or name == "BFloat16Storage"):
            return _StorageType(name)
        raise pickle.UnpicklingError(
            f"{self._source}: refusing to load global {module}.{name} (only plain tensor state dicts are read)"
        )

    def persistent_load(self, pid: Any) -> np.ndarray:
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"{self._source}: unsupported persistent id {pid!r}")
        _, storage_type, key, _location, numel = pid[:5]
        if not isinstance(storage_type, _StorageType):
            raise pickle.UnpicklingError(f"{self._source}: unsupported storage type {storage_type!r}")
        dtype = storage_type.dtype
        raw = _read_member(self._zf, f"{self._prefix}data/{key}", self._source)
        if self._byteorder == "big":
            dtype = dtype.newbyteorder(">")
        arr = np.frombuffer(raw, dtype=dtype)
        if arr.size < int(numel):
            raise pickle.UnpicklingError(
                f"{self._source}: storage {key} has {arr.size} elements, expected {numel}"
            )
        return arr.astype(arr.dtype.newbyteorder("=")) if self._byteorder == "big" else arr


def _read_member(zf: zipfile.ZipFile, name: str, source: str) -> bytes:
    """A zip member's bytes; refused unpacked when it would expand far beyond the whole archive (a zip
    bomb: torch stores its members uncompressed, so a real checkpoint's members never do)."""
    info = zf.getinfo(name)
    if info.flag_bits & 0x1:  # (zipfile would raise RuntimeError asking for a password)
        raise ValueError(f"{source}: member {name!r} is encrypted; torch never writes that")
    if info.file_size > MAX_EXPANSION * max(info.compress_size, 1) + 1024:
        raise ValueError(
            f"{source}: member {name!r} claims {info.file_size} bytes packed in {info.compress_size}; refused"
        )
    return zf.read(info)


def read_torch_zip(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """State dict (name -> numpy array) from a torch zip checkpoint; nested {"state_dict": ...} unwrapped."""
    p = Path(path)
    if not zipfile.is_zipfile(p):
        raise ValueError(
            f"{p} is not a torch zip checkpoint (legacy pre-1.6 format or not a torch file); convert it to "
            ".safetensors once with torch (safetensors.torch.save_file(torch.load(f), out))"
        )
    try:
        with zipfile.ZipFile(p) as zf:
            pkls = [n for n in zf.namelist() if n.endswith("data.pkl")]
            if len(pkls) != 1:
                raise ValueError(f"{p}: expected exactly one data.pkl in the zip, found {pkls[:10]}")
            prefix = pkls[0][: -len("data.pkl")]
            byteorder = "little"
            if f"{prefix}byteorder" in zf.namelist():
                byteorder = _read_member(zf, f"{prefix}byteorder", str(p)).decode("ascii").strip()
            pkl = io.BytesIO(_read_member(zf, pkls[0], str(p)))
            obj = _SafeUnpickler(pkl, zf, prefix, byteorder, str(p)).load()
    except pickle.UnpicklingError as e:  # refused: a global, a tensor outside its storage, bad opcodes
        if str(p) in str(e):
            raise
        raise pickle.UnpicklingError(f"{p}: {e}") from e
    except ValueError as e:
        if type(e) is ValueError and str(p) in str(e):
            raise
        raise ValueError(f"{p}: corrupt torch zip checkpoint ({type(e).__name__}: {e})") from e
    except _CORRUPT_FILE_ERRORS as e:
        raise ValueError(f"{p}: corrupt torch zip checkpoint ({type(e).__name__}: {e})") from e
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise ValueError(f"{p}: expected a state dict, got {type(obj).__name__}")
    out = {}
    for k, v in obj.items():
        if not isinstance(v, np.ndarray):
            raise ValueError(f"{p}: entry {k!r} is a {type(v).__name__}, not a tensor")
        out[str(k)] = v
    return out

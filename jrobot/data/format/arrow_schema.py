"""Arrow/Parquet types of the per-frame data files, exactly as LeRobot (via HF `datasets`) writes them.

Mapping (`get_hf_features_from_features`): shape (1,) -> scalar `Value`; (D,) -> `fixed_size_list`;
2-D..5-D -> `ArrayND` (stored as nested lists); `image` -> the HF Image struct {bytes, path};
video features are not stored in parquet at all. The `huggingface` schema metadata carries the HF
feature JSON (datasets 4.x spelling: `"_type": "List"` with a `length`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

import numpy as np
import pyarrow as pa

from jrobot.features import Feature

IMAGE_STRUCT = pa.struct([pa.field("bytes", pa.binary()), pa.field("path", pa.string())])

_ARROW_SCALARS = {
    "bool": pa.bool_(),
    "int8": pa.int8(),
    "int16": pa.int16(),
    "int32": pa.int32(),
    "int64": pa.int64(),
    "uint8": pa.uint8(),
    "uint16": pa.uint16(),
    "uint32": pa.uint32(),
    "uint64": pa.uint64(),
    "float16": pa.float16(),
    "float32": pa.float32(),
    "float64": pa.float64(),
    "string": pa.string(),
}


def scalar_type(dtype: str) -> pa.DataType:
    try:
        return _ARROW_SCALARS[str(np.dtype(dtype)) if dtype != "string" else "string"]
    except (KeyError, TypeError) as e:
        raise ValueError(f"dtype {dtype!r} has no parquet column type") from e


def parquet_columns(features: Mapping[str, Feature]) -> list[str]:
    """Columns of a data file, in feature order (video features have no column)."""
    return [k for k, f in features.items() if not f.is_video]


def arrow_type(feat: Feature) -> pa.DataType:
    if feat.dtype == "image":
        return IMAGE_STRUCT
    shape = tuple(feat.shape)
    base = scalar_type(feat.dtype)
    if shape == (1,):
        return base
    if len(shape) == 1:
        return pa.list_(base, shape[0])
    t = base
    for _ in shape:
        t = pa.list_(t)
    return t


def hf_feature_json(feat: Feature) -> dict[str, Any]:
    if feat.dtype == "image":
        return {"_type": "Image"}
    shape = tuple(feat.shape)
    value = {"dtype": feat.dtype, "_type": "Value"}
    if shape == (1,):
        return value
    if len(shape) == 1:
        return {"feature": value, "length": shape[0], "_type": "List"}
    return {"shape": list(shape), "dtype": feat.dtype, "_type": f"Array{len(shape)}D"}


def data_schema(features: Mapping[str, Feature]) -> pa.Schema:
    """The data-file schema with LeRobot's `huggingface` metadata."""
    cols = parquet_columns(features)
    hf = {k: hf_feature_json(features[k]) for k in cols}
    fingerprint = hashlib.sha256(json.dumps(hf, sort_keys=True).encode()).hexdigest()[:16]
    meta = {"huggingface": json.dumps({"info": {"features": hf}, "fingerprint": fingerprint})}
    return pa.schema([pa.field(k, arrow_type(features[k])) for k in cols], metadata=meta)


def column_array(feat: Feature, values: Any) -> pa.Array:
    """Build one column from numpy data (N,)/(N, *shape) or, for images, a list of {bytes, path}."""
    typ = arrow_type(feat)
    if feat.dtype == "image":
        return pa.array(values, type=typ)
    if feat.dtype == "string":
        return pa.array([str(v) for v in values], type=typ)
    arr = np.ascontiguousarray(values, dtype=np.dtype(feat.dtype))
    shape = tuple(feat.shape)
    n = arr.shape[0]
    if shape == (1,):
        return pa.array(arr.reshape(n), type=typ)
    flat = pa.array(arr.reshape(-1), type=scalar_type(feat.dtype))
    if len(shape) == 1:
        return pa.FixedSizeListArray.from_arrays(flat, shape[0])
    out: pa.Array = flat
    for dim in reversed(shape):
        count = len(out) // dim
        offsets = pa.array(np.arange(count + 1, dtype=np.int32) * dim)
        out = pa.ListArray.from_arrays(offsets, out)
    return out


def to_numpy(column: pa.ChunkedArray | pa.Array, feat: Feature) -> np.ndarray:
    """A data-file column back to numpy: (N,) for shape (1,), (N, *shape) otherwise.

    Accepts what other writers produced too: variable `list<...>` instead of `fixed_size_list`,
    scalars stored as 1-element lists.
    """
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    shape = tuple(feat.shape)
    n = len(column)
    dtype = np.dtype(feat.dtype) if feat.dtype not in ("string",) else np.dtype(object)
    if feat.dtype == "string":
        return np.asarray(column.to_pylist(), dtype=object)
    values = column
    while (
        pa.types.is_list(values.type)
        or pa.types.is_fixed_size_list(values.type)
        or pa.types.is_large_list(values.type)
    ):
        values = values.flatten()
    nulls = column.null_count + (values.null_count if values is not column else 0)
    if nulls:
        raise ValueError(f"{nulls} null values where numbers are expected")
    flat = values.to_numpy(zero_copy_only=False)
    if shape == (1,):
        if flat.size != n:
            raise ValueError(f"expected one value per row, got {flat.size} values for {n} rows")
    elif flat.size != n * int(np.prod(shape)):
        raise ValueError(f"expected {n} rows of shape {shape}, got {flat.size} values")
    try:
        flat = flat.astype(dtype, copy=False)
    except (TypeError, ValueError, OverflowError) as e:  # text, bytes or nested values in a number column
        raise ValueError(f"{values.type} values are not {dtype} numbers ({e})") from e
    return flat.reshape(n) if shape == (1,) else flat.reshape((n, *shape))

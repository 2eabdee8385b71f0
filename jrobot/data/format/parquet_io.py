"""Reading and writing the parquet files of a dataset, with errors that name the file.

Writes use LeRobot's settings (snappy, dictionary encoding) and go through `WorkDir.write_with`, so
a reader never sees a file without its footer. `append_row_group` produces "old file + one more row
group" as a new file (LeRobot keeps one row group per episode) to be renamed over the old one.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from jrobot.data.errors import DatasetError

WRITE_OPTIONS = {"compression": "snappy", "use_dictionary": True}


# A metadata file (tasks, episodes) is read whole. One that would take more memory than this many
# times its size on disk (and more than the floor) is refused before its columns are materialised: a
# few KB of dictionary-encoded, compressed parquet can claim gigabytes of one repeated string.
EXPANSION_LIMIT = 64
EXPANSION_FLOOR = 256 * 1024**2
_FIXED_WIDTH = {"BOOLEAN": 1, "INT32": 4, "INT64": 8, "INT96": 12, "FLOAT": 4, "DOUBLE": 8}


def open_parquet(path: Path, **options: Any) -> pq.ParquetFile:
    if not path.is_file():
        raise DatasetError(f"missing parquet file: {path}")
    try:
        return pq.ParquetFile(path, memory_map=True, **options)
    # (UnicodeDecodeError: undecodable column names; KeyError, RuntimeError: a footer pyarrow rejects
    # outside its own exception types, e.g. a column path it cannot resolve)
    except (pa.ArrowException, OSError, UnicodeDecodeError, KeyError, RuntimeError) as e:
        raise DatasetError(f"{path}: truncated or corrupt parquet file ({e})") from e


def read_table(path: Path, columns: Sequence[str] | None = None) -> pa.Table:
    """A metadata parquet file, checked whole (`Table.validate(full=True)`: offsets, UTF-8) and bounded
    in memory; string columns come back dictionary-encoded (`to_pylist` gives the same values)."""
    pf = open_parquet(path)
    try:
        if columns is not None:
            missing = [c for c in columns if c not in pf.schema_arrow.names]
            if missing:
                raise DatasetError(f"{path}: missing column(s) {missing}; has {pf.schema_arrow.names}")
        budget = max(EXPANSION_FLOOR, EXPANSION_LIMIT * path.stat().st_size)
        declared, strings = _declared_bytes(pf.metadata)
        if declared > budget:
            raise DatasetError(
                f"{path}: its footer claims {pf.metadata.num_rows} rows taking {declared} bytes, more than "
                f"{budget} for a {path.stat().st_size}-byte file; refused"
            )
        # strings as dictionaries: their dense size is known (and checked) before anything expands
        pf = open_parquet(path, read_dictionary=sorted(strings) or None)
        table = pf.read(columns=list(columns) if columns is not None else None)
        dense = sum(_dense_bytes(chunk) for column in table.columns for chunk in column.chunks)
        if dense > budget:
            raise DatasetError(
                f"{path}: its {table.num_rows} rows expand to {dense} bytes, more than {budget} for a "
                f"{path.stat().st_size}-byte file; refused"
            )
        table.validate(full=True)
        return table
    except (pa.ArrowException, OSError, UnicodeDecodeError, KeyError, RuntimeError) as e:
        raise DatasetError(f"{path}: truncated or corrupt parquet file ({e})") from e


def _declared_bytes(md: pq.FileMetaData) -> tuple[int, set[str]]:
    """What the footer says reading the file takes (rows x row width, plus the uncompressed row
    groups), and the paths of its string/binary columns (counted as 4-byte dictionary indices here).

    Only schema and row-group fields are read: pyarrow 26 aborts the process (an uncaught C++
    exception) on some corrupt column-chunk metadata, which `read` itself reports as an error.
    """
    row_width, strings = 0, set()
    for j in range(len(md.schema)):
        column = md.schema.column(j)
        if column.physical_type == "BYTE_ARRAY":
            strings.add(column.path)
            row_width += 4
        elif column.physical_type == "FIXED_LEN_BYTE_ARRAY":
            row_width += max(1, column.length or 1)
        else:
            row_width += _FIXED_WIDTH.get(column.physical_type, 8)
    total = 0
    for i in range(md.num_row_groups):
        rg = md.row_group(i)
        total += max(rg.num_rows, 0) * row_width + max(rg.total_byte_size, 0)
    return total, strings


def _dense_bytes(arr: pa.Array) -> int:
    """Memory `arr` takes once its dictionaries are expanded (as `to_pylist` expands them)."""
    t = arr.type
    if pa.types.is_dictionary(t):
        values = arr.dictionary
        if not (pa.types.is_string(values.type) or pa.types.is_binary(values.type)
                or pa.types.is_large_string(values.type) or pa.types.is_large_binary(values.type)):  # fmt: skip
            return arr.nbytes + len(arr) * max(1, values.nbytes // max(1, len(values)))
        taken = pc.sum(pc.take(pc.binary_length(values), arr.indices)).as_py()
        return arr.indices.nbytes + int(taken or 0)
    if (
        pa.types.is_list(t)
        or pa.types.is_large_list(t)
        or pa.types.is_fixed_size_list(t)
        or pa.types.is_map(t)
    ):
        return arr.nbytes - arr.values.nbytes + _dense_bytes(arr.values)
    if pa.types.is_struct(t):
        return sum(_dense_bytes(arr.field(i)) for i in range(t.num_fields))
    return arr.nbytes


def table_rows(table: pa.Table, path: Path) -> list[dict[str, Any]]:
    """The rows as dicts; values Python cannot hold (a date in year 300000, ...) name the file."""
    try:
        return table.to_pylist()
    except (pa.ArrowException, ValueError, OverflowError) as e:
        raise DatasetError(f"{path}: values that do not convert ({e})") from e


def column_values(table: pa.Table, name: str, path: Path) -> list[Any]:
    try:
        return table.column(name).to_pylist()
    except (pa.ArrowException, ValueError, OverflowError, KeyError) as e:  # (KeyError: a name twice)
        raise DatasetError(f"{path}: column {name!r} holds values that do not convert ({e})") from e


def write_tables(path: Path, schema: pa.Schema, tables: Sequence[pa.Table]) -> None:
    """Write `tables` as consecutive row groups of one file (a file is only ever written whole)."""
    with pq.ParquetWriter(path, schema=schema, **WRITE_OPTIONS) as writer:
        for t in tables:
            writer.write_table(t.cast(schema) if t.schema != schema else t)


def existing_row_groups(path: Path) -> tuple[pa.Schema, list[pa.Table]]:
    pf = open_parquet(path)
    try:
        return pf.schema_arrow, [pf.read_row_group(i) for i in range(pf.metadata.num_row_groups)]
    except (pa.ArrowException, OSError) as e:
        raise DatasetError(f"{path}: truncated or corrupt parquet file ({e})") from e


def compatible(table: pa.Table, schema: pa.Schema) -> bool:
    """Can `table` be stored under `schema` (same columns, castable types)?"""
    if table.schema.names != schema.names:
        return False
    try:
        table.cast(schema)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, ValueError):
        return False
    return True


def file_size_mb(path: Path) -> float:
    return path.stat().st_size / (1024**2)

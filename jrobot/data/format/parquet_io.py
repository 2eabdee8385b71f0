"""Reading and writing the parquet files of a dataset, with errors that name the file.

Writes use LeRobot's settings (snappy, dictionary encoding) and go through `WorkDir.write_with`, so
a reader never sees a file without its footer. `append_row_group` produces "old file + one more row
group" as a new file (LeRobot keeps one row group per episode) to be renamed over the old one.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from jrobot.data.errors import DatasetError

WRITE_OPTIONS = {"compression": "snappy", "use_dictionary": True}


def open_parquet(path: Path) -> pq.ParquetFile:
    if not path.is_file():
        raise DatasetError(f"missing parquet file: {path}")
    try:
        return pq.ParquetFile(path, memory_map=True)
    except (pa.ArrowException, OSError) as e:
        raise DatasetError(f"{path}: truncated or corrupt parquet file ({e})") from e


def read_table(path: Path, columns: Sequence[str] | None = None) -> pa.Table:
    pf = open_parquet(path)
    try:
        if columns is not None:
            missing = [c for c in columns if c not in pf.schema_arrow.names]
            if missing:
                raise DatasetError(f"{path}: missing column(s) {missing}; has {pf.schema_arrow.names}")
        return pf.read(columns=list(columns) if columns is not None else None)
    except (pa.ArrowException, OSError) as e:
        raise DatasetError(f"{path}: truncated or corrupt parquet file ({e})") from e


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

"""meta/tasks.parquet and meta/episodes/*.parquet: their exact on-disk form and loading.

tasks.parquet is a pandas DataFrame indexed by the task text with one `task_index` column, written by
`DataFrame.to_parquet` exactly as LeRobot does, so `pd.read_parquet` restores the index
(`__index_level_0__` + pandas metadata). Episode rows are plain dicts in LeRobot's column order
(`episode_row`); per-episode stats are flattened to `stats/<feature>/<stat>` list columns.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from jrobot.data.errors import DatasetError
from jrobot.data.format.layout import EPISODES_DIR, TASKS_PATH, sorted_parquet_files
from jrobot.data.format.parquet_io import column_values, read_table, table_rows
from jrobot.data.format.stats import Stats, flatten_episode_stats


def write_tasks_file(path: Path, tasks: Sequence[str]) -> None:
    import pandas as pd  # only needed here; importing it costs ~1 s

    df = pd.DataFrame({"task_index": np.arange(len(tasks), dtype=np.int64)}, index=list(tasks))
    df.to_parquet(path)


def load_tasks(root: Path) -> list[str]:
    """Task strings in task_index order."""
    path = root / TASKS_PATH
    table = read_table(path)
    names = table.schema.names
    if "task_index" not in names:
        raise DatasetError(f"{path}: no 'task_index' column (columns: {names})")
    if "__index_level_0__" in names:
        texts = column_values(table, "__index_level_0__", path)
    elif "task" in names:
        texts = column_values(table, "task", path)
    else:
        raise DatasetError(f"{path}: the task text is neither the pandas index nor a 'task' column")
    indices = column_values(table, "task_index", path)
    out: list[str | None] = [None] * len(indices)
    for i, t in zip(indices, texts, strict=True):
        if not isinstance(i, int) or not 0 <= i < len(indices) or out[i] is not None:
            raise DatasetError(
                f"{path}: task indices must be a permutation of 0..{len(indices) - 1}, got {indices}"
            )
        out[i] = str(t)
    return [t for t in out if t is not None]


def episode_row(
    *,
    episode_index: int,
    tasks: Sequence[str],
    length: int,
    data_file: tuple[int, int],
    dataset_from_index: int,
    videos: Mapping[str, Mapping[str, Any]],
    stats: Mapping[str, Stats],
    meta_file: tuple[int, int],
) -> dict[str, Any]:
    """One meta/episodes row with LeRobot 0.4.4's columns, in its order."""
    row: dict[str, Any] = {
        "episode_index": int(episode_index),
        "tasks": [str(t) for t in tasks],
        "length": int(length),
        "data/chunk_index": int(data_file[0]),
        "data/file_index": int(data_file[1]),
        "dataset_from_index": int(dataset_from_index),
        "dataset_to_index": int(dataset_from_index + length),
    }
    for key, v in videos.items():
        row[f"videos/{key}/chunk_index"] = int(v["chunk_index"])
        row[f"videos/{key}/file_index"] = int(v["file_index"])
        row[f"videos/{key}/from_timestamp"] = float(v["from_timestamp"])
        row[f"videos/{key}/to_timestamp"] = float(v["to_timestamp"])
    row.update(flatten_episode_stats(stats))
    row["meta/episodes/chunk_index"] = int(meta_file[0])
    row["meta/episodes/file_index"] = int(meta_file[1])
    return row


def rows_table(rows: Sequence[Mapping[str, Any]], schema: pa.Schema | None = None) -> pa.Table:
    """Rows -> Arrow table, types inferred like LeRobot's `pa.Table.from_pydict` unless a schema is given."""
    if schema is not None:
        return pa.Table.from_pylist(list(rows), schema=schema)
    return pa.Table.from_pylist(list(rows))


def episode_files(root: Path) -> list[Path]:
    return sorted_parquet_files(root / EPISODES_DIR)


def load_episode_rows(root: Path, *, with_stats: bool = True) -> list[tuple[Path, list[dict[str, Any]]]]:
    """Every meta/episodes file (sorted as LeRobot concatenates them) with its rows as dicts."""
    out = []
    for path in episode_files(root):
        table = read_table(path)
        if not with_stats:
            table = table.select([c for c in table.schema.names if not c.startswith("stats/")])
        out.append((path, table_rows(table, path)))
    return out

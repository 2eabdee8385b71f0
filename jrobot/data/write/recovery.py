"""Bring a v3.0 dataset folder back to its last committed state before more episodes are written.

The writer commits an episode by rewriting meta/info.json last; everything written before that
(video file, data rows, episodes row, tasks, stats) only adds to the end of what the previous
info.json describes. LeRobot's loader trusts info.json's totals (`__len__`, the episode check), so
such leftovers never break it, but a writer must remove them before appending again. `recover`:

- drops meta/episodes rows and data rows beyond info.json's `total_episodes`/`total_frames`
  (rewriting the last file, deleting files that hold nothing committed);
- drops tasks beyond `total_tasks`;
- deletes mp4 files no committed row references (an episode moved in but not committed, a packed
  episode whose single-episode file was not yet removed);
- cuts a video file back to the end of its last committed episode (a pack of the next episode was
  renamed in but not yet recorded in meta/episodes);
- rewrites stats.json from the committed per-episode stats when anything was rolled back.

Every change is an atomic replace or a removal, so being killed during recovery is harmless too.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from fractions import Fraction
from pathlib import Path
from typing import Any

import pyarrow as pa

from jrobot.data.errors import DatasetError
from jrobot.data.format.info import info_features, load_info
from jrobot.data.format.layout import (
    CODEBASE_VERSION,
    DATA_DIR,
    STATS_PATH,
    TASKS_PATH,
    VIDEO_DIR,
    glob_inside,
    sorted_parquet_files,
)
from jrobot.data.format.meta_io import load_episode_rows, load_tasks, rows_table, write_tasks_file
from jrobot.data.format.parquet_io import existing_row_groups, open_parquet, write_tables
from jrobot.data.format.stats import Stats, aggregate_stats, to_jsonable, unflatten_episode_stats
from jrobot.data.video.encode import concat_videos, video_duration_s
from jrobot.data.write.fsio import WorkDir

log = logging.getLogger(__name__)

_CHUNK_FILE = re.compile(r"chunk-(\d+)/file-(\d+)\.(parquet|mp4)$")


def chunk_file_of(path: Path) -> tuple[int, int]:
    m = _CHUNK_FILE.search(path.as_posix())
    if m is None:
        raise DatasetError(f"{path}: not named chunk-XXX/file-YYY")
    return int(m.group(1)), int(m.group(2))


@dataclasses.dataclass
class Committed:
    """What a dataset folder holds after recovery: the state the writer continues from."""

    info: dict[str, Any]
    tasks: list[str]
    rows: list[dict[str, Any]]  # meta/episodes rows, row i is episode i
    episode_file_schema: dict[tuple[int, int], pa.Schema]
    data_files: list[tuple[tuple[int, int], int]]  # ((chunk, file), rows), sorted
    stats: dict[str, Stats] | None
    actions: list[str]


def recover(root: Path, work: WorkDir) -> Committed:
    info = load_info(root)
    if info["codebase_version"] != CODEBASE_VERSION:
        raise DatasetError(
            f"{root}: codebase_version {info['codebase_version']} cannot be appended to; "
            "upgrade it to v3.0 first (jrobot.data.edit.upgrade_dataset, or python -m data_tools.convert_lerobot)"
        )
    n_eps, n_frames = int(info.get("total_episodes", 0)), int(info.get("total_frames", 0))
    n_tasks = int(info.get("total_tasks", 0))
    actions: list[str] = []

    # meta/episodes
    rows: list[dict[str, Any]] = []
    schemas: dict[tuple[int, int], pa.Schema] = {}
    for path, file_rows in load_episode_rows(root):
        keep = [r for r in file_rows if int(r["episode_index"]) < n_eps]
        if len(keep) != len(file_rows):
            if keep:
                schema = open_parquet(path).schema_arrow
                work.write_with(
                    path, ".parquet", lambda tmp, s=schema, k=keep: write_tables(tmp, s, [rows_table(k, s)])
                )
            else:
                work.remove(path)
            actions.append(f"{path}: dropped {len(file_rows) - len(keep)} uncommitted episode row(s)")
        if keep:
            schemas[chunk_file_of(path)] = open_parquet(path).schema_arrow
        rows.extend(keep)
    for i, r in enumerate(rows):
        if int(r["episode_index"]) != i:
            raise DatasetError(f"{root}/meta/episodes: row {i} has episode_index {r['episode_index']}")
    if len(rows) != n_eps:
        raise DatasetError(
            f"{root}: meta/info.json says {n_eps} episodes but meta/episodes has {len(rows)} rows "
            "(a LeRobot writer killed before finalize() loses buffered rows)"
        )
    expected_from = 0
    for r in rows:
        if int(r["dataset_from_index"]) != expected_from:
            raise DatasetError(
                f"{root}: episode {r['episode_index']} starts at row {r['dataset_from_index']}, expected {expected_from}"
            )
        expected_from = int(r["dataset_to_index"])
    if expected_from != n_frames:
        raise DatasetError(
            f"{root}: episodes cover {expected_from} frames but meta/info.json says {n_frames}"
        )

    # data files
    data_files: list[tuple[tuple[int, int], int]] = []
    start = 0
    for path in sorted_parquet_files(root / DATA_DIR):
        rows_in_file = open_parquet(path).metadata.num_rows
        if start >= n_frames:
            work.remove(path)
            actions.append(f"{path}: removed (holds only uncommitted frames)")
        elif start + rows_in_file > n_frames:
            keep_rows = n_frames - start
            schema, groups = existing_row_groups(path)
            kept: list[pa.Table] = []
            left = keep_rows
            for g in groups:
                if left <= 0:
                    break
                kept.append(g.slice(0, min(left, g.num_rows)))
                left -= g.num_rows
            work.write_with(path, ".parquet", lambda tmp, s=schema, k=kept: write_tables(tmp, s, k))
            actions.append(f"{path}: dropped {rows_in_file - keep_rows} uncommitted frame row(s)")
            data_files.append((chunk_file_of(path), keep_rows))
        else:
            data_files.append((chunk_file_of(path), rows_in_file))
        start += rows_in_file
    if start < n_frames:
        raise DatasetError(f"{root}/data: holds {start} frames but meta/info.json says {n_frames}")

    # tasks
    tasks = load_tasks(root) if (root / TASKS_PATH).exists() else []
    if len(tasks) < n_tasks:
        raise DatasetError(f"{root}/{TASKS_PATH}: {len(tasks)} tasks but meta/info.json says {n_tasks}")
    if len(tasks) > n_tasks:
        tasks = tasks[:n_tasks]
        work.write_with(root / TASKS_PATH, ".parquet", lambda tmp: write_tasks_file(tmp, tasks))
        actions.append(f"{root / TASKS_PATH}: dropped uncommitted task(s)")
    known = set(tasks)
    for r in rows:
        missing = [t for t in r["tasks"] if t not in known]
        if missing:
            raise DatasetError(
                f"{root}: episode {r['episode_index']} uses task(s) {missing} missing from {TASKS_PATH}"
            )

    # videos
    fps = int(info["fps"])
    for key, feat in info_features(info).items():
        if not feat.is_video:
            continue
        ends: dict[tuple[int, int], float] = {}
        for r in rows:
            cf = (int(r[f"videos/{key}/chunk_index"]), int(r[f"videos/{key}/file_index"]))
            ends[cf] = max(ends.get(cf, 0.0), float(r[f"videos/{key}/to_timestamp"]))
        for path in glob_inside(root / VIDEO_DIR / key, "chunk-*/file-*.mp4"):
            cf = chunk_file_of(path)
            if cf not in ends:
                work.remove(path)
                actions.append(f"{path}: removed (no committed episode uses it)")
                continue
            if video_duration_s(path) > ends[cf] + 0.5 / fps:
                end = Fraction(ends[cf]) - Fraction(1, 2 * fps)
                work.write_with(path, ".mp4", lambda tmp, p=path, e=end: concat_videos([p], tmp, until=[e]))
                actions.append(f"{path}: cut back to {ends[cf]:.4f} s (end of its last committed episode)")
        for cf in ends:
            p = root / VIDEO_DIR / key / f"chunk-{cf[0]:03d}" / f"file-{cf[1]:03d}.mp4"
            if not p.is_file():
                raise DatasetError(f"missing video file: {p} (referenced by meta/episodes)")

    stats = None
    per_episode = [unflatten_episode_stats(r) for r in rows]
    if per_episode and all(per_episode):
        stats = aggregate_stats(per_episode)
        if actions or not (root / STATS_PATH).exists():
            work.write_json(root / STATS_PATH, to_jsonable(stats))
    for a in actions:
        log.warning("recovery: %s", a)
    return Committed(info, tasks, rows, schemas, data_files, stats, actions)

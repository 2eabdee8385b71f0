"""Loading v3.0 metadata (meta/info.json, meta/tasks.parquet, meta/episodes/*.parquet) as a `DatasetMeta`.

The row range of an episode is `dataset_from/to_index` (the `data/file_index` columns are not
trusted: LeRobot 0.4.4's converter gets them wrong at file boundaries). Only the first
`total_episodes` episodes rows and `total_frames` data rows count, as in LeRobot's loader; anything
beyond belongs to an interrupted writer and is ignored.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jrobot.data.errors import DatasetError
from jrobot.data.format.info import info_features, info_fps
from jrobot.data.format.layout import (
    DATA_DIR,
    STATS_PATH,
    TASKS_PATH,
    confined,
    fill_template,
    sorted_parquet_files,
)
from jrobot.data.format.meta import DatasetMeta, Episode, VideoSpan
from jrobot.data.format.meta_io import load_episode_rows, load_tasks
from jrobot.data.format.stats import load_stats_json, unflatten_episode_stats


def video_span(root: Path, video_tpl: str, key: str, row: dict[str, Any]) -> VideoSpan:
    """Camera `key`'s file and time span of one meta/episodes row (KeyError/TypeError/ValueError if the
    row lacks or garbles its `videos/<key>/...` columns); shared with the validator."""
    relative = fill_template(
        root,
        "video_path",
        video_tpl,
        video_key=key,
        chunk_index=int(row[f"videos/{key}/chunk_index"]),
        file_index=int(row[f"videos/{key}/file_index"]),
    )
    path = confined(root, relative, f"video_path {video_tpl!r} (camera {key!r})")
    return VideoSpan(
        path, float(row[f"videos/{key}/from_timestamp"]), float(row[f"videos/{key}/to_timestamp"])
    )


def load_v3_meta(root: Path, info: dict[str, Any]) -> DatasetMeta:
    features = info_features(info)
    n_eps = int(info.get("total_episodes", 0))
    n_frames = int(info.get("total_frames", 0))
    tasks = load_tasks(root) if (root / TASKS_PATH).exists() or n_eps else []
    rows: list[dict[str, Any]] = []
    for _, file_rows in load_episode_rows(root, with_stats=True):
        rows.extend(file_rows)
    if len(rows) < n_eps:
        raise DatasetError(
            f"{root}: meta/info.json says {n_eps} episodes but meta/episodes holds {len(rows)} rows "
            "(LeRobot loses buffered rows when its writer is killed before finalize())"
        )
    rows = rows[:n_eps]
    video_keys = [k for k, f in features.items() if f.is_video]
    video_tpl = info.get("video_path")
    if video_keys and not video_tpl:
        raise DatasetError(f"{root}/meta/info.json: has video features {video_keys} but no 'video_path'")
    episodes = []
    expected_from = 0
    for i, r in enumerate(rows):
        where = f"{root}/meta/episodes row {i}"
        try:
            idx, length = int(r["episode_index"]), int(r["length"])
            lo, hi = int(r["dataset_from_index"]), int(r["dataset_to_index"])
        except (KeyError, TypeError, ValueError, OverflowError) as e:  # (NaN, inf, text)
            raise DatasetError(f"{where}: missing or invalid column {e}") from e
        if idx != i:
            raise DatasetError(f"{where}: episode_index is {idx}; rows must be episodes 0..N-1 in order")
        if lo != expected_from or hi - lo != length:
            raise DatasetError(
                f"{where}: rows [{lo}, {hi}) do not continue the previous episode at {expected_from} with length {length}"
            )
        expected_from = hi
        videos = {}
        for key in video_keys:
            try:
                videos[key] = video_span(root, video_tpl, key, r)
            except DatasetError:
                raise
            except (KeyError, TypeError, ValueError, OverflowError) as e:
                raise DatasetError(f"{where}: missing or invalid video column {e}") from e
        tasks_of = r.get("tasks") or []
        if not isinstance(tasks_of, list):
            raise DatasetError(f"{where}: 'tasks' must be a list of task strings, got {tasks_of!r}")
        episodes.append(Episode(idx, length, tuple(str(t) for t in tasks_of), lo, hi, videos))
    if expected_from != n_frames:
        raise DatasetError(
            f"{root}: meta/episodes covers {expected_from} frames but meta/info.json says {n_frames}"
        )
    ep_stats = [
        unflatten_episode_stats(r, source=f"{root}/meta/episodes row {i}") for i, r in enumerate(rows)
    ]
    return DatasetMeta(
        root=root,
        info=info,
        version="v3.0",
        fps=info_fps(info),
        features=features,
        robot_type=info.get("robot_type"),
        tasks=tasks,
        episodes=episodes,
        data_files=sorted_parquet_files(root / DATA_DIR),
        stats=load_stats_json(root / STATS_PATH),
        episode_stats=ep_stats if all(ep_stats) else None,
    )

"""A dataset's metadata in one normalised form, whatever the on-disk version (v3.0 here, v2.x in `legacy`).

`DatasetMeta` is what the reader needs: fps, features, tasks, stats, and per episode its row range
in the concatenated data files and, per camera, the mp4 and the time span inside it. For v3.0 the
row range is `dataset_from/to_index` (the `data/file_index` columns are not trusted: LeRobot 0.4.4's
converter gets them wrong at file boundaries). Only the first `total_episodes` episodes rows and
`total_frames` data rows count, as in LeRobot's loader; anything beyond belongs to an interrupted
writer and is ignored.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from jrobot.data.errors import DatasetError
from jrobot.data.info import info_features, info_fps, load_info
from jrobot.data.layout import DATA_DIR, STATS_PATH, TASKS_PATH, sorted_parquet_files
from jrobot.data.meta_io import load_episode_rows, load_tasks
from jrobot.data.stats import Stats, load_stats_json, unflatten_episode_stats
from jrobot.features import Feature


@dataclasses.dataclass(frozen=True)
class VideoSpan:
    """Where an episode's frames of one camera are: `path`, from `from_timestamp` to `to_timestamp` s."""

    path: Path
    from_timestamp: float
    to_timestamp: float


@dataclasses.dataclass(frozen=True)
class Episode:
    """One episode: its index, length, tasks, global row range [from, to) and video spans."""

    index: int
    length: int
    tasks: tuple[str, ...]
    dataset_from_index: int
    dataset_to_index: int
    videos: dict[str, VideoSpan]


@dataclasses.dataclass
class DatasetMeta:
    root: Path
    info: dict[str, Any]
    version: str
    fps: int | float
    features: dict[str, Feature]
    robot_type: str | None
    tasks: list[str]
    episodes: list[Episode]
    data_files: list[Path]
    stats: dict[str, Stats] | None
    episode_stats: list[dict[str, Stats]] | None = None

    @property
    def total_frames(self) -> int:
        return self.episodes[-1].dataset_to_index if self.episodes else 0

    @property
    def video_keys(self) -> list[str]:
        return [k for k, f in self.features.items() if f.is_video]

    @property
    def image_keys(self) -> list[str]:
        return [k for k, f in self.features.items() if f.dtype == "image"]


def load_meta(root: Path) -> DatasetMeta:
    """Load any supported version (v3.0 here, v2.0/v2.1 through `legacy`)."""
    info = load_info(root)
    if info["codebase_version"] == "v3.0":
        return load_v3_meta(root, info)
    from jrobot.data.legacy import load_v2_meta

    return load_v2_meta(root, info)


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
        except (KeyError, TypeError) as e:
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
                path = root / video_tpl.format(
                    video_key=key,
                    chunk_index=int(r[f"videos/{key}/chunk_index"]),
                    file_index=int(r[f"videos/{key}/file_index"]),
                )
                videos[key] = VideoSpan(
                    path, float(r[f"videos/{key}/from_timestamp"]), float(r[f"videos/{key}/to_timestamp"])
                )
            except (KeyError, TypeError) as e:
                raise DatasetError(f"{where}: missing video column {e}") from e
        episodes.append(Episode(idx, length, tuple(r.get("tasks") or ()), lo, hi, videos))
    if expected_from != n_frames:
        raise DatasetError(
            f"{root}: meta/episodes covers {expected_from} frames but meta/info.json says {n_frames}"
        )
    ep_stats = [unflatten_episode_stats(r) for r in rows]
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


def episode_of_rows(episodes: list[Episode]) -> np.ndarray:
    """Position of the episode each global row belongs to."""
    lengths = np.asarray([e.length for e in episodes], dtype=np.int64)
    return np.repeat(np.arange(len(episodes), dtype=np.int64), lengths)

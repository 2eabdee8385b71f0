"""A dataset's metadata in one normalised form, whatever the on-disk version.

`DatasetMeta` is what the reader needs: fps, features, tasks, stats, and per episode its row range
in the concatenated data files and, per camera, the mp4 and the time span inside it. These types are
all this module holds, so both loaders (`v3_meta` for v3.0, `legacy` for v2.x) build them without
importing each other; `load.load_meta` picks the loader.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from jrobot.data.format.stats import Stats
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


def episode_of_rows(episodes: list[Episode]) -> np.ndarray:
    """Position of the episode each global row belongs to."""
    lengths = np.asarray([e.length for e in episodes], dtype=np.int64)
    return np.repeat(np.arange(len(episodes), dtype=np.int64), lengths)

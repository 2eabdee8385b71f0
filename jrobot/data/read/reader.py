"""Reading LeRobot datasets (v3.0, v2.1, v2.0) as numpy: random access with LeRobot's semantics and
sequential per-episode iteration.

`ds[i]` returns what `LeRobotDataset.__getitem__` returns, as numpy: every non-visual feature (0-d
arrays for shape-(1,) features), each camera as HWC uint8, and `task`. With `delta_timestamps`
(seconds per key, multiples of 1/fps within `tolerance_s`), each listed key gets a leading T axis of
the frames at `i + round(d * fps)`, clamped to the episode, plus a `<key>_is_pad` bool mask that is
True where the clamp happened (LeRobot's `_get_query_indices`).

Video frames are located by timestamp against each file's pts (`jrobot.data.video.decode`), so every index of
every camera decodes to its own frame. `iter_episode` decodes each camera once, front to back, for
consumers that read whole episodes (training-shard building, stats).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from jrobot.data.errors import DatasetError
from jrobot.data.format.load import load_meta
from jrobot.data.format.meta import DatasetMeta, Episode, episode_of_rows
from jrobot.data.format.stats import Stats
from jrobot.data.read.frame_table import FrameTable
from jrobot.data.read.hub import resolve_dataset
from jrobot.data.video.decode import DEFAULT_TOLERANCE_S, VideoFile, VideoPool
from jrobot.features import Feature


def check_delta_timestamps(
    delta_timestamps: Mapping[str, Sequence[float]], fps: float, tolerance_s: float
) -> dict[str, list[int]]:
    """LeRobot's `check_delta_timestamps` + `get_delta_indices`: seconds -> frame offsets, or a clear error."""
    bad = {}
    out = {}
    for key, deltas in delta_timestamps.items():
        deltas = list(deltas)
        off = [d for d in deltas if abs(d * fps - round(d * fps)) / fps > tolerance_s]
        if off:
            bad[key] = off
        out[key] = [round(d * fps) for d in deltas]
    if bad:
        raise DatasetError(
            f"delta_timestamps must be multiples of 1/fps (1/{fps} s) within {tolerance_s} s; offending values: {bad}"
        )
    return out


class Dataset:
    """A LeRobot dataset opened for reading; see the module docstring.

    Construct with `open_dataset(path_or_repo_id)`. Safe to use from several threads; after a fork
    each process reopens its own video decoders.
    """

    def __init__(
        self,
        meta: DatasetMeta,
        *,
        delta_timestamps: Mapping[str, Sequence[float]] | None = None,
        tolerance_s: float = DEFAULT_TOLERANCE_S,
        max_open_videos: int = 16,
        decoder_threads: int = 1,
    ) -> None:
        self.meta = meta
        self.tolerance_s = float(tolerance_s)
        self._table = FrameTable(meta.data_files, meta.features, meta.total_frames, meta.root)
        self._episode_of_row = episode_of_rows(meta.episodes)
        self._check_rows()
        self._pool = VideoPool(max_open_videos, threads=decoder_threads)
        self._ep_pos = {e.index: i for i, e in enumerate(meta.episodes)}
        self.delta_timestamps = dict(delta_timestamps) if delta_timestamps else None
        self.delta_indices: dict[str, list[int]] | None = None
        if self.delta_timestamps:
            unknown = [k for k in self.delta_timestamps if k not in meta.features]
            if unknown:
                raise DatasetError(
                    f"delta_timestamps for unknown feature(s) {unknown}; features: {list(meta.features)}"
                )
            self.delta_indices = check_delta_timestamps(self.delta_timestamps, self.fps, self.tolerance_s)
        for ep in meta.episodes:
            for key, span in ep.videos.items():
                if not span.path.is_file():
                    raise DatasetError(
                        f"missing video file: {span.path} (camera {key!r}, episode {ep.index})"
                    )

    def _check_rows(self) -> None:
        """LeRobot's invariants: row i has index i (v3.0) and each episode's rows carry its index."""
        n = self.meta.total_frames
        root = self.meta.root
        if self.meta.version == "v3.0" and "index" in self._table.columns:
            idx = self._table.columns["index"]
            wrong = np.nonzero(idx != np.arange(n))[0]
            if wrong.size:
                r = int(wrong[0])
                raise DatasetError(
                    f"{root}/data: row {r} has index {int(idx[r])}; rows must be in global index order"
                )
        if "episode_index" in self._table.columns:
            expected = np.asarray([e.index for e in self.meta.episodes], dtype=np.int64)[self._episode_of_row]
            wrong = np.nonzero(self._table.columns["episode_index"] != expected)[0]
            if wrong.size:
                r = int(wrong[0])
                raise DatasetError(
                    f"{root}/data: row {r} belongs to episode {int(self._table.columns['episode_index'][r])} "
                    f"but the episode metadata puts it in episode {int(expected[r])}"
                )
        if "task_index" in self._table.columns:
            task_index = self._table.columns["task_index"]
            wrong = np.nonzero((task_index < 0) | (task_index >= len(self.meta.tasks)))[0]
            if wrong.size:
                r = int(wrong[0])
                raise DatasetError(
                    f"{root}/data: row {r} has task_index {int(task_index[r])} but meta/tasks holds "
                    f"{len(self.meta.tasks)} tasks"
                )

    # -- metadata ---------------------------------------------------------------------------------

    @property
    def root(self) -> Path:
        return self.meta.root

    @property
    def fps(self) -> int | float:
        return self.meta.fps

    @property
    def features(self) -> dict[str, Feature]:
        return dict(self.meta.features)

    @property
    def robot_type(self) -> str | None:
        return self.meta.robot_type

    @property
    def codebase_version(self) -> str:
        return self.meta.version

    @property
    def info(self) -> dict[str, Any]:
        return self.meta.info

    @property
    def tasks(self) -> list[str]:
        return list(self.meta.tasks)

    @property
    def stats(self) -> dict[str, Stats] | None:
        return self.meta.stats

    @property
    def episodes(self) -> list[Episode]:
        return list(self.meta.episodes)

    @property
    def num_episodes(self) -> int:
        return len(self.meta.episodes)

    @property
    def num_frames(self) -> int:
        return self.meta.total_frames

    @property
    def video_keys(self) -> list[str]:
        return self.meta.video_keys

    @property
    def image_keys(self) -> list[str]:
        return self.meta.image_keys

    @property
    def camera_keys(self) -> list[str]:
        return [k for k, f in self.meta.features.items() if f.is_visual]

    def episode(self, episode_index: int) -> Episode:
        try:
            return self.meta.episodes[self._ep_pos[int(episode_index)]]
        except KeyError:
            raise DatasetError(f"{self.root}: no episode {episode_index}") from None

    def episode_stats(self, episode_index: int) -> dict[str, Stats] | None:
        """Per-episode stats (v3.0 meta/episodes `stats/*`, v2.1 episodes_stats.jsonl), if stored."""
        if self.meta.episode_stats is None:
            return None
        return self.meta.episode_stats[self._ep_pos[int(episode_index)]]

    def column(self, key: str) -> np.ndarray:
        """The whole low-dimensional column (N,) or (N, *shape), no copy; don't modify it."""
        return self._table.column(key)

    def episode_columns(self, episode_index: int, keys: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """Low-dimensional columns of one episode (views into the loaded table)."""
        ep = self.episode(episode_index)
        keys = list(keys) if keys is not None else self._table.lowdim_keys
        return {k: self._table.column(k)[ep.dataset_from_index : ep.dataset_to_index] for k in keys}

    # -- random access ----------------------------------------------------------------------------

    def __len__(self) -> int:
        return self.meta.total_frames

    def _video_times(self, ep: Episode, key: str, rows: Sequence[int]) -> list[float]:
        """File-clock times of the given rows' frames: from_timestamp + the frame's episode time.

        The stored float32 timestamp is replaced by frame_index/fps when they agree within the
        tolerance, so the target pts is exact even for long episodes.
        """
        ts = self._table.columns.get("timestamp")
        fi = self._table.columns.get("frame_index")
        base = ep.videos[key].from_timestamp
        out = []
        for r in rows:
            t = float(ts[r]) if ts is not None else float(r - ep.dataset_from_index) / self.fps
            if fi is not None:
                exact = float(fi[r]) / self.fps
                if abs(exact - t) <= self.tolerance_s:
                    t = exact
            out.append(base + t)
        return out

    def _frames(self, ep: Episode, key: str, rows: Sequence[int]) -> list[np.ndarray]:
        if self.meta.features[key].is_video:
            vf = self._pool.get(ep.videos[key].path, self.meta.features[key].hwc_shape[:2])
            return vf.frames_at(self._video_times(ep, key, rows), self.tolerance_s)
        return self._table.images(key, rows)

    def __getitem__(self, idx: int) -> dict[str, Any]:
        n = len(self)
        if not isinstance(idx, int | np.integer):
            raise TypeError(f"dataset indices must be integers, got {type(idx).__name__}")
        idx = int(idx)
        if idx < 0:
            idx += n
        if not 0 <= idx < n:
            raise IndexError(f"index {idx} out of range for a dataset of {n} frames")
        ep = self.meta.episodes[int(self._episode_of_row[idx])]
        lo, hi = ep.dataset_from_index, ep.dataset_to_index
        item: dict[str, Any] = {}
        queries: dict[str, np.ndarray] = {}
        if self.delta_indices:
            for key, deltas in self.delta_indices.items():
                raw = idx + np.asarray(deltas, dtype=np.int64)
                queries[key] = np.clip(raw, lo, hi - 1)
                item[f"{key}_is_pad"] = (raw < lo) | (raw >= hi)
        for key in self._table.lowdim_keys:
            col = self._table.columns[key]
            item[key] = col[queries[key]] if key in queries else np.array(col[idx])
        for key in self.camera_keys:
            rows = queries[key].tolist() if key in queries else [idx]
            frames = self._frames(ep, key, rows)
            item[key] = np.stack(frames) if key in queries else frames[0]
        item["task"] = self._task_of_row(idx)
        return item

    def _task_of_row(self, row: int) -> str:
        """The row's task (task_index is checked against meta/tasks when the dataset opens); a dataset
        without a task_index column has its first task everywhere, or none."""
        task_col = self._table.columns.get("task_index")
        if task_col is not None:
            return self.meta.tasks[int(task_col[row])]
        return self.meta.tasks[0] if self.meta.tasks else ""

    # -- sequential access ------------------------------------------------------------------------

    def iter_camera(self, episode_index: int, key: str, *, decoder_threads: int = 0) -> Iterator[np.ndarray]:
        """Every frame of one camera for one episode, in order (HWC uint8), decoded front to back once."""
        ep = self.episode(episode_index)
        feat = self.meta.features.get(key)
        if feat is None or not feat.is_visual:
            raise DatasetError(f"{key!r} is not a camera feature (cameras: {self.camera_keys})")
        if not feat.is_video:
            for start in range(ep.dataset_from_index, ep.dataset_to_index, 64):
                yield from self._table.images(key, range(start, min(start + 64, ep.dataset_to_index)))
            return
        rows = range(ep.dataset_from_index, ep.dataset_to_index)
        times = self._video_times(ep, key, rows)
        vf = VideoFile(ep.videos[key].path, size=feat.hwc_shape[:2], threads=decoder_threads, cache_frames=8)
        try:
            regular = all(abs(t - (times[0] + k / self.fps)) <= self.tolerance_s for k, t in enumerate(times))
            if regular:
                yield from vf.iter_frames(times[0], len(times), self.fps, self.tolerance_s)
            else:
                for t in times:
                    yield vf.frames_at([t], self.tolerance_s)[0]
        finally:
            vf.close()

    def iter_episode(
        self, episode_index: int, keys: Sequence[str] | None = None, *, decoder_threads: int = 0
    ) -> Iterator[dict[str, Any]]:
        """Frame dicts of one episode in order (like `ds[i]` without deltas), each camera decoded once."""
        ep = self.episode(episode_index)
        keys = list(keys) if keys is not None else list(self.meta.features)
        unknown = [k for k in keys if k not in self.meta.features]
        if unknown:
            raise DatasetError(f"unknown feature(s) {unknown}; features: {list(self.meta.features)}")
        lowdim = [k for k in keys if k in self._table.columns]
        cams = {
            k: self.iter_camera(episode_index, k, decoder_threads=decoder_threads)
            for k in keys
            if k in self.camera_keys
        }
        cols = {k: self._table.columns[k] for k in lowdim}
        try:
            for r in range(ep.dataset_from_index, ep.dataset_to_index):
                item: dict[str, Any] = {k: c[r] for k, c in cols.items()}
                for k, it in cams.items():
                    item[k] = next(it)
                item["task"] = self._task_of_row(r)
                yield item
        finally:
            for it in cams.values():
                it.close()

    # -- lifetime ---------------------------------------------------------------------------------

    def close(self) -> None:
        self._pool.close()

    def __enter__(self) -> Dataset:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"Dataset({str(self.root)!r}, {self.meta.version}, {self.num_episodes} episodes, "
            f"{self.num_frames} frames, {self.fps} fps, features={list(self.meta.features)})"
        )


def open_dataset(
    source: str | os.PathLike[str],
    *,
    revision: str | None = None,
    delta_timestamps: Mapping[str, Sequence[float]] | None = None,
    tolerance_s: float = DEFAULT_TOLERANCE_S,
    max_open_videos: int = 16,
    decoder_threads: int = 1,
) -> Dataset:
    """Open a dataset from a local folder, or a Hugging Face Hub dataset id (downloaded when online)."""
    root = resolve_dataset(source, revision=revision)
    return Dataset(
        load_meta(root),
        delta_timestamps=delta_timestamps,
        tolerance_s=tolerance_s,
        max_open_videos=max_open_videos,
        decoder_threads=decoder_threads,
    )

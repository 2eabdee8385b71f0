"""Recording LeRobot v3.0 datasets: create/resume, add frames, save or discard episodes, finalize.

The files are those LeRobot 0.4.4 writes (layout, column types, info.json key order, stats with
quantiles, tasks.parquet, meta/episodes rows with per-episode stats), with three differences in how
they get there:

- Video is encoded while the episode is recorded, one encoder thread per camera, with back-pressure
  instead of dropped frames. `save_episode` re-encodes nothing: each camera's episode mp4 is renamed
  into `videos/` as a file of its own, and a background packer later joins it onto the camera's
  current file by stream copy (LeRobot's layout: episodes back to back, a new file past
  `video_files_size_in_mb`). Saving therefore costs the same for the 1st and the 1000th episode.
- Every visible file is replaced atomically (temp file + rename), data first and meta/info.json
  last. info.json is the commit point: whatever was written for an episode whose info.json update
  never happened only adds rows/files beyond info.json's totals, which LeRobot's loader ignores and
  `recover` removes. A SIGKILL at any instant leaves every saved episode loadable by LeRobot 0.4.x
  and by jrobot; the interrupted episode is discarded by the next `resume`.
- Image statistics come from pixel counts gathered on the encoder threads (see `stats`), so saving
  decodes nothing, and the image std is correct.

Typical use::

    with DatasetWriter.create(root, fps=30, features=feats, robot_type="so_follower") as w:
        for _ in range(n_episodes):
            for frame in frames():
                w.add_frame(frame, task="pick the cube")
            w.save_episode()
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import importlib
import logging
import shutil
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from jrobot.data.errors import DatasetError
from jrobot.data.format.arrow_schema import column_array, data_schema, parquet_columns
from jrobot.data.format.images import encode_png
from jrobot.data.format.info import info_features, new_info, user_features, validate_feature_specs
from jrobot.data.format.layout import (
    DEFAULT_CHUNK_SIZE,
    DEFAULT_DATA_FILE_SIZE_IN_MB,
    DEFAULT_VIDEO_FILE_SIZE_IN_MB,
    INFO_PATH,
    WORK_DIR,
    data_path,
    episodes_path,
    next_chunk_file,
    video_path,
)
from jrobot.data.format.meta_io import episode_row, rows_table
from jrobot.data.format.parquet_io import compatible, existing_row_groups, file_size_mb, write_tables
from jrobot.data.format.stats import (
    Stats,
    aggregate_stats,
    frame_channel_counts,
    image_stats_from_counts,
    numeric_stats,
    sample_indices,
)
from jrobot.data.video.encode import (
    CameraEncoder,
    VideoOptions,
    probe_video_info,
    video_duration_s,
)
from jrobot.data.write.commit import commit_meta
from jrobot.data.write.frames import normalize_frame
from jrobot.data.write.fsio import WorkDir
from jrobot.data.write.packer import VideoPacker, video_file_of
from jrobot.data.write.recovery import Committed, recover
from jrobot.features import DEFAULT_FEATURE_NAMES, Feature

log = logging.getLogger(__name__)

TIMESTAMP_TOLERANCE_S = 1e-4


def _as_features(features: Mapping[str, Feature | Mapping[str, Any]]) -> dict[str, Feature]:
    out: dict[str, Feature] = {}
    for k, f in features.items():
        feat = f if isinstance(f, Feature) else Feature.from_json(f, key=k)
        if k in DEFAULT_FEATURE_NAMES:
            continue  # LeRobot re-adds the bookkeeping columns itself; accept a dataset's full feature dict
        out[k] = feat
    return out


def _first_file_outside_work_dir(root: Path) -> Path | None:
    """A file that `create` would bury, if any.

    Empty folders do not count: a `create` killed between making `meta/` and renaming info.json into
    it leaves just that, and the next `create` must not refuse a folder that holds nothing.
    """
    for path in sorted(root.rglob("*")):
        if path.relative_to(root).parts[0] != WORK_DIR and not path.is_dir():
            return path
    return None


def _warm_up_imports() -> None:
    with contextlib.suppress(ImportError):
        importlib.import_module("pandas")


class _GrowingArray:
    """Rows appended one at a time into a preallocated array (doubling), so save needs no np.stack."""

    def __init__(self, row_shape: tuple[int, ...], dtype: np.dtype) -> None:
        self._data = np.empty((64, *row_shape), dtype=dtype)
        self._n = 0

    def append(self, row: np.ndarray) -> None:
        if self._n == len(self._data):
            self._data = np.concatenate([self._data, np.empty_like(self._data)])
        self._data[self._n] = row
        self._n += 1

    def array(self) -> np.ndarray:
        return self._data[: self._n]


class _Episode:
    """The episode being recorded: low-dim values in RAM, video in encoder threads, PNGs on disk."""

    def __init__(self) -> None:
        self.size = 0
        self.tasks: list[str] = []
        self.values: dict[str, Any] = {}  # key -> _GrowingArray (numeric) or list (string)
        self.encoders: dict[str, CameraEncoder] = {}
        self.png_futures: dict[str, list[concurrent.futures.Future]] = collections.defaultdict(list)


class DatasetWriter:
    """Writes one LeRobot v3.0 dataset folder; see the module docstring. Not thread-safe for callers."""

    def __init__(
        self,
        root: Path,
        work: WorkDir,
        committed: Committed,
        *,
        video_options: VideoOptions,
        encoder_queue_size: int,
        pack_videos: bool,
        image_writer_threads: int,
    ) -> None:
        self.root = root
        self._work = work
        self._info = committed.info
        self._features = info_features(self._info)
        self._user = user_features(self._features)
        self.fps = int(self._info["fps"])
        self._video_keys = [k for k, f in self._features.items() if f.is_video]
        self._image_keys = [k for k, f in self._features.items() if f.dtype == "image"]
        self._video_options = video_options
        self._queue_size = encoder_queue_size
        self._tasks = list(committed.tasks)
        self._task_index = {t: i for i, t in enumerate(self._tasks)}
        self._rows = committed.rows
        self._ep_schema = dict(committed.episode_file_schema)
        self._data_files = list(committed.data_files)
        self._stats = committed.stats
        self.recovery_actions: list[str] = list(committed.actions)  # what resume() had to undo
        self._lock = threading.RLock()
        self._episode = _Episode()
        self._closed = False
        self._png_pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._png_slots = threading.Semaphore(max(1, image_writer_threads) * 4)
        self._png_threads = max(1, image_writer_threads)
        self._packer = VideoPacker(
            root=root,
            work=work,
            lock=self._lock,
            rows=lambda: self._rows,
            update_rows=self._update_rows,
            video_keys=self._video_keys,
            fps=self.fps,
            file_limit_mb=float(self._info["video_files_size_in_mb"]),
            enabled=pack_videos,
        )
        # pyarrow imports pandas on its first numpy conversion (~1 s): do that now, off the
        # recording thread, rather than inside the first save_episode.
        threading.Thread(target=_warm_up_imports, name="jrobot-import-warmup", daemon=True).start()

    # -- construction -----------------------------------------------------------------------------

    @classmethod
    def create(
        cls,
        root: str | Path,
        *,
        fps: int,
        features: Mapping[str, Feature | Mapping[str, Any]],
        robot_type: str | None = None,
        video_options: VideoOptions | None = None,
        chunks_size: int = DEFAULT_CHUNK_SIZE,
        data_files_size_in_mb: int = DEFAULT_DATA_FILE_SIZE_IN_MB,
        video_files_size_in_mb: int = DEFAULT_VIDEO_FILE_SIZE_IN_MB,
        encoder_queue_size: int = 30,
        pack_videos: bool = True,
        image_writer_threads: int = 4,
        durable: bool = True,
    ) -> DatasetWriter:
        """Start a new dataset in `root` (which must not exist or be empty).

        `features` are the recorded features (e.g. from `jrobot.features.dataset_features_for_robot`);
        the five bookkeeping columns are added. `durable=False` skips fsync (still SIGKILL-safe).
        """
        root = Path(root)
        if not isinstance(fps, int) or isinstance(fps, bool) or fps <= 0:
            raise DatasetError(f"fps must be a positive int, got {fps!r}")
        for name, v in (
            ("chunks_size", chunks_size),
            ("data_files_size_in_mb", data_files_size_in_mb),
            ("video_files_size_in_mb", video_files_size_in_mb),
        ):
            if v <= 0:
                raise DatasetError(f"{name} must be positive, got {v}")
        feats = _as_features(features)
        validate_feature_specs(feats)
        if root.exists() and (found := _first_file_outside_work_dir(root)) is not None:
            raise DatasetError(
                f"{root}: already exists and is not empty ({found.relative_to(root)}; "
                "use DatasetWriter.resume to append)"
            )
        root.mkdir(parents=True, exist_ok=True)
        info = new_info(
            fps=fps,
            features=feats,
            robot_type=robot_type,
            chunks_size=chunks_size,
            data_files_size_in_mb=data_files_size_in_mb,
            video_files_size_in_mb=video_files_size_in_mb,
        )
        work = WorkDir(root, durable=durable)
        try:
            work.write_json(root / INFO_PATH, info)
        except BaseException:
            work.close()
            raise
        committed = Committed(info, [], [], {}, [], None, [])
        return cls(
            root,
            work,
            committed,
            video_options=video_options or VideoOptions(),
            encoder_queue_size=encoder_queue_size,
            pack_videos=pack_videos,
            image_writer_threads=image_writer_threads,
        )

    @classmethod
    def resume(
        cls,
        root: str | Path,
        *,
        fps: int | None = None,
        features: Mapping[str, Feature | Mapping[str, Any]] | None = None,
        robot_type: str | None = None,
        video_options: VideoOptions | None = None,
        encoder_queue_size: int = 30,
        pack_videos: bool = True,
        image_writer_threads: int = 4,
        durable: bool = True,
    ) -> DatasetWriter:
        """Reopen a v3.0 dataset to append episodes, first discarding what an interrupted writer left.

        When `fps`/`features`/`robot_type` are given they must match the dataset (LeRobot's
        `sanity_check_dataset_robot_compatibility`, ignoring each feature's video `info`).
        """
        root = Path(root)
        if not (root / INFO_PATH).is_file():
            raise DatasetError(f"{root}: not a LeRobot dataset (missing {INFO_PATH})")
        work = WorkDir(root, durable=durable)
        try:
            committed = recover(root, work)
            existing = info_features(committed.info)
            if fps is not None and int(committed.info["fps"]) != fps:
                raise DatasetError(f"{root}: recorded at {committed.info['fps']} fps, not {fps}")
            if robot_type is not None and committed.info.get("robot_type") != robot_type:
                raise DatasetError(
                    f"{root}: robot_type is {committed.info.get('robot_type')!r}, not {robot_type!r}"
                )
            if features is not None:
                want = _as_features(features)
                have = user_features(existing)
                diffs = [
                    k
                    for k in set(want) | set(have)
                    if k not in want
                    or k not in have
                    or (want[k].dtype, tuple(want[k].shape), want[k].names)
                    != (have[k].dtype, tuple(have[k].shape), have[k].names)
                ]
                if diffs:
                    raise DatasetError(f"{root}: features differ from the dataset's for {sorted(diffs)}")
        except BaseException:
            work.close()
            raise
        return cls(
            root,
            work,
            committed,
            video_options=video_options or VideoOptions(),
            encoder_queue_size=encoder_queue_size,
            pack_videos=pack_videos,
            image_writer_threads=image_writer_threads,
        )

    # -- public state -----------------------------------------------------------------------------

    @property
    def features(self) -> dict[str, Feature]:
        """All features, the bookkeeping columns included, in info.json order."""
        return dict(self._features)

    @property
    def num_episodes(self) -> int:
        return len(self._rows)

    @property
    def num_frames(self) -> int:
        return int(self._info["total_frames"])

    @property
    def tasks(self) -> list[str]:
        return list(self._tasks)

    @property
    def episode_length(self) -> int:
        """Frames in the episode being recorded."""
        return self._episode.size

    @property
    def info(self) -> dict[str, Any]:
        return dict(self._info)

    def wait_for_packing(self) -> None:
        """Block until every saved episode's video has been joined onto its camera's file."""
        self._packer.wait()

    def encoder_backlog(self) -> int:
        """Frames waiting in the busiest camera's encoder queue (0 when encoding keeps up)."""
        return max((enc.pending() for enc in self._episode.encoders.values()), default=0)

    # -- recording --------------------------------------------------------------------------------

    def add_frame(self, frame: Mapping[str, Any], task: str | None = None) -> None:
        """Append one frame to the current episode.

        `frame` maps every recorded feature to its value (numpy arrays of the feature's dtype/shape,
        images HWC or CHW, uint8 or float in [0, 1]); the task is `task` or `frame["task"]`. An
        optional `frame["timestamp"]` must equal frame_index / fps. Video frames go to the encoder
        threads; when they fall behind this call blocks rather than dropping frames.
        """
        self._check_open()
        task = task if task is not None else frame.get("task") if isinstance(frame, Mapping) else None
        if not isinstance(task, str) or not task:
            raise DatasetError(
                f"add_frame needs a non-empty task string (argument or frame['task']), got {task!r}"
            )
        values = normalize_frame(frame, self._user)
        ep = self._episode
        if "timestamp" in frame:
            ts = float(np.asarray(frame["timestamp"]).reshape(-1)[0])
            if abs(ts - ep.size / self.fps) > TIMESTAMP_TOLERANCE_S:
                raise DatasetError(
                    f"frame timestamp {ts} is not frame_index/fps = {ep.size}/{self.fps} = {ep.size / self.fps:.6f} "
                    f"(timestamps must be multiples of 1/fps; the video stores frame i at i/fps)"
                )
        self._raise_png_errors()
        if ep.size == 0:
            self._start_encoders()
        for key in self._video_keys:
            ep.encoders[key].put(values[key])
        for key in self._image_keys:
            self._submit_png(key, ep.size, values[key])
        for key, value in values.items():
            feat = self._features[key]
            if feat.is_visual:
                continue
            if key not in ep.values:
                ep.values[key] = (
                    [] if feat.dtype == "string" else _GrowingArray(tuple(feat.shape), value.dtype)
                )
            ep.values[key].append(value)
        ep.tasks.append(task)
        ep.size += 1

    def discard_episode(self) -> None:
        """Drop the episode being recorded (encoders stopped, its temporary files removed)."""
        ep = self._episode
        for enc in ep.encoders.values():
            enc.cancel()
        for futures in ep.png_futures.values():
            for f in futures:
                f.cancel()
            concurrent.futures.wait(futures)
        shutil.rmtree(self._work.staging, ignore_errors=True)
        self._work.staging.mkdir(exist_ok=True)
        self._episode = _Episode()

    def save_episode(self) -> int:
        """Commit the current episode; returns its episode_index.

        Nothing is re-encoded: encoders are flushed, the episode's mp4s are renamed into `videos/`,
        its rows appended to the current data file, then meta/episodes, tasks, stats and finally
        info.json are replaced. If any step fails the dataset is rolled back to its previous
        episodes, the episode is discarded and the error re-raised.
        """
        self._check_open()
        ep = self._episode
        if ep.size == 0:
            raise DatasetError("save_episode: no frames were added to this episode")
        self._packer.raise_error()
        n = ep.size
        try:
            for enc in ep.encoders.values():  # cameras flush in the background while we prepare
                enc.request_finish()
            prepared = self._prepare_episode(ep)
            encoded = self._finish_encoders()
            image_counts, image_bytes = self._finish_pngs(n)
        except BaseException:
            self.discard_episode()
            raise
        try:
            with self._lock:
                index = self._commit_episode(ep, prepared, encoded, image_counts, image_bytes)
        except BaseException as e:
            log.error("save_episode failed (%r); rolling the dataset back to %d episodes", e, len(self._rows))
            self._episode = _Episode()
            with self._lock:
                self._rollback()
            raise
        self._episode = _Episode()
        shutil.rmtree(self._work.staging, ignore_errors=True)
        self._work.staging.mkdir(exist_ok=True)
        if self._video_keys:
            self._packer.wake()
        return index

    def finalize(self) -> None:
        """Wait for the video packer, release the folder. An unsaved episode is discarded."""
        if self._closed:
            return
        try:
            if self._episode.size:
                log.warning("finalize: discarding an unsaved episode of %d frames", self._episode.size)
            self.discard_episode()
            self._packer.stop()
        finally:
            if self._png_pool is not None:
                self._png_pool.shutdown(wait=True)
            self._closed = True
            self._work.close()
        self._packer.raise_error()

    close = finalize

    def __enter__(self) -> DatasetWriter:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc is not None and self._episode.size:
            self.discard_episode()
        self.finalize()

    # -- internals: recording ----------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise DatasetError(f"{self.root}: the writer is closed")

    def _start_encoders(self) -> None:
        ep = self._episode
        index = len(self._rows)
        for key in self._video_keys:
            h, w, _ = self._features[key].hwc_shape
            ep.encoders[key] = CameraEncoder(
                self._work.staging / f"{key}-episode-{index:06d}.mp4",
                key=key,
                height=h,
                width=w,
                fps=self.fps,
                options=self._video_options,
                queue_size=self._queue_size,
                durable=self._work.durable,
            )

    def _finish_encoders(self) -> dict[str, Any]:
        ep = self._episode
        for enc in ep.encoders.values():  # flush all cameras concurrently
            enc.request_finish()
        out = {key: enc.finish() for key, enc in ep.encoders.items()}
        for key, res in out.items():
            if res.num_frames != ep.size:
                raise DatasetError(
                    f"video encoder for {key!r} wrote {res.num_frames} frames, expected {ep.size}"
                )
        return out

    def _submit_png(self, key: str, frame_index: int, img: np.ndarray) -> None:
        if self._png_pool is None:
            self._png_pool = concurrent.futures.ThreadPoolExecutor(
                self._png_threads, thread_name_prefix="jrobot-png"
            )
        path = self._work.staging / key / f"frame-{frame_index:06d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        self._png_slots.acquire()  # back-pressure: at most 4 frames per thread in flight

        def job() -> np.ndarray:
            try:
                path.write_bytes(encode_png(img))
                return frame_channel_counts(img)
            finally:
                self._png_slots.release()

        self._episode.png_futures[key].append(self._png_pool.submit(job))

    def _raise_png_errors(self) -> None:
        for futures in self._episode.png_futures.values():
            for f in futures[-8:]:
                if f.done() and f.exception() is not None:
                    raise DatasetError(f"writing an image failed: {f.exception()!r}") from f.exception()

    def _finish_pngs(self, n: int) -> tuple[dict[str, list[np.ndarray]], dict[str, list[dict[str, Any]]]]:
        counts: dict[str, list[np.ndarray]] = {}
        blobs: dict[str, list[dict[str, Any]]] = {}
        for key in self._image_keys:
            futures = self._episode.png_futures[key]
            counts[key] = [f.result() for f in futures]
            blobs[key] = [
                {
                    "bytes": (self._work.staging / key / f"frame-{i:06d}.png").read_bytes(),
                    "path": f"frame-{i:06d}.png",
                }
                for i in range(n)
            ]
        return counts, blobs

    # -- internals: commit -------------------------------------------------------------------------

    def _prepare_episode(self, ep: _Episode) -> dict[str, Any]:
        """Columns (all but `image` ones) and numeric stats, computed while the encoders flush."""
        index = len(self._rows)
        start = int(self._info["total_frames"])
        n = ep.size
        new_tasks = [t for t in dict.fromkeys(ep.tasks) if t not in self._task_index]
        task_index = {**self._task_index, **{t: len(self._tasks) + k for k, t in enumerate(new_tasks)}}
        cols: dict[str, Any] = {}
        for key in parquet_columns(self._features):
            feat = self._features[key]
            if key == "timestamp":
                cols[key] = np.arange(n, dtype=np.int64) / self.fps  # float64, as LeRobot computes stats
            elif key == "frame_index":
                cols[key] = np.arange(n, dtype=np.int64)
            elif key == "episode_index":
                cols[key] = np.full(n, index, dtype=np.int64)
            elif key == "index":
                cols[key] = np.arange(start, start + n, dtype=np.int64)
            elif key == "task_index":
                cols[key] = np.asarray([task_index[t] for t in ep.tasks], dtype=np.int64)
            elif feat.dtype == "string":
                cols[key] = list(ep.values[key])
            elif feat.dtype != "image":
                cols[key] = ep.values[key].array()
        stats = {
            key: numeric_stats(cols[key])
            for key, feat in self._features.items()
            if not feat.is_visual and feat.dtype != "string"
        }
        return {"index": index, "start": start, "new_tasks": new_tasks, "cols": cols, "stats": stats}

    def _image_stats(
        self, encoded: dict[str, Any], image_counts: dict[str, list[np.ndarray]]
    ) -> dict[str, Stats]:
        stats: dict[str, Stats] = {}
        for key, feat in self._features.items():
            if feat.is_visual:
                per_frame = encoded[key].channel_counts if feat.is_video else image_counts[key]
                chosen = sample_indices(len(per_frame))
                stats[key] = image_stats_from_counts(
                    np.sum([per_frame[i] for i in chosen], axis=0, dtype=np.int64), len(chosen)
                )
        return stats

    def _commit_episode(
        self,
        ep: _Episode,
        prepared: dict[str, Any],
        encoded: dict[str, Any],
        image_counts: dict[str, list],
        image_bytes: dict[str, list],
    ) -> int:
        index, start, new_tasks = prepared["index"], prepared["start"], prepared["new_tasks"]
        n = ep.size
        for t in new_tasks:
            self._task_index[t] = len(self._tasks)
            self._tasks.append(t)
        cols = {**prepared["cols"], **image_bytes}
        stats_all = {**prepared["stats"], **self._image_stats(encoded, image_counts)}
        ep_stats = {k: stats_all[k] for k in self._features if k in stats_all}  # LeRobot's order
        info = {**self._info, "features": {k: dict(v) for k, v in self._info["features"].items()}}

        # 1. videos: each camera's episode file is moved in as a file of its own
        videos: dict[str, dict[str, Any]] = {}
        for key in self._video_keys:
            res = encoded[key]
            if "info" not in info["features"][key]:
                info["features"][key]["info"] = probe_video_info(res.path)
            duration = video_duration_s(res.path)
            if abs(duration - n / self.fps) > 0.5 / self.fps:
                raise DatasetError(
                    f"{res.path}: encoded {duration:.4f} s of video for {n} frames at {self.fps} fps"
                )
            cf = self._free_video_file(key)
            self._work.replace(res.path, video_path(self.root, key, *cf))
            videos[key] = {
                "chunk_index": cf[0],
                "file_index": cf[1],
                "from_timestamp": 0.0,
                "to_timestamp": duration,
            }

        # 2. data rows
        data_cf = self._append_data(cols, n)

        # 3. meta/episodes row
        tasks_of_episode = list(dict.fromkeys(ep.tasks))
        row = self._append_episode_row(
            index=index,
            tasks=tasks_of_episode,
            length=n,
            data_cf=data_cf,
            start=start,
            videos=videos,
            stats=ep_stats,
        )

        # 4. tasks, stats, then info.json (the commit point)
        stats = aggregate_stats([self._stats, ep_stats]) if self._stats is not None else ep_stats
        info = commit_meta(
            self._work,
            self.root,
            info,
            num_episodes=index + 1,
            num_frames=start + n,
            tasks=self._tasks,
            stats=stats,
            tasks_changed=bool(new_tasks),
        )

        # committed: update memory
        self._info = info
        self._features = info_features(info)
        self._rows.append(row)
        self._stats = stats
        self._packer.episode_saved(index, {k: (v["chunk_index"], v["file_index"]) for k, v in videos.items()})
        return index

    def _rollback(self) -> None:
        """Restore memory and disk to the last committed episode after a failed save."""
        committed = recover(self.root, self._work)
        self._info = committed.info
        self._features = info_features(self._info)
        self._tasks = list(committed.tasks)
        self._task_index = {t: i for i, t in enumerate(self._tasks)}
        self._rows = committed.rows
        self._ep_schema = dict(committed.episode_file_schema)
        self._data_files = list(committed.data_files)
        self._stats = committed.stats
        shutil.rmtree(self._work.staging, ignore_errors=True)
        self._work.staging.mkdir(exist_ok=True)

    def _append_data(self, cols: dict[str, Any], n: int) -> tuple[int, int]:
        schema = data_schema(self._features)
        table = pa.Table.from_arrays(
            [column_array(self._features[k], cols[k]) for k in schema.names], schema=schema
        )
        limit = float(self._info["data_files_size_in_mb"])
        chunks_size = int(self._info["chunks_size"])
        if self._data_files:
            cf, rows = self._data_files[-1]
            path = data_path(self.root, *cf)
            size = file_size_mb(path)
            avg = size / rows if rows else 0.0
            old_schema, groups = existing_row_groups(path)
            if size + avg * n < limit and compatible(table, old_schema):
                self._work.write_with(
                    path, ".parquet", lambda tmp: write_tables(tmp, old_schema, [*groups, table])
                )
                self._data_files[-1] = (cf, rows + n)
                return cf
            cf = next_chunk_file(*cf, chunks_size)
        else:
            cf = (0, 0)
        self._work.write_with(
            data_path(self.root, *cf), ".parquet", lambda tmp: write_tables(tmp, schema, [table])
        )
        self._data_files.append((cf, n))
        return cf

    def _rows_in_meta_file(self, cf: tuple[int, int]) -> list[dict[str, Any]]:
        return [
            r for r in self._rows if (r["meta/episodes/chunk_index"], r["meta/episodes/file_index"]) == cf
        ]

    def _write_meta_file(self, cf: tuple[int, int], rows: list[dict[str, Any]]) -> None:
        schema = self._ep_schema.get(cf)
        table = rows_table(rows, schema)
        self._work.write_with(
            episodes_path(self.root, *cf), ".parquet", lambda tmp: write_tables(tmp, table.schema, [table])
        )
        self._ep_schema[cf] = table.schema

    def _append_episode_row(
        self,
        *,
        index: int,
        tasks: list[str],
        length: int,
        data_cf: tuple[int, int],
        start: int,
        videos: dict[str, dict[str, Any]],
        stats: dict[str, Stats],
    ) -> dict[str, Any]:
        limit = float(self._info["data_files_size_in_mb"])
        chunks_size = int(self._info["chunks_size"])
        cf = (0, 0)
        if self._rows:
            last = self._rows[-1]
            cf = (int(last["meta/episodes/chunk_index"]), int(last["meta/episodes/file_index"]))
        row = episode_row(
            episode_index=index,
            tasks=tasks,
            length=length,
            data_file=data_cf,
            dataset_from_index=start,
            videos=videos,
            stats=stats,
            meta_file=cf,
        )
        if self._rows:
            path = episodes_path(self.root, *cf)
            in_file = self._rows_in_meta_file(cf)
            size = file_size_mb(path)
            schema = self._ep_schema.get(cf)
            fits = schema is not None and list(row) == schema.names and compatible(rows_table([row]), schema)
            if fits and size + size / max(1, len(in_file)) < limit:
                self._write_meta_file(cf, [*in_file, row])
                return row
            cf = next_chunk_file(*cf, chunks_size)
            row["meta/episodes/chunk_index"], row["meta/episodes/file_index"] = cf
        self._ep_schema.pop(cf, None)
        self._write_meta_file(cf, [row])
        return row

    # -- internals: video files -------------------------------------------------------------------

    def _free_video_file(self, key: str) -> tuple[int, int]:
        """The next unused (chunk, file) for a camera's new single-episode file."""
        used = {video_file_of(r, key) for r in self._rows}
        chunks_size = int(self._info["chunks_size"])
        cf = next_chunk_file(*max(used), chunks_size) if used else (0, 0)
        while video_path(self.root, key, *cf).exists() or cf in used:
            cf = next_chunk_file(*cf, chunks_size)
        return cf

    def _update_rows(self, updates: dict[int, dict[str, Any]]) -> None:
        """Replace episode rows (index -> row) and rewrite each meta/episodes file they are in once
        (the packer calls this)."""
        files = {
            (int(r["meta/episodes/chunk_index"]), int(r["meta/episodes/file_index"]))
            for r in updates.values()
        }
        for meta_cf in sorted(files):
            rows = [updates.get(r["episode_index"], r) for r in self._rows_in_meta_file(meta_cf)]
            self._write_meta_file(meta_cf, rows)
        for k, row in updates.items():
            self._rows[k] = row

"""Write a new LeRobot v3.0 dataset from a list of episodes taken from one or more existing datasets.

This is the one engine behind conversion (all episodes of a v2.0/v2.1/v3.0 dataset), deleting and
splitting (a subset), merging (episodes of several datasets) and removing or renaming features (a
different feature map). The output keeps LeRobot's invariants by construction:

- rows are renumbered: `index` is the global row, `episode_index` the output position, each episode
  contiguous, `dataset_from/to_index` running counts, `data/chunk_index/file_index` the file that
  really holds the rows (not LeRobot 0.4.4's converter off-by-one);
- tasks are re-indexed in first-seen order over the output episodes;
- video is stream-copied episode by episode (`rewrite_video`): bit-exact frames, no re-encode.
  Only an episode whose range does not start on a keyframe (a file encoded in one piece) is
  decoded and re-encoded (LeRobot's defaults for the source's codec), and the report says which.
  An output mp4 only ever holds segments with identical stream parameters; a change (another
  encoder, a re-encoded episode) starts a new file. `from/to_timestamp` come from where each
  segment landed, so frame j of an episode is exactly at from_timestamp + j/fps;
- per-episode stats: numeric features are recomputed from the rows (cheap, and they gain the
  quantiles LeRobot 0.4+ writes); image stats are reused from the source when they are
  trustworthy and otherwise recomputed by decoding LeRobot's sampled frames: never trusted are a
  missing entry, a pixel-level `count` (LeRobot's streaming encoder), and the uint8-overflowed std
  of LeRobot 0.4.0–0.5.1 (`rewrite_stats`, `stats_check`). stats.json is the aggregate of the per-episode stats
  (LeRobot's `aggregate_stats`);
- legacy feature variants are normalised: `names: {"motors": [...]}` becomes the list, camera
  shapes become (H, W, 3) with names height/width/channels, `video_info` becomes `info` (probed from
  the written file), a float fps such as 30.0 becomes 30.

The dataset is built in a hidden folder next to `dst` and renamed into place at the end, so an
interrupted run leaves no half dataset, and the sources are only read.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import os
import shutil
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from jrobot.data.edit.rewrite_stats import episode_image_stats, harmonize_quantiles
from jrobot.data.edit.rewrite_video import write_camera
from jrobot.data.edit.sources import EpisodeRef, normalized_feature, same_feature
from jrobot.data.errors import DatasetError
from jrobot.data.format.arrow_schema import arrow_type, data_schema, parquet_columns, to_numpy
from jrobot.data.format.info import new_info, validate_feature_specs
from jrobot.data.format.layout import (
    DEFAULT_CHUNK_SIZE,
    DEFAULT_DATA_FILE_SIZE_IN_MB,
    DEFAULT_VIDEO_FILE_SIZE_IN_MB,
    data_path,
    episodes_path,
    next_chunk_file,
    video_path,
)
from jrobot.data.format.meta_io import episode_row, rows_table
from jrobot.data.format.parquet_io import open_parquet, write_tables
from jrobot.data.format.stats import (
    Stats,
    aggregate_stats,
    numeric_stats,
)
from jrobot.data.read.reader import Dataset
from jrobot.data.video.encode import probe_video_info
from jrobot.data.write.commit import commit_meta
from jrobot.data.write.fsio import WorkDir, fsync_dir
from jrobot.features import DEFAULT_FEATURE_NAMES, Feature, default_features

log = logging.getLogger(__name__)

STATS_MODES = ("auto", "always", "never")


@dataclasses.dataclass
class RewriteReport:
    """What `write_dataset` did: sizes, which videos had to be re-encoded and which stats recomputed."""

    root: Path
    num_episodes: int = 0
    num_frames: int = 0
    copied_videos: int = 0
    reencoded_videos: list[str] = dataclasses.field(default_factory=list)
    recomputed_image_stats: list[str] = dataclasses.field(default_factory=list)
    notes: list[str] = dataclasses.field(default_factory=list)
    seconds: float = 0.0

    def summary(self) -> str:
        lines = [
            f"wrote {self.root}: {self.num_episodes} episodes, {self.num_frames} frames in {self.seconds:.1f} s",
            f"video: {self.copied_videos} episode segments stream-copied, {len(self.reencoded_videos)} re-encoded",
        ]
        lines += [f"  re-encoded {r}" for r in self.reencoded_videos]
        if self.recomputed_image_stats:
            lines.append(
                f"image stats recomputed from decoded frames for {len(self.recomputed_image_stats)} episode-camera pairs"
            )
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)


# -- rows -------------------------------------------------------------------------------------------


class _RowSource:
    """A dataset's data rows as Arrow, by global row range (LeRobot concatenates its data files)."""

    def __init__(self, ds: Dataset, columns: Sequence[str]) -> None:
        self.columns = list(columns)
        self.files: list[tuple[Path, int, int]] = []
        start = 0
        for path in ds.meta.data_files:
            if start >= ds.num_frames:
                break
            n = open_parquet(path).metadata.num_rows
            self.files.append((path, start, n))
            start += n
        self._cache: collections.OrderedDict[Path, pa.Table] = collections.OrderedDict()

    def _table(self, path: Path) -> pa.Table:
        t = self._cache.get(path)
        if t is None:
            pf = open_parquet(path)
            missing = [c for c in self.columns if c not in pf.schema_arrow.names]
            if missing:
                raise DatasetError(f"{path}: missing column(s) {missing}")
            try:
                t = pf.read(columns=self.columns)
            except (pa.ArrowException, OSError) as e:
                raise DatasetError(f"{path}: truncated or corrupt parquet file ({e})") from e
            self._cache[path] = t
            while len(self._cache) > 2:
                self._cache.popitem(last=False)
        return t

    def read(self, lo: int, hi: int) -> dict[str, list[pa.Array]]:
        """Chunks of each column for rows [lo, hi)."""
        out: dict[str, list[pa.Array]] = {c: [] for c in self.columns}
        for path, s, n in self.files:
            if s + n <= lo or s >= hi:
                continue
            a, b = max(lo, s) - s, min(hi, s + n) - s
            t = self._table(path).slice(a, b - a)
            for c in self.columns:
                out[c].extend(t.column(c).chunks)
        return out


def _cast(chunks: list[pa.Array], typ: pa.DataType, where: str) -> pa.Array:
    try:
        arrays = [c if c.type == typ else c.cast(typ) for c in chunks]
    except pa.ArrowException as e:  # invalid or unsupported cast
        raise DatasetError(f"{where}: cannot be stored as {typ} ({e})") from e
    if not arrays:
        return pa.array([], type=typ)
    return pa.concat_arrays(arrays) if len(arrays) > 1 else arrays[0]


# -- the writer -------------------------------------------------------------------------------------


@dataclasses.dataclass
class _Plan:
    refs: list[EpisodeRef]
    features: dict[str, Feature]  # output user features, normalised, in order
    source_key: dict[str, str]  # output feature -> source feature name
    fps: int


def _check_sources(
    refs: Sequence[EpisodeRef], features: Mapping[str, str] | None
) -> tuple[dict[str, Feature], dict[str, str], int]:
    if not refs:
        raise DatasetError("no episodes to write")
    first = refs[0].dataset
    user = {k: f for k, f in first.features.items() if k not in DEFAULT_FEATURE_NAMES}
    mapping = dict(features) if features is not None else {k: k for k in user}
    out_feats: dict[str, Feature] = {}
    for out_key, src_key in mapping.items():
        if src_key not in user:
            raise DatasetError(f"{first.root}: has no feature {src_key!r} (features: {list(user)})")
        out_feats[out_key] = normalized_feature(user[src_key])
    validate_feature_specs(out_feats)
    fps = first.fps
    if not float(fps).is_integer():
        raise DatasetError(f"{first.root}: fps {fps} is not an integer; LeRobot v3.0 stores an int fps")
    seen: set[int] = set()
    for ref in refs:
        ds = ref.dataset
        ds.episode(ref.episode_index)  # raises for an unknown episode
        if id(ds) in seen:
            continue
        seen.add(id(ds))
        if float(ds.fps) != float(fps):
            raise DatasetError(f"{ds.root}: recorded at {ds.fps} fps, but {first.root} at {fps} fps")
        for out_key, src_key in mapping.items():
            f = ds.features.get(src_key)
            if f is None:
                raise DatasetError(f"{ds.root}: has no feature {src_key!r}")
            if not same_feature(normalized_feature(f), out_feats[out_key]):
                raise DatasetError(
                    f"{ds.root}: feature {src_key!r} is {f.dtype} {list(f.shape)} but "
                    f"{first.root} has {out_feats[out_key].dtype} {list(out_feats[out_key].shape)}"
                )
    return out_feats, mapping, int(fps)


def write_dataset(
    dst: str | os.PathLike[str],
    episodes: Sequence[EpisodeRef],
    *,
    features: Mapping[str, str] | None = None,
    robot_type: str | None = None,
    recompute_image_stats: str = "auto",
    data_files_size_in_mb: float = DEFAULT_DATA_FILE_SIZE_IN_MB,
    video_files_size_in_mb: float = DEFAULT_VIDEO_FILE_SIZE_IN_MB,
    chunks_size: int = DEFAULT_CHUNK_SIZE,
    workers: int | None = None,
    durable: bool = True,
    progress: Callable[[str], None] | None = None,
    keep_feature_declarations: bool = False,
) -> RewriteReport:
    """Write `episodes` (in this order) as a new v3.0 dataset at `dst`, which must not exist.

    `features` maps output feature names to source feature names, in output order (default: every
    recorded feature of the first source, same names); all sources must have them with the same
    dtype and shape, and the same fps. `recompute_image_stats`: "auto" (recompute where the stored
    ones are missing or known wrong), "always" (decode every episode), "never" (reuse what is stored;
    still computed where nothing is stored). `workers` threads decode for image stats.
    `keep_feature_declarations` writes info.json's features as LeRobot's v2.1 -> v3.0 converter
    does (the source's declarations, legacy names and video info included, plus a per-feature `fps`
    on non-video features) instead of the normalised ones; the data is the same either way.
    """
    t0 = time.perf_counter()
    if recompute_image_stats not in STATS_MODES:
        raise DatasetError(
            f"recompute_image_stats must be one of {STATS_MODES}, got {recompute_image_stats!r}"
        )
    dst = Path(dst)
    if dst.exists():
        raise DatasetError(f"{dst}: already exists; choose a new output folder")
    for name, v in (
        ("data_files_size_in_mb", data_files_size_in_mb),
        ("video_files_size_in_mb", video_files_size_in_mb),
        ("chunks_size", chunks_size),
    ):
        if v <= 0:
            raise DatasetError(f"{name} must be positive, got {v}")
    refs = list(episodes)
    out_feats, mapping, fps = _check_sources(refs, features)
    plan = _Plan(refs, out_feats, mapping, fps)
    report = RewriteReport(root=dst)
    say = progress or (lambda msg: log.info("%s", msg))
    dst.parent.mkdir(parents=True, exist_ok=True)
    build = dst.parent / f".{dst.name}.partial-{uuid.uuid4().hex[:8]}"
    build.mkdir()
    work = WorkDir(build, durable=durable)
    try:
        video_keys = [k for k, f in out_feats.items() if f.is_video]
        say(f"video: {len(refs)} episodes x {len(video_keys)} cameras")
        videos: list[dict[str, dict[str, Any]]] = [{} for _ in refs]
        reencoded_counts: dict[tuple[int, str], list[np.ndarray]] = {}
        for key in video_keys:
            cam = write_camera(refs, key, mapping[key], fps, build, work, video_files_size_in_mb, chunks_size)
            for pos, span in enumerate(cam.spans):
                videos[pos][key] = span
            reencoded_counts.update({(pos, key): c for pos, c in cam.frame_counts.items()})
            report.copied_videos += cam.copied
            report.reencoded_videos += cam.reencoded
        for key in video_keys:
            first = video_path(build, key, videos[0][key]["chunk_index"], videos[0][key]["file_index"])
            f = out_feats[key]
            out_feats[key] = Feature(f.dtype, tuple(f.shape), f.names, probe_video_info(first), dict(f.extra))
        declared = (
            _declared_features(refs[0].dataset, mapping, out_feats, fps)
            if keep_feature_declarations
            else out_feats
        )
        say("image statistics")
        cameras = {k: mapping[k] for k, f in out_feats.items() if f.is_visual}
        image_stats, decoded, notes = episode_image_stats(
            refs, cameras, recompute_image_stats, reencoded_counts, workers
        )
        report.recomputed_image_stats += decoded
        report.notes += notes
        say("data rows and numeric statistics")
        tasks, ep_tasks, data_cf, numeric = _write_data(plan, build, work, data_files_size_in_mb, chunks_size)
        ep_stats = [{**numeric[i], **image_stats[i]} for i in range(len(refs))]
        ep_stats = [{k: s[k] for k in _stats_order(out_feats) if k in s} for s in ep_stats]
        report.notes += harmonize_quantiles(ep_stats)
        _write_episodes_meta(
            plan, build, work, ep_tasks, data_cf, videos, ep_stats, data_files_size_in_mb, chunks_size
        )
        n_frames = sum(r.dataset.episode(r.episode_index).length for r in refs)
        info = new_info(
            fps=fps,
            features=declared,
            robot_type=robot_type,
            chunks_size=chunks_size,
            data_files_size_in_mb=data_files_size_in_mb,
            video_files_size_in_mb=video_files_size_in_mb,
        )
        commit_meta(
            work,
            build,
            info,
            num_episodes=len(refs),
            num_frames=n_frames,
            tasks=tasks,
            stats=aggregate_stats(ep_stats),
        )
        work.close()
        build.rename(dst)
        if durable:
            fsync_dir(dst.parent)
    except BaseException:
        work.close()
        shutil.rmtree(build, ignore_errors=True)
        raise
    report.num_episodes = len(refs)
    report.num_frames = n_frames
    report.seconds = time.perf_counter() - t0
    return report


def _declared_features(
    first: Dataset, mapping: Mapping[str, str], written: Mapping[str, Feature], fps: int
) -> dict[str, Feature]:
    """info.json features as LeRobot's converter writes them: the source's declarations in its order
    (renamed as `mapping` says, bookkeeping columns included), the source's video info where it has
    one (else what was probed from the written file), and `fps` on every non-video feature."""
    out_key = {src: out for out, src in mapping.items()}
    declared: dict[str, Feature] = {}
    for key, f in first.features.items():
        name = key if key in DEFAULT_FEATURE_NAMES else out_key.get(key)
        if name is None:
            continue
        extra = dict(f.extra)
        if not f.is_video:
            extra["fps"] = int(fps)
        info = f.info if f.info or not f.is_video else written[name].info
        declared[name] = Feature(f.dtype, tuple(f.shape), f.names, info, extra)
    return declared


def _stats_order(features: Mapping[str, Feature]) -> list[str]:
    """Per-episode stats in info order: user features, then the bookkeeping columns (LeRobot's order)."""
    return [k for k in features if features[k].dtype != "string"] + list(DEFAULT_FEATURE_NAMES)


# -- data rows --------------------------------------------------------------------------------------


def _write_data(
    plan: _Plan, build: Path, work: WorkDir, limit_mb: float, chunks_size: int
) -> tuple[list[str], list[list[str]], list[tuple[int, int]], list[dict[str, Stats]]]:
    """Data files; returns the task list, each episode's tasks, its data file and numeric stats."""
    all_feats = {**plan.features, **default_features()}
    schema = data_schema(all_feats)
    cols = parquet_columns(all_feats)
    sources: dict[int, _RowSource] = {}
    tasks: list[str] = []
    task_pos: dict[str, int] = {}
    episode_tasks: list[list[str]] = []
    data_cf: list[tuple[int, int]] = []
    numeric: list[dict[str, Stats]] = []
    pending: list[pa.Table] = []
    pending_mb = 0.0
    cf = (0, 0)
    files_written = 0
    start = 0

    def flush() -> None:
        nonlocal pending, pending_mb, files_written
        if pending:
            tables = pending
            work.write_with(data_path(build, *cf), ".parquet", lambda tmp: write_tables(tmp, schema, tables))
            files_written += 1
        pending, pending_mb = [], 0.0

    for pos, ref in enumerate(plan.refs):
        ds = ref.dataset
        ep = ds.episode(ref.episode_index)
        n = ep.length
        if id(ds) not in sources:
            have = set(ds.features)
            wanted = [plan.source_key[k] for k in cols if k in plan.source_key] + [
                k for k in ("timestamp", "frame_index", "task_index") if k in have
            ]
            sources[id(ds)] = _RowSource(ds, list(dict.fromkeys(wanted)))
        src = sources[id(ds)]
        chunks = src.read(ep.dataset_from_index, ep.dataset_to_index)
        where = f"{ds.root} episode {ep.index}"
        # tasks, re-indexed in first-seen order
        if "task_index" in chunks:
            src_tasks = to_numpy(_cast(chunks["task_index"], pa.int64(), where), all_feats["task_index"])
            try:
                texts = [ds.tasks[int(t)] for t in src_tasks]
            except IndexError:
                raise DatasetError(
                    f"{where}: task_index out of range (the dataset has {len(ds.tasks)} tasks)"
                ) from None
        elif ep.tasks:
            texts = [ep.tasks[0]] * n
        else:
            raise DatasetError(f"{where}: no task_index column and no task in the episode metadata")
        episode_tasks.append(list(dict.fromkeys(texts)))
        for t in episode_tasks[-1]:
            if t not in task_pos:
                task_pos[t] = len(tasks)
                tasks.append(t)
        arrays: list[pa.Array] = []
        values: dict[str, np.ndarray] = {}
        for name in cols:
            feat = all_feats[name]
            typ = arrow_type(feat)
            if name in plan.source_key:
                arr = _cast(chunks[plan.source_key[name]], typ, f"{where} column {plan.source_key[name]!r}")
            elif name == "timestamp":
                arr = (
                    _cast(chunks["timestamp"], typ, f"{where} column 'timestamp'")
                    if "timestamp" in chunks
                    else pa.array((np.arange(n) / plan.fps).astype(np.float32))
                )
            elif name == "frame_index":
                arr = (
                    _cast(chunks["frame_index"], typ, f"{where} column 'frame_index'")
                    if "frame_index" in chunks
                    else pa.array(np.arange(n, dtype=np.int64))
                )
            elif name == "episode_index":
                arr = pa.array(np.full(n, pos, dtype=np.int64))
            elif name == "index":
                arr = pa.array(np.arange(start, start + n, dtype=np.int64))
            else:  # task_index
                arr = pa.array(np.asarray([task_pos[t] for t in texts], dtype=np.int64))
            if len(arr) != n:
                raise DatasetError(f"{where}: column {name!r} has {len(arr)} rows, the episode {n}")
            arrays.append(arr)
            if not feat.is_visual and feat.dtype != "string":
                values[name] = to_numpy(arr, feat)
        table = pa.Table.from_arrays(arrays, schema=schema)
        # LeRobot's rollover rule: a new file when the current one + this episode would reach the limit
        mb = table.nbytes / 1024**2
        if pending and pending_mb + mb >= limit_mb:
            flush()
            cf = next_chunk_file(*cf, chunks_size)
        pending.append(table)
        pending_mb += mb
        data_cf.append(cf)
        if "timestamp" in values and "frame_index" in values:
            # LeRobot computes the stats from the float64 frame_index / fps, not the stored float32
            exact = values["frame_index"].astype(np.float64) / plan.fps
            ts = values["timestamp"].astype(np.float64)
            values["timestamp"] = np.where(np.abs(ts - exact) <= 1e-4, exact, ts)
        numeric.append({k: numeric_stats(v) for k, v in values.items()})
        start += n
    flush()
    return tasks, episode_tasks, data_cf, numeric


def _write_episodes_meta(
    plan: _Plan,
    build: Path,
    work: WorkDir,
    ep_tasks: list[list[str]],
    data_cf: list[tuple[int, int]],
    videos: list[dict[str, dict[str, Any]]],
    ep_stats: list[dict[str, Stats]],
    limit_mb: float,
    chunks_size: int,
) -> None:
    rows = []
    start = 0
    for pos, ref in enumerate(plan.refs):
        ep = ref.dataset.episode(ref.episode_index)
        rows.append(
            episode_row(
                episode_index=pos,
                tasks=ep_tasks[pos],
                length=ep.length,
                data_file=data_cf[pos],
                dataset_from_index=start,
                videos=videos[pos],
                stats=ep_stats[pos],
                meta_file=(0, 0),
            )
        )
        start += ep.length
    per_row_mb = rows_table(rows).nbytes / 1024**2 / max(1, len(rows))
    per_file = max(1, int(limit_mb / per_row_mb)) if per_row_mb > 0 else len(rows)
    cf = (0, 0)
    for i in range(0, len(rows), per_file):
        if i:
            cf = next_chunk_file(*cf, chunks_size)
        part = rows[i : i + per_file]
        for r in part:
            r["meta/episodes/chunk_index"], r["meta/episodes/file_index"] = cf
        t = rows_table(part)
        work.write_with(
            episodes_path(build, *cf), ".parquet", lambda tmp, t=t: write_tables(tmp, t.schema, [t])
        )

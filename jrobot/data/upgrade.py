"""Upgrade a LeRobot v2.0/v2.1 dataset to v3.0 (what `convert_dataset_v21_to_v30` does, done right).

Episodes are packed into data files (new file when the running uncompressed size would reach
`data_files_size_in_mb`) and per camera into mp4 files by stream copy (new file when the running
size would reach `video_files_size_in_mb`), exactly LeRobot's rules, but each episode's
`data/chunk_index`/`data/file_index` names the file its rows are really in (LeRobot 0.4.4 points
the episode that triggers a rollover at the previous file, issue #2401). `index`/`episode_index`
are renumbered to the row / episode position so the v3 invariants hold even for v2 datasets with
gaps. Per-episode stats come from episodes_stats.jsonl (v2.1) or are computed (v2.0, or
`recompute_stats=True`, which also adds quantiles). The result is built in a temporary folder next
to `dst` and renamed into place at the end, so an interrupted upgrade leaves no half dataset.

Command line: `python -m jrobot.data.upgrade SRC --out DST`.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from jrobot.data.arrow_schema import data_schema
from jrobot.data.errors import DatasetError
from jrobot.data.fsio import WorkDir, fsync_dir
from jrobot.data.hub import resolve_dataset
from jrobot.data.info import new_info
from jrobot.data.layout import (
    DEFAULT_CHUNK_SIZE,
    DEFAULT_DATA_FILE_SIZE_IN_MB,
    DEFAULT_VIDEO_FILE_SIZE_IN_MB,
    INFO_PATH,
    STATS_PATH,
    TASKS_PATH,
    data_path,
    episodes_path,
    next_chunk_file,
    video_path,
)
from jrobot.data.meta import DatasetMeta, load_meta
from jrobot.data.meta_io import episode_row, rows_table, write_tasks_file
from jrobot.data.parquet_io import open_parquet, read_table, write_tables
from jrobot.data.reader import Dataset
from jrobot.data.stats import (
    Stats,
    aggregate_stats,
    frame_channel_counts,
    image_stats_from_counts,
    numeric_stats,
    sample_indices,
    to_jsonable,
)
from jrobot.data.video_encode import concat_videos, probe_video_info
from jrobot.features import Feature


def _uncompressed_mb(path: Path) -> float:
    md = open_parquet(path).metadata
    total = sum(
        md.row_group(i).column(j).total_uncompressed_size
        for i in range(md.num_row_groups)
        for j in range(md.num_columns)
    )
    return total / (1024**2)


def _group_by_size(sizes: Sequence[float], limit: float) -> list[list[int]]:
    """LeRobot's packing: start a new group when the running size + the next item would reach `limit`."""
    groups: list[list[int]] = []
    running = 0.0
    for i, s in enumerate(sizes):
        if not groups or running + s >= limit:
            groups.append([])
            running = 0.0
        groups[-1].append(i)
        running += s
    return groups


def _upgraded_features(meta: DatasetMeta) -> dict[str, Feature]:
    """Features as LeRobot's converter leaves them: a per-feature `fps` on non-video features."""
    out = {}
    for k, f in meta.features.items():
        extra = dict(f.extra)
        if not f.is_video:
            extra["fps"] = int(meta.fps)
        info = f.info
        out[k] = Feature(f.dtype, tuple(f.shape), f.names, info, extra)
    return out


def _episode_table(
    meta: DatasetMeta, pos: int, features: dict[str, Feature], schema: pa.Schema, start: int
) -> pa.Table:
    ep = meta.episodes[pos]
    table = read_table(meta.data_files[pos])
    cols = []
    for name in schema.names:
        if name == "index":
            cols.append(pa.array(np.arange(start, start + ep.length, dtype=np.int64)))
        elif name == "episode_index":
            cols.append(pa.array(np.full(ep.length, pos, dtype=np.int64)))
        else:
            if name not in table.schema.names:
                raise DatasetError(f"{meta.data_files[pos]}: missing column {name!r}")
            col = table.column(name)
            try:
                cols.append(col.cast(schema.field(name).type))
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
                raise DatasetError(
                    f"{meta.data_files[pos]}: column {name!r} cannot be stored as {schema.field(name).type} ({e})"
                ) from e
    if table.num_rows != ep.length:
        raise DatasetError(
            f"{meta.data_files[pos]}: {table.num_rows} rows but episodes.jsonl says {ep.length}"
        )
    return pa.Table.from_arrays(cols, schema=schema)


def _computed_episode_stats(ds: Dataset, pos: int, features: dict[str, Feature]) -> dict[str, Stats]:
    ep = ds.meta.episodes[pos]
    stats: dict[str, Stats] = {}
    cols = ds.episode_columns(ep.index)
    for key, feat in features.items():
        if feat.dtype == "string":
            continue
        if feat.is_visual:  # decode the episode once, count pixels of LeRobot's sampled frames only
            chosen = set(sample_indices(ep.length))
            counts = [
                frame_channel_counts(img)
                for i, img in enumerate(ds.iter_camera(ep.index, key))
                if i in chosen
            ]
            stats[key] = image_stats_from_counts(np.sum(counts, axis=0, dtype=np.int64), len(counts))
        elif key == "episode_index":
            stats[key] = numeric_stats(np.full(ep.length, pos, dtype=np.int64))
        elif key == "index":
            stats[key] = numeric_stats(np.arange(ep.dataset_from_index, ep.dataset_to_index, dtype=np.int64))
        else:
            stats[key] = numeric_stats(cols[key])
    return stats


def upgrade_dataset(
    src: str | Path,
    dst: str | Path,
    *,
    data_files_size_in_mb: int = DEFAULT_DATA_FILE_SIZE_IN_MB,
    video_files_size_in_mb: int = DEFAULT_VIDEO_FILE_SIZE_IN_MB,
    chunks_size: int = DEFAULT_CHUNK_SIZE,
    recompute_stats: bool = False,
    durable: bool = True,
) -> Path:
    """Write a v3.0 copy of the v2.x dataset `src` (a folder or a Hub id) to `dst`; returns `dst`.

    `dst` must not exist. Source files are only read.
    """
    src, dst = resolve_dataset(src), Path(dst)
    meta = load_meta(src)
    if meta.version == "v3.0":
        raise DatasetError(f"{src}: already a v3.0 dataset")
    if dst.exists():
        raise DatasetError(f"{dst}: already exists")
    if not meta.episodes:
        raise DatasetError(f"{src}: has no episodes to upgrade")
    ds = Dataset(meta)
    features = _upgraded_features(meta)
    dst.parent.mkdir(parents=True, exist_ok=True)
    build = dst.parent / f".{dst.name}.partial-{uuid.uuid4().hex[:8]}"
    build.mkdir()
    work = WorkDir(build, durable=durable)
    try:
        schema = data_schema(features)
        n_eps = len(meta.episodes)
        # data files
        data_cf: list[tuple[int, int]] = [(0, 0)] * n_eps
        groups = _group_by_size([_uncompressed_mb(p) for p in meta.data_files], data_files_size_in_mb)
        cf = (0, 0)
        for gi, group in enumerate(groups):
            if gi:
                cf = next_chunk_file(*cf, chunks_size)
            tables = [
                _episode_table(meta, pos, features, schema, meta.episodes[pos].dataset_from_index)
                for pos in group
            ]
            work.write_with(
                data_path(build, *cf), ".parquet", lambda tmp, t=tables: write_tables(tmp, schema, t)
            )
            for pos in group:
                data_cf[pos] = cf
        # videos
        videos: list[dict[str, dict[str, Any]]] = [{} for _ in range(n_eps)]
        for key in meta.video_keys:
            paths = [e.videos[key].path for e in meta.episodes]
            for p in paths:
                if not p.is_file():
                    raise DatasetError(f"missing video file: {p}")
            if not features[key].info:
                f = features[key]
                features[key] = Feature(f.dtype, tuple(f.shape), f.names, probe_video_info(paths[0]), f.extra)
            cf = (0, 0)
            for gi, group in enumerate(
                _group_by_size([p.stat().st_size / 1024**2 for p in paths], video_files_size_in_mb)
            ):
                if gi:
                    cf = next_chunk_file(*cf, chunks_size)
                segments = []
                work.write_with(
                    video_path(build, key, *cf),
                    ".mp4",
                    lambda tmp, g=group, s=segments, ps=paths: s.extend(
                        concat_videos([ps[i] for i in g], tmp)
                    ),
                )
                for pos, seg in zip(group, segments, strict=True):
                    videos[pos][key] = {
                        "chunk_index": cf[0],
                        "file_index": cf[1],
                        "from_timestamp": float(seg.start),
                        "to_timestamp": float(seg.end),
                    }
        # per-episode stats and meta/episodes
        use_stored = meta.episode_stats is not None and not recompute_stats
        ep_stats = [
            {k: v for k, v in meta.episode_stats[pos].items() if k in features}
            if use_stored
            else _computed_episode_stats(ds, pos, features)
            for pos in range(n_eps)
        ]
        rows = [
            episode_row(
                episode_index=pos,
                tasks=list(ep.tasks),
                length=ep.length,
                data_file=data_cf[pos],
                dataset_from_index=ep.dataset_from_index,
                videos=videos[pos],
                stats=ep_stats[pos],
                meta_file=(0, 0),
            )
            for pos, ep in enumerate(meta.episodes)
        ]
        table = rows_table(rows)
        per_row_mb = table.nbytes / 1024**2 / max(1, len(rows))
        rows_per_file = max(1, int(data_files_size_in_mb / per_row_mb)) if per_row_mb > 0 else len(rows)
        cf = (0, 0)
        for start in range(0, len(rows), rows_per_file):
            if start:
                cf = next_chunk_file(*cf, chunks_size)
            part = rows[start : start + rows_per_file]
            for r in part:
                r["meta/episodes/chunk_index"], r["meta/episodes/file_index"] = cf
            t = rows_table(part)
            work.write_with(
                episodes_path(build, *cf), ".parquet", lambda tmp, t=t: write_tables(tmp, t.schema, [t])
            )
        # tasks, stats, info
        work.write_with(build / TASKS_PATH, ".parquet", lambda tmp: write_tasks_file(tmp, meta.tasks))
        work.write_json(build / STATS_PATH, to_jsonable(aggregate_stats(ep_stats)))
        info = new_info(
            fps=int(meta.fps),
            features=features,
            robot_type=meta.robot_type,
            chunks_size=chunks_size,
            data_files_size_in_mb=data_files_size_in_mb,
            video_files_size_in_mb=video_files_size_in_mb,
        )
        info["total_episodes"] = n_eps
        info["total_frames"] = meta.total_frames
        info["total_tasks"] = len(meta.tasks)
        info["splits"] = {"train": f"0:{n_eps}"}
        work.write_json(build / INFO_PATH, info)
        work.close()
        build.rename(dst)
        if durable:
            fsync_dir(dst.parent)
    except BaseException:
        work.close()
        shutil.rmtree(build, ignore_errors=True)
        raise
    finally:
        ds.close()
    return dst


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Upgrade a LeRobot v2.0/v2.1 dataset folder to v3.0.")
    parser.add_argument("src", help="v2.x dataset folder (or a Hugging Face Hub dataset id)")
    parser.add_argument("--out", type=Path, required=True, help="new v3.0 dataset folder (must not exist)")
    parser.add_argument("--data-file-size-mb", type=int, default=DEFAULT_DATA_FILE_SIZE_IN_MB)
    parser.add_argument("--video-file-size-mb", type=int, default=DEFAULT_VIDEO_FILE_SIZE_IN_MB)
    parser.add_argument(
        "--recompute-stats", action="store_true", help="recompute per-episode stats (adds quantiles)"
    )
    args = parser.parse_args(argv)
    try:
        out = upgrade_dataset(
            args.src,
            args.out,
            data_files_size_in_mb=args.data_file_size_mb,
            video_files_size_in_mb=args.video_file_size_mb,
            recompute_stats=args.recompute_stats,
        )
    except DatasetError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

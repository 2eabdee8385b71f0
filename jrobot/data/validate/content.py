"""Validation of what the metadata points at: the data rows, the video files and the statistics."""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from jrobot.data.errors import DatasetError
from jrobot.data.format.arrow_schema import to_numpy
from jrobot.data.format.layout import (
    DATA_DIR,
    EPISODES_DIR,
    LEGACY_EPISODES_PATH,
    LEGACY_EPISODES_STATS_PATH,
    STATS_PATH,
    VIDEO_DIR,
    glob_inside,
)
from jrobot.data.format.parquet_io import open_parquet
from jrobot.data.format.stats import STAT_KEYS, load_stats_json
from jrobot.data.format.stats_check import describe_image_std_problem, image_std_is_corrupt
from jrobot.data.validate.report import EpisodeMeta, Report
from jrobot.data.video.segments import count_frames, stream_key
from jrobot.features import Feature

TIMESTAMP_TOLERANCE_S = 1e-4


# -- rows -----------------------------------------------------------------------------------------


def check_rows(
    rep: Report,
    root: Path,
    version: str,
    info: dict[str, Any],
    features: dict[str, Feature],
    episodes: list[EpisodeMeta],
    data_files: list[Path],
    tasks: list[str] | None,
    fps: float | None,
) -> None:
    lowdim = [k for k, f in features.items() if not f.is_visual]
    images = [k for k, f in features.items() if f.dtype == "image"]
    total = sum(e.length for e in episodes)
    cols: dict[str, list[np.ndarray]] = {k: [] for k in lowdim}
    row_file: list[tuple[int, int, Path]] = []  # (first global row, rows, file)
    start = 0
    broken = False  # a file could not be read as declared: rows cannot be lined up with episodes
    # v3: the sorted data files, concatenated; v2: one file per episode, in episode order
    sources = [(p, None) for p in data_files] if version == "v3.0" else [(e.data_file, e) for e in episodes]
    for path, ep in sources:
        if path is None or not path.is_file():
            broken = True  # reported with the episode metadata
            continue
        try:
            pf = open_parquet(path)
        except DatasetError as e:
            rep.error(path, str(e).replace(f"{path}: ", ""))
            broken = True
            continue
        names = pf.schema_arrow.names
        missing = [k for k in lowdim + images if k not in names]
        if missing:
            rep.error(path, f"missing column(s) {missing} that meta/info.json declares")
            broken = True
            continue
        try:
            table = pf.read(columns=lowdim)
        except (pa.ArrowException, OSError) as e:
            rep.error(path, f"truncated or corrupt parquet file ({e})")
            broken = True
            continue
        for k in lowdim:
            try:
                cols[k].append(to_numpy(table.column(k), features[k]))
            except (ValueError, TypeError, pa.ArrowException) as e:
                rep.error(
                    path,
                    f"column {k!r} does not hold {features[k].dtype} {list(features[k].shape)} values ({e})",
                )
                broken = True
        if ep is not None and table.num_rows != ep.length:
            rep.error(
                path, f"holds {table.num_rows} rows but {ep.where} gives episode {ep.index} {ep.length}"
            )
            broken = True
        row_file.append((start, table.num_rows, path))
        start += table.num_rows
    if broken:
        return
    if start < total:
        rep.error(
            root / DATA_DIR if version == "v3.0" else root / LEGACY_EPISODES_PATH,
            f"data files hold {start} rows, the episodes {total}",
        )
        return
    if start > total and version == "v3.0":
        rep.warn(
            root / DATA_DIR, f"{start - total} data row(s) beyond total_frames={total} (ignored by LeRobot)"
        )
    col = {k: (np.concatenate(v) if len(v) > 1 else v[0])[:total] for k, v in cols.items() if v}
    starts = np.asarray([s for s, _, _ in row_file], dtype=np.int64)

    def file_of(r: int) -> Path:
        return row_file[int(np.searchsorted(starts, r, side="right") - 1)][2]

    def by_file(bad: np.ndarray, what: str, example: Any, severity: str = "error") -> None:
        for s, n, path in row_file:
            part = np.zeros_like(bad)
            part[s : s + n] = bad[s : s + n]
            rep.rows(path, part, what, example, severity)

    ep_of_row = np.repeat(np.arange(len(episodes)), [e.length for e in episodes])
    ep_start = np.repeat([e.start for e in episodes], [e.length for e in episodes])
    rownum = np.arange(total)
    if "index" in col:
        idx = col["index"]
        by_file(
            idx != rownum, "'index' is not the global row number", lambda r: f"row {r} has index {idx[r]}"
        )
    if "episode_index" in col:
        want = np.asarray([e.index for e in episodes], dtype=np.int64)[ep_of_row]
        got = col["episode_index"]
        by_file(
            got != want,
            "'episode_index' disagrees with the episode metadata",
            lambda r: f"row {r}: {got[r]} (expected {want[r]})",
        )
    local = rownum - ep_start
    if "frame_index" in col:
        fi = col["frame_index"]
        by_file(
            fi != local,
            "'frame_index' is not 0..length-1 within the episode",
            lambda r: f"row {r}: {fi[r]} (expected {local[r]})",
        )
    if "timestamp" in col and fps:
        ts = col["timestamp"].astype(np.float64)
        ref = col.get("frame_index", local) / fps
        off = np.abs(ts - ref)
        by_file(
            off > TIMESTAMP_TOLERANCE_S,
            f"'timestamp' is not frame_index/fps (1/{fps:g} s)",
            lambda r: f"row {r}: {ts[r]:.6f} s (expected {ref[r]:.6f})",
        )
    if "task_index" in col and tasks is not None:
        ti = col["task_index"]
        bad = (ti < 0) | (ti >= len(tasks))
        by_file(bad, f"'task_index' outside 0..{len(tasks) - 1}", lambda r: f"row {r}: {ti[r]}")
        if not bad.any():
            for e in episodes:
                used = [tasks[int(t)] for t in dict.fromkeys(ti[e.start : e.start + e.length].tolist())]
                if e.tasks and set(used) != set(e.tasks):
                    rep.warn(e.where, f"episode {e.index}: lists tasks {e.tasks} but its rows use {used}")
    for k in lowdim:
        if k in col and np.issubdtype(col[k].dtype, np.floating):
            bad = ~np.isfinite(col[k].reshape(total, -1)).all(axis=1)
            by_file(bad, f"{k!r} holds NaN or inf", lambda r: f"row {r}", "warning")
    if version == "v3.0" and row_file:
        for e in episodes:
            if e.data_file is None or e.length <= 0:
                continue
            holders = {file_of(r) for r in (e.start, e.start + e.length - 1)}
            if e.data_file not in holders:
                rep.warn(
                    e.where,
                    f"episode {e.index}: data/chunk_index,file_index name {rep.rel(e.data_file)} but its rows are in "
                    f"{sorted(rep.rel(h) for h in holders)} (LeRobot 0.4.4 converter bug; only affects partial downloads)",
                )


# -- videos ---------------------------------------------------------------------------------------


def check_videos(
    rep: Report,
    root: Path,
    version: str,
    features: dict[str, Feature],
    episodes: list[EpisodeMeta],
    fps: float,
) -> None:
    half = 0.5 / fps
    for key, feat in features.items():
        if not feat.is_video:
            continue
        h, w, _ = feat.hwc_shape
        by_file: dict[Path, list[EpisodeMeta]] = {}
        for e in episodes:
            if key in e.videos:
                by_file.setdefault(e.videos[key].path, []).append(e)
        for path, eps in by_file.items():
            if not path.is_file():
                rep.error(path, f"missing (camera {key!r}, episode(s) {[e.index for e in eps][:10]})")
                continue
            try:
                sk = stream_key(path)
                pts = count_frames(path)
            except DatasetError as e:
                rep.error(path, str(e).replace(f"{path}: ", ""))
                continue
            if (sk.height, sk.width) != (h, w):
                rep.error(path, f"video is {sk.height}x{sk.width} but feature {key!r} says {h}x{w}")
            codec = (feat.info or {}).get("video.codec")
            if codec and codec != sk.codec:
                rep.warn(path, f"codec is {sk.codec} but meta/info.json says {codec}")
            tb = sk.time_base
            ticks = np.asarray(pts, dtype=np.int64)
            spans = []
            for e in eps:
                t0, t1 = e.videos[key].from_timestamp, e.videos[key].to_timestamp
                lo = round((Fraction(t0) - Fraction(half)) / tb)
                hi = round((Fraction(t1) - Fraction(half)) / tb)
                n = int(np.count_nonzero((ticks >= lo) & (ticks < hi)))
                if n != e.length:
                    rep.error(
                        path,
                        f"camera {key!r} episode {e.index}: {n} frames in [{t0:.4f}, {t1:.4f}) s, but the episode has {e.length} rows",
                    )
                if abs((t1 - t0) - e.length / fps) > half:
                    rep.warn(
                        path,
                        f"camera {key!r} episode {e.index}: span {t1 - t0:.4f} s for {e.length} frames at {fps:g} fps",
                    )
                spans.append((t0, t1, e.index))
            spans.sort()
            for (a0, a1, ea), (b0, _, eb) in itertools.pairwise(spans):
                if b0 < a1 - half:
                    rep.error(
                        path,
                        f"camera {key!r}: episodes {ea} and {eb} overlap in time ([{a0:.4f}, {a1:.4f}) and from {b0:.4f})",
                    )
        if version == "v3.0":
            referenced = set(by_file)
            try:
                files = glob_inside(root / VIDEO_DIR / key, "*/*.mp4")
            except DatasetError as e:
                rep.error(root / VIDEO_DIR / key, str(e))
                continue
            for p in files:
                if p not in referenced:
                    rep.warn(p, f"not referenced by any episode of {key!r}")


# -- statistics -----------------------------------------------------------------------------------


def _check_one_stats(
    rep: Report, path: Path | str, label: str, key: str, feat: Feature, s: Mapping[str, np.ndarray]
) -> None:
    missing = [k for k in ("min", "max", "mean", "std", "count") if k not in s]
    if missing:
        rep.warn(path, f"{label}{key!r}: missing {missing}")
        return
    if feat.is_visual:
        want = (3, 1, 1)
    elif tuple(feat.shape) == (1,):
        want = (1,)
    else:
        want = tuple(feat.shape)
    for k in STAT_KEYS:
        if k in s and k != "count" and np.asarray(s[k]).shape != want:
            rep.warn(
                path, f"{label}{key!r}: '{k}' has shape {list(np.asarray(s[k]).shape)}, expected {list(want)}"
            )
            return
    if np.asarray(s["count"]).shape != (1,):
        rep.warn(path, f"{label}{key!r}: 'count' must have shape [1]")
    vals = [np.asarray(s[k], dtype=np.float64) for k in STAT_KEYS if k in s]
    if not all(np.isfinite(v).all() for v in vals):
        rep.warn(path, f"{label}{key!r}: non-finite values")
    if feat.is_visual and image_std_is_corrupt(s):
        rep.warn(
            path,
            f"{label}{describe_image_std_problem(key, s)}; `python -m data_tools.convert_lerobot` recomputes it",
        )


def check_stats(
    rep: Report,
    root: Path,
    version: str,
    info: dict[str, Any],
    features: dict[str, Feature],
    episodes: list[EpisodeMeta],
) -> None:
    wanted = {k: f for k, f in features.items() if f.dtype != "string"}
    path = root / STATS_PATH
    if version in ("v3.0", "v2.0") or path.is_file():
        if not path.is_file():
            rep.warn(path, "missing (normalization stats are needed for training)")
        else:
            try:
                stats = load_stats_json(path)
            except DatasetError as e:
                rep.warn(path, f"unreadable ({str(e).replace(f'{path}: ', '')})")
                stats = None
            if stats is not None:
                absent = [k for k in wanted if k not in stats]
                if absent:
                    rep.warn(path, f"no stats for {absent}")
                for k, f in wanted.items():
                    if k in stats:
                        _check_one_stats(rep, path, "", k, f, stats[k])
    if version == "v2.0":
        return
    label_path = root / EPISODES_DIR if version == "v3.0" else root / LEGACY_EPISODES_STATS_PATH
    no_stats = [e.index for e in episodes if not e.stats]
    if no_stats:
        rep.warn(
            label_path,
            f"no per-episode stats for episode(s) {no_stats[:10]}{' ...' if len(no_stats) > 10 else ''}",
        )
    corrupt: dict[str, list[int]] = {}
    for e in episodes:
        for k, f in wanted.items():
            s = (e.stats or {}).get(k)
            if s is None:
                continue
            if f.is_visual and image_std_is_corrupt(s):
                corrupt.setdefault(k, []).append(e.index)
                continue
            _check_one_stats(rep, e.where, f"episode {e.index} ", k, f, s)
    for k, eps in corrupt.items():
        rep.warn(
            label_path,
            f"{k!r}: per-episode image std of {len(eps)} episode(s) is corrupt (LeRobot 0.4.0-0.5.1 uint8 overflow)",
        )

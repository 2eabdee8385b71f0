"""Validation of the metadata that locates episodes: tasks and episode rows (v3.0), jsonl files (v2.x).

Each check returns what later checks need (tasks, `EpisodeMeta` per episode) or None when the files
are too broken to go on, after recording every problem it found in the `Report`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from jrobot.data.errors import DatasetError
from jrobot.data.format.layout import (
    EPISODES_DIR,
    INFO_PATH,
    LEGACY_EPISODES_PATH,
    LEGACY_EPISODES_STATS_PATH,
    LEGACY_TASKS_PATH,
    TASKS_PATH,
    confined,
)
from jrobot.data.format.legacy import (
    legacy_episode_files,
    legacy_episode_tasks,
    parse_jsonl,
    parse_legacy_episode_stats,
    parse_legacy_tasks,
)
from jrobot.data.format.meta_io import episode_files, load_tasks
from jrobot.data.format.parquet_io import read_table
from jrobot.data.format.stats import unflatten_episode_stats
from jrobot.data.format.v3_meta import video_span
from jrobot.data.validate.report import EpisodeMeta, Report
from jrobot.features import Feature

# -- v3.0 ---------------------------------------------------------------------------


def check_v3_tasks(rep: Report, root: Path, info: dict[str, Any]) -> list[str] | None:
    path = root / TASKS_PATH
    if not path.is_file():
        if info.get("total_episodes"):
            rep.error(path, "missing")
        return None
    try:
        tasks = load_tasks(root)
    except DatasetError as e:
        rep.error(path, str(e).replace(f"{path}: ", ""))
        return None
    dupes = sorted({t for t in tasks if tasks.count(t) > 1})
    if dupes:
        rep.error(path, f"task text(s) {dupes} appear more than once")
    if isinstance(info.get("total_tasks"), int) and info["total_tasks"] != len(tasks):
        rep.warn(
            root / INFO_PATH,
            f"total_tasks is {info['total_tasks']} but {TASKS_PATH} holds {len(tasks)} tasks",
        )
    return tasks


def check_v3_episodes(
    rep: Report,
    root: Path,
    info: dict[str, Any],
    features: dict[str, Feature] | None,
    tasks: list[str] | None,
) -> list[EpisodeMeta] | None:
    files = episode_files(root)
    n_eps = info.get("total_episodes") if isinstance(info.get("total_episodes"), int) else None
    if not files:
        if n_eps:
            rep.error(root / EPISODES_DIR, "no meta/episodes/*/*.parquet files")
            return None
        return []
    video_keys = [k for k, f in (features or {}).items() if f.is_video]
    tpl_v, tpl_d = info.get("video_path"), info.get("data_path")
    required = ["episode_index", "length", "dataset_from_index", "dataset_to_index"]
    for key in video_keys:
        required += [
            f"videos/{key}/{c}" for c in ("chunk_index", "file_index", "from_timestamp", "to_timestamp")
        ]
    rows: list[tuple[Path, int, dict[str, Any]]] = []
    ok = True
    for path in files:
        try:
            table = read_table(path)
        except DatasetError as e:
            rep.error(path, f"unreadable ({str(e).replace(f'{path}: ', '')})")
            ok = False
            continue
        missing = [c for c in required if c not in table.schema.names]
        if missing:
            rep.error(path, f"missing column(s) {missing}")
            ok = False
            continue
        for i, r in enumerate(table.to_pylist()):
            rows.append((path, i, r))
            cf = (r.get("meta/episodes/chunk_index"), r.get("meta/episodes/file_index"))
            if None not in cf and not path.as_posix().endswith(f"chunk-{cf[0]:03d}/file-{cf[1]:03d}.parquet"):
                rep.warn(path, f"row {i}: meta/episodes/chunk_index,file_index = {cf} name another file")
    if not ok:
        return None
    if n_eps is not None and len(rows) < n_eps:
        rep.error(root / EPISODES_DIR, f"{len(rows)} episode rows, but meta/info.json says {n_eps} episodes")
    elif n_eps is not None and len(rows) > n_eps:
        rep.warn(
            root / EPISODES_DIR,
            f"{len(rows) - n_eps} episode row(s) beyond total_episodes={n_eps} (left by an interrupted writer; ignored)",
        )
        rows = rows[:n_eps]
    episodes: list[EpisodeMeta] = []
    expected_from = 0
    for pos, (path, i, r) in enumerate(rows):
        where = f"row {i}"
        try:
            idx, length = int(r["episode_index"]), int(r["length"])
            lo, hi = int(r["dataset_from_index"]), int(r["dataset_to_index"])
        except (TypeError, ValueError) as e:
            rep.error(path, f"{where}: invalid episode_index/length/dataset_*_index ({e})")
            return None
        if idx != pos:
            rep.error(
                path, f"{where}: episode_index is {idx}, expected {pos} (episodes must be 0..N-1 in order)"
            )
        if lo != expected_from:
            rep.error(
                path,
                f"{where} (episode {idx}): dataset_from_index {lo}, expected {expected_from} (ranges must tile the rows)",
            )
        if hi - lo != length or length <= 0:
            rep.error(path, f"{where} (episode {idx}): length {length} but rows [{lo}, {hi})")
        expected_from = hi
        ep_tasks = [str(t) for t in (r.get("tasks") or [])]
        if tasks is not None:
            unknown = [t for t in ep_tasks if t not in tasks]
            if unknown:
                rep.error(path, f"{where} (episode {idx}): task(s) {unknown} are not in {TASKS_PATH}")
        videos = {}
        for key in video_keys:
            try:
                videos[key] = video_span(root, tpl_v, key, r)
            except (TypeError, ValueError, KeyError) as e:
                rep.error(path, f"{where} (episode {idx}): invalid video columns for {key!r} ({e})")
        data_file = None
        if tpl_d and r.get("data/chunk_index") is not None and r.get("data/file_index") is not None:
            relative = tpl_d.format(
                chunk_index=int(r["data/chunk_index"]), file_index=int(r["data/file_index"])
            )
            try:
                data_file = confined(root, relative, f"data_path {tpl_d!r}")
            except DatasetError as e:
                rep.error(root / INFO_PATH, str(e).removeprefix(f"{root / INFO_PATH}: "))
        stats = unflatten_episode_stats(r)
        episodes.append(
            EpisodeMeta(idx, length, lo, ep_tasks, data_file, videos, stats or None, rep.rel(path))
        )
    if isinstance(info.get("total_frames"), int) and expected_from != info["total_frames"]:
        rep.error(
            root / EPISODES_DIR,
            f"episodes cover {expected_from} rows but meta/info.json says total_frames={info['total_frames']}",
        )
    return episodes


def _read_jsonl(rep: Report, path: Path) -> list[dict[str, Any]] | None:
    if not path.is_file():
        rep.error(path, "missing")
        return None
    rows, problems = parse_jsonl(path)
    for problem in problems:
        rep.error(path, problem)
    return None if problems else rows


def check_v2_tasks(rep: Report, root: Path) -> list[str] | None:
    path = root / LEGACY_TASKS_PATH
    rows = _read_jsonl(rep, path)
    if rows is None:
        return None
    tasks, problems = parse_legacy_tasks(rows)
    for problem in problems:
        rep.error(path, problem)
    return tasks


def check_v2_episodes(
    rep: Report, root: Path, info: dict[str, Any], features: dict[str, Feature] | None
) -> list[EpisodeMeta] | None:
    path = root / LEGACY_EPISODES_PATH
    rows = _read_jsonl(rep, path)
    if rows is None:
        return None
    video_keys = [k for k, f in (features or {}).items() if f.is_video]
    fps = float(info["fps"]) if isinstance(info.get("fps"), int | float) and info["fps"] > 0 else 1.0
    stats_by_ep: dict[int, dict[str, dict[str, np.ndarray]]] = {}
    stats_path = root / LEGACY_EPISODES_STATS_PATH
    if info["codebase_version"] == "v2.1":
        srows = _read_jsonl(rep, stats_path) if stats_path.is_file() else None
        if srows is None and not stats_path.is_file():
            rep.warn(stats_path, "missing (v2.1 keeps per-episode stats here)")
        stats_by_ep, problems = parse_legacy_episode_stats(srows or [], stats_path)
        for problem in problems:
            rep.error(stats_path, problem)
    seen: set[int] = set()
    episodes: list[EpisodeMeta] = []
    start = 0
    for n, r in enumerate(sorted(rows, key=lambda r: int(r.get("episode_index", -1))), 1):
        try:
            idx, length = int(r["episode_index"]), int(r["length"])
        except (KeyError, TypeError, ValueError) as e:
            rep.error(path, f"line {n}: needs integer 'episode_index' and 'length' ({e})")
            return None
        if idx in seen:
            rep.error(path, f"episode {idx} listed twice")
        seen.add(idx)
        try:
            tasks = list(legacy_episode_tasks(r))
        except DatasetError as e:  # 'tasks' neither a list nor a string
            rep.error(path, f"line {n}: {e}")
            tasks = []
        try:
            data_file, videos = legacy_episode_files(root, info, idx, length, video_keys, fps)
        except DatasetError as e:  # a template leading outside the folder: no file of it is read
            rep.error(root / INFO_PATH, str(e).removeprefix(f"{root / INFO_PATH}: "))
            return None
        if not data_file.is_file():
            rep.error(data_file, f"missing (data of episode {idx})")
        if stats_by_ep and idx not in stats_by_ep:
            rep.warn(stats_path, f"no stats for episode {idx}")
        episodes.append(
            EpisodeMeta(idx, length, start, tasks, data_file, videos, stats_by_ep.get(idx), rep.rel(path))
        )
        start += length
    n_eps = info.get("total_episodes")
    if isinstance(n_eps, int) and n_eps != len(episodes):
        sev = rep.error if len(episodes) < n_eps else rep.warn
        sev(path, f"lists {len(episodes)} episodes but meta/info.json says total_episodes={n_eps}")
        episodes = episodes[:n_eps]
    if isinstance(info.get("total_frames"), int) and start != info["total_frames"] and len(episodes) == n_eps:
        rep.error(
            path,
            f"episode lengths sum to {start} but meta/info.json says total_frames={info['total_frames']}",
        )
    return episodes

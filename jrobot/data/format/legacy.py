"""Reading LeRobot v2.0 / v2.1 datasets (one parquet and one mp4 per episode, jsonl metadata).

Produces the same `DatasetMeta` as v3.0, so the reader and the converter work on it unchanged:
episodes in episodes.jsonl order, row ranges from their lengths, each episode's mp4 starting at 0 s.
Stats: v2.1 aggregates `episodes_stats.jsonl` (as LeRobot does at load); v2.0 has `stats.json`.
Legacy variants from v1.6 ports (`names` dicts, `video_info`, channel-first image names) are handled
by `jrobot.features.Feature`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from jrobot.data.errors import DatasetError
from jrobot.data.format.info import info_features, info_fps
from jrobot.data.format.layout import (
    DEFAULT_CHUNK_SIZE,
    LEGACY_DATA_PATH,
    LEGACY_EPISODES_PATH,
    LEGACY_EPISODES_STATS_PATH,
    LEGACY_TASKS_PATH,
    LEGACY_VIDEO_PATH,
    STATS_PATH,
    confined,
    fill_template,
)
from jrobot.data.format.meta import DatasetMeta, Episode, VideoSpan
from jrobot.data.format.stats import Stats, aggregate_stats, from_jsonable, load_stats_json


def parse_jsonl(path: Path) -> tuple[list[dict[str, Any]], list[str]]:
    """The JSON-object lines of a jsonl file, and one problem ("line N: ...") per line that is not one.

    Shared by the loader (which raises the first problem, `read_jsonl`) and the validator (which
    reports them all). A missing file raises DatasetError.
    """
    if not path.is_file():
        raise DatasetError(f"missing {path}")
    rows: list[dict[str, Any]] = []
    problems: list[str] = []
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        return [], [f"not UTF-8 text ({e})"]
    for n, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except (json.JSONDecodeError, RecursionError) as e:  # RecursionError: nested too deep
            problems.append(f"line {n}: invalid JSON ({e})")
            continue
        if not isinstance(obj, dict):
            problems.append(f"line {n}: expected a JSON object")
            continue
        rows.append(obj)
    return rows, problems


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    rows, problems = parse_jsonl(path)
    if problems:
        raise DatasetError(f"{path} {problems[0]}")
    return rows


def parse_legacy_tasks(rows: list[dict[str, Any]]) -> tuple[list[str] | None, list[str]]:
    """tasks.jsonl rows -> task strings in task_index order (None when unusable), and the problems found."""
    by_index: dict[int, str] = {}
    problems: list[str] = []
    for n, r in enumerate(rows, 1):
        try:
            i, t = int(r["task_index"]), str(r["task"])
        except (KeyError, TypeError, ValueError) as e:
            return None, [*problems, f"line {n}: needs 'task_index' and 'task' ({e})"]
        if i in by_index:
            problems.append(f"line {n}: task_index {i} appears twice")
        by_index[i] = t
    if sorted(by_index) != list(range(len(by_index))):
        return None, [*problems, f"task indices {sorted(by_index)} are not 0..{len(by_index) - 1}"]
    return [by_index[i] for i in range(len(by_index))], problems


def load_legacy_tasks(root: Path) -> list[str]:
    path = root / LEGACY_TASKS_PATH
    tasks, problems = parse_legacy_tasks(read_jsonl(path))
    if tasks is None:
        raise DatasetError(f"{path}: {problems[-1]}")
    return tasks


def parse_legacy_episode_stats(
    rows: list[dict[str, Any]], path: Path
) -> tuple[dict[int, dict[str, Stats]], list[str]]:
    """episodes_stats.jsonl rows -> stats by episode index, and one problem per unusable row."""
    out: dict[int, dict[str, Stats]] = {}
    problems: list[str] = []
    for n, r in enumerate(rows, 1):
        try:
            out[int(r["episode_index"])] = from_jsonable(r["stats"], source=str(path))
        except (KeyError, TypeError, ValueError) as e:
            problems.append(f"line {n}: bad stats row for episode {r.get('episode_index')} ({e})")
    return out, problems


def load_legacy_episode_stats(root: Path) -> dict[int, dict[str, Stats]]:
    path = root / LEGACY_EPISODES_STATS_PATH
    by_episode, problems = parse_legacy_episode_stats(read_jsonl(path), path)
    if problems:
        raise DatasetError(f"{path}: {problems[0]}")
    return by_episode


def legacy_chunks_size(info: dict[str, Any]) -> int:
    """info.json's `chunks_size` where it is a positive int, else LeRobot's default."""
    cs = info.get("chunks_size")
    return cs if isinstance(cs, int) and not isinstance(cs, bool) and cs > 0 else DEFAULT_CHUNK_SIZE


def legacy_episode_tasks(row: dict[str, Any]) -> tuple[str, ...]:
    """An episodes.jsonl row's tasks (a list, or one string in some v2.0 ports)."""
    tasks = row.get("tasks") or []
    if isinstance(tasks, str):
        return (tasks,)
    if not isinstance(tasks, list):
        raise DatasetError(
            f"episode {row.get('episode_index')}: 'tasks' must be a list of strings, got {tasks!r}"
        )
    return tuple(str(t) for t in tasks)


def legacy_episode_files(
    root: Path, info: dict[str, Any], index: int, length: int, video_keys: list[str], fps: float
) -> tuple[Path, dict[str, VideoSpan]]:
    """Where a v2.x episode is: its own parquet file, and per camera its own mp4 (from 0 s)."""
    chunk = index // legacy_chunks_size(info)
    data_tpl = info.get("data_path") or LEGACY_DATA_PATH
    video_tpl = info.get("video_path") or LEGACY_VIDEO_PATH
    data_file = confined(
        root,
        fill_template(root, "data_path", data_tpl, episode_chunk=chunk, episode_index=index),
        f"data_path {data_tpl!r}",
    )
    videos = {
        key: VideoSpan(
            confined(
                root,
                fill_template(
                    root, "video_path", video_tpl, episode_chunk=chunk, video_key=key, episode_index=index
                ),
                f"video_path {video_tpl!r} (camera {key!r})",
            ),
            0.0,
            length / fps,
        )
        for key in video_keys
    }
    return data_file, videos


def load_v2_meta(root: Path, info: dict[str, Any]) -> DatasetMeta:
    version = str(info["codebase_version"])
    features = info_features(info)
    fps = info_fps(info)
    rows = []
    for r in read_jsonl(root / LEGACY_EPISODES_PATH):
        try:
            rows.append((int(r["episode_index"]), int(r["length"]), r))
        except (KeyError, TypeError, ValueError, OverflowError) as e:  # (NaN, inf, text)
            raise DatasetError(f"{root / LEGACY_EPISODES_PATH}: bad row {str(r)[:200]} ({e!r})") from e
    rows.sort(key=lambda row: row[0])
    n_eps = int(info.get("total_episodes", len(rows)))
    if len(rows) < n_eps:
        raise DatasetError(
            f"{root}: meta/info.json says {n_eps} episodes but {LEGACY_EPISODES_PATH} lists {len(rows)}"
        )
    rows = rows[:n_eps]
    video_keys = [k for k, f in features.items() if f.is_video]
    episodes, data_files = [], []
    start = 0
    for idx, length, r in rows:
        if length < 0:
            raise DatasetError(f"{root / LEGACY_EPISODES_PATH}: episode {idx} has length {length}")
        data_file, videos = legacy_episode_files(root, info, idx, length, video_keys, fps)
        if not data_file.is_file():
            raise DatasetError(f"missing data file for episode {idx}: {data_file}")
        data_files.append(data_file)
        try:
            tasks_of = legacy_episode_tasks(r)
        except DatasetError as e:
            raise DatasetError(f"{root / LEGACY_EPISODES_PATH}: {e}") from e
        episodes.append(Episode(idx, length, tasks_of, start, start + length, videos))
        start += length
    n_frames = int(info.get("total_frames", start))
    if n_frames != start:
        raise DatasetError(
            f"{root}: {LEGACY_EPISODES_PATH} lengths sum to {start} frames but meta/info.json says {n_frames}"
        )
    tasks = load_legacy_tasks(root) if (root / LEGACY_TASKS_PATH).exists() else _tasks_from_episodes(episodes)
    ep_stats_list = None
    if (root / LEGACY_EPISODES_STATS_PATH).exists():
        by_ep = load_legacy_episode_stats(root)
        missing = [e.index for e in episodes if e.index not in by_ep]
        if missing:
            raise DatasetError(f"{root / LEGACY_EPISODES_STATS_PATH}: no stats for episode(s) {missing[:10]}")
        ep_stats_list = [by_ep[e.index] for e in episodes]
        try:
            stats = aggregate_stats(ep_stats_list) if ep_stats_list else None
        except (KeyError, TypeError, ValueError, IndexError) as e:  # a stat missing, shapes that differ
            raise DatasetError(
                f"{root / LEGACY_EPISODES_STATS_PATH}: statistics do not aggregate ({e!r})"
            ) from e
    else:
        stats = load_stats_json(root / STATS_PATH)
    return DatasetMeta(
        root=root,
        info=info,
        version=version,
        fps=fps,
        features=features,
        robot_type=info.get("robot_type"),
        tasks=tasks,
        episodes=episodes,
        data_files=data_files,
        stats=stats,
        episode_stats=ep_stats_list,
    )


def _tasks_from_episodes(episodes: list[Episode]) -> list[str]:
    """v2.0 ports without tasks.jsonl: tasks in first-seen order."""
    return list(dict.fromkeys(t for e in episodes for t in e.tasks))

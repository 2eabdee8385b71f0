"""Reading LeRobot v2.0 / v2.1 datasets (one parquet and one mp4 per episode, jsonl metadata).

Produces the same `DatasetMeta` as v3.0, so the reader and the upgrade work on it unchanged:
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
from jrobot.data.info import info_features, info_fps
from jrobot.data.layout import (
    DEFAULT_CHUNK_SIZE,
    LEGACY_DATA_PATH,
    LEGACY_EPISODES_PATH,
    LEGACY_EPISODES_STATS_PATH,
    LEGACY_TASKS_PATH,
    LEGACY_VIDEO_PATH,
    STATS_PATH,
)
from jrobot.data.meta import DatasetMeta, Episode, VideoSpan
from jrobot.data.stats import Stats, aggregate_stats, from_jsonable, load_stats_json


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        raise DatasetError(f"missing {path}")
    out = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise DatasetError(f"{path} line {n}: invalid JSON ({e})") from e
            if not isinstance(obj, dict):
                raise DatasetError(f"{path} line {n}: expected a JSON object")
            out.append(obj)
    return out


def load_legacy_tasks(root: Path) -> list[str]:
    rows = read_jsonl(root / LEGACY_TASKS_PATH)
    by_index = {}
    for r in rows:
        try:
            by_index[int(r["task_index"])] = str(r["task"])
        except (KeyError, TypeError, ValueError) as e:
            raise DatasetError(f"{root / LEGACY_TASKS_PATH}: bad row {r} ({e})") from e
    if sorted(by_index) != list(range(len(by_index))):
        raise DatasetError(f"{root / LEGACY_TASKS_PATH}: task indices are not 0..{len(by_index) - 1}")
    return [by_index[i] for i in range(len(by_index))]


def load_legacy_episode_stats(root: Path) -> dict[int, dict[str, Stats]]:
    path = root / LEGACY_EPISODES_STATS_PATH
    out = {}
    for r in read_jsonl(path):
        try:
            out[int(r["episode_index"])] = from_jsonable(r["stats"], source=str(path))
        except (KeyError, TypeError, ValueError) as e:
            raise DatasetError(f"{path}: bad row for episode {r.get('episode_index')} ({e})") from e
    return out


def load_v2_meta(root: Path, info: dict[str, Any]) -> DatasetMeta:
    version = str(info["codebase_version"])
    features = info_features(info)
    fps = info_fps(info)
    chunks_size = int(info.get("chunks_size") or DEFAULT_CHUNK_SIZE)
    data_tpl = info.get("data_path") or LEGACY_DATA_PATH
    video_tpl = info.get("video_path") or LEGACY_VIDEO_PATH
    rows = sorted(read_jsonl(root / LEGACY_EPISODES_PATH), key=lambda r: int(r["episode_index"]))
    n_eps = int(info.get("total_episodes", len(rows)))
    if len(rows) < n_eps:
        raise DatasetError(
            f"{root}: meta/info.json says {n_eps} episodes but {LEGACY_EPISODES_PATH} lists {len(rows)}"
        )
    rows = rows[:n_eps]
    video_keys = [k for k, f in features.items() if f.is_video]
    episodes, data_files = [], []
    start = 0
    for r in rows:
        try:
            idx, length = int(r["episode_index"]), int(r["length"])
        except (KeyError, TypeError, ValueError) as e:
            raise DatasetError(f"{root / LEGACY_EPISODES_PATH}: bad row {r} ({e})") from e
        chunk = idx // chunks_size
        data_file = root / data_tpl.format(episode_chunk=chunk, episode_index=idx)
        if not data_file.is_file():
            raise DatasetError(f"missing data file for episode {idx}: {data_file}")
        data_files.append(data_file)
        videos = {
            key: VideoSpan(
                root / video_tpl.format(episode_chunk=chunk, video_key=key, episode_index=idx),
                0.0,
                length / fps,
            )
            for key in video_keys
        }
        tasks = r.get("tasks") or []
        if isinstance(tasks, str):
            tasks = [tasks]
        episodes.append(Episode(idx, length, tuple(str(t) for t in tasks), start, start + length, videos))
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
        stats = aggregate_stats(ep_stats_list) if ep_stats_list else None
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

"""Check a LeRobot dataset (v2.0/v2.1/v3.0) against the format and list *every* problem, with its file.

The reader (`open_dataset`) stops at the first inconsistency it cannot work around; this module keeps
going, so one run tells a user everything that is wrong. Each `Problem` names the file (relative to
the dataset root) and says what is wrong there; row-level problems are grouped per file and check,
with a count and the first few examples.

Errors are what breaks loading or returns wrong data in LeRobot or jrobot: unreadable files, missing
columns, rows out of global index order, episode ranges that do not tile the rows, frame indices or
timestamps off the episode's 1/fps grid, task indices without a task, missing video files, videos
with fewer frames in an episode's time range than the episode has rows, wrong camera resolutions.
Warnings are what LeRobot tolerates but a user should know: rows or episodes beyond info.json's
totals (an interrupted writer), `data/file_index` pointing at the wrong file (LeRobot 0.4.4's
converter bug), missing or malformed statistics, and image stds corrupted by LeRobot 0.4.0–0.5.1's
uint8 overflow. `decode=True` also decodes every video frame and image through the reader.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from jrobot.data.errors import DatasetError
from jrobot.data.format.info import (
    SUPPORTED_VERSIONS,
    parse_info_features,
    read_info_json,
    validate_feature_specs,
)
from jrobot.data.format.layout import (
    DATA_DIR,
    INFO_PATH,
    sorted_parquet_files,
)
from jrobot.data.read.hub import resolve_dataset
from jrobot.data.read.reader import open_dataset
from jrobot.data.validate.content import check_rows, check_stats, check_videos
from jrobot.data.validate.meta import check_v2_episodes, check_v2_tasks, check_v3_episodes, check_v3_tasks
from jrobot.data.validate.report import Problem, Report
from jrobot.features import DEFAULT_FEATURE_NAMES, Feature

__all__ = ["Problem", "is_valid", "validate_dataset"]


def validate_dataset(source: str | os.PathLike[str], *, decode: bool = False) -> list[Problem]:
    """Every problem found in the dataset at `source` (a folder or a Hub id); empty when valid.

    Never raises for a bad dataset (problems are returned); a source that cannot be resolved (no
    such folder, offline Hub id) raises DatasetError.
    """
    root = resolve_dataset(source)
    rep = Report(root)
    info = _check_info(rep, root)
    if info is None:
        return rep.problems
    features = _features(rep, root, info)
    version = str(info["codebase_version"])
    if version == "v3.0":
        tasks = check_v3_tasks(rep, root, info)
        episodes = check_v3_episodes(rep, root, info, features, tasks)
        try:
            data_files = sorted_parquet_files(root / DATA_DIR)
        except DatasetError as e:  # a data file symlinked out of the dataset: reported, not read
            rep.error(root / DATA_DIR, str(e))
            return rep.problems
        if not data_files and int(info.get("total_frames") or 0):
            rep.error(root / DATA_DIR, "no data/*/*.parquet files")
    else:
        tasks = check_v2_tasks(rep, root)
        episodes = check_v2_episodes(rep, root, info, features)
        data_files = []  # v2: each episode's own file, from the episode metadata
    if features is None or episodes is None:
        return rep.problems
    fps = float(info["fps"]) if isinstance(info.get("fps"), int | float) and info["fps"] > 0 else None
    check_rows(rep, root, version, info, features, episodes, data_files, tasks, fps)
    if fps is not None:
        check_videos(rep, root, version, features, episodes, fps)
    check_stats(rep, root, version, info, features, episodes)
    if decode and not any(p.severity == "error" for p in rep.problems):
        _check_decoding(rep, root)
    return rep.problems


def is_valid(problems: Sequence[Problem]) -> bool:
    """No errors (warnings allowed)."""
    return not any(p.severity == "error" for p in problems)


# -- info.json ------------------------------------------------------------------------------------


def _check_info(rep: Report, root: Path) -> dict[str, Any] | None:
    path = root / INFO_PATH
    if not path.is_file():
        rep.error(path, "missing: not a LeRobot dataset folder")
        return None
    try:
        info = read_info_json(path)
    except DatasetError as e:
        rep.error(path, str(e).replace(f"{path}: ", ""))
        return None
    missing = [k for k in ("codebase_version", "fps", "features") if k not in info]
    if missing:
        rep.error(path, f"required key(s) {missing} missing")
        return None
    version = str(info["codebase_version"])
    if version not in SUPPORTED_VERSIONS:
        rep.error(path, f"codebase_version {version!r} is not one of {list(SUPPORTED_VERSIONS)}")
        return None
    fps = info["fps"]
    if not isinstance(fps, int | float) or isinstance(fps, bool) or fps <= 0:
        rep.error(path, f"'fps' must be a positive number, got {fps!r}")
    elif version == "v3.0" and not isinstance(fps, int):
        rep.warn(path, f"'fps' is {fps!r}; LeRobot v3.0 writes an int")
    for key in ("total_episodes", "total_frames", "total_tasks"):
        if key not in info:
            rep.error(path, f"required key {key!r} missing")
        elif not isinstance(info[key], int) or isinstance(info[key], bool) or info[key] < 0:
            rep.error(path, f"{key!r} must be a non-negative integer, got {info[key]!r}")
    cs = info.get("chunks_size")
    if not isinstance(cs, int) or cs <= 0:
        rep.error(path, f"'chunks_size' must be a positive integer, got {cs!r}")
    if version == "v3.0":
        for key in ("data_path", "data_files_size_in_mb", "video_files_size_in_mb"):
            if key not in info:
                rep.warn(path, f"key {key!r} missing (LeRobot writes it)")
    return info


def _features(rep: Report, root: Path, info: dict[str, Any]) -> dict[str, Feature] | None:
    path = root / INFO_PATH
    raw = info["features"]
    if not isinstance(raw, dict) or not raw:
        rep.error(path, "'features' must be a non-empty object")
        return None
    out: dict[str, Feature] = {}
    parsed, problems = parse_info_features(raw)
    for problem in problems:
        rep.error(path, problem)
    ok = not problems
    for key, feat in parsed.items():
        if key not in DEFAULT_FEATURE_NAMES:
            try:
                validate_feature_specs({key: feat})
            except DatasetError as e:
                rep.error(path, str(e))
                ok = False
                continue
        out[key] = feat
    for key in DEFAULT_FEATURE_NAMES:
        if key not in raw:
            rep.error(path, f"bookkeeping feature {key!r} missing from 'features'")
            ok = False
    video = [k for k, f in out.items() if f.is_video]
    if video and not info.get("video_path"):
        rep.error(path, f"video features {video} but no 'video_path' template")
        ok = False
    return out if ok else None


# -- decoding -------------------------------------------------------------------------------------


def _check_decoding(rep: Report, root: Path) -> None:
    try:
        ds = open_dataset(root)
    except DatasetError as e:
        rep.error(root, f"the reader rejects the dataset: {e}")
        return
    with ds:
        for e in ds.episodes:
            for key in ds.camera_keys:
                n = 0
                try:
                    for _ in ds.iter_camera(e.index, key):
                        n += 1
                except DatasetError as err:
                    where = e.videos[key].path if key in e.videos else ds.meta.data_files[0]
                    rep.error(where, f"camera {key!r} episode {e.index}: frame {n} does not decode ({err})")
                    continue
                if n != e.length:
                    rep.error(
                        root, f"camera {key!r} episode {e.index}: decoded {n} frames, expected {e.length}"
                    )

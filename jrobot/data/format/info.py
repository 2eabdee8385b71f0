"""meta/info.json: building it in LeRobot 0.4.4's key order, loading it, and checking it.

The dict is kept as plain JSON data (what LeRobot writes and reads); `Feature` objects from
`jrobot.features` are derived from it for typed access. Unknown keys are preserved on rewrite.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from jrobot.data.errors import DatasetError
from jrobot.data.format.layout import (
    CODEBASE_VERSION,
    DEFAULT_CHUNK_SIZE,
    DEFAULT_DATA_FILE_SIZE_IN_MB,
    DEFAULT_DATA_PATH,
    DEFAULT_VIDEO_FILE_SIZE_IN_MB,
    DEFAULT_VIDEO_PATH,
    INFO_PATH,
)
from jrobot.features import (
    DEFAULT_FEATURE_NAMES,
    Feature,
    default_features,
    features_from_json,
    folder_name_problem,
)

SUPPORTED_VERSIONS = ("v2.0", "v2.1", "v3.0")


def new_info(
    *,
    fps: int,
    features: Mapping[str, Feature],
    robot_type: str | None,
    chunks_size: int = DEFAULT_CHUNK_SIZE,
    data_files_size_in_mb: int = DEFAULT_DATA_FILE_SIZE_IN_MB,
    video_files_size_in_mb: int = DEFAULT_VIDEO_FILE_SIZE_IN_MB,
) -> dict[str, Any]:
    """An empty v3.0 info dict, keys in the order LeRobot 0.4.4 writes them (`create_empty_dataset_info`)."""
    all_features = dict(features)
    for name, feat in default_features().items():
        all_features.setdefault(name, feat)
    has_video = any(f.is_video for f in all_features.values())
    return {
        "codebase_version": CODEBASE_VERSION,
        "robot_type": robot_type,
        "total_episodes": 0,
        "total_frames": 0,
        "total_tasks": 0,
        "chunks_size": int(chunks_size),
        "data_files_size_in_mb": _number(data_files_size_in_mb),
        "video_files_size_in_mb": _number(video_files_size_in_mb),
        "fps": int(fps),
        "splits": {},
        "data_path": DEFAULT_DATA_PATH,
        "video_path": DEFAULT_VIDEO_PATH if has_video else None,
        "features": {k: f.to_json() for k, f in all_features.items()},
    }


def _number(x: float) -> int | float:
    """Sizes are ints in LeRobot's info.json; keep a fractional limit (tests use tiny ones) as given."""
    return int(x) if float(x).is_integer() else float(x)


def read_info_json(path: Path) -> dict[str, Any]:
    """The JSON object in `path`; DatasetError naming the file when it is unreadable or not an object.

    The one place info.json is parsed: `load_info` checks the result strictly enough to load,
    the validator checks it further and reports every problem.
    """
    try:
        with open(path, encoding="utf-8") as f:
            info = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:  # (nested too deep)
        raise DatasetError(f"{path}: unreadable or invalid JSON ({e})") from e
    if not isinstance(info, dict):
        raise DatasetError(f"{path}: expected a JSON object, got {type(info).__name__}")
    return info


def load_info(root: Path) -> dict[str, Any]:
    """Read and sanity-check meta/info.json; errors name the file and the problem."""
    path = root / INFO_PATH
    if not path.is_file():
        raise DatasetError(f"{root}: not a LeRobot dataset (missing {INFO_PATH})")
    info = read_info_json(path)
    for key in ("codebase_version", "fps", "features"):
        if key not in info:
            raise DatasetError(f"{path}: required key {key!r} is missing")
    version = str(info["codebase_version"])
    if version not in SUPPORTED_VERSIONS:
        raise DatasetError(
            f"{path}: codebase_version {version!r} is not supported (expected one of {SUPPORTED_VERSIONS})"
        )
    if not isinstance(info["features"], dict) or not info["features"]:
        raise DatasetError(f"{path}: 'features' must be a non-empty object")
    _, problems = parse_info_features(info["features"])
    if problems:
        raise DatasetError(f"{path}: {problems[0]}")
    fps = info["fps"]
    if not isinstance(fps, int | float) or not 0 < fps < math.inf:  # (JSON allows NaN and Infinity)
        raise DatasetError(f"{path}: 'fps' must be a positive number, got {fps!r}")
    for key in ("total_episodes", "total_frames"):
        value = info.get(key, 0)
        if not isinstance(value, int) or value < 0:
            raise DatasetError(f"{path}: {key!r} must be a non-negative integer, got {value!r}")
    return info


def info_fps(info: Mapping[str, Any]) -> int | float:
    """fps as LeRobot uses it: an int (v1.6 ports store e.g. 10.0, which is the same rate)."""
    fps = info["fps"]
    return int(fps) if float(fps).is_integer() else float(fps)


def parse_info_features(raw: Mapping[str, Any]) -> tuple[dict[str, Feature], list[str]]:
    """info.json's `features` object -> the features that parse, and one problem per one that does not.

    `load_info` raises the first problem; the validator reports them all.
    """
    out: dict[str, Feature] = {}
    problems: list[str] = []
    for key, spec in raw.items():
        if not isinstance(spec, Mapping):
            problems.append(f"feature {key!r}: expected an object, got {spec!r}")
            continue
        try:
            feature = Feature.from_json(spec, key=key)
        except ValueError as e:
            problems.append(str(e))
            continue
        why = folder_name_problem(key) if feature.is_visual else None
        if why is not None:
            problems.append(f"camera feature {why} (its key names its video folder)")
            continue
        out[key] = feature
    return out, problems


def info_features(info: Mapping[str, Any]) -> dict[str, Feature]:
    return features_from_json(info["features"])


def user_features(features: Mapping[str, Feature]) -> dict[str, Feature]:
    """The recorded features (what `add_frame` takes): everything except the five bookkeeping columns."""
    return {k: f for k, f in features.items() if k not in DEFAULT_FEATURE_NAMES}


def validate_feature_specs(features: Mapping[str, Feature]) -> None:
    """Reject feature specs LeRobot could not store or read back."""
    if not features:
        raise DatasetError("a dataset needs at least one feature")
    for key, feat in features.items():
        if not isinstance(feat, Feature):
            raise DatasetError(
                f"feature {key!r}: expected a jrobot.features.Feature, got {type(feat).__name__}"
            )
        if "/" in key:
            raise DatasetError(f"feature name {key!r} must not contain '/' (LeRobot's flattening separator)")
        why = folder_name_problem(key) if feat.is_visual else None
        if why is not None:
            raise DatasetError(f"camera feature {why} (its key names its video folder)")
        if key in DEFAULT_FEATURE_NAMES:
            raise DatasetError(f"feature {key!r} is a bookkeeping column the store adds itself; remove it")
        if key in ("task", "size"):
            raise DatasetError(f"feature name {key!r} is reserved")
        if feat.is_visual:
            if len(feat.shape) != 3 or 3 not in (feat.shape[0], feat.shape[2]):
                raise DatasetError(f"feature {key!r}: visual shape must be (H, W, 3), got {feat.shape}")
            h, w, c = feat.hwc_shape
            if c != 3:
                raise DatasetError(
                    f"feature {key!r}: only 3-channel images are supported, got shape {feat.shape}"
                )
            if feat.is_video and (h % 2 or w % 2):
                raise DatasetError(f"feature {key!r}: yuv420p video needs even height and width, got {h}x{w}")
        elif feat.dtype == "string":
            if tuple(feat.shape) != (1,):
                raise DatasetError(f"feature {key!r}: string features have shape (1,), got {feat.shape}")
        else:
            try:
                np.dtype(feat.dtype)
            except TypeError as e:
                raise DatasetError(f"feature {key!r}: unknown dtype {feat.dtype!r}") from e
            if not feat.shape or any(int(s) <= 0 for s in feat.shape) or len(feat.shape) > 5:
                raise DatasetError(f"feature {key!r}: shape must have 1 to 5 positive dims, got {feat.shape}")

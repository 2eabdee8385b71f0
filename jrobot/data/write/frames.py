"""Checking one `add_frame` input against the features and normalising it (HWC uint8 images, exact dtypes).

LeRobot's rules: the frame holds exactly the recorded features plus "task" (a timestamp is optional);
numeric values must have the feature's dtype and shape; images are uint8 in [0, 255] or float in
[0, 1], HWC or CHW, 3 channels. Errors list every problem with the key and what was expected.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from jrobot.data.errors import DatasetError
from jrobot.features import Feature


def normalize_image(key: str, feat: Feature, value: Any) -> np.ndarray:
    """An (H, W, 3) uint8 array from uint8/float, HWC/CHW input (or a PIL image)."""
    if not isinstance(value, np.ndarray):
        if hasattr(value, "mode") and hasattr(value, "size"):  # PIL image
            value = np.asarray(value.convert("RGB"))
        else:
            raise DatasetError(f"frame[{key!r}]: expected an image array, got {type(value).__name__}")
    h, w, c = feat.hwc_shape
    if value.shape == (c, h, w) and value.shape != (h, w, c):
        value = np.transpose(value, (1, 2, 0))
    if value.shape != (h, w, c):
        raise DatasetError(
            f"frame[{key!r}]: image shape {value.shape} does not match the feature ({h}, {w}, {c}) (HWC or CHW)"
        )
    if value.dtype == np.uint8:
        return value
    if np.issubdtype(value.dtype, np.floating):
        lo, hi = float(np.min(value)), float(np.max(value))
        if lo < 0.0 or hi > 1.0:
            raise DatasetError(f"frame[{key!r}]: float images must be in [0, 1], got values in [{lo}, {hi}]")
        return (value * 255).astype(np.uint8)
    raise DatasetError(f"frame[{key!r}]: image dtype must be uint8 or float in [0, 1], got {value.dtype}")


def normalize_value(key: str, feat: Feature, value: Any) -> Any:
    if feat.is_visual:
        return normalize_image(key, feat, value)
    if feat.dtype == "string":
        if not isinstance(value, str):
            raise DatasetError(f"frame[{key!r}]: expected a str, got {type(value).__name__}")
        return value
    expected = np.dtype(feat.dtype)
    shape = tuple(feat.shape)
    if isinstance(value, np.ndarray | np.generic):
        arr = np.asarray(value)
        if arr.dtype != expected:
            raise DatasetError(f"frame[{key!r}]: dtype {arr.dtype} does not match the feature's {expected}")
    elif isinstance(value, bool | int | float | list | tuple):
        try:
            arr = np.asarray(value, dtype=expected)
        except (TypeError, ValueError) as e:
            raise DatasetError(f"frame[{key!r}]: cannot convert {value!r} to {expected}") from e
    else:
        raise DatasetError(
            f"frame[{key!r}]: expected a numpy array of {expected}{list(shape)}, got {type(value).__name__}"
        )
    if shape == (1,) and arr.shape == ():
        arr = arr.reshape(1)
    if arr.shape != shape:
        raise DatasetError(f"frame[{key!r}]: shape {arr.shape} does not match the feature's {shape}")
    return arr.copy()


def normalize_frame(frame: Mapping[str, Any], features: Mapping[str, Feature]) -> dict[str, Any]:
    """Validate every key of `frame` (minus "task"/"timestamp") and return normalised values."""
    if not isinstance(frame, Mapping):
        raise DatasetError(f"a frame must be a dict of feature -> value, got {type(frame).__name__}")
    given = set(frame) - {"task", "timestamp"}
    expected = set(features)
    problems = []
    if expected - given:
        problems.append(f"missing feature(s) {sorted(expected - given)}")
    if given - expected:
        problems.append(
            f"unknown feature(s) {sorted(given - expected)} (dataset features: {sorted(expected)})"
        )
    if problems:
        raise DatasetError("frame does not match the dataset: " + "; ".join(problems))
    return {k: normalize_value(k, features[k], frame[k]) for k in features}

"""What a rewrite takes from its sources: episode references and the rules for comparing their features.

Its own module because the rewrite engine, its video and its stats parts and the edit operations all
use these, and none of them should import another just for a type.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from jrobot.data.read.reader import Dataset
from jrobot.features import Feature


@dataclasses.dataclass(frozen=True)
class EpisodeRef:
    """Episode `episode_index` of an opened source dataset."""

    dataset: Dataset
    episode_index: int


def normalized_feature(feat: Feature) -> Feature:
    """A feature with the legacy variants of v1.6 ports removed (see the module docstring)."""
    names: Any = feat.names
    if isinstance(names, Mapping):
        values = list(names.values())
        if len(values) == 1 and isinstance(values[0], list | tuple):
            names = [str(v) for v in values[0]]
    shape = tuple(int(s) for s in feat.shape)
    info = feat.info
    if feat.is_visual:
        shape = feat.hwc_shape
        names = ["height", "width", "channels"]
        info = None  # video: re-probed from the written file; image: has none
    return Feature(feat.dtype, shape, names, info, dict(feat.extra))


def same_feature(a: Feature, b: Feature) -> bool:
    """Can episodes with feature `a` and feature `b` share one dataset column?"""
    if a.dtype != b.dtype:
        return False
    if a.is_visual:
        return a.hwc_shape == b.hwc_shape
    return tuple(a.shape) == tuple(b.shape) and a.flat_names == b.flat_names

"""Detecting LeRobot 0.4.0-0.5.1's uint8-overflowed image std from the stats alone."""

from __future__ import annotations

import numpy as np

from jrobot.data.format.stats import frame_channel_counts, image_stats_from_counts
from jrobot.data.format.stats_check import OVERFLOW_STD_CEILING, image_std_is_corrupt, image_std_lower_bound


def _images(rng: np.random.Generator, kind: str, n: int = 12, h: int = 24, w: int = 32) -> np.ndarray:
    if kind == "noise":
        return rng.integers(0, 256, (n, h, w, 3), dtype=np.uint8)
    if kind == "stripes":
        img = np.zeros((n, h, w, 3), np.uint8)
        img[:, :, ::4] = 255
        return img
    if kind == "dark":  # values below 16: squares never wrap, LeRobot's std is right
        return rng.integers(0, 16, (n, h, w, 3), dtype=np.uint8)
    if kind == "flat":
        return np.full((n, h, w, 3), 77, np.uint8)
    if kind == "gradient":
        g = np.linspace(0, 255, w).astype(np.uint8)
        return np.broadcast_to(g[None, None, :, None], (n, h, w, 3)).copy()
    if kind == "narrow":  # a small spread around a bright level
        return rng.integers(120, 131, (n, h, w, 3), dtype=np.uint8)
    raise AssertionError(kind)


def _lerobot_buggy_std(imgs: np.ndarray) -> np.ndarray:
    """LeRobot 0.4.4's RunningQuantileStats on uint8 pixels: `batch**2` wraps modulo 256."""
    x = imgs.reshape(-1, 3)
    mean = x.mean(axis=0)
    mean_sq = (x**2).mean(axis=0)  # uint8 ** 2 stays uint8: the bug
    return np.sqrt(np.maximum(0, mean_sq - mean**2)).reshape(3, 1, 1) / 255


def test_correct_stats_are_never_flagged_and_overflowed_ones_are():
    rng = np.random.default_rng(0)
    for kind in ("noise", "stripes", "dark", "flat", "gradient", "narrow"):
        imgs = _images(rng, kind)
        counts = np.sum([frame_channel_counts(i) for i in imgs], axis=0, dtype=np.int64)
        good = image_stats_from_counts(counts, len(imgs))
        assert np.allclose(good["std"].ravel(), imgs.reshape(-1, 3).std(axis=0) / 255)
        assert not image_std_is_corrupt(good), kind
        bad = {**good, "std": _lerobot_buggy_std(imgs)}
        assert np.all(bad["std"] <= OVERFLOW_STD_CEILING + 1e-12)
        wrapped = kind not in ("dark", "flat")  # values >= 16 with some spread: the bug shows
        assert image_std_is_corrupt(bad) == wrapped, kind


def test_no_quantiles_no_verdict():
    stats = {"mean": np.full((3, 1, 1), 0.5), "std": np.zeros((3, 1, 1)), "min": np.zeros((3, 1, 1))}
    assert image_std_lower_bound(stats) is None
    assert not image_std_is_corrupt(stats)

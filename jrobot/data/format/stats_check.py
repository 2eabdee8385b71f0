"""Is a stored image std plausible? Detecting LeRobot 0.4.0–0.5.1's uint8 overflow in image stats.

Those versions square uint8 pixels before averaging (`batch**2` wraps modulo 256), so the E[x²] they
store is at most 255 and the std they derive, `sqrt(max(0, E[x²] - mean²))`, is at most
sqrt(255)/255 ≈ 0.063 in [0, 1] units, and usually 0 (reference: lerobot_formats.md §4). Their
quantiles and mean are right, and quantiles bound the std from below for *any* distribution: at
least a fraction p of the values lies at or below q_p and at least p at or above q_(1-p), and one of
those two groups is at least (q_(1-p) - q_p)/2 away from the mean, so

    std >= sqrt(p) * (q_(1-p) - q_p) / 2        (p = 0.10: 0.158 · (q90 - q10); p = 0.01: 0.05 · (q99 - q01)).

A std that breaks this bound (with a margin for the histogram's quantile approximation) and lies in
the range the overflow produces is the bug's signature, not a property of the images. Datasets
without quantiles (converted from v2.x) were computed correctly and cannot be checked this way.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

# Largest std (in [0, 1] units) the overflowed computation can produce: E[x² mod 256] <= 255.
OVERFLOW_STD_CEILING = math.sqrt(255.0) / 255.0
_PAIRS = (("q10", "q90", 0.10), ("q01", "q99", 0.01))
_MARGIN = 0.5  # flag only when the std is below half the bound (quantiles are histogram estimates)
_MIN_BOUND = 1.0 / 255.0  # ignore bounds under one grey level (flat images: the edges' 1e-10 padding)


def image_std_lower_bound(stats: Mapping[str, np.ndarray]) -> np.ndarray | None:
    """Per-channel lower bound on the std implied by the quantiles, or None without quantiles."""
    bound = None
    for lo_key, hi_key, p in _PAIRS:
        if lo_key in stats and hi_key in stats:
            spread = np.asarray(stats[hi_key], dtype=np.float64) - np.asarray(stats[lo_key], dtype=np.float64)
            b = math.sqrt(p) * np.maximum(spread, 0.0) / 2.0
            bound = b if bound is None else np.maximum(bound, b)
    return None if bound is None else bound.reshape(-1)


def image_std_is_corrupt(stats: Mapping[str, np.ndarray]) -> bool:
    """True when the stored std is impossible given the quantiles and looks like the uint8 overflow."""
    if "std" not in stats:
        return False
    bound = image_std_lower_bound(stats)
    if bound is None:
        return False
    std = np.asarray(stats["std"], dtype=np.float64).reshape(-1)
    if std.shape != bound.shape:
        return False
    bad = (std < _MARGIN * bound) & (bound > _MIN_BOUND) & (std <= OVERFLOW_STD_CEILING + 1e-9)
    return bool(np.any(bad))


def describe_image_std_problem(key: str, stats: Mapping[str, np.ndarray]) -> str:
    """One line saying what is wrong with `key`'s stored image std (for reports)."""
    std = np.asarray(stats["std"], dtype=np.float64).reshape(-1)
    bound = image_std_lower_bound(stats)
    assert bound is not None
    return (
        f"{key}: stored image std {np.round(std, 4).tolist()} is below the minimum "
        f"{np.round(bound, 4).tolist()} its own quantiles allow; this is LeRobot 0.4.0-0.5.1's uint8 "
        "overflow in image statistics (fixed in LeRobot 0.6.0)"
    )


def corrupt_image_std_keys(
    stats: Mapping[str, Mapping[str, np.ndarray]] | None, visual_keys: list[str]
) -> list[str]:
    """The visual features whose stats show the overflow (empty when `stats` is None)."""
    if not stats:
        return []
    return [k for k in visual_keys if k in stats and image_std_is_corrupt(stats[k])]

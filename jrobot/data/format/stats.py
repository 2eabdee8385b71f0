"""Dataset statistics with LeRobot 0.4.4's definitions (`lerobot/datasets/compute_stats.py`).

Numeric features: per-dimension min/max/mean/std/count and the q01..q99 quantiles from LeRobot's
5000-bin running histogram, computed with the same numpy operations so the numbers match.

Image and video features: LeRobot samples `n = max(min(100, N), min(int(N**0.75), 10000))` frames,
stride-downsamples each to ~150 px, and reduces per channel; values are divided by 255 and shaped
(3, 1, 1), and `count` is the number of sampled frames. Pixels are integers 0..255, so a 256-bin
count per channel of each downsampled frame holds everything those statistics need: the writer
accumulates these counts while frames arrive (on the encoder threads) and `ImageStatsAccumulator`
turns the sampled frames' counts into exactly the histogram LeRobot would have built, without
decoding anything at save time. The std is computed from exact integer sums, so it does not have
LeRobot 0.4.0-0.5.1's uint8 overflow (their stored image std is ~0).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from jrobot.data.errors import DatasetError

DEFAULT_QUANTILES = (0.01, 0.10, 0.50, 0.90, 0.99)
QUANTILE_KEYS = tuple(f"q{int(q * 100):02d}" for q in DEFAULT_QUANTILES)
STAT_KEYS = ("min", "max", "mean", "std", "count", *QUANTILE_KEYS)
NUM_BINS = 5000

Stats = dict[str, np.ndarray]


class RunningQuantileStats:
    """LeRobot's RunningQuantileStats, same arithmetic (the histogram re-binning is vectorised)."""

    def __init__(self, num_quantile_bins: int = NUM_BINS) -> None:
        self._count = 0
        self._mean: np.ndarray | None = None
        self._mean_of_squares: np.ndarray | None = None
        self._min: np.ndarray | None = None
        self._max: np.ndarray | None = None
        self._histograms: list[np.ndarray] = []
        self._bin_edges: list[np.ndarray] = []
        self._num_bins = num_quantile_bins

    def update(self, batch: np.ndarray) -> None:
        batch = batch.reshape(-1, batch.shape[-1])
        num_elements, vector_length = batch.shape
        if self._count == 0:
            self._mean = np.mean(batch, axis=0)
            self._mean_of_squares = np.mean(batch**2, axis=0)
            self._min = np.min(batch, axis=0)
            self._max = np.max(batch, axis=0)
            self._histograms = [np.zeros(self._num_bins) for _ in range(vector_length)]
            self._bin_edges = [
                np.linspace(self._min[i] - 1e-10, self._max[i] + 1e-10, self._num_bins + 1)
                for i in range(vector_length)
            ]
        else:
            if vector_length != self._mean.size:
                raise ValueError("The length of new vectors does not match the initialized vector length.")
            new_max = np.max(batch, axis=0)
            new_min = np.min(batch, axis=0)
            changed = np.any(new_max > self._max) or np.any(new_min < self._min)
            self._max = np.maximum(self._max, new_max)
            self._min = np.minimum(self._min, new_min)
            if changed:
                self._adjust_histograms()
        self._count += num_elements
        batch_mean = np.mean(batch, axis=0)
        batch_mean_of_squares = np.mean(batch**2, axis=0)
        self._mean += (batch_mean - self._mean) * (num_elements / self._count)
        self._mean_of_squares += (batch_mean_of_squares - self._mean_of_squares) * (
            num_elements / self._count
        )
        for i in range(batch.shape[1]):
            hist, _ = np.histogram(batch[:, i], bins=self._bin_edges[i])
            self._histograms[i] += hist

    def _adjust_histograms(self) -> None:
        for i in range(len(self._histograms)):
            old_edges, old_hist = self._bin_edges[i], self._histograms[i]
            padding = (self._max[i] - self._min[i]) * 1e-10
            new_edges = np.linspace(self._min[i] - padding, self._max[i] + padding, self._num_bins + 1)
            centers = (old_edges[:-1] + old_edges[1:]) / 2
            nz = old_hist > 0
            idx = np.clip(np.searchsorted(new_edges, centers[nz]) - 1, 0, self._num_bins - 1)
            new_hist = np.zeros(self._num_bins)
            np.add.at(new_hist, idx, old_hist[nz])
            self._histograms[i] = new_hist
            self._bin_edges[i] = new_edges

    def get_statistics(self) -> Stats:
        if self._count < 2:
            raise ValueError("Cannot compute statistics for less than 2 vectors.")
        variance = self._mean_of_squares - self._mean**2
        stats: Stats = {
            "min": self._min.copy(),
            "max": self._max.copy(),
            "mean": self._mean.copy(),
            "std": np.sqrt(np.maximum(0, variance)),
            "count": np.array([self._count]),
        }
        for key, q in zip(QUANTILE_KEYS, DEFAULT_QUANTILES, strict=True):
            stats[key] = np.array(
                [
                    _hist_quantile(h, e, q * self._count)
                    for h, e in zip(self._histograms, self._bin_edges, strict=True)
                ]
            )
        return stats


def _hist_quantile(hist: np.ndarray, edges: np.ndarray, target_count: float) -> float:
    """LeRobot's `_compute_single_quantile`: first bin reaching the target count, linear inside it."""
    cumsum = np.cumsum(hist)
    idx = int(np.searchsorted(cumsum, target_count))
    if idx == 0:
        return edges[0]
    if idx >= len(cumsum):
        return edges[-1]
    count_before = cumsum[idx - 1]
    count_in_bin = cumsum[idx] - count_before
    if count_in_bin == 0:
        return edges[idx]
    return edges[idx] + (target_count - count_before) / count_in_bin * (edges[idx + 1] - edges[idx])


def _basic_stats(reshaped: np.ndarray, count: int) -> Stats:
    stats: Stats = {
        "min": np.min(reshaped, axis=0),
        "max": np.max(reshaped, axis=0),
        "mean": np.mean(reshaped, axis=0),
        "std": np.std(reshaped, axis=0),
        "count": np.array([count]),
    }
    for key in QUANTILE_KEYS:
        stats[key] = stats["mean"].copy()
    return stats


def numeric_stats(data: np.ndarray) -> Stats:
    """Per-episode stats of one numeric column (N,) or (N, D...): LeRobot's `get_feature_stats(axis=0)`.

    Scalar columns give shape (1,) stats, vectors (D,). Stats keep the data's arithmetic dtype, as
    LeRobot's do (float32 columns give float32 means), so the values match LeRobot's.
    """
    data = np.asarray(data)
    if data.dtype == np.bool_:
        data = data.astype(np.int64)
    n = data.shape[0]
    reshaped = data.reshape(-1, 1) if data.ndim == 1 else data.reshape(n, -1)
    if reshaped.shape[0] < 2:
        stats = _basic_stats(reshaped, n)
    else:
        rs = RunningQuantileStats()
        rs.update(reshaped)
        stats = rs.get_statistics()
        stats["count"] = np.array([n])
    if data.ndim == 1:
        return {k: v if k == "count" else np.asarray(v).reshape(1) for k, v in stats.items()}
    return {k: v if k == "count" else np.asarray(v).reshape(data.shape[1:]) for k, v in stats.items()}


def sample_indices(length: int) -> list[int]:
    """Which frames LeRobot samples for image stats (`sample_indices`/`estimate_num_samples`)."""
    min_samples = min(100, length)
    num = max(min_samples, min(int(length**0.75), 10_000))
    return np.round(np.linspace(0, length - 1, num)).astype(int).tolist()


def downsample_hwc(img: np.ndarray, target_size: int = 150, max_size_threshold: int = 300) -> np.ndarray:
    """LeRobot's `auto_downsample_height_width`, on an HWC image (a strided view, no copy)."""
    height, width = img.shape[0], img.shape[1]
    if max(width, height) < max_size_threshold:
        return img
    factor = int(width / target_size) if width > height else int(height / target_size)
    return img[::factor, ::factor]


def frame_channel_counts(img_hwc: np.ndarray) -> np.ndarray:
    """(C, 256) pixel-value counts of the downsampled frame: all that image stats need from a frame."""
    small = downsample_hwc(img_hwc)
    channels = small.shape[2]
    flat = np.ascontiguousarray(small).reshape(-1, channels)
    return np.stack([np.bincount(flat[:, c], minlength=256) for c in range(channels)]).astype(np.int32)


class ImageStatsAccumulator:
    """Per-frame channel counts of one camera for one episode; turns them into LeRobot image stats."""

    def __init__(self) -> None:
        self._counts: list[np.ndarray] = []

    def add(self, img_hwc: np.ndarray) -> None:
        self._counts.append(frame_channel_counts(img_hwc))

    def __len__(self) -> int:
        return len(self._counts)

    def stats(self) -> Stats:
        if not self._counts:
            raise DatasetError("no frames to compute image stats from")
        chosen = sample_indices(len(self._counts))
        return image_stats_from_counts(
            np.sum([self._counts[i] for i in chosen], axis=0, dtype=np.int64), len(chosen)
        )


def image_stats_from_counts(counts: np.ndarray, num_images: int) -> Stats:
    """Stats of the pixels summarised by `counts` (C, 256), as LeRobot computes them on the same pixels."""
    counts = np.asarray(counts, dtype=np.int64)
    channels = counts.shape[0]
    values = np.arange(256, dtype=np.float64)
    total = int(counts[0].sum())
    out: dict[str, list[float]] = {k: [] for k in STAT_KEYS if k != "count"}
    for c in range(channels):
        cnt = counts[c]
        nz = np.nonzero(cnt)[0]
        vmin, vmax = float(nz[0]), float(nz[-1])
        s1 = int((cnt * np.arange(256, dtype=np.int64)).sum())
        s2 = int((cnt * np.arange(256, dtype=np.int64) ** 2).sum())
        mean = s1 / total
        var = max(0.0, (s2 - s1 * s1 / total) / total)
        out["min"].append(vmin)
        out["max"].append(vmax)
        out["mean"].append(mean)
        out["std"].append(float(np.sqrt(var)))
        if total < 2:
            for key in QUANTILE_KEYS:
                out[key].append(mean)
            continue
        edges = np.linspace(vmin - 1e-10, vmax + 1e-10, NUM_BINS + 1)
        hist, _ = np.histogram(values, bins=edges, weights=cnt.astype(np.float64))
        for key, q in zip(QUANTILE_KEYS, DEFAULT_QUANTILES, strict=True):
            out[key].append(float(_hist_quantile(hist, edges, q * total)))
    stats: Stats = {k: (np.asarray(v) / 255.0).reshape(channels, 1, 1) for k, v in out.items()}
    stats["count"] = np.array([num_images])
    return {k: stats[k] for k in STAT_KEYS}


def aggregate_stats(stats_list: Iterable[Mapping[str, Mapping[str, np.ndarray]]]) -> dict[str, Stats]:
    """LeRobot's `aggregate_stats`: count-weighted mean, parallel variance, count-weighted quantiles."""
    stats_list = list(stats_list)
    keys: list[str] = []
    for s in stats_list:
        keys.extend(k for k in s if k not in keys)
    out: dict[str, Stats] = {}
    for key in keys:
        items = [s[key] for s in stats_list if key in s]
        means = np.stack([np.asarray(s["mean"]) for s in items])
        variances = np.stack([np.asarray(s["std"]) ** 2 for s in items])
        counts = np.stack([np.asarray(s["count"]) for s in items])
        total = counts.sum(axis=0)
        while counts.ndim < means.ndim:
            counts = np.expand_dims(counts, axis=-1)
        total_mean = (means * counts).sum(axis=0) / total
        total_var = ((variances + (means - total_mean) ** 2) * counts).sum(axis=0) / total
        agg: Stats = {
            "min": np.min(np.stack([np.asarray(s["min"]) for s in items]), axis=0),
            "max": np.max(np.stack([np.asarray(s["max"]) for s in items]), axis=0),
            "mean": total_mean,
            "std": np.sqrt(total_var),
            "count": total,
        }
        for q in [k for k in items[0] if k.startswith("q") and k[1:].isdigit()]:
            if all(q in s for s in items):
                agg[q] = (np.stack([np.asarray(s[q]) for s in items]) * counts).sum(axis=0) / total
        out[key] = agg
    return out


def to_jsonable(stats: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Nested lists/numbers as LeRobot's `serialize_dict` writes them into stats.json."""
    return {feat: {k: (np.asarray(v).tolist()) for k, v in fstats.items()} for feat, fstats in stats.items()}


def from_jsonable(data: Mapping[str, Mapping[str, Any]], *, source: str = "stats") -> dict[str, Stats]:
    try:
        return {feat: {k: np.asarray(v) for k, v in fstats.items()} for feat, fstats in data.items()}
    except (AttributeError, TypeError, ValueError) as e:
        raise DatasetError(f"{source}: malformed statistics ({e})") from e


def load_stats_json(path: Path) -> dict[str, Stats] | None:
    if not path.is_file():
        return None
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise DatasetError(f"{path}: unreadable statistics ({e})") from e
    if not isinstance(data, dict):
        raise DatasetError(f"{path}: expected a JSON object of per-feature statistics")
    return from_jsonable(data, source=str(path))


def flatten_episode_stats(stats: Mapping[str, Mapping[str, np.ndarray]]) -> dict[str, Any]:
    """`stats/<feature>/<stat>` columns of a meta/episodes row (values as Python lists)."""
    return {f"stats/{feat}/{k}": np.asarray(v).tolist() for feat, fs in stats.items() for k, v in fs.items()}


def unflatten_episode_stats(row: Mapping[str, Any], *, source: str = "episode row") -> dict[str, Stats]:
    out: dict[str, Stats] = {}
    for col, value in row.items():
        if not col.startswith("stats/") or value is None:
            continue
        feat, _, stat = col[len("stats/") :].rpartition("/")
        try:
            out.setdefault(feat, {})[stat] = np.asarray(value)
        except (TypeError, ValueError) as e:  # ragged nested lists
            raise DatasetError(f"{source}: malformed statistics column {col!r} ({e})") from e
    return out

"""LeRobot's normalization modes, applied inside the model so the same jitted function serves train and run.

Formulas (LeRobot 0.4.4 `processor/normalize_processor.py`, eps = 1e-8):
- MEAN_STD:   forward (x - mean) / (std + eps); inverse x * std + mean (no eps on the inverse).
- MIN_MAX:    d = max - min, with d == 0 replaced by eps; forward 2 (x - min) / d - 1;
              inverse (x + 1) / 2 * d + min.
- QUANTILES:  the MIN_MAX formula with q01 / q99.  QUANTILE10: with q10 / q90.
- IDENTITY:   unchanged.
Image statistics arrive from LeRobot as (C, 1, 1); jrobot images are channel-last, so `Normalizer` keeps
them as (C,) and they broadcast over (..., H, W, C).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import jax.numpy as jnp
import numpy as np
from flax import nnx

from jrobot.policies.layers import NormStat
from jrobot.policies.spec import STATS_FOR_MODE, FeatureType, NormMode, PolicyFeature

DEFAULT_EPS = 1e-8
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

_RANGE_STATS = {
    NormMode.MIN_MAX: ("min", "max"),
    NormMode.QUANTILES: ("q01", "q99"),
    NormMode.QUANTILE10: ("q10", "q90"),
}


def normalize(
    x: jnp.ndarray, stats: Mapping[str, jnp.ndarray], mode: NormMode, eps: float = DEFAULT_EPS
) -> jnp.ndarray:
    """Dataset units -> normalized units (pure; `stats` broadcast against the trailing axes of x)."""
    mode = NormMode(mode)
    if mode is NormMode.IDENTITY:
        return x
    if mode is NormMode.MEAN_STD:
        return (x - stats["mean"]) / (stats["std"] + eps)
    lo_name, hi_name = _RANGE_STATS[mode]
    lo = stats[lo_name]
    d = stats[hi_name] - lo
    d = jnp.where(d == 0, jnp.asarray(eps, d.dtype), d)
    return 2 * (x - lo) / d - 1


def unnormalize(
    x: jnp.ndarray, stats: Mapping[str, jnp.ndarray], mode: NormMode, eps: float = DEFAULT_EPS
) -> jnp.ndarray:
    """Normalized units -> dataset units; the exact inverse LeRobot's unnormalizer computes."""
    mode = NormMode(mode)
    if mode is NormMode.IDENTITY:
        return x
    if mode is NormMode.MEAN_STD:
        return x * stats["std"] + stats["mean"]
    lo_name, hi_name = _RANGE_STATS[mode]
    lo = stats[lo_name]
    d = stats[hi_name] - lo
    d = jnp.where(d == 0, jnp.asarray(eps, d.dtype), d)
    return (x + 1) / 2 * d + lo


def with_imagenet_stats(
    stats: Mapping[str, Mapping[str, Any]], image_keys: tuple[str, ...] | list[str]
) -> dict[str, dict[str, Any]]:
    """Replace every camera's mean/std by ImageNet's, as `lerobot-train` does by default.

    (`dataset.use_imagenet_stats=True`: trained ACT/Diffusion checkpoints normalize images this way.)
    """
    out = {k: dict(v) for k, v in stats.items()}
    for key in image_keys:
        entry = out.setdefault(key, {})
        entry["mean"] = np.asarray(IMAGENET_MEAN, np.float32).reshape(3, 1, 1)
        entry["std"] = np.asarray(IMAGENET_STD, np.float32).reshape(3, 1, 1)
    return out


def _canonical_stat(key: str, stat: str, value: Any, feature: PolicyFeature) -> np.ndarray:
    arr = np.asarray(value, dtype=np.float32)
    if feature.type is FeatureType.VISUAL:
        c = feature.shape[0]
        if arr.size == c:
            return arr.reshape(c)
        if arr.size == 1:
            return np.full((c,), float(arr.reshape(())), np.float32)
        raise ValueError(
            f"stats {key}.{stat}: an image statistic must be per channel ({c}, 1, 1) or ({c},), "
            f"got shape {arr.shape}"
        )
    try:
        np.broadcast_shapes(arr.shape, feature.shape)
    except ValueError as e:
        raise ValueError(
            f"stats {key}.{stat}: shape {arr.shape} does not broadcast to the feature shape {feature.shape}"
        ) from e
    if arr.ndim > len(feature.shape):
        raise ValueError(
            f"stats {key}.{stat}: shape {arr.shape} has more axes than the feature {feature.shape}"
        )
    return arr


class Normalizer(nnx.Module):
    """Per-feature statistics as non-trainable `NormStat` variables plus the mode each feature uses.

    `missing="error"` (default) refuses a feature whose mode needs statistics that are absent;
    `missing="identity"` reproduces LeRobot, which silently passes such a feature through unchanged
    (used by the checkpoint importer, with a warning).
    """

    def __init__(
        self,
        features: Mapping[str, PolicyFeature],
        normalization_mapping: Mapping[str, NormMode],
        stats: Mapping[str, Mapping[str, Any]] | None,
        *,
        eps: float = DEFAULT_EPS,
        missing: Literal["error", "identity"] = "error",
    ):
        stats = stats or {}
        modes: list[tuple[str, str]] = []
        store: dict[str, nnx.Dict] = {}
        for key, feature in features.items():
            mode = NormMode(normalization_mapping.get(feature.type.value, NormMode.IDENTITY))
            needed = STATS_FOR_MODE[mode]
            have = stats.get(key, {})
            absent = [s for s in needed if s not in have]
            if absent:
                if missing == "error":
                    raise ValueError(
                        f"normalization: feature {key!r} ({feature.type.value}) uses {mode.value} but the stats "
                        f"lack {absent} (have {sorted(have)}); pass dataset stats for it or map its type to IDENTITY"
                    )
                mode = NormMode.IDENTITY
                needed = ()
            modes.append((key, mode.value))
            if needed:
                store[key] = nnx.Dict(
                    {s: NormStat(jnp.asarray(_canonical_stat(key, s, have[s], feature))) for s in needed}
                )
        self.modes: tuple[tuple[str, str], ...] = tuple(modes)
        self.eps = float(eps)
        self.stats = nnx.Dict(store)

    def mode(self, key: str) -> NormMode:
        for k, m in self.modes:
            if k == key:
                return NormMode(m)
        raise KeyError(f"normalizer has no feature {key!r} (features: {[k for k, _ in self.modes]})")

    def _stats(self, key: str) -> dict[str, jnp.ndarray]:
        if key not in self.stats:
            return {}
        return {s: v[...] for s, v in self.stats[key].items()}

    def normalize(self, key: str, x: jnp.ndarray) -> jnp.ndarray:
        return normalize(x, self._stats(key), self.mode(key), self.eps)

    def unnormalize(self, key: str, x: jnp.ndarray) -> jnp.ndarray:
        return unnormalize(x, self._stats(key), self.mode(key), self.eps)

    def stats_dict(self) -> dict[str, dict[str, np.ndarray]]:
        """The statistics as numpy (feature -> stat -> array), e.g. for a bundle's policy.json."""
        return {k: {s: np.asarray(v[...]) for s, v in d.items()} for k, d in self.stats.items()}

    def set_stats(
        self, stats: Mapping[str, Mapping[str, Any]], features: Mapping[str, PolicyFeature]
    ) -> None:
        """Overwrite the stored statistics in place (shapes are checked against the features)."""
        for key, d in self.stats.items():
            for s, var in d.items():
                if key not in stats or s not in stats[key]:
                    raise ValueError(f"set_stats: {key}.{s} is missing from the new stats")
                var.set_value(jnp.asarray(_canonical_stat(key, s, stats[key][s], features[key])))

    def torch_leaves(self) -> dict:
        """Statistics are not part of a LeRobot model.safetensors (since 0.4 they live in processors)."""
        return {}

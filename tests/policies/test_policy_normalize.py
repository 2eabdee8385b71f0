"""Normalization modes: LeRobot's formulas, exact inverses, and the in-model Normalizer's bookkeeping."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from jrobot.policies.normalize import Normalizer, normalize, unnormalize, with_imagenet_stats
from jrobot.policies.spec import FeatureType, NormMode, PolicyFeature

RNG = np.random.default_rng(0)
X = RNG.normal(size=(4, 3)).astype(np.float32) * 5
STATS = {
    "mean": np.array([1.0, -2.0, 0.5], np.float32),
    "std": np.array([2.0, 0.0, 0.25], np.float32),
    "min": np.array([-3.0, 1.0, 0.0], np.float32),
    "max": np.array([5.0, 1.0, 2.0], np.float32),  # second dim constant: d == 0
    "q01": np.array([-2.0, 0.0, 0.1], np.float32),
    "q99": np.array([4.0, 0.5, 1.9], np.float32),
    "q10": np.array([-1.0, 0.1, 0.2], np.float32),
    "q90": np.array([3.0, 0.4, 1.8], np.float32),
}


def test_mean_std():
    got = np.asarray(normalize(jnp.asarray(X), STATS, NormMode.MEAN_STD))
    np.testing.assert_allclose(got, (X - STATS["mean"]) / (STATS["std"] + 1e-8), rtol=1e-6)
    back = np.asarray(unnormalize(jnp.asarray(got), STATS, NormMode.MEAN_STD))
    # the inverse has no eps: x * std + mean (a zero std maps everything to the mean)
    np.testing.assert_allclose(back, got * STATS["std"] + STATS["mean"], rtol=1e-6)
    np.testing.assert_allclose(back[:, [0, 2]], X[:, [0, 2]], rtol=1e-5)


@pytest.mark.parametrize(
    ("mode", "lo", "hi"),
    [("MIN_MAX", "min", "max"), ("QUANTILES", "q01", "q99"), ("QUANTILE10", "q10", "q90")],
)
def test_range_modes(mode, lo, hi):
    d = STATS[hi] - STATS[lo]
    d = np.where(d == 0, 1e-8, d)
    got = np.asarray(normalize(jnp.asarray(X), STATS, NormMode(mode)))
    np.testing.assert_allclose(got, 2 * (X - STATS[lo]) / d - 1, rtol=1e-5)
    back = np.asarray(unnormalize(jnp.asarray(got), STATS, NormMode(mode)))
    np.testing.assert_allclose(back, (got + 1) / 2 * d + STATS[lo], rtol=1e-5)


def test_identity():
    assert normalize(jnp.asarray(X), {}, NormMode.IDENTITY) is not None
    np.testing.assert_array_equal(np.asarray(normalize(jnp.asarray(X), {}, "IDENTITY")), X)


def test_normalizer_channel_last_images_and_modes():
    feats = {
        "observation.images.cam": PolicyFeature(FeatureType.VISUAL, (3, 4, 5)),
        "observation.state": PolicyFeature(FeatureType.STATE, (3,)),
        "action": PolicyFeature(FeatureType.ACTION, (3,)),
    }
    stats = with_imagenet_stats({"observation.state": STATS, "action": STATS}, ["observation.images.cam"])
    assert stats["observation.images.cam"]["mean"].shape == (3, 1, 1)
    norm = Normalizer(feats, {"VISUAL": NormMode.MEAN_STD, "STATE": NormMode.MIN_MAX}, stats)
    assert norm.mode("action") is NormMode.IDENTITY  # ACTION not mapped
    img = RNG.uniform(size=(2, 4, 5, 3)).astype(np.float32)
    got = np.asarray(norm.normalize("observation.images.cam", jnp.asarray(img)))
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    np.testing.assert_allclose(got, (img - mean) / (std + 1e-8), rtol=1e-5, atol=1e-6)
    assert set(norm.stats_dict()) == {"observation.images.cam", "observation.state"}
    assert set(norm.stats_dict()["observation.state"]) == {"min", "max"}
    with pytest.raises(KeyError, match="no feature"):
        norm.mode("observation.velocity")


def test_normalizer_missing_stats():
    feats = {"observation.state": PolicyFeature(FeatureType.STATE, (3,))}
    with pytest.raises(ValueError, match=r"observation\.state.*MEAN_STD.*lack \['std'\]"):
        Normalizer(feats, {"STATE": NormMode.MEAN_STD}, {"observation.state": {"mean": STATS["mean"]}})
    lenient = Normalizer(feats, {"STATE": NormMode.MEAN_STD}, {}, missing="identity")
    assert lenient.mode("observation.state") is NormMode.IDENTITY
    with pytest.raises(ValueError, match="does not broadcast"):
        Normalizer(
            feats,
            {"STATE": NormMode.MEAN_STD},
            {"observation.state": {"mean": np.zeros(4), "std": np.ones(4)}},
        )

"""The policy interface plumbing: module lookup by type, spec JSON, feature conversion, input checks."""

from __future__ import annotations

import json

import jax.numpy as jnp
import numpy as np
import pytest

from jrobot.features import Feature
from jrobot.policies import act
from jrobot.policies.base import (
    REQUIRED_ATTRS,
    as_policy_features,
    current_frame,
    image_to_unit_float,
    load_policy_module,
)
from jrobot.policies.spec import (
    FeatureType,
    PolicyFeature,
    PolicySpec,
    images_chw_to_hwc,
    policy_features_from_dataset,
    split_features,
    stats_from_json,
    stats_to_json,
)


def test_policy_modules_are_found_by_type():
    mod = load_policy_module("act")
    assert mod is act and all(hasattr(mod, a) for a in REQUIRED_ATTRS)
    with pytest.raises(ValueError, match="unknown policy type 'nope'"):
        load_policy_module("nope")
    with pytest.raises(ValueError, match="not a valid module name"):
        load_policy_module("../act")
    with pytest.raises(TypeError, match="does not implement the policy interface"):
        load_policy_module("normalize")


def test_dataset_features_to_policy_features():
    info = {
        "observation.images.laptop": {
            "dtype": "video",
            "shape": [480, 640, 3],
            "names": ["height", "width", "channels"],
        },
        "observation.state": {"dtype": "float32", "shape": [6], "names": ["a"] * 6},
        "observation.environment_state": {"dtype": "float32", "shape": [4], "names": None},
        "action": {"dtype": "float32", "shape": [6], "names": ["a"] * 6},
        "task": {"dtype": "string", "shape": [1], "names": None},
        "timestamp": {"dtype": "float32", "shape": [1], "names": None},
    }
    feats = policy_features_from_dataset(info)
    assert feats["observation.images.laptop"] == PolicyFeature(FeatureType.VISUAL, (3, 480, 640))
    assert feats["observation.environment_state"].type is FeatureType.ENV
    assert "task" not in feats and "timestamp" not in feats
    inputs, outputs = split_features(feats)
    assert list(outputs) == ["action"] and "action" not in inputs
    objects = {k: Feature.from_json(v, key=k) for k, v in info.items()}
    assert as_policy_features(objects) == feats
    assert as_policy_features({k: f.to_json() for k, f in feats.items()}) == feats


def test_spec_json_and_stats_json():
    cfg = act.ACTConfig(dim_model=64, n_heads=4, pretrained_backbone_weights=None)
    feats = {
        "observation.state": PolicyFeature(FeatureType.STATE, (6,)),
        "observation.images.top": PolicyFeature(FeatureType.VISUAL, (3, 96, 128)),
        "action": PolicyFeature(FeatureType.ACTION, (6,)),
    }
    spec = act.make_spec(cfg, *split_features(feats))
    text = json.dumps(spec.to_json())
    again = PolicySpec.from_json(json.loads(text))
    assert again == spec and hash(again) == hash(spec)
    assert again.config["dim_model"] == 64 and act.ACTConfig.from_dict(again.config) == cfg
    assert spec.norm_mode("observation.images.top").value == "MEAN_STD"
    with pytest.raises(ValueError, match=r"missing keys \['chunk_size'\]"):
        PolicySpec.from_json({k: v for k, v in spec.to_json().items() if k != "chunk_size"})
    stats = {"action": {"mean": np.arange(3, dtype=np.float32)}}
    back = stats_from_json(json.loads(json.dumps(stats_to_json(stats))))
    np.testing.assert_array_equal(back["action"]["mean"], stats["action"]["mean"])
    with pytest.raises(ValueError, match="at least one image or the environment state"):
        act.make_spec(cfg, {"observation.state": feats["observation.state"]}, {"action": feats["action"]})


def test_input_conversion_helpers():
    chw = np.zeros((2, 3, 4, 5), np.float32)
    assert images_chw_to_hwc(chw).shape == (2, 4, 5, 3)
    with pytest.raises(ValueError, match="channel-first"):
        images_chw_to_hwc(np.zeros((2, 4, 5, 3)))
    u8 = jnp.asarray(np.array([[0, 255, 51]], np.uint8))
    np.testing.assert_allclose(np.asarray(image_to_unit_float(u8)), [[0.0, 1.0, 0.2]], rtol=1e-7)
    with pytest.raises(TypeError, match="uint8 or float"):
        image_to_unit_float(jnp.zeros((1,), jnp.int32))
    state = PolicyFeature(FeatureType.STATE, (6,))
    assert current_frame(jnp.zeros((2, 1, 6)), state, "s").shape == (2, 6)
    assert current_frame(jnp.zeros((2, 6)), state, "s").shape == (2, 6)
    with pytest.raises(ValueError, match="n_obs_steps=1"):
        current_frame(jnp.zeros((2, 2, 6)), state, "s")

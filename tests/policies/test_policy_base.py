"""The policy interface plumbing: module lookup by type, spec JSON, feature conversion, input checks."""

from __future__ import annotations

import dataclasses
import json
import types

import jax.numpy as jnp
import numpy as np
import pytest

from jrobot.bundle import BundleError, BundleInfo
from jrobot.features import Feature
from jrobot.policies import act, diffusion
from jrobot.policies.base import (
    POLICY_MEMBERS,
    PolicyModule,
    as_policy_features,
    check_policy_module,
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
    assert mod is act and all(hasattr(mod, a) for a in POLICY_MEMBERS)
    assert isinstance(mod, PolicyModule) and load_policy_module("diffusion") is diffusion
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


def test_the_contract_names_what_a_policy_module_lacks():
    assert POLICY_MEMBERS == (
        "POLICY_TYPE",
        "Config",
        "make_spec",
        "build",
        "loss",
        "sample_actions",
        "from_lerobot",
        "param_group",
        "optimizer_preset",
        "ema_preset",
        "inference_model",
    )
    fake = types.ModuleType("jrobot.policies.fake")
    for name in POLICY_MEMBERS:
        setattr(fake, name, getattr(act, name))
    with pytest.raises(TypeError, match=r"POLICY_TYPE is 'act', expected 'fake'"):
        check_policy_module(fake, "fake")
    fake.POLICY_TYPE = "fake"
    assert check_policy_module(fake, "fake") is fake
    del fake.ema_preset  # optional behaviour is still an explicit member (returning None)
    with pytest.raises(TypeError, match=r"lacks \['ema_preset'\]"):
        check_policy_module(fake, "fake")
    fake.ema_preset = 0.999
    with pytest.raises(TypeError, match=r"\['ema_preset'\] are not callable"):
        check_policy_module(fake, "fake")


def _features(action_dim: int = 6) -> dict[str, PolicyFeature]:
    return {
        "observation.state": PolicyFeature(FeatureType.STATE, (6,)),
        "observation.images.top": PolicyFeature(FeatureType.VISUAL, (3, 96, 128)),
        "action": PolicyFeature(FeatureType.ACTION, (action_dim,)),
    }


def test_spec_fields_say_how_to_sample_window_and_export():
    act_spec = act.make_spec(
        act.ACTConfig(chunk_size=10, n_action_steps=10, pretrained_backbone_weights=None),
        *split_features(_features()),
    )
    assert (act_spec.horizon, act_spec.noise_shape, act_spec.drop_n_last_frames) == (10, None, 0)
    assert act.ema_preset(act.ACTConfig()) is None and not act_spec.stochastic
    dcfg = diffusion.DiffusionConfig(horizon=16, n_action_steps=8, drop_n_last_frames=5, crop_shape=None)
    d_spec = diffusion.make_spec(dcfg, *split_features(_features(action_dim=4)))
    assert (d_spec.horizon, d_spec.chunk_size, d_spec.noise_shape) == (16, 8, (16, 4))
    assert d_spec.drop_n_last_frames == 5 and d_spec.stochastic
    again = PolicySpec.from_json(json.loads(json.dumps(d_spec.to_json())))
    assert again == d_spec and again.noise_shape == (16, 4) and isinstance(again.noise_shape, tuple)
    assert d_spec.language_keys == ()
    with_task = {
        **act_spec.input_features,
        "observation.language.tokens": PolicyFeature(FeatureType.LANGUAGE, (48,)),
    }
    assert dataclasses.replace(act_spec, input_features=with_task).language_keys == (
        "observation.language.tokens",
    )
    bad = dict(d_spec.to_json())
    for key, value, match in (
        ("noise_shape", [16], "noise_shape must be"),
        ("noise_shape", [0, 4], "noise_shape must be"),
        ("horizon", 4, r"horizon \(4\) must be >= chunk_size \(8\)"),
        ("drop_n_last_frames", -1, "drop_n_last_frames must be >= 0"),
    ):
        with pytest.raises(ValueError, match=match):
            PolicySpec.from_json({**bad, key: value})
    with pytest.raises(ValueError, match=r"missing keys \['noise_shape'\]"):
        PolicySpec.from_json({k: v for k, v in bad.items() if k != "noise_shape"})


def _policy_json(spec: PolicySpec, *, version: int, stochastic: bool) -> dict:
    d = {
        "format": "jrobot-policy",
        "version": version,
        "spec": spec.to_json(),
        "stats": {},
        "features": {},
        "fps": 30,
        "robot_type": None,
        "image_shapes": {"observation.images.top": [96, 128, 3]},
        "variants": ["uint8", "uint8+noise"] if stochastic else ["uint8"],
        "stochastic": stochastic,
        "source": {},
        "training_config": None,
    }
    if version == 1:  # v1 specs had no typed sampling fields: those lived in spec["config"]
        for key in ("horizon", "noise_shape", "drop_n_last_frames"):
            del d["spec"][key]
    return d


def test_version_1_bundles_read_with_the_fields_their_exporter_implied(tmp_path):
    dcfg = diffusion.DiffusionConfig(horizon=16, n_action_steps=8, drop_n_last_frames=7, crop_shape=None)
    d_spec = diffusion.make_spec(dcfg, *split_features(_features(action_dim=4)))
    a_spec = act.make_spec(act.ACTConfig(chunk_size=20, n_action_steps=20), *split_features(_features()))
    for spec, stochastic in ((d_spec, True), (a_spec, False)):
        v1 = BundleInfo.from_json(_policy_json(spec, version=1, stochastic=stochastic), path=tmp_path)
        v2 = BundleInfo.from_json(_policy_json(spec, version=2, stochastic=stochastic), path=tmp_path)
        assert v1.spec == v2.spec == spec
        assert v2.to_json()["version"] == 2 and v2.to_json()["spec"]["noise_shape"] == (
            [16, 4] if stochastic else None
        )
    with pytest.raises(BundleError, match=r"version 3 is not supported \(reads \[1, 2\]\)"):
        BundleInfo.from_json(_policy_json(a_spec, version=3, stochastic=False), path=tmp_path)

"""Reading LeRobot policy folders: 0.4 processors, pre-0.4 buffers inside model.safetensors, old configs."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from jrobot.policies import act
from jrobot.policies.lerobot.checkpoint import read_lerobot_checkpoint, resolve_checkpoint_dir
from jrobot.policies.lerobot.statedict import state_dict
from jrobot.policies.spec import FeatureType, NormMode

PRE = "policy_preprocessor_step_3_normalizer_processor.safetensors"


def test_processor_stats(act_fixture_dir):
    folder = act_fixture_dir / "pretrained_model"
    ckpt = read_lerobot_checkpoint(folder)
    assert ckpt.policy_type == "act" and ckpt.stats_source == "processor" and ckpt.notes == []
    assert ckpt.eps == 1e-8
    assert list(ckpt.input_features) == [
        "observation.state",
        "observation.images.front",
        "observation.images.wrist",
    ]
    assert ckpt.input_features["observation.images.front"].type is FeatureType.VISUAL
    assert ckpt.normalization_mapping == {
        "VISUAL": NormMode.MEAN_STD,
        "STATE": NormMode.MEAN_STD,
        "ACTION": NormMode.MEAN_STD,
    }
    flat = load_file(str(folder / PRE))
    for key, value in flat.items():
        feature, _, stat = key.rpartition(".")
        np.testing.assert_array_equal(ckpt.stats[feature][stat], value)
    assert set(ckpt.state_dict) == set(load_file(str(folder / "model.safetensors")))


def _legacy_folder(act_fixture_dir, tmp_path, *, inf_key: str | None = None):
    """The fixture as a pre-0.4 LeRobot would have saved it: stats as buffers in model.safetensors."""
    src = act_fixture_dir / "pretrained_model"
    folder = tmp_path / "legacy"
    folder.mkdir()
    shutil.copy(src / "config.json", folder / "config.json")
    sd = load_file(str(src / "model.safetensors"))
    flat = load_file(str(src / PRE))
    for key, value in flat.items():
        feature, _, stat = key.rpartition(".")
        if stat not in ("mean", "std"):
            continue
        buf = "buffer_" + feature.replace(".", "_")
        if feature == "action":
            sd[f"normalize_targets.{buf}.{stat}"] = value
            sd[f"unnormalize_outputs.{buf}.{stat}"] = value
        else:
            sd[f"normalize_inputs.{buf}.{stat}"] = value
    if inf_key is not None:
        sd[inf_key] = np.full_like(sd[inf_key], np.inf)
    save_file(sd, str(folder / "model.safetensors"))
    return folder


def test_legacy_buffers_become_stats(act_fixture_dir, tmp_path):
    folder = _legacy_folder(act_fixture_dir, tmp_path)
    ckpt = read_lerobot_checkpoint(folder)
    assert ckpt.stats_source == "legacy_state_dict"
    assert not any(k.startswith(("normalize_", "unnormalize_")) for k in ckpt.state_dict)
    ref = read_lerobot_checkpoint(act_fixture_dir / "pretrained_model")
    for feature, d in ckpt.stats.items():
        assert set(d) == {"mean", "std"}
        for stat, v in d.items():
            np.testing.assert_array_equal(v, ref.stats[feature][stat])
    # and the importer gives the same model as from the 0.4 folder
    a = act.from_lerobot(folder)
    b = act.from_lerobot(act_fixture_dir / "pretrained_model")
    sa, sb = state_dict(a.model), state_dict(b.model)
    assert sa.keys() == sb.keys() and all(np.array_equal(sa[k], sb[k]) for k in sa)
    for feature, d in b.stats.items():
        for stat in ("mean", "std"):
            np.testing.assert_array_equal(a.stats[feature][stat], d[stat])


def test_unset_legacy_buffers_warn_and_pass_through(act_fixture_dir, tmp_path):
    folder = _legacy_folder(
        act_fixture_dir, tmp_path, inf_key="normalize_inputs.buffer_observation_state.std"
    )
    with pytest.warns(UserWarning, match=r"still \+inf"):
        ckpt = read_lerobot_checkpoint(folder)
    assert "std" not in ckpt.stats["observation.state"]
    with pytest.warns(UserWarning, match=r"no MEAN_STD stats for 'observation\.state'"):
        imported = act.from_lerobot(folder)
    assert imported.model.normalizer.mode("observation.state") is NormMode.IDENTITY


def test_old_style_config(tmp_path, act_fixture_dir):
    folder = _legacy_folder(act_fixture_dir, tmp_path)
    cfg = json.loads((folder / "config.json").read_text())
    for k in ("input_features", "output_features", "normalization_mapping", "type"):
        cfg.pop(k)
    cfg["input_shapes"] = {
        "observation.images.front": [3, 96, 128],
        "observation.images.wrist": [3, 96, 128],
        "observation.state": [6],
    }
    cfg["output_shapes"] = {"action": [6]}
    cfg["input_normalization_modes"] = {
        "observation.images.front": "mean_std",
        "observation.images.wrist": "mean_std",
        "observation.state": "mean_std",
    }
    cfg["output_normalization_modes"] = {"action": "mean_std"}
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="no 'type' key"):
        read_lerobot_checkpoint(folder)
    ckpt = read_lerobot_checkpoint(folder, expected_type="act")
    assert ckpt.input_features["observation.state"].type is FeatureType.STATE
    assert ckpt.normalization_mapping["VISUAL"] is NormMode.MEAN_STD
    cfg["input_normalization_modes"]["observation.images.wrist"] = "min_max"
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="different normalization modes"):
        read_lerobot_checkpoint(folder, expected_type="act")


def test_folder_resolution_and_errors(act_fixture_dir, tmp_path):
    assert resolve_checkpoint_dir(act_fixture_dir) == act_fixture_dir / "pretrained_model"
    with pytest.raises(FileNotFoundError, match="not a LeRobot policy folder"):
        resolve_checkpoint_dir(tmp_path)
    with pytest.raises(ValueError, match="not 'diffusion'"):
        read_lerobot_checkpoint(act_fixture_dir, expected_type="diffusion")
    bad = tmp_path / "bad"
    shutil.copytree(act_fixture_dir / "pretrained_model", bad)
    (bad / "config.json").chmod(0o644)
    (bad / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"config\.json: invalid JSON"):
        read_lerobot_checkpoint(bad)

"""ACT beyond the parity fixture: config, default-size import, strict keys, training behaviour, options."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from safetensors.numpy import load_file, save_file

from jrobot.features import Feature
from jrobot.policies import act, resnet
from jrobot.policies.act.model import sinusoid_1d, sinusoid_2d
from jrobot.policies.base import TRAINABLE, count_params, param_labels
from jrobot.policies.layers import Buffer
from jrobot.policies.lerobot.statedict import StateDictError, count_leaves, load_state_dict, state_dict
from jrobot.policies.spec import FeatureType, PolicyFeature, PolicySpec

# ----------------------------------------------------------------------------------------------------
# LeRobot's ACT state_dict layout, written out from the reference (lerobot_policies.md §2.7) and checked
# against the real LeRobot checkpoint of the fixture below, independently of jrobot's module naming.


def lerobot_act_shapes(
    *,
    S: int,
    A: int,
    D: int,
    F: int,
    chunk: int,
    latent: int,
    n_enc: int,
    n_dec: int,
    n_vae: int,
    env: int = 0,
) -> dict[str, tuple[int, ...]]:
    out: dict[str, tuple[int, ...]] = {}

    def mha(p):
        out.update(
            {
                p + "in_proj_weight": (3 * D, D),
                p + "in_proj_bias": (3 * D,),
                p + "out_proj.weight": (D, D),
                p + "out_proj.bias": (D,),
            }
        )

    def ffn_norms(p, n_norms):
        out.update({p + "linear1.weight": (F, D), p + "linear1.bias": (F,)})
        out.update({p + "linear2.weight": (D, F), p + "linear2.bias": (D,)})
        for i in range(1, n_norms + 1):
            out.update({p + f"norm{i}.weight": (D,), p + f"norm{i}.bias": (D,)})

    def bn(p, c):
        out.update({p + s: (c,) for s in ("weight", "bias", "running_mean", "running_var")})

    for i in range(n_vae):
        mha(f"model.vae_encoder.layers.{i}.self_attn.")
        ffn_norms(f"model.vae_encoder.layers.{i}.", 2)
    out["model.vae_encoder_cls_embed.weight"] = (1, D)
    if S:
        out.update(
            {
                "model.vae_encoder_robot_state_input_proj.weight": (D, S),
                "model.vae_encoder_robot_state_input_proj.bias": (D,),
            }
        )
    out.update(
        {
            "model.vae_encoder_action_input_proj.weight": (D, A),
            "model.vae_encoder_action_input_proj.bias": (D,),
        }
    )
    out.update(
        {
            "model.vae_encoder_latent_output_proj.weight": (2 * latent, D),
            "model.vae_encoder_latent_output_proj.bias": (2 * latent,),
        }
    )
    out["model.vae_encoder_pos_enc"] = (1, 1 + chunk + (1 if S else 0), D)
    out["model.backbone.conv1.weight"] = (64, 3, 7, 7)
    bn("model.backbone.bn1.", 64)
    cin = 64
    for layer, c in enumerate((64, 128, 256, 512), start=1):
        for b in range(2):
            p = f"model.backbone.layer{layer}.{b}."
            i = cin if b == 0 else c
            out[p + "conv1.weight"] = (c, i, 3, 3)
            bn(p + "bn1.", c)
            out[p + "conv2.weight"] = (c, c, 3, 3)
            bn(p + "bn2.", c)
            if b == 0 and layer > 1:
                out[p + "downsample.0.weight"] = (c, i, 1, 1)
                bn(p + "downsample.1.", c)
        cin = c
    for i in range(n_enc):
        mha(f"model.encoder.layers.{i}.self_attn.")
        ffn_norms(f"model.encoder.layers.{i}.", 2)
    for i in range(n_dec):
        mha(f"model.decoder.layers.{i}.self_attn.")
        mha(f"model.decoder.layers.{i}.multihead_attn.")
        ffn_norms(f"model.decoder.layers.{i}.", 3)
    out.update({"model.decoder.norm.weight": (D,), "model.decoder.norm.bias": (D,)})
    if S:
        out.update(
            {
                "model.encoder_robot_state_input_proj.weight": (D, S),
                "model.encoder_robot_state_input_proj.bias": (D,),
            }
        )
    if env:
        out.update(
            {
                "model.encoder_env_state_input_proj.weight": (D, env),
                "model.encoder_env_state_input_proj.bias": (D,),
            }
        )
    out.update(
        {"model.encoder_latent_input_proj.weight": (D, latent), "model.encoder_latent_input_proj.bias": (D,)}
    )
    out.update(
        {
            "model.encoder_img_feat_input_proj.weight": (D, 512, 1, 1),
            "model.encoder_img_feat_input_proj.bias": (D,),
        }
    )
    out["model.encoder_1d_feature_pos_embed.weight"] = (1 + (1 if S else 0) + (1 if env else 0), D)
    out["model.decoder_pos_embed.weight"] = (chunk, D)
    out.update({"model.action_head.weight": (A, D), "model.action_head.bias": (A,)})
    return out


def test_layout_helper_matches_a_real_lerobot_checkpoint(act_fixture_dir):
    real = load_file(str(act_fixture_dir / "pretrained_model" / "model.safetensors"))
    expected = lerobot_act_shapes(S=6, A=6, D=64, F=128, chunk=10, latent=8, n_enc=2, n_dec=1, n_vae=2)
    assert {k: tuple(v.shape) for k, v in real.items()} == expected


def _write_lerobot_act_folder(folder: Path, shapes: dict, config: dict, stats: dict, seed: int = 0) -> dict:
    """A LeRobot-0.4-style pretrained_model folder with random weights of the given shapes (no torch)."""
    rng = np.random.default_rng(seed)
    sd = {}
    for k, shape in shapes.items():
        v = rng.standard_normal(shape, dtype=np.float32) * 0.02
        if k.endswith("running_var"):
            v = np.abs(v) + 0.5
        sd[k] = v
    folder.mkdir(parents=True)
    save_file(sd, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps(config))
    flat = {f"{k}.{s}": np.asarray(v, np.float32) for k, d in stats.items() for s, v in d.items()}
    norm_cfg = {
        "eps": 1e-8,
        "features": {**config["input_features"], **config["output_features"]},
        "norm_map": config["normalization_mapping"],
    }
    save_file(flat, str(folder / "policy_preprocessor_step_3_normalizer_processor.safetensors"))
    save_file(
        {k: v for k, v in flat.items() if k.startswith("action.")},
        str(folder / "policy_postprocessor_step_0_unnormalizer_processor.safetensors"),
    )
    pre = {
        "name": "policy_preprocessor",
        "steps": [
            {"registry_name": "to_batch_processor", "config": {}},
            {
                "registry_name": "normalizer_processor",
                "config": norm_cfg,
                "state_file": "policy_preprocessor_step_3_normalizer_processor.safetensors",
            },
        ],
    }
    post = {
        "name": "policy_postprocessor",
        "steps": [
            {
                "registry_name": "unnormalizer_processor",
                "config": {**norm_cfg, "features": config["output_features"]},
                "state_file": "policy_postprocessor_step_0_unnormalizer_processor.safetensors",
            }
        ],
    }
    (folder / "policy_preprocessor.json").write_text(json.dumps(pre))
    (folder / "policy_postprocessor.json").write_text(json.dumps(post))
    return sd


# LeRobot 0.4.4's ACTConfig defaults (reference/lerobot_policies.md §2.1), written out here rather than
# taken from jrobot's ACTConfig, so a wrong jrobot default cannot make this checkpoint agree with it.
LEROBOT_ACT_DEFAULTS = {
    "n_obs_steps": 1,
    "chunk_size": 100,
    "n_action_steps": 100,
    "normalization_mapping": {"VISUAL": "MEAN_STD", "STATE": "MEAN_STD", "ACTION": "MEAN_STD"},
    "vision_backbone": "resnet18",
    "pretrained_backbone_weights": "ResNet18_Weights.IMAGENET1K_V1",
    "replace_final_stride_with_dilation": False,
    "pre_norm": False,
    "dim_model": 512,
    "n_heads": 8,
    "dim_feedforward": 3200,
    "feedforward_activation": "relu",
    "n_encoder_layers": 4,
    "n_decoder_layers": 1,
    "use_vae": True,
    "latent_dim": 32,
    "n_vae_encoder_layers": 4,
    "temporal_ensemble_coeff": None,
    "dropout": 0.1,
    "kl_weight": 10.0,
    "optimizer_lr": 1e-5,
    "optimizer_weight_decay": 1e-4,
    "optimizer_lr_backbone": 1e-5,
}


def _default_lerobot_config(
    fixture_dir: Path, state_dim: int, action_dim: int, cams: dict[str, tuple[int, int, int]]
) -> dict:
    """A config.json as LeRobot writes it (the fixture's own key set) with LeRobot's default values."""
    cfg = json.loads((fixture_dir / "pretrained_model" / "config.json").read_text())
    assert set(LEROBOT_ACT_DEFAULTS) <= set(cfg), "LeRobot's config.json lacks a documented ACT field"
    cfg.update(LEROBOT_ACT_DEFAULTS)
    cfg["input_features"] = {"observation.state": {"type": "STATE", "shape": [state_dim]}}
    cfg["input_features"].update({k: {"type": "VISUAL", "shape": list(s)} for k, s in cams.items()})
    cfg["output_features"] = {"action": {"type": "ACTION", "shape": [action_dim]}}
    return cfg


def _stats(state_dim, action_dim, cams, rng):
    stats = {
        "observation.state": {"mean": rng.normal(size=state_dim), "std": rng.uniform(0.5, 2, state_dim)},
        "action": {"mean": rng.normal(size=action_dim), "std": rng.uniform(0.5, 2, action_dim)},
    }
    for k in cams:
        stats[k] = {
            "mean": np.array([0.485, 0.456, 0.406]).reshape(3, 1, 1),
            "std": np.array([0.229, 0.224, 0.225]).reshape(3, 1, 1),
        }
    return stats


def test_default_size_checkpoint_imports(tmp_path, act_fixture_dir):
    """LeRobot's default ACT (state 14, one 480x640 camera): 51.6 M weights, every tensor lands in place."""
    cams = {"observation.images.top": (3, 480, 640)}
    config = _default_lerobot_config(act_fixture_dir, 14, 14, cams)
    shapes = lerobot_act_shapes(S=14, A=14, D=512, F=3200, chunk=100, latent=32, n_enc=4, n_dec=1, n_vae=4)
    n_saved = sum(int(np.prod(s)) for s in shapes.values())  # parameters + saved buffers
    stats = _stats(14, 14, cams, np.random.default_rng(1))
    sd = _write_lerobot_act_folder(tmp_path / "pretrained_model", shapes, config, stats)
    imported = act.from_lerobot(tmp_path)  # the parent of pretrained_model works too
    assert imported.report.ok and len(imported.report.loaded) == len(shapes)
    assert count_leaves(imported.model) == n_saved
    # torch parameters exclude the frozen-BN and positional buffers: LeRobot's "51.6 M"
    assert round(count_params(imported.model) / 1e6, 1) == 51.6
    back = state_dict(imported.model)
    assert set(back) == set(sd)
    for k, v in sd.items():
        np.testing.assert_array_equal(back[k], v, err_msg=k)
    np.testing.assert_allclose(imported.stats["action"]["std"], stats["action"]["std"].astype(np.float32))
    assert imported.stats["observation.images.top"]["mean"].shape == (3,)
    assert imported.spec.config["dim_model"] == 512 and imported.spec.chunk_size == 100


def test_strict_keys_name_every_problem(act_fixture_dir, tmp_path):
    folder = tmp_path / "pretrained_model"
    shutil.copytree(act_fixture_dir / "pretrained_model", folder)
    sd = load_file(str(folder / "model.safetensors"))
    sd.pop("model.decoder.norm.bias")
    sd["model.extra_head.weight"] = np.zeros((2, 2), np.float32)
    sd["model.action_head.bias"] = np.zeros((7,), np.float32)
    save_file(sd, str(folder / "model.safetensors"))
    with pytest.raises(StateDictError) as err:
        act.from_lerobot(folder)
    msg = str(err.value)
    assert "model.decoder.norm.bias" in msg and "model.extra_head.weight" in msg
    assert "model.action_head.bias expected (6,) got (7,)" in msg
    rep = err.value.report
    assert rep.missing == ["model.decoder.norm.bias"] and rep.unexpected == ["model.extra_head.weight"]


# ----------------------------------------------------------------------------------------------------
# config


def test_config_defaults_are_lerobots():
    c = act.ACTConfig()
    assert (c.n_obs_steps, c.chunk_size, c.n_action_steps) == (1, 100, 100)
    assert (c.dim_model, c.n_heads, c.dim_feedforward, c.feedforward_activation) == (512, 8, 3200, "relu")
    assert (c.n_encoder_layers, c.n_decoder_layers, c.n_vae_encoder_layers) == (4, 1, 4)
    assert (c.use_vae, c.latent_dim, c.dropout, c.kl_weight) == (True, 32, 0.1, 10.0)
    assert (c.optimizer_lr, c.optimizer_weight_decay, c.optimizer_lr_backbone) == (1e-5, 1e-4, 1e-5)
    assert c.pretrained_backbone_weights == "ResNet18_Weights.IMAGENET1K_V1" and not c.pre_norm
    assert c.normalization_mapping == {"VISUAL": "MEAN_STD", "STATE": "MEAN_STD", "ACTION": "MEAN_STD"}
    assert c.temporal_ensemble_coeff is None and c.l1_reduction == "mean_all"


def test_config_round_trips_through_json(act_fixture_dir):
    c = act.ACTConfig(chunk_size=20, n_action_steps=1, temporal_ensemble_coeff=0.01, dim_model=64, n_heads=4)
    again = act.ACTConfig.from_dict(json.loads(json.dumps(c.to_dict())))
    assert again == c and hash(again) == hash(c)
    with pytest.raises(ValueError, match=r"unknown keys.*chunk_sise"):
        act.ACTConfig.from_dict({"chunk_sise": 3})
    lerobot_cfg = json.loads((act_fixture_dir / "pretrained_model" / "config.json").read_text())
    from_lr, notes = act.ACTConfig.from_lerobot(lerobot_cfg)
    assert notes == [] and from_lr.dim_model == 64 and from_lr.pretrained_backbone_weights is None


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_obs_steps": 2}, "n_obs_steps must be 1"),
        ({"temporal_ensemble_coeff": 0.01}, "n_action_steps must be 1"),
        ({"n_action_steps": 101}, "between 1 and chunk_size"),
        ({"feedforward_activation": "glu"}, "glu"),
        ({"replace_final_stride_with_dilation": True}, "dilation"),
        ({"vision_backbone": "resnet50"}, "not supported"),
        ({"l1_reduction": "sum"}, "l1_reduction"),
        ({"normalization_mapping": {"STATE": "ZSCORE"}}, "normalization"),
    ],
)
def test_config_rejects_what_lerobot_cannot_run(kwargs, match):
    with pytest.raises(ValueError, match=match):
        act.ACTConfig(**kwargs)


# ----------------------------------------------------------------------------------------------------
# building from dataset features, training behaviour. Models are built once per module and the jitted
# entry points are shared (compiling ResNet18 dominates the cost on CPU).

TINY = dict(
    chunk_size=5, n_action_steps=5, dim_model=32, n_heads=4, dim_feedforward=64, n_encoder_layers=1,
    n_vae_encoder_layers=1, latent_dim=4, pretrained_backbone_weights=None,
)  # fmt: skip

LOSS = nnx.jit(act.loss, static_argnames=("train",))
SAMPLE = nnx.jit(act.sample_actions)
FORWARD_EVAL = nnx.jit(lambda m, o: act.forward(m, o, train=False)[0])


def _dataset_features(cams=("front",), h=64, w=64):
    feats = {
        "observation.state": Feature("float32", (6,), ["j"] * 6),
        "action": Feature("float32", (6,), ["j"] * 6),
        "timestamp": Feature("float32", (1,), None),
    }
    for c in cams:
        feats[f"observation.images.{c}"] = Feature("video", (h, w, 3), ["height", "width", "channels"])
    return feats


def _dataset_stats(cams=("front",)):
    rng = np.random.default_rng(0)
    st = {
        "observation.state": {
            "mean": rng.normal(size=6),
            "std": rng.uniform(0.5, 2, 6),
            "min": -np.ones(6),
            "max": np.ones(6),
        },
        "action": {
            "mean": rng.normal(size=6),
            "std": rng.uniform(0.5, 2, 6),
            "min": -np.ones(6),
            "max": np.ones(6),
        },
    }
    for c in cams:
        st[f"observation.images.{c}"] = {"mean": np.full((3, 1, 1), 0.5), "std": np.full((3, 1, 1), 0.25)}
    return st


def _batch(b=2, chunk=5, cams=("front",), h=64, w=64, seed=0):
    rng = np.random.default_rng(seed)
    batch = {
        "observation.state": rng.normal(size=(b, 1, 6)).astype(np.float32),
        "action": rng.normal(size=(b, chunk, 6)).astype(np.float32),
        "action_is_pad": np.zeros((b, chunk), bool),
    }
    batch["action_is_pad"][0, -2:] = True
    for c in cams:
        batch[f"observation.images.{c}"] = rng.integers(0, 256, (b, 1, h, w, 3), dtype=np.uint8)
    return batch


ENV_FEATURES = {
    "observation.environment_state": PolicyFeature(FeatureType.ENV, (5,)),
    "action": PolicyFeature(FeatureType.ACTION, (3,)),
}
ENV_STATS = {
    "observation.environment_state": {"mean": np.linspace(-1, 1, 5), "std": np.linspace(0.5, 2, 5)},
    "action": {"mean": np.array([0.1, -0.2, 0.3]), "std": np.array([1.0, 2.0, 0.5])},
}


def _env_batch(b=4, seed=0):
    rng = np.random.default_rng(seed)
    batch = {
        "observation.environment_state": rng.normal(size=(b, 1, 5)).astype(np.float32),
        "action": rng.normal(size=(b, 5, 3)).astype(np.float32),
        "action_is_pad": np.zeros((b, 5), bool),
    }
    batch["action_is_pad"][:2, -3:] = True
    return batch


@pytest.fixture(scope="module")
def tiny_model():
    return act.build(act.ACTConfig(**TINY), _dataset_features(), _dataset_stats(), seed=0)


@pytest.fixture(scope="module")
def env_model():
    """No camera (no ResNet): cheap to compile, used for the training-dynamics tests."""
    return act.build(act.ACTConfig(**TINY), ENV_FEATURES, ENV_STATS, seed=0)


def test_build_from_dataset_features(tiny_model):
    spec = tiny_model.spec
    assert spec.image_keys == ("observation.images.front",)
    assert spec.input_features["observation.images.front"] == PolicyFeature(FeatureType.VISUAL, (3, 64, 64))
    assert "timestamp" not in spec.input_features
    assert spec.action_delta_indices == tuple(range(5)) and spec.observation_delta_indices is None
    assert PolicySpec.from_json(json.loads(json.dumps(spec.to_json()))) == spec
    # frozen BN statistics are buffers; the positional table too; the optimizer sees only Params
    params = nnx.state(tiny_model, TRAINABLE)
    flat = {".".join(map(str, p)) for p, _ in nnx.to_flat_state(params)}
    assert "model.backbone.conv1.kernel" in flat
    assert not any("running_mean" in k or "bn1.weight" in k or "pos_enc" in k for k in flat)
    buffers = {".".join(map(str, p)) for p, _ in nnx.to_flat_state(nnx.state(tiny_model, Buffer))}
    assert "model.backbone.bn1.running_var" in buffers and "model.vae_encoder_pos_enc" in buffers
    assert "normalizer.stats.action.mean" in buffers
    assert count_params(tiny_model) == sum(int(np.prod(v.shape)) for v in jax.tree.leaves(params))


def test_missing_stats_are_an_error():
    stats = _dataset_stats()
    del stats["observation.state"]["std"]
    with pytest.raises(ValueError, match=r"observation.state.*lack \['std'\]"):
        act.build(act.ACTConfig(**TINY), _dataset_features(), stats)


def test_param_groups_drive_optax(tiny_model):
    params = nnx.state(tiny_model, TRAINABLE)
    labels = param_labels(params, act.param_group)
    flat = dict(
        zip(
            [".".join(map(str, p)) for p, _ in nnx.to_flat_state(params)],
            jax.tree.leaves(labels),
            strict=True,
        )
    )
    assert flat["model.backbone.layer4.1.conv2.kernel"] == "backbone"
    assert flat["model.backbone.conv1.kernel"] == "backbone"
    assert flat["model.encoder.layers.0.self_attn.in_kernel"] == "default"
    assert flat["model.encoder_img_feat_input_proj.kernel"] == "default"
    preset = act.optimizer_preset(tiny_model.config)
    tx = optax.multi_transform(
        {
            "default": optax.adamw(preset.lr, weight_decay=preset.weight_decay),
            "backbone": optax.adamw(preset.group_lr["backbone"], weight_decay=preset.weight_decay),
        },
        labels,
    )
    state = jax.eval_shape(tx.init, params)
    updates, _ = jax.eval_shape(tx.update, params, state, params)
    assert jax.tree.structure(updates) == jax.tree.structure(params)


def _train(model, batch, steps):
    model = nnx.clone(model)
    opt = nnx.Optimizer(model, optax.adam(1e-3), wrt=nnx.Param)

    @nnx.jit
    def step(model, opt, batch, rng):
        (loss, _), grads = nnx.value_and_grad(lambda m: act.loss(m, batch, rng), has_aux=True)(model)
        opt.update(model, grads)
        return loss

    return model, [float(step(model, opt, batch, jax.random.key(i))) for i in range(steps)]


def test_training_step_reduces_loss(env_model):
    batch = _env_batch()
    buffers_before = jax.tree.map(np.asarray, nnx.state(env_model, Buffer))
    model, losses = _train(env_model, batch, 10)
    assert all(np.isfinite(losses)) and losses[-1] < losses[0]
    after = jax.tree.map(np.asarray, nnx.state(model, Buffer))
    jax.tree.map(np.testing.assert_array_equal, after, buffers_before)


@pytest.mark.slow
def test_training_with_images_keeps_frozen_batch_norm(tiny_model):
    bn_before = np.asarray(tiny_model.model.backbone.bn1.running_mean[...])
    model, losses = _train(tiny_model, _batch(), 4)
    assert all(np.isfinite(losses)) and losses[-1] < losses[0]
    np.testing.assert_array_equal(np.asarray(model.model.backbone.bn1.running_mean[...]), bn_before)
    assert not np.array_equal(
        np.asarray(model.model.backbone.conv1.kernel[...]),
        np.asarray(tiny_model.model.backbone.conv1.kernel[...]),
    )


def test_dropout_and_latent_are_random_in_training_only(tiny_model):
    batch = _batch()
    a, b = (
        float(LOSS(tiny_model, batch, jax.random.key(0))[0]),
        float(LOSS(tiny_model, batch, jax.random.key(1))[0]),
    )
    assert a != b and float(LOSS(tiny_model, batch, jax.random.key(0))[0]) == a
    s1 = SAMPLE(tiny_model, batch, jax.random.key(0))
    s2 = SAMPLE(tiny_model, batch, jax.random.key(1))
    np.testing.assert_array_equal(np.asarray(s1), np.asarray(s2))
    with pytest.raises(ValueError, match="needs an rng"):
        act.loss(tiny_model, batch, None)


def test_l1_reductions(env_model):
    """0.4.4 averages over all elements (padded ones count as 0); HEAD averages over valid ones."""
    batch = _env_batch()
    target = env_model.normalizer.normalize("action", jnp.asarray(batch["action"]))
    pred = np.asarray(FORWARD_EVAL(env_model, batch))
    err = np.abs(np.asarray(target) - pred) * (~batch["action_is_pad"])[..., None]
    l_all, m_all = LOSS(env_model, batch, None, train=False)
    assert set(m_all) == {"l1_loss", "loss"}  # validation loss: zero latent, no KL (LeRobot HEAD)
    np.testing.assert_allclose(float(l_all), err.mean(), rtol=1e-5)
    cfg = dataclasses.replace(env_model.config, l1_reduction="mean_valid")
    model_valid = act.build(cfg, ENV_FEATURES, ENV_STATS)
    nnx.update(model_valid, nnx.state(env_model))
    l_valid, _ = LOSS(model_valid, batch, None, train=False)
    n_valid = (~batch["action_is_pad"]).sum() * 3
    np.testing.assert_allclose(float(l_valid), err.sum() / n_valid, rtol=1e-5)


def test_kl_term(env_model):
    """loss = l1 + kl_weight * mean_B(sum_latent KL(N(mu, sigma) || N(0, 1)))."""
    batch = _env_batch()
    eps = np.random.default_rng(3).normal(size=(4, 4)).astype(np.float32)

    @nnx.jit
    def both(m, b, e, key):  # the same key gives the same dropout masks in both calls
        target = m.normalizer.normalize("action", jnp.asarray(b["action"]))
        _, mu, logvar = act.forward(m, b, target, b["action_is_pad"], train=True, rng=key, vae_eps=e)
        return act.loss(m, b, key, vae_eps=e), mu, logvar

    (loss, metrics), mu, logvar = both(env_model, batch, eps, jax.random.key(5))
    mu, logvar = np.asarray(mu, np.float64), np.asarray(logvar, np.float64)
    kld = (-0.5 * (1 + logvar - mu**2 - np.exp(logvar))).sum(-1).mean()
    np.testing.assert_allclose(float(metrics["kld_loss"]), kld, rtol=1e-5)
    np.testing.assert_allclose(float(loss), float(metrics["l1_loss"]) + 10.0 * kld, rtol=1e-5)


def test_pre_norm_gelu_env_state_only():
    cfg = act.ACTConfig(**{**TINY, "pre_norm": True, "feedforward_activation": "gelu"})
    model = act.build(cfg, ENV_FEATURES, ENV_STATS)
    keys = set(state_dict(model))
    assert "model.encoder.norm.weight" in keys and "model.vae_encoder.norm.weight" in keys
    assert not any(k.startswith("model.backbone") for k in keys)
    assert "model.encoder_env_state_input_proj.weight" in keys
    assert model.model.vae_encoder_pos_enc.shape == (1, 1 + 5, 32)  # no state token
    batch = _env_batch()
    loss, metrics = LOSS(model, batch, jax.random.key(0))
    assert np.isfinite(float(loss)) and "kld_loss" in metrics
    assert SAMPLE(model, batch, None).shape == (4, 5, 3)


def test_sinusoids_follow_lerobot():
    t = sinusoid_1d(12, 8)
    p, j = 3, 5
    assert np.isclose(t[p, j], np.cos(p / 10000 ** (2 * (j // 2) / 8)))
    assert np.isclose(t[p, 4], np.sin(p / 10000 ** (4 / 8)))
    s = sinusoid_2d(3, 4, 16).reshape(3, 4, 16)
    y, x = 1, 2  # row 1, column 2 -> positions 2/3 and 3/4 of 2 pi
    ey = (y + 1) / (3 + 1e-6) * 2 * np.pi
    ex = (x + 1) / (4 + 1e-6) * 2 * np.pi
    np.testing.assert_allclose(
        s[y, x, [0, 1, 2, 3]], [np.sin(ey), np.cos(ey), np.sin(ey / 10), np.cos(ey / 10)], atol=1e-6
    )
    np.testing.assert_allclose(
        s[y, x, [8, 9, 10, 11]], [np.sin(ex), np.cos(ex), np.sin(ex / 10), np.cos(ex / 10)], atol=1e-6
    )


def test_pretrained_backbone_from_local_file(tmp_path, monkeypatch):
    trunk = resnet.ResNet(18, "frozen_bn", rngs=nnx.Rngs(7))
    sd = state_dict(trunk)
    sd["fc.weight"], sd["fc.bias"] = np.zeros((1000, 512), np.float32), np.zeros((1000,), np.float32)
    file = tmp_path / "resnet18.safetensors"
    save_file(sd, str(file))
    cfg = act.ACTConfig(
        **{
            **TINY,
            "pretrained_backbone_weights": "ResNet18_Weights.IMAGENET1K_V1",
            "pretrained_backbone_path": str(file),
        }
    )
    model = act.build(cfg, _dataset_features(), _dataset_stats())
    np.testing.assert_array_equal(
        np.asarray(model.model.backbone.conv1.kernel[...]), np.asarray(trunk.conv1.kernel[...])
    )
    np.testing.assert_array_equal(
        np.asarray(model.model.backbone.layer3[0].downsample[1].running_var[...]),
        sd["layer3.0.downsample.1.running_var"],
    )
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "nowhere"))
    monkeypatch.delenv("JROBOT_RESNET18_WEIGHTS", raising=False)
    no_path = dataclasses.replace(cfg, pretrained_backbone_path=None)
    with pytest.raises(FileNotFoundError, match="never downloads"):
        act.build(no_path, _dataset_features(), _dataset_stats())
    monkeypatch.setenv("JROBOT_RESNET18_WEIGHTS", str(file))
    model = act.build(no_path, _dataset_features(), _dataset_stats())
    np.testing.assert_array_equal(
        np.asarray(model.model.backbone.conv1.kernel[...]), np.asarray(trunk.conv1.kernel[...])
    )


def test_weights_round_trip_between_models(tiny_model):
    """state_dict -> load_state_dict reproduces outputs exactly (the export/import path of a trained model)."""
    other = act.build(tiny_model.config, _dataset_features(), _dataset_stats(), seed=1)
    batch = _batch()
    before = np.asarray(SAMPLE(other, batch, None))
    load_state_dict(other, state_dict(tiny_model))
    after = np.asarray(SAMPLE(other, batch, None))
    np.testing.assert_array_equal(after, np.asarray(SAMPLE(tiny_model, batch, None)))
    assert not np.array_equal(before, after)


def test_bfloat16_compute_keeps_float32_params_and_outputs(env_model):
    cfg = dataclasses.replace(env_model.config, compute_dtype="bfloat16")
    model = nnx.eval_shape(lambda: act.ACTPolicy(cfg, env_model.spec, ENV_STATS, rngs=nnx.Rngs(0)))
    nnx.update(model, nnx.state(env_model))  # same weights as the float32 model
    assert all(v.dtype == jnp.float32 for v in jax.tree.leaves(nnx.state(model, TRAINABLE)))
    batch = _env_batch()
    out = SAMPLE(model, batch, None)
    assert out.dtype == jnp.float32 and np.isfinite(np.asarray(out)).all()
    np.testing.assert_allclose(np.asarray(out), np.asarray(SAMPLE(env_model, batch, None)), atol=0.1)

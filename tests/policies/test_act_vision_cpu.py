"""ACT's from-scratch CPU vision: the small conv trunk, spatial-softmax image tokens and DrQ's shift."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from jrobot.features import Feature
from jrobot.policies import act
from jrobot.policies.base import TRAINABLE, param_labels
from jrobot.policies.conv_trunk import ConvTrunk, random_shift, trunk_feature_hw

CAMS = ("front", "wrist")
H, W = 24, 32
CNN = dict(
    chunk_size=4, n_action_steps=4, dim_model=32, n_heads=4, dim_feedforward=64, n_encoder_layers=1,
    n_vae_encoder_layers=1, latent_dim=4, use_vae=False, dropout=0.0, pretrained_backbone_weights=None,
    vision_backbone="cnn", cnn_channels=(8, 16), cnn_strides=(2, 2), image_features="spatial_softmax",
    spatial_softmax_num_keypoints=6,
)  # fmt: skip


def _features():
    feats = {
        "observation.state": Feature("float32", (6,), ["j"] * 6),
        "action": Feature("float32", (6,), ["j"] * 6),
    }
    for c in CAMS:
        feats[f"observation.images.{c}"] = Feature("video", (H, W, 3), ["height", "width", "channels"])
    return feats


def _stats():
    st = {k: {"mean": np.zeros(6), "std": np.ones(6)} for k in ("observation.state", "action")}
    for c in CAMS:
        st[f"observation.images.{c}"] = {"mean": np.full((3, 1, 1), 0.5), "std": np.full((3, 1, 1), 0.25)}
    return st


def _batch(b=4, seed=0, images=None):
    rng = np.random.default_rng(seed)
    batch = {
        "observation.state": rng.normal(size=(b, 1, 6)).astype(np.float32),
        "action": rng.normal(size=(b, 4, 6)).astype(np.float32),
        "action_is_pad": np.zeros((b, 4), bool),
    }
    for c in CAMS:
        batch[f"observation.images.{c}"] = (
            rng.integers(0, 256, (b, 1, H, W, 3), dtype=np.uint8) if images is None else images[c]
        )
    return batch


def _model(**kw):
    return act.build(act.ACTConfig(**{**CNN, **kw}), _features(), _stats(), seed=0)


@pytest.mark.parametrize("hw", [(48, 64), (47, 63), (24, 32), (5, 3)])
def test_trunk_feature_size_matches_the_convolutions(hw):
    trunk = ConvTrunk((4, 8, 8), (2, 2, 1), rngs=nnx.Rngs(0))
    out = trunk(jnp.zeros((2, *hw, 3)))
    assert out.shape == (2, *trunk_feature_hw(*hw, (2, 2, 1)), 8) == (2, *trunk.feature_hw(*hw), 8)
    assert trunk.out_channels == 8


def test_random_shift_is_a_crop_of_the_edge_padded_image():
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(16, 6, 7, 3)).astype(np.float32))
    pad = 2
    y = np.asarray(random_shift(x, pad, jax.random.key(1)))
    padded = np.pad(np.asarray(x), ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="edge")
    offsets = []
    for i in range(16):
        hits = [
            (dy, dx)
            for dy in range(2 * pad + 1)
            for dx in range(2 * pad + 1)
            if np.array_equal(padded[i, dy : dy + 6, dx : dx + 7], y[i])
        ]
        assert hits, f"image {i} is not a crop of its padded original"
        offsets.append(hits[0])
    assert len(set(offsets)) > 3  # each image draws its own offset
    np.testing.assert_array_equal(np.asarray(random_shift(x, pad, jax.random.key(1))), y)  # keyed
    np.testing.assert_array_equal(np.asarray(random_shift(x, 0, jax.random.key(1))), np.asarray(x))


def test_keypoint_tokens_and_trunk_parameters():
    model = _model()
    m = model.model
    assert isinstance(m.backbone, ConvTrunk)
    assert len(m.encoder_img_keypoints) == 2 and m.encoder_img_keypoints[0].feature_hw == (6, 8)
    assert not hasattr(m, "encoder_img_feat_input_proj")
    # latent, state and one token per camera share the learned 1-D positions
    assert m.encoder_1d_feature_pos_embed.embedding[...].shape == (4, 32)
    labels = param_labels(nnx.state(model, TRAINABLE), act.param_group)
    flat = dict(
        zip(
            [".".join(map(str, p)) for p, _ in nnx.to_flat_state(nnx.state(model, TRAINABLE))],
            jax.tree.leaves(labels),
            strict=True,
        )
    )
    assert flat["model.backbone.convs.0.kernel"] == "backbone"
    assert flat["model.encoder_img_keypoints.1.nets.kernel"] == "default"


def test_the_policy_reads_the_cameras():
    """Changing only the images changes the actions: the cameras are an input, not decoration."""
    model = _model()
    batch = _batch()
    other = _batch(images={c: np.roll(batch[f"observation.images.{c}"], 7, axis=3) for c in CAMS})
    other["observation.state"] = batch["observation.state"]
    a = np.asarray(nnx.jit(act.sample_actions)(model, batch))
    b = np.asarray(nnx.jit(act.sample_actions)(model, other))
    assert a.shape == (4, 4, 6) and np.isfinite(a).all()
    assert np.abs(a - b).max() > 1e-4


def test_training_learns_from_images_and_shift_only_in_training():
    """A target that only the image position of a bright square predicts is learned; the shift is random
    in training and absent in eval (the same input gives the same chunk)."""
    model = _model(random_shift_pixels=2)
    rng = np.random.default_rng(0)
    b = 32
    imgs = {c: np.zeros((b, 1, H, W, 3), np.uint8) for c in CAMS}
    xs = rng.integers(2, W - 6, b)
    for i, x in enumerate(xs):
        imgs["front"][i, 0, 8:14, x : x + 4] = 255
    batch = _batch(b, images=imgs)
    batch["observation.state"] = np.zeros_like(batch["observation.state"])
    batch["action"] = np.broadcast_to(((xs - xs.mean()) / xs.std())[:, None, None], (b, 4, 6)).astype(
        np.float32
    )
    opt = nnx.Optimizer(model, optax.adam(3e-3), wrt=nnx.Param)

    @nnx.jit
    def step(model, opt, batch, rng):
        (loss, _), grads = nnx.value_and_grad(lambda m: act.loss(m, batch, rng), has_aux=True)(model)
        opt.update(model, grads)
        return loss

    losses = [float(step(model, opt, batch, jax.random.key(i))) for i in range(150)]
    assert losses[-1] < 0.5 * losses[0], losses[::25]
    with pytest.raises(ValueError, match="random_shift_pixels needs an rng"):
        act.loss(model, batch, None)
    loss_fn = nnx.jit(act.loss, static_argnames=("train",))
    l1, _ = loss_fn(model, batch, jax.random.key(0))
    l2, _ = loss_fn(model, batch, jax.random.key(1))
    assert float(l1) != float(l2)  # different shifts
    e1, _ = loss_fn(model, batch, None, train=False)
    e2, _ = loss_fn(model, batch, None, train=False)
    assert float(e1) == float(e2)


def test_feature_map_tokens_with_the_cnn_trunk():
    model = _model(image_features="feature_map")
    assert model.model.encoder_img_feat_input_proj.in_features == 16
    out = nnx.jit(act.sample_actions)(model, _batch())
    assert out.shape == (4, 4, 6) and bool(jnp.isfinite(out).all())


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(pretrained_backbone_weights="ResNet18_Weights.IMAGENET1K_V1"), "trained from scratch"),
        (dict(cnn_strides=(2,)), "differ in length"),
        (dict(cnn_strides=(2, 3)), "1 or 2"),
        (dict(cnn_channels=(), cnn_strides=()), "at least one stage"),
        (dict(image_features="pooled"), "image_features must be one of"),
        (dict(spatial_softmax_num_keypoints=0), "spatial_softmax_num_keypoints"),
        (dict(random_shift_pixels=-1), "random_shift_pixels"),
        (dict(vision_backbone="vit"), r"not supported; use one of \['resnet18', 'resnet34', 'cnn'\]"),
    ],
)
def test_config_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        act.ACTConfig(**{**CNN, **kwargs})


def test_lerobot_configs_keep_lerobots_trunk():
    cfg, notes = act.ACTConfig.from_lerobot({"type": "act", "chunk_size": 10, "n_action_steps": 10})
    assert cfg.vision_backbone == "resnet18" and cfg.image_features == "feature_map"
    assert cfg.random_shift_pixels == 0 and not notes

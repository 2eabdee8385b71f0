"""Keypoint tokens (`jrobot.policies.keypoint_tokens`) and SmolVLA with `image_encoder="keypoints"`."""

from __future__ import annotations

import dataclasses
import json
import re
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from safetensors.numpy import save_file

from jrobot.policies import smolvla as sv
from jrobot.policies.keypoint_tokens import LAYOUTS, KeypointTokens, image_hw_of
from jrobot.policies.layers import Buffer
from jrobot.policies.lerobot.statedict import state_dict
from jrobot.policies.smolvla.config import KEYPOINT_LAYOUTS, SmolVLAConfig
from jrobot.policies.spatial_softmax import SpatialSoftmax
from jrobot.policies.spec import FeatureType, PolicyFeature
from tests.policies.test_smolvla import FIXTURE, copy_flat, fixture_config


def test_attend_is_what_the_keypoints_are_made_of():
    pool = SpatialSoftmax(8, (5, 7), 3, rngs=nnx.Rngs(0))
    feats = jax.random.normal(jax.random.key(1), (2, 5, 7, 8))
    attention, xy = pool.attend(feats)
    assert attention.shape == (2, 3, 35) and xy.shape == (2, 3, 2)
    np.testing.assert_allclose(np.asarray(attention.sum(-1)), 1.0, rtol=1e-6)
    np.testing.assert_array_equal(np.asarray(pool(feats)), np.asarray(xy.reshape(2, 6)))


def test_tokens_are_position_and_found_features_plus_identity():
    enc = KeypointTokens((12, 16), (8, 8), (2, 1), 4, 24, rngs=nnx.Rngs(0), num_cameras=2)
    images = jax.random.uniform(jax.random.key(2), (3, 12, 16, 3), minval=-1, maxval=1)
    features = enc.trunk(images)
    for camera in (0, 1):
        tokens = enc(images, camera)
        assert tokens.shape == (3, 4, 24)
        attention, xy = enc.pools[camera].attend(features)
        found = jnp.einsum("nkp,npc->nkc", attention, features.reshape(3, 6 * 8, 8))
        expected = enc.proj(jnp.concatenate([xy, found], -1)) + enc.keypoint_embedding[...][camera][None]
        np.testing.assert_allclose(np.asarray(tokens), np.asarray(expected), rtol=1e-5, atol=1e-6)
        # each image's tokens are its own: permuting the batch permutes the tokens
        np.testing.assert_allclose(
            np.asarray(enc(images[::-1], camera)), np.asarray(tokens[::-1]), rtol=1e-5, atol=1e-6
        )
    # keypoint identity: a trained embedding per keypoint and camera, so the same position and features
    # give different tokens for different keypoints, and the same image through another camera's
    # detectors gives other tokens (its own keypoints, its own identities)
    assert isinstance(enc.keypoint_embedding, nnx.Param)
    emb = np.asarray(enc.keypoint_embedding[...])
    assert emb.shape == (2, 4, 24)
    assert not np.allclose(emb[0, 0], emb[0, 1]) and not np.allclose(emb[0, 0], emb[1, 0])
    assert not np.allclose(np.asarray(enc(images, 0)), np.asarray(enc(images, 1)))
    with pytest.raises(ValueError, match="built for 12x16 images, got 16x16"):
        enc(jnp.zeros((1, 16, 16, 3)))
    with pytest.raises(ValueError, match="camera 2 out of range: the keypoint encoder has 2"):
        enc(images, 2)


def test_per_camera_layout_is_acts_one_token_of_all_keypoint_positions():
    enc = KeypointTokens(
        (12, 16), (8, 8), (2, 1), 4, 24, rngs=nnx.Rngs(0), num_cameras=2, layout="per_camera"
    )
    images = jax.random.uniform(jax.random.key(2), (3, 12, 16, 3), minval=-1, maxval=1)
    features = enc.trunk(images)
    for camera in (0, 1):
        tokens = enc(images, camera)
        assert tokens.shape == (3, 1, 24)
        _, xy = enc.pools[camera].attend(features)
        expected = enc.camera_proj[camera](xy.reshape(3, 8))[:, None]
        np.testing.assert_allclose(np.asarray(tokens), np.asarray(expected), rtol=1e-5, atol=1e-6)
    # each camera has its own detectors and projection: the same image gives each camera other tokens
    assert not np.allclose(np.asarray(enc(images, 0)), np.asarray(enc(images, 1)))
    assert not hasattr(enc, "keypoint_embedding") and not hasattr(enc, "proj")
    with pytest.raises(ValueError, match="layout must be one of"):
        KeypointTokens((12, 16), (8,), (2,), 4, 24, rngs=nnx.Rngs(0), layout="per_image")


def square_scenes(
    rng: np.random.Generator, n: int, h: int = 24, w: int = 32
) -> tuple[np.ndarray, np.ndarray]:
    """Grey images with a red and a blue 3x3 square at random places; target: the red one's centre in
    [-1, 1] (the keypoint grid's units)."""
    images = np.full((n, h, w, 3), -0.2, np.float32)
    target = np.zeros((n, 2), np.float32)
    for i in range(n):
        cells = rng.choice((h - 3) * (w - 3), 2, replace=False)
        for colour, c in zip(((1.0, -1.0, -1.0), (-1.0, -1.0, 1.0)), cells):
            y, x = divmod(int(c), w - 3)
            images[i, y : y + 3, x : x + 3] = colour
        y, x = divmod(int(cells[0]), w - 3)
        target[i] = ((x + 1) / (w - 1) * 2 - 1, (y + 1) / (h - 1) * 2 - 1)
    return images, target


def test_keypoint_tokens_learn_where_the_red_square_is():
    """The reason for the encoder: with a distractor of another colour in the scene, a linear read-out
    of its tokens learns the red square's position within a few hundred steps (the ACT trunk's size)."""

    class Probe(nnx.Module):
        def __init__(self, rngs: nnx.Rngs):
            self.enc = KeypointTokens((24, 32), (16, 32), (2, 1), 8, 32, rngs=rngs)
            self.head = nnx.Linear(8 * 32, 2, rngs=rngs)

        def __call__(self, x):
            return self.head(self.enc(x).reshape(x.shape[0], -1))

    rng = np.random.default_rng(0)
    train_x, train_y = square_scenes(rng, 512)
    test_x, test_y = square_scenes(rng, 128)
    model = Probe(nnx.Rngs(0))
    opt = nnx.Optimizer(model, optax.adam(3e-3), wrt=nnx.Param)

    @nnx.jit
    def step(model, opt, x, y):
        loss, grads = nnx.value_and_grad(lambda m: jnp.mean((m(x) - y) ** 2))(model)
        opt.update(model, grads)
        return loss

    for i in range(300):
        sl = slice((i * 64) % 512, (i * 64) % 512 + 64)
        step(model, opt, jnp.asarray(train_x[sl]), jnp.asarray(train_y[sl]))
    err = np.abs(np.asarray(model(jnp.asarray(test_x))) - test_y)
    # guessing the mean is off by ~0.5 on average; a pixel is 0.065 wide across, 0.087 down
    assert float(np.mean(np.abs(test_y - test_y.mean(0)))) > 0.4
    assert float(err.mean()) < 0.12, err.mean()


def test_image_size_the_encoder_reads():
    shapes = {"a": (3, 48, 64), "b": (3, 48, 64)}
    assert image_hw_of(shapes, None, "here") == (48, 64)
    assert image_hw_of({**shapes, "b": (3, 96, 128)}, (64, 32), "here") == (32, 64)
    with pytest.raises(ValueError, match=r"here: the cameras differ in size .*resize_imgs_with_padding"):
        image_hw_of({**shapes, "b": (3, 96, 128)}, None, "here")


# ----------------------------------------------------------------------------------------------------
# SmolVLA with the keypoint encoder


def features(h: int = 48, w: int = 64, wrist: tuple[int, int] | None = None) -> dict[str, PolicyFeature]:
    feats = {
        "observation.images.front": PolicyFeature(FeatureType.VISUAL, (3, h, w)),
        "observation.images.wrist": PolicyFeature(FeatureType.VISUAL, (3, *(wrist or (h, w)))),
        "observation.state": PolicyFeature(FeatureType.STATE, (6,)),
        "action": PolicyFeature(FeatureType.ACTION, (6,)),
    }
    return feats


def stats() -> dict[str, dict[str, np.ndarray]]:
    return {
        k: {"mean": np.zeros(6, np.float32), "std": np.ones(6, np.float32)}
        for k in ("observation.state", "action")
    }


def keypoint_config(**changes) -> SmolVLAConfig:
    base = {
        "vlm_model_name": str(FIXTURE / "vlm"),
        "image_encoder": "keypoints",
        "resize_imgs_with_padding": None,
        "keypoint_cnn_channels": (8, 16),
        "keypoint_cnn_strides": (2, 2),
        "num_keypoints": 5,
    }
    return fixture_config(**{**base, **changes})


def batch(rng: np.random.Generator, n: int = 2, h: int = 48, w: int = 64) -> dict[str, np.ndarray]:
    model_tokens = np.array([[1, 5, 9, 0], [1, 7, 0, 0]], np.int32)[:n]
    return {
        "observation.images.front": rng.integers(0, 256, (n, h, w, 3), dtype=np.uint8),
        "observation.images.wrist": rng.integers(0, 256, (n, h, w, 3), dtype=np.uint8),
        "observation.state": rng.standard_normal((n, 6)).astype(np.float32),
        sv.LANGUAGE_TOKENS: model_tokens,
        sv.LANGUAGE_MASK: model_tokens > 0,
    }


@pytest.mark.parametrize("layout", ["per_keypoint", "per_camera"])
def test_keypoint_smolvla_builds_without_the_vision_tower_and_trains_its_encoder(layout):
    # LeRobot's defaults: the VLM frozen
    model = sv.build(keypoint_config(keypoint_tokens=layout), features(), stats())
    paths = [".".join(map(str, p)) for p, _ in nnx.to_flat_state(nnx.state(model))]
    assert not any("vision_model" in p or "connector" in p for p in paths)
    trainable = [".".join(map(str, p)) for p, _ in nnx.to_flat_state(nnx.state(model, nnx.Param))]
    assert any(p.startswith("model.image_encoder.trunk.") for p in trainable)
    assert {p.startswith("model.image_encoder.pools.1.") for p in trainable} == {True, False}
    if layout == "per_keypoint":
        assert "model.image_encoder.keypoint_embedding" in trainable
    else:
        assert {
            "model.image_encoder.camera_proj.0.kernel",
            "model.image_encoder.camera_proj.1.kernel",
        } <= set(trainable)
    assert isinstance(
        model.model.vlm_with_expert.vlm.model.text_model.layers[0].self_attn.q_proj.kernel, Buffer
    )

    rng = np.random.default_rng(0)
    obs = batch(rng)
    images, masks, tokens, lang_mask, state = sv.prepare_inputs(model, obs)
    prefix, _, _ = model.model.embed_prefix(images, masks, tokens, lang_mask, state)
    per_camera = 5 if layout == "per_keypoint" else 1  # num_keypoints tokens, or one
    assert prefix.shape[1] == 2 * per_camera + tokens.shape[1] + 1  # cameras, language, state
    b = {**obs, "action": rng.standard_normal((2, model.config.chunk_size, 6)).astype(np.float32)}

    @nnx.jit
    def value_and_grad(model, b, key):
        return nnx.value_and_grad(lambda m: sv.loss(m, b, key)[0])(model)

    value, grads = value_and_grad(model, b, jax.random.key(0))
    assert np.isfinite(float(value))
    flat = {".".join(map(str, p)): np.asarray(v.get_value()) for p, v in nnx.to_flat_state(grads)}
    encoder = {k: g for k, g in flat.items() if k.startswith("model.image_encoder.")}
    assert len(encoder) >= 8 and all(np.isfinite(g).all() and np.abs(g).max() > 0 for g in encoder.values())

    @nnx.jit
    def sample(model, obs, noise):
        return sv.sample_actions(model, {**obs, "noise": noise}, None)

    noise = jax.random.normal(jax.random.key(2), (2, model.config.chunk_size, 32))
    chunk = np.asarray(sample(model, obs, noise))
    assert chunk.shape == (2, model.config.chunk_size, 6) and np.isfinite(chunk).all()
    # the images matter: another front image gives another chunk from the same noise
    other = {**obs, "observation.images.front": obs["observation.images.front"][::-1]}
    assert not np.allclose(chunk, np.asarray(sample(model, other, noise)))


def test_keypoint_smolvla_image_size_checks():
    cfg = keypoint_config()
    with pytest.raises(ValueError, match="cameras differ in size"):
        sv.build(cfg, features(wrist=(96, 128)), stats())
    # with resize_imgs_with_padding every camera reaches the encoder at that size
    model = sv.build(
        dataclasses.replace(cfg, resize_imgs_with_padding=(64, 64)), features(wrist=(96, 128)), stats()
    )
    assert model.model.image_encoder.image_hw == (64, 64)
    rng = np.random.default_rng(1)
    obs = batch(rng)
    obs["observation.images.wrist"] = rng.integers(0, 256, (2, 96, 128, 3), dtype=np.uint8)
    assert sv.sample_actions(model, obs, jax.random.key(0)).shape == (2, cfg.chunk_size, 6)
    # a camera that arrives at another size than the model was built for is named
    built = sv.build(cfg, features(), stats())
    with pytest.raises(ValueError, match="built for 48x64 images, got 96x128"):
        sv.sample_actions(built, batch(rng, h=96, w=128), jax.random.key(0))


def test_keypoint_options_are_checked_and_round_trip():
    with pytest.raises(ValueError, match="image_encoder must be one of"):
        keypoint_config(image_encoder="resnet")
    with pytest.raises(ValueError, match="cnn_strides must be 1 or 2"):
        keypoint_config(keypoint_cnn_strides=(2, 3))
    with pytest.raises(ValueError, match="num_keypoints must be >= 1"):
        keypoint_config(num_keypoints=0)
    with pytest.raises(ValueError, match="keypoint_tokens must be one of"):
        keypoint_config(keypoint_tokens="per_image")
    assert KEYPOINT_LAYOUTS is LAYOUTS  # the config checks what the encoder builds, from one tuple
    cfg = keypoint_config()
    again = SmolVLAConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg and again.keypoint_cnn_channels == (8, 16)
    # LeRobot's config.json never sets jrobot's options: such a key is noted and ignored
    d = json.loads((FIXTURE / "pretrained_model" / "config.json").read_text())
    d["image_encoder"] = "keypoints"
    imported, notes = SmolVLAConfig.from_lerobot(d)
    assert imported.image_encoder == "siglip"
    assert any("'image_encoder'" in n for n in notes)


def test_keypoint_smolvla_loads_only_the_text_model_from_the_vlm_folder(tmp_path):
    """load_vlm_weights with the keypoint encoder: SmolVLM's text weights load, its vision tower and
    connector are left out (and listed), the keypoint encoder keeps its fresh weights."""
    vlm_dir = copy_flat(FIXTURE / "vlm", tmp_path / "my_vlm")
    siglip = sv.build(fixture_config(vlm_model_name=str(vlm_dir)), features(), stats())
    template = state_dict(siglip.model.vlm_with_expert.vlm)
    rng = np.random.default_rng(0)
    weights = {k: rng.standard_normal(v.shape).astype(np.float32) for k, v in template.items()}
    save_file(weights, str(vlm_dir / "model.safetensors"))
    cfg = keypoint_config(vlm_model_name=str(vlm_dir))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = sv.build(dataclasses.replace(cfg, load_vlm_weights=True), features(), stats())
    got = state_dict(model.model.vlm_with_expert.vlm)
    assert set(got) == {k for k in weights if k.startswith("model.text_model.")}
    for k, v in got.items():
        np.testing.assert_array_equal(v, weights[k], err_msg=k)
    dropped = sv.load_pretrained_vlm(model, vlm_dir)
    assert dropped and all(re.match(r"model\.(vision_model|connector)\.", k) for k in dropped)

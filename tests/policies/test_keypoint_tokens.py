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
    """Grey images with a red and a blue 3x3 square at random places; targets (n, 2 squares, 2): the red
    and the blue one's centres in [-1, 1] (the keypoint grid's units)."""
    images = np.full((n, h, w, 3), -0.2, np.float32)
    target = np.zeros((n, 2, 2), np.float32)
    for i in range(n):
        cells = rng.choice((h - 3) * (w - 3), 2, replace=False)
        for j, (colour, c) in enumerate(zip(((1.0, -1.0, -1.0), (-1.0, -1.0, 1.0)), cells)):
            y, x = divmod(int(c), w - 3)
            images[i, y : y + 3, x : x + 3] = colour
            target[i, j] = ((x + 1) / (w - 1) * 2 - 1, (y + 1) / (h - 1) * 2 - 1)
    return images, target


def fit_probe(model: nnx.Module, inputs: tuple[np.ndarray, ...], target: np.ndarray, steps: int = 300):
    """Adam on the mean squared error of `model(*inputs)` against `target`, batches of 64."""
    opt = nnx.Optimizer(model, optax.adam(3e-3), wrt=nnx.Param)

    @nnx.jit
    def step(model, opt, xs, y):
        loss, grads = nnx.value_and_grad(lambda m: jnp.mean((m(*xs) - y) ** 2))(model)
        opt.update(model, grads)
        return loss

    n = len(target)
    for i in range(steps):
        sl = slice((i * 64) % n, (i * 64) % n + 64)
        step(model, opt, tuple(jnp.asarray(x[sl]) for x in inputs), jnp.asarray(target[sl]))


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
    fit_probe(model, (train_x,), train_y[:, 0])
    err = np.abs(np.asarray(model(jnp.asarray(test_x))) - test_y[:, 0])
    # guessing the mean is off by ~0.5 on average; a pixel is 0.065 wide across, 0.087 down
    assert float(np.mean(np.abs(test_y[:, 0] - test_y[:, 0].mean(0)))) > 0.4
    assert float(err.mean()) < 0.12, err.mean()


def test_film_lets_the_instruction_choose_which_square_the_token_locates():
    """Why `condition_width` (RT-1's FiLM): with two squares and an instruction naming one, one token per
    camera read out linearly, without seeing the instruction, finds the named square only when the
    instruction modulates the trunk; unconditioned, the token holds both squares and the read-out cannot
    tell which is asked for."""

    class Probe(nnx.Module):
        def __init__(self, film: bool, rngs: nnx.Rngs):
            self.enc = KeypointTokens(
                (24, 32), (16, 32), (2, 1), 8, 32, rngs=rngs, layout="per_camera",
                condition_width=4 if film else None,
            )  # fmt: skip
            self.head = nnx.Linear(32, 2, rngs=rngs)
            self.film = film

        def __call__(self, x, instruction):
            return self.head(self.enc(x, 0, instruction if self.film else None)[:, 0])

    rng = np.random.default_rng(0)
    words = rng.standard_normal((2, 4)).astype(np.float32)  # the embeddings of "red" and "blue"

    def named(n):
        x, y = square_scenes(rng, n)
        which = rng.integers(0, 2, n)
        return x, words[which], y[np.arange(n), which]

    train, test = named(1024), named(256)
    errors = {}
    for film in (True, False):
        model = Probe(film, nnx.Rngs(0))
        fit_probe(model, train[:2], train[2], steps=600)
        errors[film] = float(np.abs(np.asarray(model(*map(jnp.asarray, test[:2]))) - test[2]).mean())
    # unconditioned, the best guess is between the two squares (~0.35 off); FiLM finds the named one
    assert errors[False] > 0.25 and errors[True] < 0.12, errors


def test_film_starts_as_the_identity_and_needs_its_condition():
    kw = dict(rngs=nnx.Rngs(0), num_cameras=2, layout="per_camera")
    plain = KeypointTokens((12, 16), (8, 8), (2, 1), 4, 24, **kw)
    film = KeypointTokens((12, 16), (8, 8), (2, 1), 4, 24, condition_width=6, **kw)
    images = jax.random.uniform(jax.random.key(2), (3, 12, 16, 3), minval=-1, maxval=1)
    cond = jax.random.normal(jax.random.key(3), (3, 6))
    nnx.update(film, nnx.state(plain))  # the same trunk, detectors and projections
    # the zero-initialized FiLM changes nothing until it trains
    np.testing.assert_allclose(np.asarray(film(images, 1, cond)), np.asarray(plain(images, 1)), atol=1e-6)
    film.film.kernel[...] = jax.random.normal(jax.random.key(4), film.film.kernel.shape)
    assert not np.allclose(np.asarray(film(images, 1, cond)), np.asarray(film(images, 1, cond[::-1])))
    with pytest.raises(ValueError, match="FiLM is on"):
        film(images, 0)
    with pytest.raises(ValueError, match="FiLM is off"):
        plain(images, 0, cond)


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


def test_keypoint_film_conditions_the_image_tokens_on_the_instruction():
    model = sv.build(keypoint_config(keypoint_tokens="per_camera", keypoint_film=True), features(), stats())
    enc = model.model.image_encoder
    width = model.config.arch.text.hidden_size
    assert enc.film.kernel.shape == (width, 2 * sum(enc.trunk.channels))  # every trunk stage
    rng = np.random.default_rng(0)
    obs = batch(rng)
    obs = {
        k: v[:1].repeat(2, 0) if k != sv.LANGUAGE_TOKENS and k != sv.LANGUAGE_MASK else v
        for k, v in obs.items()
    }

    def image_tokens():
        images, masks, tokens, lang_mask, state = sv.prepare_inputs(model, obs)
        return np.asarray(model.model.embed_prefix(images, masks, tokens, lang_mask, state)[0][:, :2])

    # the same images and state under two instructions: identical tokens at initialization (FiLM is
    # the identity), and the instruction reaches the encoder's FiLM through the loss's gradient
    first = image_tokens()
    np.testing.assert_allclose(first[0], first[1], atol=1e-6)
    b = {**obs, "action": rng.standard_normal((2, model.config.chunk_size, 6)).astype(np.float32)}
    grads = nnx.jit(nnx.grad(lambda m: sv.loss(m, b, jax.random.key(0))[0]))(model)
    assert np.abs(np.asarray(grads.model.image_encoder.film.kernel.get_value())).max() > 0
    enc.film.kernel[...] = jax.random.normal(jax.random.key(1), enc.film.kernel.shape)
    second = image_tokens()
    assert not np.allclose(second[0], second[1])
    with pytest.raises(ValueError, match="keypoint_film=True needs image_encoder='keypoints'"):
        fixture_config(keypoint_film=True)


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

"""Diffusion Policy beyond the parity fixtures: config, layout, schedulers, U-Net pieces, encoder, training.

Models with a ResNet are made with `_materialize` (abstract build + numpy-filled variables) instead of a
random init, which would spend most of a CPU test's time compiling initializers.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from jrobot.policies import diffusion
from jrobot.policies.base import OptimizerPreset, count_params, load_policy_module
from jrobot.policies.diffusion import DiffusionConfig
from jrobot.policies.diffusion.unet import (
    ConditionalUnet1d,
    mish,
    sinusoidal_step_embedding,
    torch_conv_transpose1d,
)
from jrobot.policies.ema import EMAConfig, ema_init, ema_update
from jrobot.policies.lerobot.checkpoint import LEROBOT_BASE_CONFIG_KEYS
from jrobot.policies.lerobot.statedict import collect_leaves, conv_leaves, count_leaves
from jrobot.policies.schedulers import NoiseScheduler, inference_timesteps, make_betas
from jrobot.policies.spatial_softmax import SpatialSoftmax, keypoint_grid
from jrobot.policies.spec import FeatureType, PolicyFeature, split_features

DDPM_FIXTURE = "diffusion_so101_tiny_ddpm"


def _features(state: int = 4, action: int = 3, cams: int = 0, hw: tuple[int, int] = (32, 32), env: int = 0):
    f = {"observation.state": PolicyFeature(FeatureType.STATE, (state,))}
    for i in range(cams):
        f[f"observation.images.cam{i}"] = PolicyFeature(FeatureType.VISUAL, (3, *hw))
    if env:
        f["observation.environment_state"] = PolicyFeature(FeatureType.ENV, (env,))
    f["action"] = PolicyFeature(FeatureType.ACTION, (action,))
    return f


def _stats(features) -> dict:
    out = {}
    for k, f in features.items():
        if f.type is FeatureType.VISUAL:
            out[k] = {
                "mean": np.full((3, 1, 1), 0.5, np.float32),
                "std": np.full((3, 1, 1), 0.25, np.float32),
            }
        else:
            n = f.shape[0]
            out[k] = {
                "min": -np.arange(1, n + 1, dtype=np.float32),
                "max": np.arange(1, n + 1, dtype=np.float32) * 2,
            }
    return out


TINY = dict(
    horizon=8,
    n_action_steps=4,
    down_dims=(16, 32),
    kernel_size=3,
    diffusion_step_embed_dim=8,
    spatial_softmax_num_keypoints=4,
    num_train_timesteps=10,
)


def _materialize(config: DiffusionConfig, features, seed: int = 0) -> diffusion.DiffusionPolicy:
    """A model with every variable drawn by numpy (no jax initializer compiles), real stats."""
    inputs, outputs = split_features(features)
    spec = diffusion.make_spec(config, inputs, outputs)
    stats = _stats(features)
    abstract = nnx.eval_shape(lambda: diffusion.DiffusionPolicy(config, spec, stats, rngs=nnx.Rngs(0)))
    graphdef, state = nnx.split(abstract)
    rng = np.random.default_rng(seed)

    def fill(path, x):
        if np.issubdtype(x.dtype, np.integer):
            return jnp.zeros(x.shape, x.dtype)
        fan_in = math.prod(x.shape[:-1]) if len(x.shape) > 1 else 1
        return jnp.asarray(
            rng.uniform(-1, 1, x.shape) / math.sqrt(max(fan_in, 1)) + (1.0 if len(x.shape) == 1 else 0.0),
            x.dtype,
        )

    model = nnx.merge(graphdef, jax.tree_util.tree_map_with_path(fill, state))
    model.normalizer.set_stats(stats, features)
    return model


def _batch(features, config: DiffusionConfig, b: int = 2, seed: int = 0, uint8: bool = True) -> dict:
    rng = np.random.default_rng(seed)
    out = {}
    for k, f in features.items():
        if k == "action":
            out[k] = rng.uniform(-1, 2, (b, config.horizon, *f.shape)).astype(np.float32)
        elif f.type is FeatureType.VISUAL:
            shape = (b, config.n_obs_steps, f.shape[1], f.shape[2], 3)
            out[k] = (
                rng.integers(0, 256, shape, dtype=np.uint8) if uint8 else rng.random(shape, dtype=np.float32)
            )
        else:
            out[k] = rng.uniform(-1, 2, (b, config.n_obs_steps, *f.shape)).astype(np.float32)
    out["action_is_pad"] = np.zeros((b, config.horizon), bool)
    return out


# ----------------------------------------------------------------------------------------------------
# config
def test_config_defaults_are_lerobot_044():
    c = DiffusionConfig()
    assert (c.n_obs_steps, c.horizon, c.n_action_steps, c.drop_n_last_frames) == (2, 16, 8, 7)
    assert c.normalization_mapping == {"VISUAL": "MEAN_STD", "STATE": "MIN_MAX", "ACTION": "MIN_MAX"}
    assert (c.vision_backbone, c.resize_shape, c.crop_ratio, c.crop_shape, c.crop_is_random) == (
        "resnet18",
        None,
        1.0,
        None,
        True,
    )
    assert (c.pretrained_backbone_weights, c.use_group_norm, c.spatial_softmax_num_keypoints) == (
        None,
        True,
        32,
    )
    assert c.use_separate_rgb_encoder_per_camera is False
    assert (c.down_dims, c.kernel_size, c.n_groups, c.diffusion_step_embed_dim) == (
        (512, 1024, 2048),
        5,
        8,
        128,
    )
    assert c.use_film_scale_modulation is True
    assert (c.noise_scheduler_type, c.num_train_timesteps, c.beta_schedule) == (
        "DDPM",
        100,
        "squaredcos_cap_v2",
    )
    assert (c.beta_start, c.beta_end, c.prediction_type, c.clip_sample, c.clip_sample_range) == (
        1e-4,
        0.02,
        "epsilon",
        True,
        1.0,
    )
    assert (c.num_inference_steps, c.do_mask_loss_for_padding) == (None, False)
    assert (c.optimizer_lr, c.optimizer_betas, c.optimizer_eps, c.optimizer_weight_decay) == (
        1e-4,
        (0.95, 0.999),
        1e-8,
        1e-6,
    )
    assert (c.scheduler_name, c.scheduler_warmup_steps) == ("cosine", 500)
    assert c.observation_delta_indices == (-1, 0)
    assert c.action_delta_indices == tuple(range(-1, 15))  # the window starts at the first observation


def test_config_has_exactly_lerobots_fields(shared_dir):
    """`to_lerobot()` names the same hyperparameters a LeRobot 0.4.4 config.json holds."""
    cfg = json.loads(
        (shared_dir / "fixtures/parity" / DDPM_FIXTURE / "pretrained_model/config.json").read_text()
    )
    lerobot_keys = set(cfg) - LEROBOT_BASE_CONFIG_KEYS
    assert set(DiffusionConfig().to_lerobot()) - {"type"} == lerobot_keys
    loaded, notes = DiffusionConfig.from_lerobot(cfg)
    assert notes == []
    assert loaded.to_lerobot() == {"type": "diffusion", **{k: cfg[k] for k in lerobot_keys}}


def test_config_round_trips_through_json():
    c = DiffusionConfig(
        resize_shape=(96, 128),
        crop_ratio=0.875,
        down_dims=(64, 128),
        horizon=8,
        n_action_steps=4,
        noise_scheduler_type="DDIM",
        num_inference_steps=10,
        use_ema=False,
        normalization_mapping={"VISUAL": "mean_std", "STATE": "MEAN_STD", "ACTION": "MIN_MAX"},
    )
    back = DiffusionConfig.from_dict(json.loads(json.dumps(c.to_dict())))
    assert back == c and hash(back) == hash(c)
    assert back.crop_shape == (84, 112)  # int(resize * ratio), as LeRobot derives it
    assert back.normalization_mapping["VISUAL"] == "MEAN_STD"


def test_from_lerobot_notes_missing_and_unknown_keys(shared_dir):
    cfg = json.loads(
        (shared_dir / "fixtures/parity" / DDPM_FIXTURE / "pretrained_model/config.json").read_text()
    )
    del cfg["crop_ratio"], cfg["resize_shape"]  # a pre-0.4.4 config
    cfg["gradient_checkpointing"] = False  # a HEAD option with no numerical effect
    cfg["some_future_option"] = 3
    loaded, notes = DiffusionConfig.from_lerobot(cfg)
    assert loaded.crop_shape == (56, 56) and loaded.resize_shape is None
    assert any("'crop_ratio'" in n for n in notes) and any("'resize_shape'" in n for n in notes)
    assert any("some_future_option" in n for n in notes)
    assert not any("gradient_checkpointing" in n for n in notes)


def test_resize_with_full_ratio_disables_the_crop():
    assert DiffusionConfig(resize_shape=(96, 96), crop_shape=(84, 84)).crop_shape is None


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(horizon=12), "multiple of 2\\*\\*len"),
        (dict(n_action_steps=16), "n_action_steps"),
        (dict(pretrained_backbone_weights="ResNet18_Weights.IMAGENET1K_V1"), "GroupNorm"),
        (dict(prediction_type="v_prediction"), "prediction_type"),
        (dict(noise_scheduler_type="PNDM"), "noise_scheduler_type"),
        (dict(kernel_size=4), "odd"),
        (dict(num_inference_steps=101), "num_inference_steps"),
        (dict(mask_loss_reduction="sum"), "mask_loss_reduction"),
        (dict(vision_backbone="resnet50"), "vision_backbone"),
        (dict(crop_ratio=0.0), "crop_ratio"),
        (dict(down_dims=(12, 24), horizon=8, n_action_steps=4), "divisible"),
        (dict(ema_max_decay=1.0), "EMA"),
    ],
)
def test_config_rejects_what_cannot_run(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DiffusionConfig(**kwargs)


def test_from_dict_is_strict():
    with pytest.raises(ValueError, match="unknown keys \\['horizn'\\]"):
        DiffusionConfig.from_dict({"horizn": 8})


def test_spec_checks_features():
    cfg = DiffusionConfig(**TINY)
    no_cond = _features()
    with pytest.raises(ValueError, match="at least one image or the environment state"):
        diffusion.make_spec(cfg, *split_features(no_cond))
    mixed = _features(cams=1) | {"observation.images.other": PolicyFeature(FeatureType.VISUAL, (3, 16, 16))}
    with pytest.raises(ValueError, match="same shape"):
        diffusion.make_spec(cfg, *split_features(mixed))
    big_crop = dataclasses.replace(cfg, crop_shape=(40, 40))
    with pytest.raises(ValueError, match="crop_shape"):
        diffusion.make_spec(big_crop, *split_features(_features(cams=1)))
    no_state = {k: v for k, v in _features(env=3).items() if k != "observation.state"}
    with pytest.raises(ValueError, match=r"observation\.state"):
        diffusion.make_spec(cfg, *split_features(no_state))


# ----------------------------------------------------------------------------------------------------
# state-dict layout, written from the reference (lerobot_policies.md §3.6) independently of jrobot's names
def lerobot_diffusion_shapes(
    *, S: int, A: int, cams: int, fhw: tuple[int, int], cfg: DiffusionConfig, env: int = 0
):
    """`cams` cameras: one encoder `rgb_encoder.*`, or `rgb_encoder.{i}.*` per camera when separate."""
    out: dict[str, tuple[int, ...]] = {}
    kp = cfg.spatial_softmax_num_keypoints
    if cfg.use_separate_rgb_encoder_per_camera:
        encoders = [f"diffusion.rgb_encoder.{i}." for i in range(cams)]
    else:
        encoders = ["diffusion.rgb_encoder."] if cams else []
    for p in encoders:
        b = p + "backbone."
        out[b + "0.weight"] = (64, 3, 7, 7)
        out[b + "1.weight"] = out[b + "1.bias"] = (64,)
        cin = 64
        for layer, c in zip((4, 5, 6, 7), (64, 128, 256, 512), strict=True):
            for blk in (0, 1):
                q = f"{b}{layer}.{blk}."
                out[q + "conv1.weight"] = (c, cin if blk == 0 else c, 3, 3)
                out[q + "conv2.weight"] = (c, c, 3, 3)
                for n in ("bn1", "bn2"):
                    out[f"{q}{n}.weight"] = out[f"{q}{n}.bias"] = (c,)
                if blk == 0 and layer > 4:
                    out[q + "downsample.0.weight"] = (c, cin, 1, 1)
                    out[q + "downsample.1.weight"] = out[q + "downsample.1.bias"] = (c,)
            cin = c
        out[p + "pool.pos_grid"] = (fhw[0] * fhw[1], 2)
        out[p + "pool.nets.weight"] = (kp, 512, 1, 1)
        out[p + "pool.nets.bias"] = (kp,)
        out[p + "out.weight"] = (2 * kp, 2 * kp)
        out[p + "out.bias"] = (2 * kp,)
    d = cfg.diffusion_step_embed_dim
    u = "diffusion.unet."
    out[u + "diffusion_step_encoder.1.weight"] = (4 * d, d)
    out[u + "diffusion_step_encoder.1.bias"] = (4 * d,)
    out[u + "diffusion_step_encoder.3.weight"] = (d, 4 * d)
    out[u + "diffusion_step_encoder.3.bias"] = (d,)
    cond = d + (S + cams * 2 * kp + env) * cfg.n_obs_steps
    k, dims = cfg.kernel_size, cfg.down_dims

    def res(p, cin, cout):
        out[p + "conv1.block.0.weight"] = (cout, cin, k)
        out[p + "conv2.block.0.weight"] = (cout, cout, k)
        for q in ("conv1.block.0.bias", "conv1.block.1.weight", "conv1.block.1.bias"):
            out[p + q] = (cout,)
        for q in ("conv2.block.0.bias", "conv2.block.1.weight", "conv2.block.1.bias"):
            out[p + q] = (cout,)
        out[p + "cond_encoder.1.weight"] = (2 * cout, cond)
        out[p + "cond_encoder.1.bias"] = (2 * cout,)
        if cin != cout:
            out[p + "residual_conv.weight"] = (cout, cin, 1)
            out[p + "residual_conv.bias"] = (cout,)

    in_out = [(A, dims[0]), *itertools.pairwise(dims)]
    for i, (ci, co) in enumerate(in_out):
        res(f"{u}down_modules.{i}.0.", ci, co)
        res(f"{u}down_modules.{i}.1.", co, co)
        if i < len(in_out) - 1:
            out[f"{u}down_modules.{i}.2.weight"] = (co, co, 3)
            out[f"{u}down_modules.{i}.2.bias"] = (co,)
    res(u + "mid_modules.0.", dims[-1], dims[-1])
    res(u + "mid_modules.1.", dims[-1], dims[-1])
    for i, (co, ci) in enumerate(reversed(in_out[1:])):
        res(f"{u}up_modules.{i}.0.", 2 * ci, co)
        res(f"{u}up_modules.{i}.1.", co, co)
        out[f"{u}up_modules.{i}.2.weight"] = (co, co, 4)  # ConvTranspose1d (I, O, k); every up stage has one
        out[f"{u}up_modules.{i}.2.bias"] = (co,)
    out[u + "final_conv.0.block.0.weight"] = (dims[0], dims[0], k)
    for q in ("final_conv.0.block.0.bias", "final_conv.0.block.1.weight", "final_conv.0.block.1.bias"):
        out[u + q] = (dims[0],)
    out[u + "final_conv.1.weight"] = (A, dims[0], 1)
    out[u + "final_conv.1.bias"] = (A,)
    return out


def _abstract(config: DiffusionConfig, features):
    inputs, outputs = split_features(features)
    spec = diffusion.make_spec(config, inputs, outputs)
    return nnx.eval_shape(lambda: diffusion.DiffusionPolicy(config, spec, _stats(features), rngs=nnx.Rngs(0)))


def test_layout_helper_matches_a_real_lerobot_checkpoint(shared_dir):
    from safetensors.numpy import load_file

    sd = load_file(str(shared_dir / "fixtures/parity" / DDPM_FIXTURE / "pretrained_model/model.safetensors"))
    cfg = DiffusionConfig(
        **(TINY | dict(down_dims=(32, 64), diffusion_step_embed_dim=16, num_train_timesteps=20))
    )
    expected = lerobot_diffusion_shapes(S=6, A=6, cams=2, fhw=(2, 2), cfg=cfg)
    assert {k: tuple(v.shape) for k, v in sd.items()} == expected


def test_default_size_pusht_layout_and_parameter_count():
    """LeRobot 0.4.4 defaults on the pusht-like setup of the reference (state 2, action 2, 96x96, crop 84):
    262.7 M parameters, key layout as LeRobot's."""
    cfg = DiffusionConfig(crop_shape=(84, 84))
    feats = {
        "observation.image": PolicyFeature(FeatureType.VISUAL, (3, 96, 96)),
        "observation.state": PolicyFeature(FeatureType.STATE, (2,)),
        "action": PolicyFeature(FeatureType.ACTION, (2,)),
    }
    model = _abstract(cfg, feats)
    leaves = {k: leaf.shape for k, leaf in collect_leaves(model).items()}
    assert leaves == lerobot_diffusion_shapes(S=2, A=2, cams=1, fhw=(3, 3), cfg=cfg)
    assert diffusion.global_cond_dim(model) == 132  # (2 + 64) * 2
    assert round(count_leaves(model) / 1e6, 1) == 262.7
    # trainable = everything but the saved pos_grid buffer (and normalization stats)
    assert count_params(model) == count_leaves(model) - 9 * 2


def test_separate_encoders_layout_with_three_levels_and_env_state():
    cfg = DiffusionConfig(
        **(TINY | dict(down_dims=(16, 32, 64), use_separate_rgb_encoder_per_camera=True, crop_shape=(30, 30)))
    )
    feats = _features(state=5, action=2, cams=2, hw=(32, 36), env=3)
    model = _abstract(cfg, feats)
    leaves = {k: leaf.shape for k, leaf in collect_leaves(model).items()}
    assert leaves == lerobot_diffusion_shapes(S=5, A=2, cams=2, fhw=(1, 1), cfg=cfg, env=3)


# ----------------------------------------------------------------------------------------------------
# schedulers
def test_linear_and_scaled_linear_betas():
    lin = make_betas(1000, "linear", 1e-4, 0.02)
    np.testing.assert_allclose(lin, np.linspace(1e-4, 0.02, 1000), rtol=1e-6)
    sl = make_betas(50, "scaled_linear", 1e-4, 0.02)
    np.testing.assert_allclose(sl, np.linspace(1e-2, 0.02**0.5, 50) ** 2, rtol=1e-6)
    assert lin.dtype == sl.dtype == np.float32
    cos = make_betas(100, "squaredcos_cap_v2", 0.5, 0.9)  # beta_start/end ignored by the cosine
    assert cos[0] > 0 and cos.max() <= 0.999 and np.all(np.diff(cos) > 0)


def test_inference_timesteps_use_leading_spacing():
    assert inference_timesteps(100, 100).tolist() == list(range(99, -1, -1))
    assert inference_timesteps(100, 10).tolist() == list(range(90, -1, -10))
    assert inference_timesteps(100, 3).tolist() == [66, 33, 0]
    assert inference_timesteps(20, 5).tolist() == [16, 12, 8, 4, 0]
    for bad in (0, 101):
        with pytest.raises(ValueError, match="num_inference_steps"):
            inference_timesteps(100, bad)
    with pytest.raises(ValueError, match="beta_schedule for DDIM"):
        NoiseScheduler(kind="DDIM", beta_schedule="sigmoid")


def _np_ddpm_step(s: NoiseScheduler, out, t, x, z):
    """diffusers' DDPMScheduler.step, written from its formulas in float64."""
    ac = s.alphas_cumprod.astype(np.float64)
    prev = t - s.step_ratio
    ap, ap_prev = ac[t], (ac[prev] if prev >= 0 else 1.0)
    cur_a = ap / ap_prev
    cur_b = 1 - cur_a
    x0 = (x - np.sqrt(1 - ap) * out) / np.sqrt(ap) if s.prediction_type == "epsilon" else out
    if s.clip_sample:
        x0 = np.clip(x0, -s.clip_sample_range, s.clip_sample_range)
    mean = np.sqrt(ap_prev) * cur_b / (1 - ap) * x0 + np.sqrt(cur_a) * (1 - ap_prev) / (1 - ap) * x
    var = max((1 - ap_prev) / (1 - ap) * cur_b, 1e-20)
    return mean + (np.sqrt(var) * z if t > 0 else 0.0)


@pytest.mark.parametrize("prediction_type", ["epsilon", "sample"])
@pytest.mark.parametrize("num_inference_steps", [None, 4])
def test_ddpm_step_follows_diffusers(prediction_type, num_inference_steps):
    s = NoiseScheduler(
        num_train_timesteps=20,
        prediction_type=prediction_type,
        num_inference_steps=num_inference_steps,
        clip_sample_range=1.5,
    )
    rng = np.random.default_rng(0)
    x, out, z = (rng.normal(size=(2, 8, 3)).astype(np.float32) for _ in range(3))
    for t in [int(v) for v in s.timesteps]:
        got = np.asarray(s.ddpm_step(jnp.asarray(out), jnp.int32(t), jnp.asarray(x), jnp.asarray(z)))
        np.testing.assert_allclose(got, _np_ddpm_step(s, out, t, x, z), rtol=1e-5, atol=1e-5)


def test_oracle_denoiser_recovers_the_clean_trajectory():
    """With the exact noise as model output, DDIM (eta 0, final alpha 1) lands on x0; so does DDPM with
    "sample" prediction of the exact x0 — checks the scan, the step spacing and the last step."""
    rng = np.random.default_rng(1)
    x0 = jnp.asarray(rng.uniform(-0.9, 0.9, (2, 8, 3)), jnp.float32)
    eps = jnp.asarray(rng.normal(size=(2, 8, 3)), jnp.float32)
    ddim = NoiseScheduler(kind="DDIM", num_train_timesteps=100, num_inference_steps=10)
    t0 = int(ddim.timesteps[0])
    x_t = ddim.add_noise(x0, eps, jnp.full((2,), t0))

    def oracle_eps(x, t):  # x = sqrt(ac) x0 + sqrt(1 - ac) eps  =>  eps
        ac = jnp.asarray(ddim.alphas_cumprod)[t][:, None, None]
        return (x - jnp.sqrt(ac) * x0) / jnp.sqrt(1 - ac)

    np.testing.assert_allclose(np.asarray(ddim.sample(oracle_eps, x_t)), np.asarray(x0), atol=1e-4)
    ddpm = NoiseScheduler(num_train_timesteps=10, prediction_type="sample")
    out = ddpm.sample(lambda x, t: jnp.broadcast_to(x0, x.shape), eps, rng=jax.random.key(0))
    np.testing.assert_allclose(np.asarray(out), np.asarray(x0), atol=1e-5)


def test_ddpm_sampling_draws_from_rng_or_given_noise():
    s = NoiseScheduler(num_train_timesteps=10)
    noise = jnp.ones((1, 8, 2))

    def den(x, t):
        return 0.1 * x

    a = s.sample(den, noise, rng=jax.random.key(0))
    b = s.sample(den, noise, rng=jax.random.key(0))
    c = s.sample(den, noise, rng=jax.random.key(1))
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert float(jnp.abs(a - c).max()) > 1e-3
    steps = jax.random.normal(jax.random.key(0), (10, 1, 8, 2))
    explicit = s.sample(den, noise, step_noise=steps)
    np.testing.assert_array_equal(np.asarray(explicit), np.asarray(a))  # rng -> one normal draw of all steps
    with pytest.raises(ValueError, match="needs `rng` or `step_noise`"):
        s.sample(den, noise)
    with pytest.raises(ValueError, match="step_noise must have shape"):
        s.sample(den, noise, step_noise=steps[:3])


def test_add_noise():
    s = NoiseScheduler(num_train_timesteps=10)
    x0, eps = jnp.ones((2, 4, 1)), jnp.full((2, 4, 1), 2.0)
    t = jnp.asarray([0, 9])
    ac = s.alphas_cumprod
    expected = np.sqrt(ac[[0, 9]])[:, None, None] + 2 * np.sqrt(1 - ac[[0, 9]])[:, None, None]
    np.testing.assert_allclose(
        np.asarray(s.add_noise(x0, eps, t)), np.broadcast_to(expected, (2, 4, 1)), rtol=1e-6
    )


# ----------------------------------------------------------------------------------------------------
# U-Net pieces
def test_step_embedding_is_sin_block_then_cos_block():
    t = jnp.asarray([0, 7, 99])
    emb = np.asarray(sinusoidal_step_embedding(t, 16))
    half = 8
    f = np.exp(-np.arange(half) * math.log(10000) / (half - 1))
    arg = np.asarray([0, 7, 99])[:, None] * f[None]
    np.testing.assert_allclose(emb, np.concatenate([np.sin(arg), np.cos(arg)], -1), atol=2e-5)


def test_mish():
    x = np.linspace(-30, 30, 101, dtype=np.float32)
    np.testing.assert_allclose(np.asarray(mish(jnp.asarray(x))), x * np.tanh(np.log1p(np.exp(x))), atol=1e-5)


def test_conv_transpose_matches_torch_conv_transpose1d():
    """ConvTranspose1d(C, C, 4, stride 2, padding 1) from its definition: out[o, 2i - 1 + j] += w[c, o, j] x[c, i]."""
    c, t = 3, 5
    rng = np.random.default_rng(0)
    w = rng.normal(size=(c, c, 4)).astype(np.float32)
    bias = rng.normal(size=(c,)).astype(np.float32)
    x = rng.normal(size=(t, c)).astype(np.float32)
    layer = torch_conv_transpose1d(c, rngs=nnx.Rngs(0))
    leaves = conv_leaves(layer)
    leaves["weight"].set(w)
    leaves["bias"].set(bias)
    full = np.zeros((2 * t + 2, c))
    for i in range(t):
        for j in range(4):
            full[2 * i + j] += w[:, :, j].T @ x[i]
    expected = full[1 : 1 + 2 * t] + bias
    np.testing.assert_allclose(np.asarray(layer(jnp.asarray(x)[None]))[0], expected, atol=1e-5)


@pytest.mark.parametrize(
    ("down_dims", "film_scale"), [((16,), True), ((16, 32), True), ((16, 32, 64), True), ((16, 32), False)]
)
def test_unet_shapes(down_dims, film_scale):
    unet = nnx.eval_shape(
        lambda: ConditionalUnet1d(
            3,
            10,
            down_dims=down_dims,
            kernel_size=3,
            diffusion_step_embed_dim=8,
            use_film_scale_modulation=film_scale,
            rngs=nnx.Rngs(0),
        )
    )
    x, t, c = jnp.ones((2, 8, 3)), jnp.asarray([1, 5]), jnp.ones((2, 10))
    assert nnx.eval_shape(lambda u, x, t, c: u(x, t, c), unet, x, t, c).shape == (2, 8, 3)
    assert len(unet.up_modules) == len(down_dims) - 1 and all(s.resample is not None for s in unet.up_modules)
    width = unet.down_modules[0].block1.cond_encoder.kernel.shape[1]
    assert width == (2 * down_dims[0] if film_scale else down_dims[0])
    with pytest.raises(ValueError, match="global_cond of width 10"):
        nnx.eval_shape(lambda u, x, t: u(x, t), unet, x, t)


def test_torch_style_init_bounds():
    layer = torch_conv_transpose1d(8, rngs=nnx.Rngs(0))  # torch fan_in of (I, O, k) = O * k = 32
    for v in (layer.kernel[...], layer.bias[...]):
        assert float(jnp.abs(v).max()) <= 1 / math.sqrt(32) and float(jnp.abs(v).max()) > 0.7 / math.sqrt(32)


# ----------------------------------------------------------------------------------------------------
# spatial softmax and the image encoder
def test_keypoint_grid_is_x_along_width():
    g = keypoint_grid(2, 3)
    np.testing.assert_array_equal(
        g, np.asarray([[-1, -1], [0, -1], [1, -1], [-1, 1], [0, 1], [1, 1]], np.float32)
    )


def test_keypoints_follow_the_activation_peak():
    pool = SpatialSoftmax(2, (3, 4), None, rngs=nnx.Rngs(0))
    fm = np.full((1, 3, 4, 2), -50.0, np.float32)
    fm[0, 2, 1, 0] = 50.0  # channel 0 peaks at row 2, column 1
    fm[0, 0, 3, 1] = 50.0  # channel 1 peaks at row 0, column 3
    out = np.asarray(pool(jnp.asarray(fm)))
    np.testing.assert_allclose(out, [[-1 / 3, 1.0, 1.0, -1.0]], atol=1e-5)  # [k0x, k0y, k1x, k1y]


@pytest.mark.parametrize(("size", "crop", "offset"), [(96, 84, 6), (97, 84, 6), (99, 84, 8), (64, 56, 4)])
def test_center_crop_offsets_round_half_to_even(size, crop, offset):
    assert diffusion.center_crop_offsets(size, size, (crop, crop)) == (offset, offset)


@pytest.mark.parametrize(
    ("hw", "fhw"), [((84, 84), (3, 3)), ((96, 96), (3, 3)), ((64, 64), (2, 2)), ((480, 640), (15, 20))]
)
def test_resnet_feature_map_size(hw, fhw):
    assert diffusion.resnet_feature_hw(*hw) == fhw


def test_crops_random_per_image_in_training_centre_otherwise():
    cfg = DiffusionConfig(**(TINY | dict(crop_shape=(20, 24))))
    enc = nnx.eval_shape(lambda: diffusion.RgbEncoder(cfg, (32, 40), rngs=nnx.Rngs(0)))
    x = jnp.arange(16 * 32 * 40 * 3, dtype=jnp.float32).reshape(16, 32, 40, 3)
    centre = enc.preprocess(x, train=False, rng=None)
    np.testing.assert_array_equal(np.asarray(centre), np.asarray(x[:, 6:26, 8:32]))
    crops = np.asarray(enc.preprocess(x, train=True, rng=jax.random.key(0)))
    again = np.asarray(enc.preprocess(x, train=True, rng=jax.random.key(0)))
    np.testing.assert_array_equal(crops, again)
    offsets = set()
    for i in range(16):
        flat = int(crops[i, 0, 0, 0]) - i * 32 * 40 * 3
        top, left = divmod(flat // 3, 40)
        assert 0 <= top <= 12 and 0 <= left <= 16
        np.testing.assert_array_equal(crops[i], np.asarray(x[i, top : top + 20, left : left + 24]))
        offsets.add((top, left))
    assert len(offsets) > 1  # one offset per image, not one per batch
    with pytest.raises(ValueError, match="needs an rng"):
        enc.preprocess(x, train=True, rng=None)
    fixed = nnx.eval_shape(
        lambda: diffusion.RgbEncoder(
            dataclasses.replace(cfg, crop_is_random=False), (32, 40), rngs=nnx.Rngs(0)
        )
    )
    np.testing.assert_array_equal(np.asarray(fixed.preprocess(x, train=True, rng=None)), np.asarray(centre))


def test_resize_then_crop():
    cfg = DiffusionConfig(**(TINY | dict(resize_shape=(48, 40), crop_ratio=0.75)))
    assert cfg.crop_shape == (36, 30)
    enc = nnx.eval_shape(lambda: diffusion.RgbEncoder(cfg, (96, 80), rngs=nnx.Rngs(0)))
    assert enc.feature_hw == diffusion.resnet_feature_hw(36, 30)
    x = jnp.full((2, 96, 80, 3), 0.25)
    out = enc.preprocess(x, train=False, rng=None)
    assert out.shape == (2, 36, 30, 3)
    np.testing.assert_allclose(np.asarray(out), 0.25, atol=1e-6)
    ramp = jnp.broadcast_to(jnp.arange(80, dtype=jnp.float32)[None, None, :, None], (1, 96, 80, 3))
    resized = np.asarray(enc.preprocess(ramp, train=False, rng=None))[0, 0, :, 0]
    assert np.all(np.diff(resized) > 0)  # a horizontal ramp stays a ramp after the antialiased resize


# ----------------------------------------------------------------------------------------------------
# the policy
@pytest.fixture(scope="module")
def env_setup():
    feats = _features(state=3, action=2, env=4)
    cfg = DiffusionConfig(**(TINY | dict(do_mask_loss_for_padding=True)))
    return cfg, feats, _materialize(cfg, feats)


def test_exported_bundle_takes_the_noise_its_spec_declares(tmp_path):
    """The spec's noise_shape (not the sampler's signature) gives the "+noise" variants their input."""
    from jrobot.bundle import BundleError
    from jrobot.runtime.policy import BundlePolicy
    from jrobot.train.export import default_features_for, write_bundle

    feats = _features(state=3, action=2, env=4)
    # DDIM: the output is exact given the initial noise (DDPM also draws per-step noise)
    cfg = DiffusionConfig(**(TINY | dict(noise_scheduler_type="DDIM", num_inference_steps=2)))
    model = _materialize(cfg, feats)
    assert model.spec.noise_shape == (cfg.horizon, 2)
    out = tmp_path / "bundle"
    info = write_bundle(
        model, diffusion, out, features=default_features_for(model.spec), fps=30, robot_type=None, source={}
    )
    assert info.variants == ["uint8", "uint8+noise"] and info.stochastic
    policy = BundlePolicy(out)
    assert policy.spec == model.spec
    batch = {k: v for k, v in _batch(feats, cfg).items() if k != "action"}
    noise = np.random.default_rng(1).standard_normal((2, cfg.horizon, 2)).astype(np.float32)
    want = diffusion.sample_actions(model, {**batch, "noise": jnp.asarray(noise)})
    np.testing.assert_allclose(policy.predict(batch, noise=noise), np.asarray(want), rtol=1e-5, atol=1e-5)
    with pytest.raises(BundleError, match=r"noise must have shape \(B, 8, 2\)"):
        policy.predict(batch, noise=noise[:, :4])


def test_bundle_stores_the_unet_kernels_as_rows_and_reads_them_in_place(tmp_path):
    """Export stores every U-Net convolution and linear kernel as (out, in) rows, the layout a batch-1
    U-Net call reads fastest on a CPU, computes the same chunks, leaves the trained model as it was, and
    the exported sampler reads the rows without copying any into another layout per step."""
    import re

    from jrobot.bundle import read_params
    from jrobot.runtime.policy import BundlePolicy, read_exported
    from jrobot.train.export import default_features_for, flatten_state, write_bundle

    feats = _features(state=3, action=2, env=4)
    cfg = DiffusionConfig(
        **(TINY | dict(noise_scheduler_type="DDIM", num_inference_steps=3, down_dims=(32, 64)))
    )
    model = _materialize(cfg, feats)
    trained = flatten_state(nnx.state(model))
    out = tmp_path / "bundle"
    write_bundle(
        model, diffusion, out, features=default_features_for(model.spec), fps=30, robot_type=None, source={}
    )
    assert flatten_state(nnx.state(model)).keys() == trained.keys()  # the trained model is untouched
    stored = read_params(out)
    # every U-Net kernel but the upsampling's (a transposed convolution, read as rows already)
    expected = {
        p
        for p in trained
        if p.startswith("diffusion/unet/")
        and p.endswith("/kernel")
        and not re.search(r"up_modules/\d+/resample/", p)
    }
    assert len(expected) > 15
    for p, v in trained.items():
        if p in expected:
            rows = stored.pop(p + "_rows")
            assert rows.shape == (v.shape[-1], v.size // v.shape[-1]), p
            np.testing.assert_array_equal(rows.T.reshape(v.shape), v)
        else:
            np.testing.assert_array_equal(stored.pop(p), v)
    assert not stored

    batch = {k: v for k, v in _batch(feats, cfg).items() if k != "action"}
    noise = np.random.default_rng(1).standard_normal((2, cfg.horizon, 2)).astype(np.float32)
    want = diffusion.sample_actions(model, {**batch, "noise": jnp.asarray(noise)})
    policy = BundlePolicy(out)
    np.testing.assert_allclose(policy.predict(batch, noise=noise), np.asarray(want), rtol=1e-5, atol=1e-5)

    exported = read_exported(out, "uint8+noise")
    prepared, _ = policy.prepare(batch)
    obs = {**{k: jnp.asarray(v) for k, v in prepared.items()}, "noise": jnp.asarray(noise)}
    hlo = jax.jit(exported.call).lower(policy.params, obs, jnp.zeros((2,), jnp.uint32)).compile().as_text()
    kernels = {
        tuple(sorted((v.shape[-1], v.size // v.shape[-1]))) for p, v in trained.items() if p in expected
    }
    relayouts = []
    for line in hlo.splitlines():
        m = re.search(r"= f32\[([\d,]+)\]\{[\d,]+\} (copy|transpose)\(", line)
        if m and tuple(sorted(int(d) for d in m.group(1).split(","))) in kernels:
            relayouts.append(line.strip()[:160])
    assert not relayouts, "kernel-sized relayouts in the exported sampler:\n" + "\n".join(relayouts)


def test_rows_layers_refuse_what_they_cannot_compute():
    from jrobot.policies.rows_layout import RowsConv, RowsLinear

    with pytest.raises(ValueError, match="no groups, dilation"):
        RowsConv(nnx.Conv(4, 8, (3,), padding=((1, 1),), kernel_dilation=2, rngs=nnx.Rngs(0)))
    with pytest.raises(ValueError, match="no groups, dilation"):
        RowsConv(nnx.Conv(4, 8, (3,), padding="SAME", rngs=nnx.Rngs(0)))
    with pytest.raises(ValueError, match=r"plain nnx\.Linear"):
        RowsLinear(nnx.Linear(4, 8, dtype=jnp.bfloat16, rngs=nnx.Rngs(0)))


def test_module_implements_the_policy_interface():
    mod = load_policy_module("diffusion")
    assert mod.POLICY_TYPE == "diffusion" and mod.Config is DiffusionConfig
    preset = mod.optimizer_preset(DiffusionConfig())
    assert preset == OptimizerPreset(
        name="adam",
        lr=1e-4,
        betas=(0.95, 0.999),
        eps=1e-8,
        weight_decay=1e-6,
        grad_clip_norm=10.0,
        scheduler={"name": "cosine", "num_warmup_steps": 500},
    )
    assert mod.param_group(("diffusion", "unet", "final_conv", "kernel")) == "default"
    assert mod.ema_preset(DiffusionConfig(use_ema=False)) is None
    assert mod.ema_preset(DiffusionConfig()) == EMAConfig()


def test_global_conditioning_layout_is_obs_step_major(env_setup):
    cfg, feats, model = env_setup
    batch = _batch(feats, cfg)
    gc = np.asarray(diffusion.global_conditioning(model, batch))
    norm = model.normalizer
    state = np.asarray(norm.normalize("observation.state", batch["observation.state"]))
    env = np.asarray(norm.normalize("observation.environment_state", batch["observation.environment_state"]))
    expected = np.concatenate([state, env], -1).reshape(2, -1)  # [s(t-1), e(t-1), s(t), e(t)]
    np.testing.assert_allclose(gc, expected, atol=1e-6)
    stats = _stats(feats)["observation.state"]
    np.testing.assert_allclose(  # MIN_MAX: 2 (x - min) / (max - min) - 1
        state, 2 * (batch["observation.state"] - stats["min"]) / (stats["max"] - stats["min"]) - 1, atol=1e-6
    )


def test_masked_loss_reductions(env_setup):
    cfg, feats, model = env_setup
    batch = _batch(feats, cfg)
    batch["action_is_pad"][:, 5:] = True
    eps = jax.random.normal(jax.random.key(0), batch["action"].shape)
    t = jnp.asarray([1, 7])

    def run(c):
        model.config = c
        return diffusion.compute_loss(model, batch, eps=eps, timesteps=t)

    try:
        all_, m_all = run(cfg)
        valid, _ = run(dataclasses.replace(cfg, mask_loss_reduction="mean_valid"))
        plain, _ = run(dataclasses.replace(cfg, do_mask_loss_for_padding=False))
    finally:
        model.config = cfg
    n_all, n_valid = 2 * 8 * 2, 2 * 5 * 2
    np.testing.assert_allclose(float(all_) * n_all, float(valid) * n_valid, rtol=1e-5)
    assert float(m_all["mse_unmasked"]) == pytest.approx(float(plain))
    assert float(all_) < float(plain)


def test_training_reduces_the_loss(env_setup):
    cfg, feats, _ = env_setup
    model = _materialize(cfg, feats, seed=1)
    batch = _batch(feats, cfg)
    opt = nnx.Optimizer(model, optax.adam(3e-3), wrt=nnx.Param)
    key = jax.random.key(0)  # same noise and timesteps every step: the loss on them must fall

    @nnx.jit
    def step(model, opt, batch):
        (value, _), grads = nnx.value_and_grad(lambda m: diffusion.loss(m, batch, key), has_aux=True)(model)
        opt.update(model, grads)
        return value

    losses = [float(step(model, opt, batch)) for _ in range(25)]
    assert losses[-1] < 0.5 * losses[0]


def test_sample_actions_shape_units_and_input_errors(env_setup):
    cfg, feats, model = env_setup
    batch = _batch(feats, cfg)
    obs = {k: v for k, v in batch.items() if k.startswith("observation")}
    sample = nnx.jit(diffusion.sample_actions)
    a = np.asarray(sample(model, obs, jax.random.key(0)))
    assert a.shape == (2, cfg.n_action_steps, 2)
    lo, hi = _stats(feats)["action"]["min"], _stats(feats)["action"]["max"]
    assert np.all(a >= lo - 1e-4) and np.all(a <= hi + 1e-4)  # clip_sample keeps x0 in [-1, 1]
    np.testing.assert_array_equal(np.asarray(sample(model, obs, jax.random.key(0))), a)
    with pytest.raises(ValueError, match="n_obs_steps=2"):
        diffusion.sample_actions(
            model, dict(obs, **{"observation.state": obs["observation.state"][:, 0]}), jax.random.key(0)
        )
    with pytest.raises(KeyError, match=r"observation\.environment_state"):
        diffusion.sample_actions(model, {"observation.state": obs["observation.state"]}, jax.random.key(0))
    with pytest.raises(ValueError, match="noise must have shape"):
        diffusion.sample_actions(model, obs, noise=np.zeros((2, 4, 2)))
    with pytest.raises(ValueError, match="needs an rng"):
        diffusion.sample_actions(model, obs)


@pytest.mark.slow
def test_image_model_trains_with_random_crops_and_batch_norm_stats():
    """`build` + a BatchNorm trunk (LeRobot use_group_norm=False) in training: running statistics update,
    a crop is drawn per image, gradients reach the trunk; channel-first images are reported."""
    feats = _features(state=3, action=2, cams=2, hw=(40, 40))
    cfg = DiffusionConfig(**(TINY | dict(use_group_norm=False, crop_shape=(36, 36))))
    model = diffusion.build(cfg, feats, _stats(feats), seed=0)  # the trainer's entry point, random init
    assert model.diffusion.rgb_encoder.feature_hw == (2, 2)
    batch = _batch(feats, cfg)
    eps = jax.random.normal(jax.random.key(0), batch["action"].shape)
    t = jnp.asarray([2, 8])

    @nnx.jit
    def run(model, batch, crop_key):
        def f(m):
            return diffusion.compute_loss(m, batch, eps=eps, timesteps=t, train=True, crop_rng=crop_key)

        (value, _), grads = nnx.value_and_grad(f, has_aux=True)(model)
        return value, grads

    bn = model.diffusion.rgb_encoder.backbone.bn1
    before = np.asarray(bn.running_mean[...]).copy()
    v1, grads = run(model, batch, jax.random.key(0))
    assert int(bn.num_batches_tracked[...]) == 1
    assert not np.array_equal(np.asarray(bn.running_mean[...]), before)
    g = np.asarray(grads["diffusion"]["rgb_encoder"]["backbone"]["conv1"]["kernel"][...])
    assert np.isfinite(g).all() and np.abs(g).max() > 0
    bn_grads = grads["diffusion"]["rgb_encoder"]["backbone"]["bn1"]
    assert set(bn_grads.keys()) == {"weight", "bias"}  # running statistics are not trained
    v2, _ = run(model, batch, jax.random.key(1))
    assert float(v1) != float(v2)
    chw = dict(batch, **{"observation.images.cam0": np.moveaxis(batch["observation.images.cam0"], -1, -3)})
    with pytest.raises(ValueError, match="channel-first"):
        diffusion.global_conditioning(model, chw)


def test_build_refuses_pretrained_weights_it_cannot_find(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.delenv("JROBOT_RESNET18_WEIGHTS", raising=False)
    cfg = DiffusionConfig(
        **(TINY | dict(use_group_norm=False, pretrained_backbone_weights="ResNet18_Weights.IMAGENET1K_V1"))
    )
    feats = _features(cams=1)
    with pytest.raises(FileNotFoundError, match="never downloads"):
        diffusion.build(cfg, feats, _stats(feats))


def test_missing_stats_are_an_error():
    feats = _features(env=2)
    stats = _stats(feats)
    del stats["action"]
    with pytest.raises(ValueError, match="'action'"):
        diffusion.build(DiffusionConfig(**TINY), feats, stats)


# ----------------------------------------------------------------------------------------------------
# EMA
def test_ema_decay_warms_up_like_diffusion_policy():
    cfg = EMAConfig()
    assert float(cfg.decay(0)) == 0.0 and float(cfg.decay(1)) == 0.0
    assert float(cfg.decay(2)) == pytest.approx(1 - 2**-0.75)
    assert float(cfg.decay(10**9)) == pytest.approx(0.9999)
    late = EMAConfig(update_after_step=5)
    assert float(late.decay(6)) == 0.0 and float(late.decay(7)) == pytest.approx(1 - 2**-0.75)


def test_ema_update_tracks_parameters():
    params = {"w": jnp.ones(3), "b": {"x": jnp.zeros(2)}}
    ema = ema_init(params)
    new = jax.tree.map(lambda p: p + 1.0, params)
    cfg = EMAConfig()
    np.testing.assert_array_equal(np.asarray(ema_update(ema, new, 0, cfg)["w"]), 2.0)  # decay 0 copies
    d = float(cfg.decay(5))
    out = ema_update(ema, new, 5, cfg)
    np.testing.assert_allclose(np.asarray(out["b"]["x"]), (1 - d) * 1.0, rtol=1e-6)

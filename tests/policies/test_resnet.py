"""ResNet trunk: torch semantics checked against straightforward numpy references, and the key layouts."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jrobot.policies import resnet
from jrobot.policies.lerobot.statedict import StateDictError, load_state_dict, state_dict

# ----------------------------------------------------------------------------------------------------
# numpy references written from torch's definitions (NCHW math on NHWC arrays)


def np_conv2d(x, w_oihw, stride, pad):
    """torch Conv2d (no bias): x (N,H,W,C), weight (O,I,kh,kw), symmetric zero padding."""
    x = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    o, _, kh, kw = w_oihw.shape
    n, h, w, _ = x.shape
    oh, ow = (h - kh) // stride + 1, (w - kw) // stride + 1
    out = np.zeros((n, oh, ow, o), np.float64)
    for r in range(oh):
        for c in range(ow):
            patch = x[:, r * stride : r * stride + kh, c * stride : c * stride + kw, :]  # N,kh,kw,I
            out[:, r, c, :] = np.einsum("nhwi,oihw->no", patch, w_oihw)
    return out


def np_frozen_bn(x, p):
    return (x - p["running_mean"]) / np.sqrt(p["running_var"] + 1e-5) * p["weight"] + p["bias"]


def np_maxpool_3x3_s2_p1(x):
    x = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), constant_values=-np.inf)
    _, h, w, _ = x.shape
    oh, ow = (h - 3) // 2 + 1, (w - 3) // 2 + 1
    return np.stack(
        [
            np.stack([x[:, 2 * r : 2 * r + 3, 2 * q : 2 * q + 3].max((1, 2)) for q in range(ow)], 1)
            for r in range(oh)
        ],
        1,
    )


def _randomize_bn(trunk, seed):
    """Non-trivial frozen-BN statistics (all-default ones would hide a wrong folding)."""
    rng = np.random.default_rng(seed)
    sd = state_dict(trunk)
    for k in sd:
        if k.endswith(("running_mean", "bias")):
            sd[k] = rng.normal(0, 0.1, sd[k].shape).astype(np.float32)
        elif k.endswith(("running_var", "bn1.weight", "bn2.weight", "downsample.1.weight")):
            sd[k] = rng.uniform(0.5, 1.5, sd[k].shape).astype(np.float32)
    load_state_dict(trunk, sd)
    return sd


@pytest.fixture(scope="module")
def trunk():
    t = resnet.ResNet(18, "frozen_bn", rngs=nnx.Rngs(0))
    _randomize_bn(t, 1)
    return t


def test_stem_and_first_downsampling_block_match_torch_math(trunk):
    """10x10 input: stride-2 convs on even sizes expose 'SAME' padding (asymmetric) if it were used."""
    sd = state_dict(trunk)
    x = np.random.default_rng(2).normal(size=(2, 10, 10, 3)).astype(np.float32)

    def bn(v, prefix):
        return np_frozen_bn(
            v, {s: sd[f"{prefix}.{s}"] for s in ("weight", "bias", "running_mean", "running_var")}
        )

    stem = np.maximum(bn(np_conv2d(x, sd["conv1.weight"], 2, 3), "bn1"), 0)
    pooled = np_maxpool_3x3_s2_p1(stem)

    with jax.default_matmul_precision("highest"):
        got_stem = nnx.jit(
            lambda m, v: nnx.max_pool(jax.nn.relu(m.bn1(m.conv1(v))), (3, 3), (2, 2), ((1, 1), (1, 1)))
        )(trunk, x)
        blk = trunk.layer2[0]
        h = np.random.default_rng(3).normal(size=(2, 6, 6, 64)).astype(np.float32)
        got_blk = nnx.jit(lambda b, v: b(v))(blk, h)
    np.testing.assert_allclose(np.asarray(got_stem), pooled, atol=1e-5)

    p = "layer2.0"
    out = np.maximum(bn(np_conv2d(h, sd[f"{p}.conv1.weight"], 2, 1), f"{p}.bn1"), 0)
    out = bn(np_conv2d(out, sd[f"{p}.conv2.weight"], 1, 1), f"{p}.bn2")
    ident = bn(np_conv2d(h, sd[f"{p}.downsample.0.weight"], 2, 0), f"{p}.downsample.1")
    np.testing.assert_allclose(np.asarray(got_blk), np.maximum(out + ident, 0), atol=1e-4)


def test_output_stride_32():
    t = resnet.ResNet(18, "frozen_bn", rngs=nnx.Rngs(0))
    for (h, w), (fh, fw) in {
        (480, 640): (15, 20),
        (96, 128): (3, 4),
        (84, 84): (3, 3),
        (64, 64): (2, 2),
    }.items():
        out = nnx.eval_shape(lambda m, x: m(x), t, jax.ShapeDtypeStruct((1, h, w, 3), jnp.float32))
        assert out.shape == (1, fh, fw, 512)
    with pytest.raises(ValueError, match="channel-last"):
        t(jnp.zeros((1, 3, 32, 32)))


def test_max_pool_pads_with_minus_infinity():
    x = -np.abs(np.random.default_rng(0).normal(size=(1, 6, 6, 2))).astype(np.float32) - 1.0
    got = nnx.max_pool(jnp.asarray(x), (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
    np.testing.assert_array_equal(np.asarray(got), np_maxpool_3x3_s2_p1(x))


def test_group_norm_is_torch_group_norm():
    gn = resnet.make_norm("group_norm", 64, rngs=nnx.Rngs(0))
    assert gn.num_groups == 4 and gn.epsilon == 1e-5
    x = (np.random.default_rng(0).normal(size=(2, 5, 5, 64)) * 3 + 10).astype(np.float32)  # large mean
    g = x.reshape(2, 5, 5, 4, 16).astype(np.float64)
    mean = g.mean((1, 2, 4), keepdims=True)
    var = g.var((1, 2, 4), keepdims=True)
    ref = ((g - mean) / np.sqrt(var + 1e-5)).reshape(x.shape)
    np.testing.assert_allclose(np.asarray(gn(jnp.asarray(x))), ref, atol=2e-5)


def test_batch_norm_updates_running_stats_like_torch():
    bn = resnet.BatchNorm2d(3)
    x = np.random.default_rng(0).normal(size=(4, 2, 2, 3)).astype(np.float32) * 2 + 1
    y = bn(jnp.asarray(x), train=True)
    flat = x.reshape(-1, 3).astype(np.float64)
    np.testing.assert_allclose(np.asarray(y), (x - flat.mean(0)) / np.sqrt(flat.var(0) + 1e-5), atol=1e-5)
    np.testing.assert_allclose(np.asarray(bn.running_mean[...]), 0.1 * flat.mean(0), rtol=1e-5)
    np.testing.assert_allclose(np.asarray(bn.running_var[...]), 0.9 + 0.1 * flat.var(0, ddof=1), rtol=1e-5)
    assert int(bn.num_batches_tracked[...]) == 1
    y_eval = bn(jnp.asarray(x), train=False)
    rm, rv = np.asarray(bn.running_mean[...]), np.asarray(bn.running_var[...])
    np.testing.assert_allclose(np.asarray(y_eval), (x - rm) / np.sqrt(rv + 1e-5), atol=1e-5)


def test_sequential_layout_round_trip():
    """Diffusion's `backbone.0/1/4..7` keys load strictly into the named trunk and convert back."""
    gn = resnet.ResNet(18, "group_norm", rngs=nnx.Rngs(0))
    named = state_dict(gn, prefix="diffusion.rgb_encoder.backbone.")
    seq = resnet.named_to_sequential_keys(named, "diffusion.rgb_encoder.backbone.")
    assert "diffusion.rgb_encoder.backbone.0.weight" in seq
    assert (
        "diffusion.rgb_encoder.backbone.1.weight" in seq
        and "diffusion.rgb_encoder.backbone.7.1.bn2.bias" in seq
    )
    assert "diffusion.rgb_encoder.backbone.5.0.downsample.1.weight" in seq
    assert not any("running" in k for k in seq)  # GroupNorm: affine only
    assert resnet.sequential_to_named_keys(seq, "diffusion.rgb_encoder.backbone.") == named
    other = resnet.ResNet(18, "group_norm", rngs=nnx.Rngs(1))
    load_state_dict(
        other,
        resnet.sequential_to_named_keys(seq, "diffusion.rgb_encoder.backbone."),
        prefix="diffusion.rgb_encoder.backbone.",
    )
    for k, v in state_dict(other, prefix="diffusion.rgb_encoder.backbone.").items():
        np.testing.assert_array_equal(v, named[k])


def test_torchvision_weights_load_strictly(trunk, tmp_path, torch_zip_writer):
    sd = state_dict(trunk)
    full = dict(sd, **{"fc.weight": np.zeros((1000, 512), np.float32), "fc.bias": np.zeros(1000, np.float32)})
    full.update(
        {
            k.replace("running_mean", "num_batches_tracked"): np.array(3, np.int64)
            for k in sd
            if k.endswith("running_mean")
        }
    )
    path = tmp_path / "resnet18-f37072fd.pth"
    torch_zip_writer(path, full)
    fresh = resnet.ResNet(18, "frozen_bn", rngs=nnx.Rngs(5))
    report = resnet.load_torchvision_weights(fresh, resnet.read_weights_file(path), source=str(path))
    assert report.ok and "fc.weight" in report.ignored
    for k, v in state_dict(fresh).items():
        np.testing.assert_array_equal(v, sd[k])
    bn_trunk = resnet.ResNet(18, "batch_norm", rngs=nnx.Rngs(5))
    assert resnet.load_torchvision_weights(bn_trunk, full).ok
    del full["layer3.1.conv2.weight"]
    with pytest.raises(StateDictError, match=r"layer3\.1\.conv2\.weight"):
        resnet.load_torchvision_weights(fresh, full)
    with pytest.raises(ValueError, match="GroupNorm"):
        resnet.load_torchvision_weights(resnet.ResNet(18, "group_norm", rngs=nnx.Rngs(0)), full)


def test_pretrained_file_lookup(tmp_path, monkeypatch):
    monkeypatch.delenv("JROBOT_RESNET18_WEIGHTS", raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(FileNotFoundError, match=r"resnet18-f37072fd\.pth.*never downloads|never downloads"):
        resnet.find_pretrained_weights("ResNet18_Weights.IMAGENET1K_V1")
    cached = tmp_path / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"")
    assert resnet.find_pretrained_weights("ResNet18_Weights.IMAGENET1K_V1") == cached
    explicit = tmp_path / "mine.safetensors"
    explicit.write_bytes(b"")
    monkeypatch.setenv("JROBOT_RESNET18_WEIGHTS", str(explicit))
    assert resnet.find_pretrained_weights("ResNet18_Weights.IMAGENET1K_V1") == explicit
    with pytest.raises(FileNotFoundError, match="does not exist"):
        resnet.find_pretrained_weights("ResNet18_Weights.IMAGENET1K_V1", tmp_path / "missing.pth")
    with pytest.raises(ValueError, match="not supported"):
        resnet.find_pretrained_weights("ResNet50_Weights.IMAGENET1K_V2")

"""Winograd 3x3 convolutions for inference: the sums against a float64 convolution, which layers export
swaps, and that the compiled program then holds no convolution for them."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jrobot.policies import layers, resnet, winograd
from jrobot.policies.layers import torch_conv


def conv3x3_f64(x: np.ndarray, kernel: np.ndarray, padding) -> np.ndarray:
    """Channel-last cross-correlation (torch/XLA convolution), stride 1, in float64."""
    (top, bottom), (left, right) = padding
    xp = np.pad(np.asarray(x, np.float64), ((0, 0), (top, bottom), (left, right), (0, 0)))
    ho, wo = xp.shape[1] - 2, xp.shape[2] - 2
    k = np.asarray(kernel, np.float64)
    return sum(
        np.einsum("bhwc,co->bhwo", xp[:, r : r + ho, c : c + wo], k[r, c]) for r in range(3) for c in range(3)
    )


@pytest.mark.parametrize("m", [2, 4])
@pytest.mark.parametrize(
    "shape, padding",
    [
        ((2, 12, 16, 8), ((1, 1), (1, 1))),  # tiles fit exactly (m = 2 and 4)
        ((1, 7, 11, 5), ((1, 1), (1, 1))),  # odd sizes: the last tiles run past the map
        ((3, 9, 6, 4), ((0, 0), (0, 0))),  # "valid": the output shrinks by 2
        ((1, 10, 13, 3), ((2, 0), (0, 3))),  # asymmetric padding
        ((2, 1, 1, 6), ((1, 1), (1, 1))),  # a single position
    ],
)
def test_winograd_convolution_matches_a_float64_convolution(m, shape, padding):
    rng = np.random.default_rng(m)
    x = rng.standard_normal(shape).astype(np.float32)
    kernel = (rng.standard_normal((3, 3, shape[-1], 7)) / np.sqrt(9 * shape[-1])).astype(np.float32)
    got = np.asarray(jax.jit(winograd.winograd_conv2d, static_argnums=(2, 3))(
        jnp.asarray(x), jnp.asarray(winograd.transform_kernel(kernel, m)), m, padding
    ))  # fmt: skip
    want = conv3x3_f64(x, kernel, padding)
    assert got.shape == want.shape
    # F(4x4)'s transforms scale by up to 5 and 1/24, so it rounds more than F(2x2) (measured: up to
    # 4e-7 and 6e-6 of the largest output); a wrong matrix entry is off by the output's own scale
    assert np.abs(got - want).max() <= (1e-6 if m == 2 else 1.5e-5) * np.abs(want).max()


def test_kernel_transform_is_done_in_float64_and_refuses_other_shapes():
    kernel = np.random.default_rng(0).standard_normal((3, 3, 2, 3)).astype(np.float32)
    tiles = winograd.transform_kernel(kernel, 2)
    assert tiles.shape == (16, 2, 3) and tiles.dtype == np.float32
    g = winograd.TRANSFORMS[2][1]
    np.testing.assert_allclose(
        tiles,
        np.einsum("ik,klco,jl->ijco", g, kernel.astype(np.float64), g).reshape(16, 2, 3).astype(np.float32),
    )
    with pytest.raises(ValueError, match=r"\(3, 3, Cin, Cout\) kernel, got shape \(5, 5, 2, 3\)"):
        winograd.transform_kernel(np.zeros((5, 5, 2, 3), np.float32), 2)
    with pytest.raises(ValueError, match="do not fit F"):
        winograd.winograd_conv2d(jnp.zeros((1, 4, 4, 2)), jnp.asarray(tiles), 4, ((1, 1), (1, 1)))


def test_winograd_conv_computes_the_conv_it_replaces_with_its_bias():
    conv = torch_conv(6, 5, 3, padding=1, rngs=nnx.Rngs(0))
    x = jnp.asarray(np.random.default_rng(1).standard_normal((2, 9, 10, 6)), jnp.float32)
    for m in (2, 4):
        twin = winograd.WinogradConv(conv, m)
        assert twin.kernel_tiles[...].shape == ((m + 2) ** 2, 6, 5)
        np.testing.assert_allclose(np.asarray(twin(x)), np.asarray(conv(x)), rtol=0, atol=5e-5)
    assert winograd.WinogradConv(conv).m == 4  # 6 x 5 channels: small matmuls, F(4x4)
    wide = torch_conv(256, 256, 3, padding=1, use_bias=False, rngs=nnx.Rngs(0))
    assert winograd.WinogradConv(wide).m == 2 and winograd.WinogradConv(wide).bias is None


@pytest.mark.parametrize(
    "conv",
    [
        lambda: torch_conv(4, 4, 3, stride=2, padding=1, rngs=nnx.Rngs(0)),
        lambda: torch_conv(4, 4, 1, rngs=nnx.Rngs(0)),
        lambda: torch_conv(4, 4, 3, padding=1, ndim=1, rngs=nnx.Rngs(0)),
        lambda: nnx.Conv(4, 4, (3, 3), padding="SAME", rngs=nnx.Rngs(0)),
        lambda: nnx.Conv(4, 4, (3, 3), padding=((1, 1), (1, 1)), kernel_dilation=2, rngs=nnx.Rngs(0)),
        lambda: nnx.Conv(4, 4, (3, 3), padding=((1, 1), (1, 1)), feature_group_count=2, rngs=nnx.Rngs(0)),
        lambda: nnx.Conv(4, 4, (3, 3), padding=((1, 1), (1, 1)), dtype=jnp.bfloat16, rngs=nnx.Rngs(0)),
    ],
    ids=["stride2", "1x1", "1d", "same", "dilated", "groups", "bf16"],
)
def test_only_plain_3x3_stride_1_convolutions_are_swapped(conv):
    layer = conv()
    assert not winograd.is_winograd_conv(layer)
    with pytest.raises(ValueError, match=r"only a plain 3x3 stride-1 nnx\.Conv"):
        winograd.WinogradConv(layer)


def _convolutions(fn, *args) -> int:
    return jax.jit(fn).lower(*args).compile().as_text().count(" convolution(")


@pytest.mark.parametrize(
    "image_hws, layers",
    [
        ([(480, 640)], (1, 2, 3, 4)),  # LeRobot's default size: layer4 maps are 15x20
        ([(96, 128)], (1, 2)),  # layer3 6x8 and layer4 3x4 take the im2col matmul already
        ([(96, 128), (256, 256)], (1, 2)),  # every camera's maps must be large enough
        ([(64, 64)], (1,)),
        ([(32, 32)], ()),
    ],
)
def test_resnet_layers_with_large_maps_are_laid_out_for_winograd(image_hws, layers):
    trunk = resnet.ResNet(18, "frozen_bn", rngs=nnx.Rngs(0))
    swapped = resnet.lay_out_winograd(trunk, image_hws)
    assert swapped == sum(4 if i == 1 else 3 for i in layers)
    for i in range(1, 5):
        blocks = getattr(trunk, f"layer{i}")
        kinds = {type(b.conv2).__name__ for b in blocks} | {type(b.conv1).__name__ for b in blocks[1:]}
        assert kinds == ({"WinogradConv"} if i in layers else {"Conv"}), (i, kinds)
        assert type(blocks[0].conv1) is (winograd.WinogradConv if i == 1 and i in layers else nnx.Conv)


def test_winograd_resnets_match_xla_convolutions_and_compile_without_them(monkeypatch):
    """In the graph (training, in-process inference) and laid out by export, a ResNet's 3x3 stride-1
    convolutions on maps over 64 positions are Winograd's: same outputs as with XLA's convolutions."""
    trunk = resnet.ResNet(18, "frozen_bn", rngs=nnx.Rngs(0))
    laid = nnx.clone(trunk)
    assert (
        resnet.lay_out_winograd(laid, [(160, 224)]) == 10
    )  # layers 1-3 (maps 40x56 to 10x14), not layer4 (5x7)
    x = jnp.asarray(np.random.default_rng(0).uniform(-2, 2, (2, 160, 224, 3)), jnp.float32)

    def compiled(model):
        g, st = nnx.split(model)
        fn = jax.jit(lambda st, x: nnx.merge(g, st)(x))
        return np.asarray(fn(st, x)), fn.lower(st, x).compile().as_text().count(" convolution(")

    got_graph, n_graph = compiled(trunk)
    got_laid, n_laid = compiled(laid)
    with monkeypatch.context() as patch:
        xla = lambda x, k, m, pads: jax.lax.conv_general_dilated(  # noqa: E731
            x, k, (1, 1), pads, dimension_numbers=("NHWC", "HWIO", "NHWC")
        )
        patch.setattr(layers, "winograd_conv3x3", xla)
        want, n_xla = compiled(trunk)
    # XLA: the stem, layers 1-3's twelve 3x3 and two downsampling convolutions (layer4's 5x7 maps take
    # im2col matmuls); Winograd: the stem, the stride-2 and downsampling ones
    assert (n_xla, n_graph, n_laid) == (15, 5, 5)
    for got in (got_graph, got_laid):
        assert np.abs(got - want).max() <= 1e-4 * np.abs(want).max()


def test_winograd_gradients_match_xla_convolution_gradients():
    rng = np.random.default_rng(0)
    for shape, cout, m, pads in [
        ((2, 9, 13, 6), 5, 4, ((1, 1), (1, 1))),
        ((1, 7, 6, 4), 8, 2, ((1, 1), (1, 1))),
        ((1, 10, 9, 3), 4, 4, ((2, 0), (0, 1))),  # the input gradient pads by 2 - p on each side
    ]:
        x = jnp.asarray(rng.standard_normal(shape), jnp.float32)
        k = jnp.asarray(rng.standard_normal((3, 3, shape[-1], cout)) / np.sqrt(9 * shape[-1]), jnp.float32)
        out_hw = (shape[1] + sum(pads[0]) - 2, shape[2] + sum(pads[1]) - 2)
        probe = jnp.asarray(rng.standard_normal((shape[0], *out_hw, cout)), jnp.float32)

        def loss(conv, x, k, probe=probe):
            return jnp.sum(jnp.sin(conv(x, k)) * probe)  # a cotangent that varies by position

        def xla(x, k, pads=pads):
            return jax.lax.conv_general_dilated(
                x, k, (1, 1), pads, dimension_numbers=("NHWC", "HWIO", "NHWC"), precision="highest"
            )

        want = jax.grad(lambda x, k: loss(xla, x, k), argnums=(0, 1))(x, k)
        got = jax.grad(
            lambda x, k, m=m, pads=pads: loss(lambda a, b: winograd.winograd_conv3x3(a, b, m, pads), x, k),
            argnums=(0, 1),
        )(x, k)
        for g, w in zip(got, want, strict=True):
            assert g.shape == w.shape
            assert np.abs(np.asarray(g) - np.asarray(w)).max() <= 2e-5 * np.abs(np.asarray(w)).max()

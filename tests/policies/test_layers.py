"""The CPU convolution fast paths compute the same sums as XLA's convolution, without weight relayouts.

`layers.conv_general_dilated` replaces small-output convolutions by patches @ kernel, with a backward
of its own, and the Diffusion U-Net's upsampling replaces the transposed convolution by a matmul and
an overlap-add. Both exist only for speed, so they must agree with the operation they stand in for,
forward and backward, and neither the compiled U-Net nor that backward may copy a kernel into another
layout (the relayout cost a third of each U-Net call).
"""

from __future__ import annotations

import functools
import math
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax import lax

from jrobot.policies import layers
from jrobot.policies.diffusion.unet import ConditionalUnet1d, torch_conv_transpose1d, upsample_x2

# convolutions whose outputs are small enough for the im2col path (IM2COL_MAX_POSITIONS)
IM2COL_CASES = [
    ((2, 4, 24), (5, 24, 40), (1,), ((2, 2),)),  # U-Net block at its innermost length
    ((2, 8, 16), (3, 16, 16), (2,), ((1, 1),)),  # U-Net downsampling to 4 steps
    ((2, 3, 4, 8), (3, 3, 8, 12), (1, 1), ((1, 1), (1, 1))),  # ResNet layer4 on a 3x4 map
    ((2, 6, 8, 8), (3, 3, 8, 12), (2, 2), ((1, 1), (1, 1))),  # stride 2 to 3x4
    ((1, 2, 2, 4), (1, 1, 4, 8), (1, 1), ((0, 0), (0, 0))),  # 1x1 projection
    ((2, 5, 7, 8), (3, 3, 8, 12), (1, 1), ((0, 2), (2, 0))),  # lopsided padding
    ((2, 2, 4, 8), (3, 3, 8, 12), (1, 1), ((3, 3), (1, 1))),  # padding wider than the kernel reaches
]


def conv_case(in_shape, kernel, seed: int):
    """Random channel-last input and kernel with their dimension numbers."""
    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.normal(size=in_shape).astype(np.float32))
    w = jnp.asarray(rng.normal(size=kernel).astype(np.float32))
    dn = ("NWC", "WIO", "NWC") if len(in_shape) == 3 else ("NHWC", "HWIO", "NHWC")
    return x, w, lax.conv_dimension_numbers(x.shape, w.shape, dn)


@pytest.mark.parametrize(("in_shape", "kernel", "stride", "pad"), IM2COL_CASES)
def test_im2col_matches_xla_convolution(in_shape, kernel, stride, pad):
    x, w, dims = conv_case(in_shape, kernel, seed=0)
    ref = lax.conv_general_dilated(x, w, stride, pad, dimension_numbers=dims)
    got = layers.conv_general_dilated(x, w, stride, pad, dimension_numbers=dims)
    out_positions = int(np.prod(ref.shape[1:-1]))
    assert out_positions <= layers.IM2COL_MAX_POSITIONS[len(in_shape) - 2], "case must take the im2col path"
    hlo = jax.jit(lambda a, b: layers.conv_general_dilated(a, b, stride, pad, dimension_numbers=dims)).lower(
        x, w
    )
    assert "convolution" not in hlo.as_text(), "the im2col path was not taken"
    np.testing.assert_allclose(np.asarray(got), np.asarray(ref), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(("in_shape", "kernel", "stride", "pad"), IM2COL_CASES)
def test_im2col_gradients_match_xla_and_never_copy_the_kernel(in_shape, kernel, stride, pad):
    x, w, dims = conv_case(in_shape, kernel, seed=4)
    rng = np.random.default_rng(5)

    def conv(fn):
        return lambda a, b: fn(a, b, stride, pad, dimension_numbers=dims)

    out = layers.conv_out_shape(in_shape[1:-1], kernel[:-2], stride, pad)
    assert math.prod(out) <= layers.IM2COL_MAX_POSITIONS[len(in_shape) - 2], "case must take the im2col path"
    ref_y, ref_vjp = jax.vjp(conv(lax.conv_general_dilated), x, w)
    got_y, got_vjp = jax.vjp(conv(layers.conv_general_dilated), x, w)
    g = jnp.asarray(rng.normal(size=ref_y.shape).astype(np.float32))
    np.testing.assert_allclose(np.asarray(got_y), np.asarray(ref_y), rtol=1e-5, atol=1e-5)
    for got, ref in zip(got_vjp(g), ref_vjp(g), strict=True):
        assert got.shape == ref.shape and got.dtype == ref.dtype
        np.testing.assert_allclose(np.asarray(got), np.asarray(ref), rtol=1e-4, atol=1e-4)
        assert np.abs(np.asarray(ref)).max() > 1.0  # a gradient worth comparing
    # a stride-1 backward reads the kernel where it lies: no kernel-sized transpose, reverse or copy
    if any(s != 1 for s in stride):
        return
    text = (
        jax.jit(lambda a, b, c: jax.vjp(conv(layers.conv_general_dilated), a, b)[1](c))
        .lower(x, w, g)
        .compile()
        .as_text()
    )
    relayouts = [
        line.strip()[:160]
        for line in text.splitlines()
        if (m := re.search(r"= f32\[([\d,]+)\]\{[\d,]+\} (?:copy|transpose|reverse)\(", line))
        and math.prod(int(d) for d in m.group(1).split(",")) == math.prod(kernel)
    ]
    assert not relayouts, "kernel-sized relayouts in the backward:\n" + "\n".join(relayouts)


@pytest.mark.parametrize(("channels", "length"), [(8, 1), (8, 4), (16, 8)])
def test_upsample_matches_the_transposed_convolution(channels, length):
    conv = torch_conv_transpose1d(channels, rngs=nnx.Rngs(3))
    x = jnp.asarray(np.random.default_rng(1).normal(size=(3, length, channels)).astype(np.float32))
    ref = conv(x)  # flax's ConvTranspose with the torch kernel layout, as the U-Net used to call it
    got = upsample_x2(conv, x)
    assert got.shape == (3, 2 * length, channels)
    np.testing.assert_allclose(np.asarray(got), np.asarray(ref), rtol=1e-5, atol=1e-5)


def test_upsample_matches_torch_semantics_on_a_hand_worked_case():
    # one channel, kernel taps (1, 2, 3, 4), x = (10, 100): torch's ConvTranspose1d(1, 1, 4, 2, 1)
    # places x[t] * w[k] at 2t - 1 + k -> [20, 30+100, 40+200, 300, 400] minus the cropped ends
    conv = torch_conv_transpose1d(1, rngs=nnx.Rngs(0))
    conv.kernel[...] = jnp.asarray([1.0, 2.0, 3.0, 4.0]).reshape(4, 1, 1)
    conv.bias[...] = jnp.zeros(1)
    y = upsample_x2(conv, jnp.asarray([10.0, 100.0]).reshape(1, 2, 1))
    np.testing.assert_allclose(np.asarray(y).ravel(), [20.0, 130.0, 240.0, 300.0])


def test_compiled_unet_never_relayouts_a_kernel():
    unet = ConditionalUnet1d(6, 20, down_dims=(16, 32, 64), kernel_size=5, n_groups=8, rngs=nnx.Rngs(0))
    graphdef, state = nnx.split(unet)
    x = jnp.zeros((1, 16, 6))  # 16 -> 8 -> 4 steps: the innermost blocks take the im2col path
    call = jax.jit(lambda s, a, t, g: nnx.merge(graphdef, s)(a, t, g))
    hlo = call.lower(state, x, jnp.zeros((1,), jnp.int32), jnp.zeros((1, 20))).compile().as_text()
    kernels = {
        tuple(leaf.shape)
        for leaf in jax.tree.leaves(state)
        if leaf.ndim == 3 and leaf.size >= 16 * 16  # conv kernels (k, in, out) of every width
    }
    relayouts = []
    for line in hlo.splitlines():
        m = re.search(r"= f32\[([\d,]+)\]\{[\d,]+\} (copy|transpose|reverse)\(", line)
        if m and tuple(sorted(int(d) for d in m.group(1).split(","))) in {tuple(sorted(k)) for k in kernels}:
            relayouts.append(line.strip()[:160])
    assert not relayouts, "kernel-sized relayouts in the compiled U-Net:\n" + "\n".join(relayouts)


@pytest.mark.parametrize("keep_patches", [True, False], ids=["patches-kept", "views-in-backward"])
@pytest.mark.parametrize(
    ("in_shape", "kernel", "stride", "pad", "dots_without_patches"),
    [
        ((2, 20, 26, 3), (7, 7, 3, 16), (2, 2), ((3, 3), (3, 3)), 7),  # stem: a matmul per kernel row
        ((2, 12, 10, 16), (3, 3, 16, 8), (1, 1), ((1, 1), (1, 1)), 9),  # one matmul per kernel offset
        ((2, 21, 18, 16), (3, 3, 16, 24), (2, 2), ((1, 1), (1, 1)), 9),  # stride 2 on an odd height
        ((2, 10, 9, 128), (3, 3, 128, 8), (1, 1), ((1, 1), (1, 1)), 9),  # wide input: never patches
        ((2, 18, 16, 16), (1, 1, 16, 24), (2, 2), ((0, 0), (0, 0)), 1),  # 1x1 downsample: never patches
    ],
)  # every output has more than IM2COL_MAX_POSITIONS positions: not the small-output im2col path
def test_matmul_weight_gradient_matches_xla_and_replaces_its_convolution(
    monkeypatch, in_shape, kernel, stride, pad, dots_without_patches, keep_patches
):
    if not keep_patches:
        monkeypatch.setattr(layers, "WGRAD_PATCHES_MAX_BYTES", 0)
    assert (
        math.prod(layers.conv_out_shape(in_shape[1:3], kernel[:2], stride, pad))
        > layers.IM2COL_MAX_POSITIONS[2]
    )
    rng = np.random.default_rng(2)
    x = jnp.asarray(rng.normal(size=in_shape).astype(np.float32))
    w = jnp.asarray(rng.normal(size=kernel).astype(np.float32))
    dims = lax.conv_dimension_numbers(x.shape, w.shape, ("NHWC", "HWIO", "NHWC"))

    def loss(conv):
        return lambda a, b: jnp.sum(jnp.sin(conv(a, b, stride, pad, dimension_numbers=dims)))

    fast = functools.partial(layers.conv_general_dilated, matmul_weight_grad=True)
    ref = jax.grad(loss(lax.conv_general_dilated), argnums=(0, 1))(x, w)
    got = jax.grad(loss(fast), argnums=(0, 1))(x, w)
    np.testing.assert_allclose(np.asarray(got[0]), np.asarray(ref[0]), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(np.asarray(got[1]), np.asarray(ref[1]), rtol=1e-4, atol=1e-4)
    assert np.abs(np.asarray(ref[1])).max() > 1.0  # a gradient worth comparing
    # the weight gradient alone (output cotangent given) compiles to matmuls, no convolution left: one
    # over the kept patches (narrow inputs), else one per kernel row (the stem) or per offset
    y = fast(x, w, stride, pad, dimension_numbers=dims)
    hlo = jax.jit(lambda b, g: jax.vjp(lambda k: fast(x, k, stride, pad, dimension_numbers=dims), b)[1](g))
    text = hlo.lower(w, y).compile().as_text()
    assert "convolution(" not in text
    dots = len(re.findall(r" dot\(", text))
    expect_patches = (
        keep_patches and math.prod(kernel[:2]) > 1 and kernel[2] < layers.WGRAD_PATCHES_BELOW_CHANNELS
    )
    assert dots == (1 if expect_patches else dots_without_patches), text
    # undifferentiated (inference), the call compiles as without the option, whichever form its gradient takes
    assert layers.conv_general_dilated(x, w, stride, pad, dimension_numbers=dims).shape == y.shape

    def ops(conv):
        text = (
            jax.jit(lambda a, b: conv(a, b, stride, pad, dimension_numbers=dims))
            .lower(x, w)
            .compile()
            .as_text()
        )
        return text.count("convolution("), text.count(" dot(")

    assert ops(fast) == ops(layers.conv_general_dilated)


def test_matmul_weight_gradient_in_image_groups_matches_one_group(monkeypatch):
    rng = np.random.default_rng(4)
    x = jnp.asarray(rng.normal(size=(5, 11, 9, 3)).astype(np.float32))
    g = jnp.asarray(rng.normal(size=(5, 6, 5, 8)).astype(np.float32))
    args = ((7, 7, 3, 8), (2, 2), ((3, 3), (3, 3)))
    whole = layers.conv_weight_gradient(x, g, *args)
    monkeypatch.setattr(layers, "WGRAD_GROUP_BYTES", 1)  # one image per group: 5 groups
    grouped = layers.conv_weight_gradient(x, g, *args)
    _, vjp = jax.vjp(
        lambda w: lax.conv_general_dilated(
            x, w, args[1], args[2], dimension_numbers=("NHWC", "HWIO", "NHWC")
        ),
        jnp.zeros(args[0]),
    )
    np.testing.assert_allclose(np.asarray(grouped), np.asarray(vjp(g)[0]), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(np.asarray(grouped), np.asarray(whole), rtol=1e-5, atol=1e-5)


def _torch_max_pool_grad(x: np.ndarray, k: int, s: int, p: int, g: np.ndarray) -> np.ndarray:
    """torch's max_pool2d backward by hand: each output's gradient to the first maximum of its window."""
    h, w = x.shape[1:3]
    xp = np.pad(x, ((0, 0), (p, p), (p, p), (0, 0)), constant_values=-np.inf)
    dxp = np.zeros_like(xp)
    for b, i, j, ch in np.ndindex(*g.shape):
        win = xp[b, i * s : i * s + k, j * s : j * s + k, ch]
        r, q = np.unravel_index(int(np.argmax(win)), win.shape)  # argmax: first in row-major order
        dxp[b, i * s + r, j * s + q, ch] += g[b, i, j, ch]
    return dxp[:, p : p + h, p : p + w]


def test_max_pool_matches_xla_forward_and_routes_gradients_to_the_first_maximum():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(2, 9, 12, 3)).astype(np.float32)
    x[0, 2:4, 2:4, 0] = 5.0  # ties inside overlapping windows: torch picks the first in row-major order
    x[1, :, :, 1] = 0.0  # a whole channel of ties, as after a ReLU
    g = rng.normal(size=(2, 5, 6, 3)).astype(np.float32)
    y, vjp = jax.vjp(lambda a: layers.max_pool(a, (3, 3), (2, 2), ((1, 1), (1, 1))), jnp.asarray(x))
    ref = nnx.max_pool(jnp.asarray(x), (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
    np.testing.assert_array_equal(np.asarray(y), np.asarray(ref))
    (dx,) = vjp(jnp.asarray(g))
    np.testing.assert_allclose(np.asarray(dx), _torch_max_pool_grad(x, 3, 2, 1, g), rtol=1e-6, atol=1e-6)
    # and no reduce-window over indices or select-and-scatter left in the compiled gradient
    grad = jax.jit(
        lambda a, c: jax.vjp(lambda b: layers.max_pool(b, (3, 3), (2, 2), ((1, 1), (1, 1))), a)[1](c)
    )
    text = grad.lower(jnp.asarray(x), jnp.asarray(g)).compile().as_text()
    assert "select-and-scatter" not in text and "iota" not in text


def test_dropout_keeps_one_minus_rate_from_16_bit_draws():
    x = jnp.ones((1000, 1001))  # an odd count: the last word's second half goes unused
    y = np.asarray(layers.dropout(x, 0.1, layers.RngSeq(jax.random.PRNGKey(0))))
    kept = y != 0
    assert abs(kept.mean() - 0.9) < 0.002  # 1,001,000 draws: standard deviation 0.0003
    np.testing.assert_allclose(y[kept], 1 / 0.9, rtol=1e-6)  # torch's scale, 1 / (1 - p)
    flat = kept.reshape(-1)[: 1000 * 1000]
    both = (flat[0::2] & flat[1::2]).mean()  # the two halves of one 32-bit word are independent draws
    assert abs(both - 0.81) < 0.003
    other = np.asarray(layers.dropout(x, 0.1, layers.RngSeq(jax.random.PRNGKey(1)))) != 0
    assert (other != kept).mean() > 0.1  # another key, another mask
    # half as many 32-bit words as elements come out of the generator
    key = layers.RngSeq(jax.random.PRNGKey(0)).next()
    text = jax.jit(lambda k: layers.dropout_keep_mask(k, 0.1, (1000, 1001))).lower(key).compile().as_text()
    assert "u32[500500]" in text and "u32[1000,1001]" not in text

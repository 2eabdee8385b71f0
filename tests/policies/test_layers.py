"""The CPU convolution fast paths compute the same sums as XLA's convolution, without weight relayouts.

`layers.conv_general_dilated` replaces small-output convolutions by patches @ kernel, and the
Diffusion U-Net's upsampling replaces the transposed convolution by a matmul and an overlap-add. Both
exist only for speed, so they must agree with the operation they stand in for, and the compiled U-Net
must not copy any kernel into another layout (the relayout cost a third of each U-Net call).
"""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax import lax

from jrobot.policies import layers
from jrobot.policies.diffusion.unet import ConditionalUnet1d, torch_conv_transpose1d, upsample_x2


@pytest.mark.parametrize(
    ("in_shape", "kernel", "stride", "pad"),
    [
        ((2, 4, 24), (5, 24, 40), (1,), ((2, 2),)),  # U-Net block at its innermost length
        ((2, 8, 16), (3, 16, 16), (2,), ((1, 1),)),  # U-Net downsampling to 4 steps
        ((2, 3, 4, 8), (3, 3, 8, 12), (1, 1), ((1, 1), (1, 1))),  # ResNet layer4 on a 3x4 map
        ((2, 6, 8, 8), (3, 3, 8, 12), (2, 2), ((1, 1), (1, 1))),  # stride 2 to 3x4
        ((1, 2, 2, 4), (1, 1, 4, 8), (1, 1), ((0, 0), (0, 0))),  # 1x1 projection
    ],
)
def test_im2col_matches_xla_convolution(in_shape, kernel, stride, pad):
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=in_shape).astype(np.float32))
    w = jnp.asarray(rng.normal(size=kernel).astype(np.float32))
    dn = ("NWC", "WIO", "NWC") if len(in_shape) == 3 else ("NHWC", "HWIO", "NHWC")
    dims = lax.conv_dimension_numbers(x.shape, w.shape, dn)
    ref = lax.conv_general_dilated(x, w, stride, pad, dimension_numbers=dims)
    got = layers.conv_general_dilated(x, w, stride, pad, dimension_numbers=dims)
    out_positions = int(np.prod(ref.shape[1:-1]))
    assert out_positions <= layers.IM2COL_MAX_POSITIONS[len(in_shape) - 2], "case must take the im2col path"
    hlo = jax.jit(lambda a, b: layers.conv_general_dilated(a, b, stride, pad, dimension_numbers=dims)).lower(
        x, w
    )
    assert "convolution" not in hlo.as_text(), "the im2col path was not taken"
    np.testing.assert_allclose(np.asarray(got), np.asarray(ref), rtol=1e-5, atol=1e-5)


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

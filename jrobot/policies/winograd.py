"""3x3 stride-1 convolutions as Winograd minimal filtering for CPU inference, laid out once at export.

A ResNet18 at LeRobot's default 480x640 spends most of an ACT call in its thirteen 3x3 stride-1
convolutions (37 of its 45 GFLOP for two cameras), and XLA's CPU convolution runs them at 75-110
GFLOP/s on a 2-core EPYC, near what this CPU's float32 matmul reaches (121-147 GFLOP/s). Winograd's
F(m x m, 3 x 3) computes each m x m output tile from an (m+2) x (m+2) input tile with (m+2)^2
multiplications per input/output channel pair instead of 9 m^2: 2.25x fewer for F(2x2, 3x3), 4x fewer
for F(4x4, 3x3) (Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks", 2016). Over a
whole image the multiplications become (m+2)^2 independent (tiles, Cin) x (Cin, Cout) matmuls; the
input and output transforms are additions that XLA fuses into a few memory-bound loops.

The kernel's transform G g G^T is done once, in float64, when a bundle is exported (`WinogradConv`
holds the (m+2)^2 transformed kernels instead of the 3x3 one), so a call pays only for the input and
output transforms and the matmuls. Training keeps plain convolutions and LeRobot's kernel layout.

Rounding: the transforms add and scale values, so results differ from a direct convolution's by
more float32 roundings, more for F(4x4) (its matrices hold 4, 5 and 1/24) than for F(2x2): against a
float64 convolution, up to 4e-7 (F(2x2)) and 6e-6 (F(4x4)) of the largest output, measured on
unit-variance inputs and He-scaled kernels of up to 256 channels. F(4x4) is used where its matmuls
are small (Cin * Cout <= 128 * 128), where it is the faster of the two; F(2x2) elsewhere.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jrobot.policies.base import swap_layers

# (B^T, G, A^T) of F(m x m, 3 x 3) with interpolation points 0, +-1 (m = 2) and 0, +-1, +-2 (m = 4),
# both with the point at infinity; Lavin & Gray's matrices.
TRANSFORMS: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {
    2: (
        np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], np.float64),
        np.array([[1, 0, 0], [1 / 2, 1 / 2, 1 / 2], [1 / 2, -1 / 2, 1 / 2], [0, 0, 1]], np.float64),
        np.array([[1, 1, 1, 0], [0, 1, -1, -1]], np.float64),
    ),
    4: (
        np.array(
            [
                [4, 0, -5, 0, 1, 0],
                [0, -4, -4, 1, 1, 0],
                [0, 4, -4, -1, 1, 0],
                [0, -2, -1, 2, 1, 0],
                [0, 2, -1, -2, 1, 0],
                [0, 4, 0, -5, 0, 1],
            ],
            np.float64,
        ),
        np.array(
            [
                [1 / 4, 0, 0],
                [-1 / 6, -1 / 6, -1 / 6],
                [-1 / 6, 1 / 6, -1 / 6],
                [1 / 24, 1 / 12, 1 / 6],
                [1 / 24, -1 / 12, 1 / 6],
                [0, 0, 1],
            ],
            np.float64,
        ),
        np.array(
            [[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]], np.float64
        ),
    ),
}
F4_MAX_KERNEL = 128 * 128  # Cin * Cout up to which F(4x4) is used (faster there; F(2x2) above)


def tile_size(cin: int, cout: int) -> int:
    """The output tile side m of F(m x m, 3 x 3) used for a (3, 3, cin, cout) kernel."""
    return 4 if cin * cout <= F4_MAX_KERNEL else 2


def transform_kernel(kernel: np.ndarray, m: int) -> np.ndarray:
    """(3, 3, Cin, Cout) -> the ((m+2)^2, Cin, Cout) kernels G g G^T, computed in float64."""
    k = np.asarray(kernel, np.float64)
    if k.ndim != 4 or k.shape[:2] != (3, 3):
        raise ValueError(f"Winograd F(m x m, 3 x 3) needs a (3, 3, Cin, Cout) kernel, got shape {k.shape}")
    _, g, _ = TRANSFORMS[m]
    u = np.einsum("ik,klco,jl->ijco", g, k, g)
    return np.ascontiguousarray(u.reshape(-1, *k.shape[2:]).astype(np.asarray(kernel).dtype))


def _combine(parts: Sequence[jax.Array], coeffs: np.ndarray) -> jax.Array:
    """sum_i coeffs[i] * parts[i], skipping zeros and multiplying only where |coeff| != 1."""
    out = None
    for p, c in zip(parts, coeffs, strict=True):
        if c == 0:
            continue
        term = p if c == 1 else -p if c == -1 else p * np.asarray(c, p.dtype)
        out = term if out is None else out + term
    if out is None:
        raise ValueError("a transform row is all zeros")
    return out


def winograd_conv2d(
    x: jax.Array, kernel_tiles: jax.Array, m: int, padding: Sequence[Sequence[int]]
) -> jax.Array:
    """Channel-last 3x3 stride-1 convolution of x (B, H, W, Cin) with `transform_kernel`'s output."""
    bt, _, at = TRANSFORMS[m]
    a = m + 2
    b, h, w, cin = x.shape
    cout = kernel_tiles.shape[-1]
    if kernel_tiles.shape != (a * a, cin, cout):
        raise ValueError(
            f"kernel tiles of shape {kernel_tiles.shape} do not fit F({m}x{m}, 3x3) on {cin} channels"
        )
    (top, bottom), (left, right) = padding
    ho, wo = h + top + bottom - 2, w + left + right - 2
    th, tw = -(-ho // m), -(-wo // m)
    # Tile (i, j) reads padded rows i*m .. i*m + a - 1 and columns likewise; the last tiles may run
    # past the padded input, so pad with zeros to th*m + 2 and crop the output back to (ho, wo).
    xp = jnp.pad(x, ((0, 0), (top, th * m + 2 - h - top), (left, tw * m + 2 - w - left), (0, 0)))
    # Separable: the column transform first, as one (a, B, Hp, tw, C) array, then the row transform
    # of that; done in one pass per output instead, each of the a^2 outputs read up to 16 strided
    # views of the input, and layer1's F(4x4) transform took twice as long (13 against 5-6 ms).
    cols = [xp[:, :, c : c + m * (tw - 1) + 1 : m] for c in range(a)]
    by_col = jnp.stack([_combine(cols, bt[j]) for j in range(a)])
    rows = [by_col[:, :, r : r + m * (th - 1) + 1 : m] for r in range(a)]  # (a, B, th, tw, C) each
    v = jnp.stack([_combine(rows, bt[i]) for i in range(a)]).reshape(a * a, b * th * tw, cin)
    prod = jnp.matmul(v, kernel_tiles).reshape(a, a, b, th, tw, cout)
    out_rows = [_combine([prod[i] for i in range(a)], at[r]) for r in range(m)]  # (a, B, th, tw, Co)
    y = jnp.stack(
        [jnp.stack([_combine([o[j] for j in range(a)], at[c]) for c in range(m)], axis=3) for o in out_rows],
        axis=2,
    )  # (B, th, m, tw, m, Co)
    return y.reshape(b, th * m, tw * m, cout)[:, :ho, :wo]


class WinogradConv(nnx.Module):
    """A plain 3x3 stride-1 `nnx.Conv` computed as `winograd_conv2d` over its transformed kernel."""

    def __init__(self, conv: nnx.Conv, m: int | None = None):
        if not is_winograd_conv(conv):
            raise ValueError(
                "only a plain 3x3 stride-1 nnx.Conv (explicit padding; no groups, dilation, mask, dtype "
                f"or precision) is computed with Winograd; got kernel {tuple(conv.kernel_size)}, "
                f"strides {conv.strides}, padding {conv.padding!r}"
            )
        kernel = np.asarray(conv.kernel[...])
        self.m = int(m or tile_size(*kernel.shape[2:]))
        if self.m not in TRANSFORMS:
            raise ValueError(f"Winograd tile side must be one of {sorted(TRANSFORMS)}, got {self.m}")
        self.padding = tuple((int(lo), int(hi)) for lo, hi in conv.padding)
        self.kernel_tiles = nnx.Param(jnp.asarray(transform_kernel(kernel, self.m)))
        self.bias = None if conv.bias is None else nnx.Param(jnp.asarray(conv.bias[...]))

    def __call__(self, x: jax.Array) -> jax.Array:
        y = winograd_conv2d(x, self.kernel_tiles[...], self.m, self.padding)
        return y if self.bias is None else y + self.bias[...]


def is_winograd_conv(conv: object) -> bool:
    """Whether `conv` is a plain 3x3 stride-1 2-D `nnx.Conv` that `WinogradConv` computes exactly."""
    if type(conv) is not nnx.Conv or tuple(conv.kernel_size) != (3, 3) or isinstance(conv.padding, str):
        return False
    return (
        conv.feature_group_count == 1
        and tuple(np.broadcast_to(conv.strides or 1, 2)) == (1, 1)
        and tuple(np.broadcast_to(conv.input_dilation or 1, 2)) == (1, 1)
        and tuple(np.broadcast_to(conv.kernel_dilation or 1, 2)) == (1, 1)
        and conv.mask is None
        and conv.dtype in (None, jnp.float32)
        and conv.precision is None
        and conv.kernel[...].dtype == jnp.float32
    )


def lay_out_winograd(module: nnx.Module) -> int:
    """Swap, in place, every plain 3x3 stride-1 `nnx.Conv` under `module` for its `WinogradConv`;
    returns how many."""
    return swap_layers(module, lambda layer: WinogradConv(layer) if is_winograd_conv(layer) else None)

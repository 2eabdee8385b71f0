"""3x3 stride-1 convolutions as Winograd minimal filtering on the CPU: in training, and in inference
with the kernels transformed once at export.

A ResNet18 at LeRobot's default 480x640 spends most of an ACT call in its thirteen 3x3 stride-1
convolutions (37 of its 45 GFLOP for two cameras), and XLA's CPU convolution runs them at 75-116
GFLOP/s on a 2-core EPYC, near what this CPU's float32 matmul reaches (121-147 GFLOP/s). Winograd's
F(m x m, 3 x 3) computes each m x m output tile from an (m+2) x (m+2) input tile with (m+2)^2
multiplications per input/output channel pair instead of 9 m^2: 2.25x fewer for F(2x2, 3x3), 4x fewer
for F(4x4, 3x3) (Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks", 2016). Over a
whole image the multiplications become (m+2)^2 independent (tiles, Cin) x (Cin, Cout) matmuls; the
input and output transforms are additions that XLA fuses into a few memory-bound loops.

Training (and in-process inference) keeps LeRobot's 3x3 kernels and transforms them in the graph
(`winograd_conv3x3`, which `layers.conv_general_dilated` takes for a ResNet's convolutions on maps
larger than `IM2COL_MAX_POSITIONS`); its backward is Winograd's too. An exported bundle holds the
(m+2)^2 transformed kernels instead (`WinogradConv`, computed once in float64), so a call pays only
for the input and output transforms and the matmuls.

Rounding: the transforms add and scale values, so results differ from a direct convolution's by
more float32 roundings, more for F(4x4) (its matrices hold 4, 5 and 1/24) than for F(2x2): against a
float64 convolution, up to 4e-7 (F(2x2)) and 6e-6 (F(4x4)) of the largest output, measured on
unit-variance inputs and He-scaled kernels of up to 256 channels. F(4x4) is used where its matmuls
are small (Cin * Cout <= 128 * 128), where it is the faster of the two; F(2x2) elsewhere.
"""

from __future__ import annotations

import functools
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


def _stack(parts: Sequence) -> jax.Array | np.ndarray:
    return np.stack(parts) if isinstance(parts[0], np.ndarray) else jnp.stack(parts)


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


def kernel_tiles(kernel: jax.Array | np.ndarray, m: int) -> jax.Array | np.ndarray:
    """(3, 3, Cin, Cout) -> the ((m+2)^2, Cin, Cout) transformed kernels G g G^T, in the kernel's own
    array type and precision (numpy float64 at export, a traced array in training)."""
    if kernel.ndim != 4 or tuple(kernel.shape[:2]) != (3, 3):
        raise ValueError(
            f"Winograd F(m x m, 3 x 3) needs a (3, 3, Cin, Cout) kernel, got shape {kernel.shape}"
        )
    g = TRANSFORMS[m][1]
    rows = [_combine([kernel[r] for r in range(3)], g[i]) for i in range(m + 2)]  # (3, Cin, Cout) each
    return _stack([_combine([row[c] for c in range(3)], g[j]) for row in rows for j in range(m + 2)])


def _kernel_tiles_adjoint(tiles: jax.Array, m: int) -> jax.Array:
    """The transpose of `kernel_tiles`: the (3, 3, Cin, Cout) gradient of the kernel from its tiles'."""
    a, g = m + 2, TRANSFORMS[m][1]
    t = tiles.reshape(a, a, *tiles.shape[1:])
    rows = [_combine([t[i] for i in range(a)], g[:, r]) for r in range(3)]  # (a, Cin, Cout) each
    return jnp.stack(
        [jnp.stack([_combine([row[j] for j in range(a)], g[:, c]) for c in range(3)]) for row in rows]
    )


def transform_kernel(kernel: np.ndarray, m: int) -> np.ndarray:
    """`kernel_tiles` of a stored kernel, computed in float64 and returned in the kernel's dtype."""
    k = np.asarray(kernel)
    return np.ascontiguousarray(kernel_tiles(k.astype(np.float64), m).astype(k.dtype))


def _geometry(h: int, w: int, m: int, padding) -> tuple[int, int, int, int]:
    (top, bottom), (left, right) = padding
    ho, wo = h + top + bottom - 2, w + left + right - 2
    return ho, wo, -(-ho // m), -(-wo // m)


def _input_tiles(x: jax.Array, m: int, padding) -> jax.Array:
    """(B, H, W, C) -> the ((m+2)^2, B * tiles, C) transformed input tiles B^T d B."""
    a, bt = m + 2, TRANSFORMS[m][0]
    b, h, w, c = x.shape
    (top, _), (left, _) = padding
    _, _, th, tw = _geometry(h, w, m, padding)
    # Tile (i, j) reads padded rows i*m .. i*m + a - 1 and columns likewise; the last tiles may run
    # past the padded input, so pad with zeros to th*m + 2 (the output is cropped back).
    xp = jnp.pad(x, ((0, 0), (top, th * m + 2 - h - top), (left, tw * m + 2 - w - left), (0, 0)))
    # Separable: the column transform first, as one (a, B, Hp, tw, C) array, then the row transform
    # of that; done in one pass per output instead, each of the a^2 outputs read up to 16 strided
    # views of the input, and layer1's F(4x4) transform took twice as long (13 against 5-6 ms).
    cols = [xp[:, :, j : j + m * (tw - 1) + 1 : m] for j in range(a)]
    by_col = jnp.stack([_combine(cols, bt[j]) for j in range(a)])
    rows = [by_col[:, :, r : r + m * (th - 1) + 1 : m] for r in range(a)]  # (a, B, th, tw, C) each
    return jnp.stack([_combine(rows, bt[i]) for i in range(a)]).reshape(a * a, b * th * tw, c)


def _output_from_tiles(prod: jax.Array, m: int, shape: tuple[int, int, int, int, int, int]) -> jax.Array:
    """((m+2)^2, B * tiles, Co) products -> the (B, Ho, Wo, Co) output A^T M A, tile by tile."""
    a, at = m + 2, TRANSFORMS[m][2]
    b, th, tw, ho, wo, cout = shape
    prod = prod.reshape(a, a, b, th, tw, cout)
    out_rows = [_combine([prod[i] for i in range(a)], at[r]) for r in range(m)]  # (a, B, th, tw, Co)
    y = jnp.stack(
        [jnp.stack([_combine([o[j] for j in range(a)], at[c]) for c in range(m)], axis=3) for o in out_rows],
        axis=2,
    )  # (B, th, m, tw, m, Co)
    return y.reshape(b, th * m, tw * m, cout)[:, :ho, :wo]


def _output_tiles_adjoint(dy: jax.Array, m: int, th: int, tw: int) -> jax.Array:
    """The transpose of `_output_from_tiles`: (B, Ho, Wo, Co) -> ((m+2)^2, B * tiles, Co), A dY A^T on
    each m x m tile of the output gradient (tiles do not overlap, so no strided views)."""
    a, at = m + 2, TRANSFORMS[m][2]
    b, ho, wo, cout = dy.shape
    t = jnp.pad(dy, ((0, 0), (0, th * m - ho), (0, tw * m - wo), (0, 0))).reshape(b, th, m, tw, m, cout)
    rows = [_combine([t[:, :, r] for r in range(m)], at[:, i]) for i in range(a)]  # (B, th, tw, m, Co)
    tiles = [_combine([row[:, :, :, c] for c in range(m)], at[:, j]) for row in rows for j in range(a)]
    return jnp.stack(tiles).reshape(a * a, b * th * tw, cout)


def winograd_conv2d(
    x: jax.Array, kernel_tiles: jax.Array, m: int, padding: Sequence[Sequence[int]]
) -> jax.Array:
    """Channel-last 3x3 stride-1 convolution of x (B, H, W, Cin) with already transformed kernels."""
    a = m + 2
    b, h, w, cin = x.shape
    cout = kernel_tiles.shape[-1]
    if tuple(kernel_tiles.shape) != (a * a, cin, cout):
        raise ValueError(
            f"kernel tiles of shape {kernel_tiles.shape} do not fit F({m}x{m}, 3x3) on {cin} channels"
        )
    ho, wo, th, tw = _geometry(h, w, m, padding)
    prod = jnp.matmul(_input_tiles(x, m, padding), kernel_tiles)
    return _output_from_tiles(prod, m, (b, th, tw, ho, wo, cout))


# Training differentiates through the kernel's transform too. JAX's own transpose of the forward
# above scatters each of the (m+2)^2 strided views back into a full-size input gradient: an ACT step
# at 96x128 took 2.6x as long. The backward below instead computes the input gradient as another
# Winograd convolution (of the output gradient with the kernel turned by 180 degrees, channels
# swapped) and the kernel's as tiles^T @ (A dY A^T), transformed back; it recomputes the input tiles
# rather than keeping them (2.25-4x the input's size).
@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def winograd_conv3x3(x: jax.Array, kernel: jax.Array, m: int, padding: tuple) -> jax.Array:
    """`winograd_conv2d` of the (3, 3, Cin, Cout) kernel itself, transformed in the graph; differentiable."""
    return winograd_conv2d(x, kernel_tiles(kernel, m), m, padding)


def _winograd_conv3x3_fwd(x, kernel, m, padding):
    return winograd_conv3x3(x, kernel, m, padding), (x, kernel)


def _winograd_conv3x3_bwd(m, padding, res, dy):
    x, kernel = res
    _, h, w, _ = x.shape
    _, _, th, tw = _geometry(h, w, m, padding)
    dprod = _output_tiles_adjoint(dy, m, th, tw)
    # (tiles^T) @ dprod with the transpose made explicit: XLA's CPU dot hands a transposed left
    # operand to its slower generic kernel instead of YNNPACK (ACT step at 48x64: 229 -> 212 ms).
    tiles_t = jax.lax.optimization_barrier(jnp.swapaxes(_input_tiles(x, m, padding), 1, 2))
    dkernel = _kernel_tiles_adjoint(jnp.matmul(tiles_t, dprod), m)
    (top, bottom), (left, right) = padding
    turned = jnp.swapaxes(kernel[::-1, ::-1], 2, 3)
    dx = winograd_conv3x3(dy, turned, m, ((2 - top, 2 - bottom), (2 - left, 2 - right)))
    return dx, dkernel.astype(kernel.dtype)


winograd_conv3x3.defvjp(_winograd_conv3x3_fwd, _winograd_conv3x3_bwd)


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

"""Torch-compatible building blocks: variable kinds, torch default initializers, attention, dropout, and
the CPU fast paths of convolutions and max pooling (same sums, faster forms).

Variable kinds (what the trainer partitions on):
- `nnx.Param`: trainable.
- `Buffer`: saved but never trained (frozen batch-norm statistics and affine, fixed sinusoid tables).
- `NormStat` (a `Buffer`): normalization statistics of a feature.
- `nnx.BatchStat`: running statistics a train-mode batch norm updates (not trained by the optimizer).

Initializers reproduce torch defaults so a from-scratch jrobot model starts from the same distribution
as LeRobot's: `nn.Linear`/`nn.Conv*` weights and biases are U(-1/sqrt(fan_in), 1/sqrt(fan_in))
(kaiming_uniform with a=sqrt(5)), `nn.Embedding` is N(0, 1), LayerNorm is ones/zeros.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jrobot.policies.lerobot.statedict import TorchLeaf, linear_leaves, variable_leaf
from jrobot.policies.winograd import tile_size, winograd_conv3x3


class Buffer(nnx.Variable):
    """Saved, non-trainable state (LeRobot `register_buffer` tensors). The optimizer never sees it."""


class NormStat(Buffer):
    """A feature's normalization statistic (mean/std/min/max/quantile)."""


# ---------------------------------------------------------------------------------------------------
# initializers
torch_kernel_init = nnx.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")
xavier_uniform = nnx.initializers.xavier_uniform()


def uniform_init(bound: float) -> Callable:
    def init(key: jax.Array, shape: tuple[int, ...], dtype=jnp.float32) -> jax.Array:
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


def torch_bias_init(fan_in: int) -> Callable:
    return uniform_init(1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0)


def torch_linear(
    in_features: int,
    out_features: int,
    *,
    rngs: nnx.Rngs,
    use_bias: bool = True,
    xavier: bool = False,
    dtype: jnp.dtype | None = None,
) -> nnx.Linear:
    """`nn.Linear` with torch's default init (or xavier_uniform weights, as ACT re-inits its transformer)."""
    return nnx.Linear(
        in_features,
        out_features,
        use_bias=use_bias,
        kernel_init=xavier_uniform if xavier else torch_kernel_init,
        bias_init=torch_bias_init(in_features),
        dtype=dtype,
        rngs=rngs,
    )


# XLA's CPU convolution is pathologically slow when the output has very few positions and many
# channels: ResNet18's layer4 on small robot-camera images (2x2 or 3x4 maps of 512 channels) and the
# Diffusion UNet's innermost 1-D blocks (4 steps of 256+ channels) run at ~1 GFLOP/s, 20-50x below a
# matmul, and its weight gradients are slow for small 2-D maps in general. Below these sizes a
# convolution is computed as patches @ kernel (im2col), which XLA lowers to one large matmul. Same
# sums, so results agree to float rounding.
IM2COL_MAX_POSITIONS = {1: 4, 2: 64}  # by number of spatial dimensions
_CHANNEL_LAST = {1: ((0, 2, 1), (2, 1, 0)), 2: ((0, 3, 1, 2), (3, 2, 0, 1))}  # NWC/WIO, NHWC/HWIO


def conv_out_shape(
    spatial: Sequence[int], ks: Sequence[int], strides: Sequence[int], padding: Sequence[Sequence[int]]
) -> list[int]:
    """Output positions per spatial axis of a convolution with explicit padding."""
    return [(n + p[0] + p[1] - k) // s + 1 for n, k, s, p in zip(spatial, ks, strides, padding, strict=True)]


def shifted_views(
    x: jax.Array,
    ks: Sequence[int],
    strides: Sequence[int],
    padding: Sequence[Sequence[int]],
    pad_value: float = 0.0,
) -> list[jax.Array]:
    """The (B, *out, C) strided views of channel-last `x` that each kernel offset of a window reads,
    in row-major offset order: what a convolution or pooling window combines at every output position."""
    out = conv_out_shape(x.shape[1:-1], ks, strides, padding)
    xp = jnp.pad(x, ((0, 0), *[tuple(p) for p in padding], (0, 0)), constant_values=pad_value)
    views = []
    for offs in np.ndindex(*ks):
        idx = tuple(slice(o, o + strides[d] * (out[d] - 1) + 1, strides[d]) for d, o in enumerate(offs))
        views.append(xp[(slice(None), *idx)])
    return views


def im2col(
    x: jax.Array, ks: Sequence[int], strides: Sequence[int], padding: Sequence[Sequence[int]]
) -> jax.Array:
    """Channel-last (B, *spatial, C) -> (B, *out, K*C) patches, kernel offsets major, channels minor:
    the rows a convolution's (K*C, Cout) kernel multiplies."""
    return jnp.concatenate(shifted_views(x, ks, strides, padding), axis=-1)


# XLA's CPU weight gradient of a 2-D convolution (the convolution of the input with the output
# gradient as a kernel) runs at a third to a half of its forward speed, and slower still on large maps:
# ResNet18's stem and layer1 gradients were the largest ops of an ACT training step (3.7 s each for 16
# images at 480x640 on 2 cores). The same sums as matmuls: gᵀ, transposed to (Cout, positions), times
# each kernel offset's strided view of the input (positions, Cin): 1.0 s and 0.8 s.
# Offsets of one kernel row are concatenated when Cin is tiny (the 3-channel stem), so no matmul is a
# sliver, and images go in groups whose views fit in cache (WGRAD_GROUP_BYTES), because on large maps
# copying the views out of memory costs more than the matmuls.
# Narrow inputs in general (Cin < WGRAD_PATCHES_BELOW_CHANNELS: ResNet18's layer1) still leave each
# offset's matmul few columns, and a (64, positions) x (positions, 64) product runs at about half a
# wide one's speed (37-46 against 87 GFLOP/s with all 9 offsets of a 3x3 kernel in one product, 96x128
# images, 2 cores). Where the whole patch matrix is small enough to keep (WGRAD_PATCHES_MAX_BYTES),
# the differentiated forward computes the convolution as patches @ kernel and keeps the patches, and
# the weight gradient is one matmul gᵀ @ patches: the copies are made once, in the forward. At 96x128
# the stem's forward + backward went from 90 to 61 ms, a layer1 convolution's from 76 to 53 ms. Larger
# maps would keep gigabytes (722 MB of patches for the stem at 480x640). Concatenating layer1's kernel
# rows there instead made its weight gradient faster alone (620-800 -> 460-510 ms) but not the step (3
# alternating process pairs, 4 in-process rounds), with 0.45 GB more peak memory, so large maps keep
# the form above. The input gradient stays XLA's own transposed convolution, which runs at forward
# speed, and inference never takes these paths: undifferentiated, the convolution is XLA's own.
# Since a ResNet's 3x3 stride-1 convolutions take Winograd's form (`winograd.winograd_conv3x3`, forward
# and backward), these paths serve its stem, its stride-2 and its 1x1 downsampling convolutions.
WGRAD_CONCAT_BELOW_CHANNELS = 16
WGRAD_GROUP_BYTES = 8 << 20
WGRAD_PATCHES_BELOW_CHANNELS = 128
WGRAD_PATCHES_MAX_BYTES = 64 << 20


def keeps_patches(
    lhs: jax.Array | jax.ShapeDtypeStruct, kernel_shape: Sequence[int], out_spatial: Sequence[int]
) -> bool:
    """Whether the matmul weight gradient of this channel-last convolution keeps its im2col patches."""
    k, cin = math.prod(kernel_shape[:-2]), kernel_shape[-2]
    patch_bytes = lhs.shape[0] * math.prod(out_spatial) * k * cin * lhs.dtype.itemsize
    return k > 1 and cin < WGRAD_PATCHES_BELOW_CHANNELS and patch_bytes <= WGRAD_PATCHES_MAX_BYTES


def conv_weight_gradient(
    x: jax.Array,
    g: jax.Array,
    kernel_shape: Sequence[int],
    strides: Sequence[int],
    padding: Sequence[Sequence[int]],
    precision=None,
) -> jax.Array:
    """d(loss)/d(kernel) of a channel-last convolution (no dilation, one group) with output gradient `g`."""
    ks, cin, cout = tuple(kernel_shape[:-2]), kernel_shape[-2], kernel_shape[-1]
    per = ks[-1] if cin < WGRAD_CONCAT_BELOW_CHANNELS else 1
    view_bytes = math.prod(g.shape[1:-1]) * per * cin * x.dtype.itemsize  # one image's matmul operand
    group = max(1, min(x.shape[0], WGRAD_GROUP_BYTES // max(view_bytes, 1)))
    total = None
    for start in range(0, x.shape[0], group):
        xs, gs = x[start : start + group], g[start : start + group]
        views = shifted_views(xs, ks, strides, padding)
        gt = gs.reshape(-1, cout).T  # (Cout, positions): one transpose shared by every offset
        blocks = []
        for i in range(0, len(views), per):
            v = views[i] if per == 1 else jnp.concatenate(views[i : i + per], axis=-1)
            blocks.append(jnp.matmul(gt, v.reshape(-1, v.shape[-1]), precision=precision))
        part = jnp.concatenate(blocks, axis=1) if len(blocks) > 1 else blocks[0]  # (Cout, K*Cin)
        total = part if total is None else total + part
    return total.T.reshape(*ks, cin, cout)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4, 5))
def _conv_matmul_wgrad(lhs, rhs, strides, padding, dimension_numbers, precision):
    return jax.lax.conv_general_dilated(
        lhs, rhs, strides, padding, dimension_numbers=dimension_numbers, precision=precision
    )


def _conv_matmul_wgrad_fwd(lhs, rhs, strides, padding, dimension_numbers, precision):
    ks, cout = rhs.shape[:-2], rhs.shape[-1]
    if keeps_patches(lhs, rhs.shape, conv_out_shape(lhs.shape[1:-1], ks, strides, padding)):
        patches = im2col(lhs, ks, strides, padding)
        return jnp.matmul(patches, rhs.reshape(-1, cout), precision=precision), (lhs, rhs, patches)
    return _conv_matmul_wgrad(lhs, rhs, strides, padding, dimension_numbers, precision), (lhs, rhs, None)


def _conv_matmul_wgrad_bwd(strides, padding, dimension_numbers, precision, res, g):
    lhs, rhs, patches = res
    _, input_vjp = jax.vjp(
        lambda x: jax.lax.conv_general_dilated(
            x, rhs, strides, padding, dimension_numbers=dimension_numbers, precision=precision
        ),
        lhs,
    )
    (dlhs,) = input_vjp(g)
    if patches is None:
        drhs = conv_weight_gradient(lhs, g, rhs.shape, strides, padding, precision)
    else:
        cout = rhs.shape[-1]
        gt = g.reshape(-1, cout).T  # (Cout, positions)
        drhs = jnp.matmul(gt, patches.reshape(-1, patches.shape[-1]), precision=precision).T.reshape(
            rhs.shape
        )
    return dlhs, drhs.astype(rhs.dtype)


_conv_matmul_wgrad.defvjp(_conv_matmul_wgrad_fwd, _conv_matmul_wgrad_bwd)


# Small outputs (IM2COL_MAX_POSITIONS) are patches @ kernel. JAX's own gradient of that expression
# computes the (positions, K*Cin) patch gradient g @ kernelᵀ, which XLA's CPU dot ran at half the
# forward's speed (4.6-4.8 ms against 2.3-2.5 ms for each 3x3x512x512 kernel of ResNet18's layer4,
# 16 images at 96x128, 2-core Zen 5), then scatters it back onto the input through K strided pads,
# which XLA fused with the weight gradient's transposes into copies of 1.3-2.8 ms each. The backward
# below computes a stride-1 input gradient as the convolution of the output gradient with the kernel
# turned by 180 degrees: for each kernel offset, the gradient's shifted view times that offset's
# (Cin, Cout) block with Cout contracted where it lies (turning the kernel into a copy first cost
# 3.5 ms more per layer4 kernel), summed over offsets. The weight gradient is patchesᵀ @ g over the
# patches the forward made, the transpose made explicit (see `winograd`'s backward: XLA gives a
# transposed left operand to a slower kernel). ACT's training step at 96x128 (batch 8, 2 cameras, same
# VM): 178.5 -> 160.0 ms, medians of 10 alternating rounds in one process, every round faster.
# Strided convolutions keep JAX's input gradient (the same scatter written by hand measured no faster).
def _patches_times_kernel(patches, rhs, precision=None, preferred_element_type=None):
    # (B, *out, K*Cin) against the kernel's own row-major (K*Cin, Cout): one plain matmul that reads
    # the kernel in place. Stacking to (..., K, Cin) instead made XLA transpose the weight-sized
    # kernel on every call (6x slower for the U-Net's 2048-channel blocks).
    return jnp.matmul(
        patches,
        rhs.reshape(-1, rhs.shape[-1]),
        precision=precision,
        preferred_element_type=preferred_element_type,
    )


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def _im2col_conv(lhs, rhs, strides, padding, precision):
    return _patches_times_kernel(im2col(lhs, rhs.shape[:-2], strides, padding), rhs, precision)


def _turned_padding(ks: Sequence[int], padding: Sequence[Sequence[int]]) -> tuple[tuple[int, int], ...]:
    return tuple((k - 1 - lo, k - 1 - hi) for k, (lo, hi) in zip(ks, padding, strict=True))


def _im2col_conv_turns(strides: Sequence[int], ks: Sequence[int], padding: Sequence[Sequence[int]]) -> bool:
    """Whether the input gradient is computed as the convolution with the turned kernel."""
    return all(s == 1 for s in strides) and all(p >= 0 for side in _turned_padding(ks, padding) for p in side)


def _im2col_conv_fwd(lhs, rhs, strides, padding, precision):
    ks = rhs.shape[:-2]
    patches = im2col(lhs, ks, strides, padding)
    y = _patches_times_kernel(patches, rhs, precision)
    return y, (None if _im2col_conv_turns(strides, ks, padding) else lhs, rhs, patches)


def _im2col_conv_bwd(strides, padding, precision, res, g):
    lhs, rhs, patches = res
    ks, cin, cout = rhs.shape[:-2], rhs.shape[-2], rhs.shape[-1]
    patches_t = jax.lax.optimization_barrier(patches.reshape(-1, patches.shape[-1]).T)
    drhs = jnp.matmul(patches_t, g.reshape(-1, cout), precision=precision).reshape(rhs.shape)
    if lhs is None:  # stride 1: the turned kernel, offset by offset
        blocks = rhs.reshape(-1, cin, cout)
        dlhs = None
        for i, view in enumerate(shifted_views(g, ks, strides, _turned_padding(ks, padding))):
            term = jax.lax.dot_general(
                view, blocks[-1 - i], (((view.ndim - 1,), (1,)), ((), ())), precision=precision
            )
            dlhs = term if dlhs is None else dlhs + term
    else:
        _, input_vjp = jax.vjp(
            lambda x: _patches_times_kernel(im2col(x, ks, strides, padding), rhs, precision), lhs
        )
        (dlhs,) = input_vjp(g)
    return dlhs.astype(g.dtype), drhs.astype(rhs.dtype)


_im2col_conv.defvjp(_im2col_conv_fwd, _im2col_conv_bwd)


def conv_general_dilated(
    lhs,
    rhs,
    window_strides,
    padding,
    lhs_dilation=None,
    rhs_dilation=None,
    dimension_numbers=None,
    feature_group_count=1,
    batch_group_count=1,
    precision=None,
    preferred_element_type=None,
    *,
    matmul_weight_grad: bool = False,
    winograd: bool = False,
    **kwargs,
):
    """`lax.conv_general_dilated` with CPU fast paths for channel-last convolutions: im2col + matmul for
    small outputs; with `winograd`, 3x3 stride-1 2-D convolutions as `winograd.winograd_conv3x3`; with
    `matmul_weight_grad`, other 2-D weight gradients as matmuls (over kept patches where
    `keeps_patches`, else `conv_weight_gradient`)."""
    nsp = lhs.ndim - 2
    ones = (1,) * nsp
    simple = (
        nsp in _CHANNEL_LAST
        and rhs.ndim == lhs.ndim
        and feature_group_count == 1
        and batch_group_count == 1
        and (lhs_dilation is None or tuple(lhs_dilation) == ones)
        and (rhs_dilation is None or tuple(rhs_dilation) == ones)
        and not isinstance(padding, str)
        and dimension_numbers is not None
        and (tuple(dimension_numbers.lhs_spec), tuple(dimension_numbers.rhs_spec)) == _CHANNEL_LAST[nsp]
        and jax.default_backend() == "cpu"
    )
    if simple:
        ks, cin, cout = rhs.shape[:nsp], rhs.shape[-2], rhs.shape[-1]
        out = conv_out_shape(lhs.shape[1:-1], ks, window_strides, padding)
        if math.prod(out) <= IM2COL_MAX_POSITIONS[nsp]:
            if preferred_element_type is None:
                pads = tuple(tuple(int(p) for p in side) for side in padding)
                return _im2col_conv(lhs, rhs, tuple(int(s) for s in window_strides), pads, precision)
            return _patches_times_kernel(
                im2col(lhs, ks, window_strides, padding), rhs, precision, preferred_element_type
            )
        if (
            winograd
            and nsp == 2
            and tuple(ks) == (3, 3)
            and tuple(window_strides) == (1, 1)
            and preferred_element_type is None
            and all(0 <= p <= 2 for side in padding for p in side)
        ):
            pads = tuple(tuple(int(p) for p in side) for side in padding)
            return winograd_conv3x3(lhs, rhs, tile_size(cin, cout), pads)
        if matmul_weight_grad and nsp == 2 and preferred_element_type is None:
            return _conv_matmul_wgrad(
                lhs,
                rhs,
                tuple(window_strides),
                tuple(tuple(p) for p in padding),
                dimension_numbers,
                precision,
            )
    return jax.lax.conv_general_dilated(
        lhs,
        rhs,
        window_strides,
        padding,
        lhs_dilation,
        rhs_dilation,
        dimension_numbers,
        feature_group_count,
        batch_group_count,
        precision,
        preferred_element_type,
        **kwargs,
    )


# JAX differentiates a max pool through a variadic reduce-window that pairs every padded input with
# its index (four int32 iotas the size of the padded map) and a select-and-scatter: at 96x128 these
# were ~80 ms of an ACT step's traced op time on 2 cores, ten times the pool's forward. On CPU
# `max_pool` keeps XLA's forward and routes the gradient itself: for each window offset in row-major
# order, to the first input equal to the window's maximum (torch's choice among ties), added back
# through strided pads that XLA fuses into one loop.
def max_pool(
    x: jax.Array, window: tuple[int, ...], strides: tuple[int, ...], padding: tuple[tuple[int, int], ...]
) -> jax.Array:
    """Channel-last max pool over the spatial axes, padded with -inf (torch `max_pool{1,2}d`)."""
    if jax.default_backend() == "cpu":
        return _max_pool_first_max(x, tuple(window), tuple(strides), tuple(tuple(p) for p in padding))
    return _max_pool_forward(x, window, strides, padding)


def _max_pool_forward(x, window, strides, padding):
    return jax.lax.reduce_window(
        x,
        -jnp.inf,
        jax.lax.max,
        (1, *window, 1),
        (1, *strides, 1),
        ((0, 0), *padding, (0, 0)),
    )


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2, 3))
def _max_pool_first_max(x, window, strides, padding):
    return _max_pool_forward(x, window, strides, padding)


def _max_pool_fwd(x, window, strides, padding):
    y = _max_pool_forward(x, window, strides, padding)
    return y, (x, y)


def _max_pool_bwd(window, strides, padding, res, g):
    x, y = res
    views = shifted_views(x, window, strides, padding, pad_value=-jnp.inf)
    padded = [n + lo + hi for n, (lo, hi) in zip(x.shape[1:-1], padding, strict=True)]
    out = y.shape[1:-1]
    taken = jnp.zeros(y.shape, bool)
    dxp = jnp.zeros((x.shape[0], *padded, x.shape[-1]), g.dtype)
    for offs, view in zip(np.ndindex(*window), views, strict=True):
        hit = (view == y) & ~taken
        taken = taken | hit
        config = [(0, 0, 0)]
        for d, o in enumerate(offs):
            span = strides[d] * (out[d] - 1) + 1
            config.append((o, padded[d] - o - span, strides[d] - 1))
        config.append((0, 0, 0))
        dxp = dxp + jax.lax.pad(jnp.where(hit, g, 0).astype(g.dtype), jnp.zeros((), g.dtype), config)
    idx = tuple(slice(lo, lo + n) for n, (lo, _) in zip(x.shape[1:-1], padding, strict=True))
    return (dxp[(slice(None), *idx)],)


_max_pool_first_max.defvjp(_max_pool_fwd, _max_pool_bwd)


# one object per set of options, so that models built separately have equal graph definitions
_CONV_WITH_FAST_PATHS = {
    (mwg, wg): functools.partial(conv_general_dilated, matmul_weight_grad=mwg, winograd=wg)
    for mwg in (False, True)
    for wg in (False, True)
}


def torch_conv(
    in_features: int,
    out_features: int,
    kernel_size: int | tuple[int, ...],
    *,
    rngs: nnx.Rngs,
    stride: int = 1,
    padding: int = 0,
    use_bias: bool = True,
    ndim: int = 2,
    kernel_init: Callable | None = None,
    dtype: jnp.dtype | None = None,
    matmul_weight_grad: bool = False,
    winograd: bool = False,
) -> nnx.Conv:
    """`nn.Conv{1,2}d` with torch's symmetric integer padding (never "SAME") and torch's default init.

    On CPU, `matmul_weight_grad` takes the weight gradient as matmuls (see `conv_weight_gradient`) and
    `winograd` computes 3x3 stride-1 convolutions on maps larger than `IM2COL_MAX_POSITIONS` as
    `winograd.winograd_conv3x3`, forward and backward; both measured faster for ResNet trunks, opt-in
    per model."""
    ks = (kernel_size,) * ndim if isinstance(kernel_size, int) else tuple(kernel_size)
    fan_in = in_features * math.prod(ks)
    return nnx.Conv(
        in_features,
        out_features,
        ks,
        strides=stride,
        padding=tuple((padding, padding) for _ in ks),
        use_bias=use_bias,
        kernel_init=kernel_init or torch_kernel_init,
        bias_init=torch_bias_init(fan_in),
        dtype=dtype,
        conv_general_dilated=(
            _CONV_WITH_FAST_PATHS[matmul_weight_grad, winograd]
            if matmul_weight_grad or winograd
            else conv_general_dilated
        ),
        rngs=rngs,
    )


def torch_embed(num: int, dim: int, *, rngs: nnx.Rngs) -> nnx.Embed:
    """`nn.Embedding` (N(0, 1) init)."""
    return nnx.Embed(num, dim, embedding_init=nnx.initializers.normal(1.0), rngs=rngs)


def layer_norm(
    dim: int, *, rngs: nnx.Rngs, eps: float = 1e-5, dtype: jnp.dtype | None = None
) -> nnx.LayerNorm:
    """torch `nn.LayerNorm`: eps 1e-5 (flax defaults to 1e-6) and the two-pass variance."""
    return nnx.LayerNorm(dim, epsilon=eps, use_fast_variance=False, dtype=dtype, rngs=rngs)


# ---------------------------------------------------------------------------------------------------
# randomness
class RngSeq:
    """Hands out fresh keys from one key at trace time; `None` means deterministic (no dropout).

    The given key (any implementation) seeds an `unsafe_rbg` stream: XLA's RngBitGenerator, one op
    per mask (`dropout_keep_mask` asks it for 16 bits per element). Threefry masks are statistically
    no better for dropout but compile ~3x slower on CPU (each of the ~20 dropout sites of a small ACT
    unrolls its own threefry rounds).
    """

    def __init__(self, key: jax.Array | None):
        if key is not None:
            key = jax.random.wrap_key_data(jax.random.bits(key, (4,), jnp.uint32), impl="unsafe_rbg")
        self._key = key

    @property
    def active(self) -> bool:
        return self._key is not None

    def next(self) -> jax.Array | None:
        if self._key is None:
            return None
        self._key, sub = jax.random.split(self._key)
        return sub


# Dropout draws 16 random bits per element, two from each 32-bit word: on CPU, XLA's RngBitGenerator
# is the cost (an 8x8x602x602 attention mask of LeRobot's default ACT at 480x640: 352 ms with 32 bits
# per element on 2 cores, 161 ms with 16). The drop rate is rounded to a multiple of 1/65536
# (0.1 -> 0.100006); kept values are scaled by 1/(1 - rate), as torch does.
DROPOUT_BITS = 16


def dropout_keep_mask(key: jax.Array, rate: float, shape: Sequence[int]) -> jax.Array:
    """True where an element is kept: a 16-bit uniform draw at or above `rate` * 2**16."""
    n = math.prod(shape)
    words = jax.random.bits(key, ((n + 1) // 2,), jnp.uint32)
    halves = jax.lax.bitcast_convert_type(words, jnp.uint16).reshape(-1)[:n].reshape(shape)
    threshold = round(rate * (1 << DROPOUT_BITS))
    return halves.astype(jnp.uint32) >= jnp.uint32(threshold)


def dropout(x: jnp.ndarray, rate: float, rng: RngSeq | None) -> jnp.ndarray:
    """Inverted dropout as torch computes it (x * mask / (1 - p)); identity without an active rng."""
    if rate <= 0.0 or rng is None or not rng.active:
        return x
    if rate >= 1.0:
        return jnp.zeros_like(x)
    keep = dropout_keep_mask(rng.next(), rate, x.shape)
    return jnp.where(keep, x / (1.0 - rate), jnp.zeros_like(x))


def activation(name: str) -> Callable[[jnp.ndarray], jnp.ndarray]:
    """ACT's feed-forward activations: torch `F.relu` / `F.gelu` (exact erf, not the tanh form)."""
    if name == "relu":
        return jax.nn.relu
    if name == "gelu":
        return lambda x: jax.nn.gelu(x, approximate=False)
    if name == "glu":
        raise ValueError(
            "feedforward_activation='glu': LeRobot accepts it but its layers cannot run (F.glu halves "
            "dim_feedforward before linear2 expects it), so no checkpoint can use it; choose relu or gelu"
        )
    raise ValueError(f"feedforward_activation must be 'relu' or 'gelu', got {name!r}")


# ---------------------------------------------------------------------------------------------------
# attention
class MultiheadAttention(nnx.Module):
    """torch `nn.MultiheadAttention` (batch-first here), state-dict compatible with its packed in_proj.

    Numerics follow torch's `need_weights=True` path: project q/k/v (with bias), scale q by
    head_dim**-0.5, softmax(q k^T) in float32, dropout on the attention weights, weights @ v, out_proj.
    Init matches torch: xavier_uniform over the packed (3D, D) in_proj weight, zero in_proj and out_proj
    biases, out_proj weight torch-default (or xavier_uniform when `xavier`, as ACT re-inits it).
    """

    def __init__(
        self,
        dim: int,
        n_heads: int,
        *,
        dropout_rate: float = 0.0,
        xavier: bool = False,
        dtype: jnp.dtype | None = None,
        rngs: nnx.Rngs,
    ):
        if dim % n_heads:
            raise ValueError(f"dim_model ({dim}) must be divisible by n_heads ({n_heads})")
        self.dim, self.n_heads, self.dropout_rate, self.dtype = dim, n_heads, float(dropout_rate), dtype
        bound = math.sqrt(6.0 / (dim + 3 * dim))  # xavier over torch's packed (3*dim, dim) in_proj_weight
        # in_kernel[i] is the (in, out) kernel of q (0), k (1), v (2).
        self.in_kernel = nnx.Param(uniform_init(bound)(rngs.params(), (3, dim, dim)))
        self.in_bias = nnx.Param(jnp.zeros((3, dim), jnp.float32))
        self.out_proj = nnx.Linear(
            dim,
            dim,
            kernel_init=xavier_uniform if xavier else torch_kernel_init,
            bias_init=nnx.initializers.zeros,
            dtype=dtype,
            rngs=rngs,
        )

    def _project(self, x: jnp.ndarray, i: int) -> jnp.ndarray:
        w = self.in_kernel[i]
        b = self.in_bias[i]
        if self.dtype is not None:
            x, w, b = x.astype(self.dtype), w.astype(self.dtype), b.astype(self.dtype)
        y = x @ w + b
        return y.reshape(*y.shape[:-1], self.n_heads, self.dim // self.n_heads)

    def __call__(
        self,
        query: jnp.ndarray,
        key: jnp.ndarray,
        value: jnp.ndarray,
        *,
        key_padding_mask: jnp.ndarray | None = None,
        rng: RngSeq | None = None,
    ) -> jnp.ndarray:
        """query (B, Sq, D), key/value (B, Sk, D); key_padding_mask (B, Sk) True = ignore that key."""
        head_dim = self.dim // self.n_heads
        q = self._project(query, 0) * (head_dim**-0.5)
        k = self._project(key, 1)
        v = self._project(value, 2)
        logits = jnp.einsum("bqhd,bkhd->bhqk", q, k).astype(jnp.float32)
        if key_padding_mask is not None:
            logits = jnp.where(key_padding_mask[:, None, None, :], jnp.finfo(jnp.float32).min, logits)
        weights = jax.nn.softmax(logits, axis=-1)
        weights = dropout(weights, self.dropout_rate, rng).astype(v.dtype)
        out = jnp.einsum("bhqk,bkhd->bqhd", weights, v)
        out = out.reshape(*out.shape[:-2], self.dim)
        return self.out_proj(out)

    def torch_leaves(self) -> dict[str, TorchLeaf]:
        d = self.dim
        kernel, bias = self.in_kernel, self.in_bias

        def get_w():
            return np.ascontiguousarray(np.asarray(kernel.get_value()).transpose(0, 2, 1).reshape(3 * d, d))

        def set_w(x):
            kernel.set_value(jnp.asarray(x, jnp.float32).reshape(3, d, d).transpose(0, 2, 1))

        def get_b():
            return np.asarray(bias.get_value()).reshape(3 * d)

        def set_b(x):
            bias.set_value(jnp.asarray(x, jnp.float32).reshape(3, d))

        leaves = {
            "in_proj_weight": TorchLeaf((3 * d, d), get_w, set_w),
            "in_proj_bias": TorchLeaf((3 * d,), get_b, set_b),
        }
        leaves.update({f"out_proj.{k}": v for k, v in linear_leaves(self.out_proj).items()})
        return leaves


__all__ = [
    "Buffer",
    "MultiheadAttention",
    "NormStat",
    "RngSeq",
    "activation",
    "dropout",
    "layer_norm",
    "torch_bias_init",
    "torch_conv",
    "torch_embed",
    "torch_kernel_init",
    "torch_linear",
    "uniform_init",
    "variable_leaf",
    "xavier_uniform",
]

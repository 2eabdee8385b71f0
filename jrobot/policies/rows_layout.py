"""Matmul kernels laid out as rows for batch-1 inference on a CPU, done once when a bundle is exported.

A layer multiplies its inputs by a kernel stored (in, out). When a call has only a few rows (a
Diffusion U-Net step at batch 1 multiplies 1-16 rows by ~1 GB of kernels), the product is bound by
reading the kernel, and XLA's CPU dot reads a kernel stored (out, in) about twice as fast as one
stored (in, out) (measured on a 2-core EPYC: 11 against 5 GB/s at 4 rows, 1.4-2x up to 32 rows; no
gain from 64 rows on). Storing transposed arrays and transposing them back where the exported
function takes its arguments does not get there: the compiled sampler materialized the kernels in
the (in, out) layout again (kernel-sized copies; 2.5 s per DDIM-10 chunk instead of 1.3 s). So export
swaps such layers for
these, which hold the same numbers as (out, in) `kernel_rows` and contract them on their second axis;
training keeps the (in, out) layout of LeRobot's checkpoints and the optimizer's state.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jrobot.policies.base import swap_layers
from jrobot.policies.layers import im2col


def as_rows(kernel: jax.Array) -> jax.Array:
    """(..., in, out) -> its (out, prod(...) * in) rows, contiguous."""
    k = np.asarray(kernel)
    return jnp.asarray(np.ascontiguousarray(k.reshape(-1, k.shape[-1]).T))


def _contract_rows(x: jax.Array, rows: jax.Array) -> jax.Array:
    return jax.lax.dot_general(x, rows, (((x.ndim - 1,), (1,)), ((), ())))


class RowsLinear(nnx.Module):
    """`nnx.Linear`'s computation with its kernel held as (out, in) rows."""

    def __init__(self, linear: nnx.Linear):
        if (
            linear.dtype is not None
            or linear.precision is not None
            or linear.dot_general is not jax.lax.dot_general
        ):
            raise ValueError(
                "only a plain nnx.Linear (no dtype, precision or dot_general override) is laid out as rows"
            )
        self.kernel_rows = nnx.Param(as_rows(linear.kernel[...]))
        self.bias = None if linear.bias is None else nnx.Param(jnp.asarray(linear.bias[...]))

    def __call__(self, x: jax.Array) -> jax.Array:
        y = _contract_rows(x, self.kernel_rows[...])
        return y if self.bias is None else y + self.bias[...]


class RowsConv(nnx.Module):
    """A channel-last `nnx.Conv` (explicit padding, no groups or dilation) as patches @ (out, K*in) rows."""

    def __init__(self, conv: nnx.Conv):
        nsp = len(conv.kernel_size)
        ones = (1,) * nsp
        if (
            conv.feature_group_count != 1
            or tuple(np.broadcast_to(conv.input_dilation or 1, nsp)) != ones
            or tuple(np.broadcast_to(conv.kernel_dilation or 1, nsp)) != ones
            or isinstance(conv.padding, str)
            or conv.mask is not None
            or conv.dtype is not None
            or conv.precision is not None
        ):
            raise ValueError(
                "only a plain nnx.Conv (explicit padding; no groups, dilation, mask, dtype or precision) "
                "is laid out as rows"
            )
        self.kernel_size = tuple(int(k) for k in conv.kernel_size)
        self.strides = tuple(int(s) for s in np.broadcast_to(conv.strides or 1, nsp))
        self.padding = tuple((int(lo), int(hi)) for lo, hi in conv.padding)
        self.kernel_rows = nnx.Param(as_rows(conv.kernel[...]))
        self.bias = None if conv.bias is None else nnx.Param(jnp.asarray(conv.bias[...]))

    def __call__(self, x: jax.Array) -> jax.Array:
        y = _contract_rows(im2col(x, self.kernel_size, self.strides, self.padding), self.kernel_rows[...])
        return y if self.bias is None else y + self.bias[...]


def _twin(child: object) -> nnx.Module | None:
    if type(child) is nnx.Linear:
        return RowsLinear(child)
    if type(child) is nnx.Conv:
        return RowsConv(child)
    return None


def lay_out_rows(module: nnx.Module) -> int:
    """Swap, in place, every `nnx.Linear` and `nnx.Conv` under `module` for its rows twin; returns how many."""
    return swap_layers(module, _twin)

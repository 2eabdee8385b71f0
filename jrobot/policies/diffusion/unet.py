"""LeRobot's 1-D conditional U-Net with FiLM (Diffusion Policy), in Flax NNX, channels-last.

Numerics follow `DiffusionConditionalUnet1d` of LeRobot 0.4.4 exactly:
- step embedding: sin block then cos block (not interleaved), `f_k = exp(-k ln(1e4)/(half-1))`, the raw
  integer timestep as the position, then Linear(d, 4d) -> Mish -> Linear(4d, d);
- FiLM conditioning vector = [step embedding, global_cond] (step embedding first);
- residual block: Conv1dBlock -> `scale * h + bias` (plain scale, not 1+scale) -> Conv1dBlock, plus a 1x1
  residual conv when the width changes;
- Conv1dBlock = Conv1d(k, padding k//2) -> GroupNorm(n_groups, eps 1e-5) -> Mish; the block in
  `final_conv` always uses 8 groups (hard-coded in LeRobot);
- every down stage but the last halves the length (Conv1d k3 s2 p1); *every* up stage doubles it
  (ConvTranspose1d k4 s2 p1) and takes `concat([x, skip])` with x first.
Tensors are (B, T, C) here; LeRobot's are (B, C, T) inside the network but (B, T, C) at the interface.
Initializers follow torch's defaults (uniform +-1/sqrt(fan_in) for weights and biases), so training
from scratch starts like LeRobot does.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jrobot.policies.layers import torch_bias_init, torch_conv, torch_kernel_init, torch_linear
from jrobot.policies.lerobot.statedict import (
    TorchLeaf,
    collect_leaves,
    conv_leaves,
    linear_leaves,
    norm_leaves,
)

FINAL_CONV_GROUPS = 8  # DiffusionConv1dBlock's default n_groups, used by LeRobot's final_conv


def torch_conv1d(
    in_channels: int,
    out_channels: int,
    kernel_size: int,
    stride: int = 1,
    padding: int = 0,
    *,
    rngs: nnx.Rngs,
) -> nnx.Conv:
    """torch.nn.Conv1d: explicit symmetric padding, torch's default init."""
    return torch_conv(
        in_channels, out_channels, kernel_size, stride=stride, padding=padding, ndim=1, rngs=rngs
    )


def torch_conv_transpose1d(channels: int, *, rngs: nnx.Rngs) -> nnx.ConvTranspose:
    """torch.nn.ConvTranspose1d(C, C, 4, 2, 1): kernel (k, O, I) = torch weight (I, O, k).transpose(2, 1, 0)."""
    return nnx.ConvTranspose(
        channels,
        channels,
        (4,),
        strides=(2,),
        padding=((2, 2),),  # k - 1 - torch padding
        transpose_kernel=True,
        kernel_init=torch_kernel_init,  # fan_in = O * k on the (k, O, I) kernel, as torch computes it
        bias_init=torch_bias_init(channels * 4),
        rngs=rngs,
    )


def upsample_x2(conv: nnx.ConvTranspose, x: jax.Array) -> jax.Array:
    """`torch_conv_transpose1d`'s layer applied to (B, T, C) -> (B, 2T, C), as one matmul + overlap-add.

    Same sums as `conv(x)`, but XLA's transposed convolution flips and transposes the weight-sized
    kernel on every call (17 ms of a 110 ms U-Net call at 1024 channels on a 2-core CPU). Here the
    kernel is read in place: with kernel[k, o, i] = torch weight[i, o, k], torch's output position
    s = 2t - 1 + k gets x[t] @ kernel[k].T, so even outputs 2u take taps k=1 (t=u) and k=3 (t=u-1),
    odd outputs 2u+1 take k=2 (t=u) and k=0 (t=u+1).
    """
    kernel = conv.kernel[...]  # promoted with x as nnx.ConvTranspose(dtype=None) does
    b, t, c_in = x.shape
    # kernel (4, O, I) as a row-major (4*O, I) left operand: a plain matmul over I with no copy of it
    z = (kernel.reshape(-1, c_in) @ x.reshape(b * t, c_in).T).T.reshape(b, t, 4, -1)  # (B, T, 4, O)
    zero = jnp.zeros_like(z[:, :1, 0])
    even = z[:, :, 1] + jnp.concatenate([zero, z[:, :-1, 3]], axis=1)
    odd = z[:, :, 2] + jnp.concatenate([z[:, 1:, 0], zero], axis=1)
    y = jnp.stack([even, odd], axis=2).reshape(b, 2 * t, -1)
    return y if conv.bias is None else y + conv.bias[...]


def mish(x: jax.Array) -> jax.Array:
    """torch.nn.Mish: x * tanh(softplus(x))."""
    return x * jnp.tanh(jax.nn.softplus(x))


def sinusoidal_step_embedding(t: jax.Array, dim: int) -> jax.Array:
    """`DiffusionSinusoidalPosEmb(dim)(t)`: [sin(t f), cos(t f)] for integer timesteps t (B,) -> (B, dim).

    The frequencies are computed on the host in float32 like torch (`exp(arange(half) * -c)`).
    """
    half = dim // 2
    if half < 2:
        raise ValueError(f"diffusion_step_embed_dim must be >= 4, got {dim}")
    c = np.float32(math.log(10000) / (half - 1))
    freqs = np.exp(np.arange(half, dtype=np.float32) * -c).astype(np.float32)
    arg = jnp.asarray(t).astype(jnp.float32)[:, None] * jnp.asarray(freqs)[None, :]
    return jnp.concatenate([jnp.sin(arg), jnp.cos(arg)], axis=-1)


class Conv1dBlock(nnx.Module):
    """Conv1d(k, padding k//2) -> GroupNorm(n_groups, eps 1e-5) -> Mish on (B, T, C)."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int, n_groups: int, *, rngs: nnx.Rngs
    ):
        if out_channels % n_groups:
            raise ValueError(f"GroupNorm needs channels ({out_channels}) divisible by n_groups ({n_groups})")
        self.conv = torch_conv1d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, rngs=rngs)
        self.norm = nnx.GroupNorm(
            out_channels, num_groups=n_groups, epsilon=1e-5, use_fast_variance=False, rngs=rngs
        )

    def __call__(self, x: jax.Array) -> jax.Array:
        return mish(self.norm(self.conv(x)))

    def torch_leaves(self) -> dict[str, TorchLeaf]:
        """LeRobot keys: `block.0` (Conv1d), `block.1` (GroupNorm)."""
        out = {f"block.0.{k}": v for k, v in conv_leaves(self.conv).items()}
        out.update({f"block.1.{k}": v for k, v in norm_leaves(self.norm).items()})
        return out


class ConditionalResidualBlock1d(nnx.Module):
    """ResNet-style block with FiLM: `conv2(scale * conv1(x) + bias) + residual(x)`."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        cond_dim: int,
        kernel_size: int,
        n_groups: int,
        use_film_scale_modulation: bool,
        *,
        rngs: nnx.Rngs,
    ):
        self.out_channels = out_channels
        self.use_film_scale_modulation = use_film_scale_modulation
        self.conv1 = Conv1dBlock(in_channels, out_channels, kernel_size, n_groups, rngs=rngs)
        cond_channels = 2 * out_channels if use_film_scale_modulation else out_channels
        self.cond_encoder = torch_linear(cond_dim, cond_channels, rngs=rngs)  # LeRobot: cond_encoder.1
        self.conv2 = Conv1dBlock(out_channels, out_channels, kernel_size, n_groups, rngs=rngs)
        self.residual_conv = (
            torch_conv1d(in_channels, out_channels, 1, rngs=rngs) if in_channels != out_channels else None
        )

    def __call__(self, x: jax.Array, cond: jax.Array) -> jax.Array:
        out = self.conv1(x)
        embed = self.cond_encoder(mish(cond))[:, None, :]  # (B, 1, cond_channels)
        if self.use_film_scale_modulation:
            out = embed[..., : self.out_channels] * out + embed[..., self.out_channels :]
        else:
            out = out + embed
        out = self.conv2(out)
        residual = x if self.residual_conv is None else self.residual_conv(x)
        return out + residual

    def torch_leaves(self) -> dict[str, TorchLeaf]:
        """LeRobot keys: conv1.*, cond_encoder.1.* (index 0 is the Mish), conv2.*, residual_conv.*."""
        out = collect_leaves(self.conv1, "conv1.")
        out.update({f"cond_encoder.1.{k}": v for k, v in linear_leaves(self.cond_encoder).items()})
        out.update(collect_leaves(self.conv2, "conv2."))
        if self.residual_conv is not None:
            out.update({f"residual_conv.{k}": v for k, v in conv_leaves(self.residual_conv).items()})
        return out


class UnetStage(nnx.Module):
    """Two residual blocks then an optional resampling layer (LeRobot's `[res, res, down/up]` list)."""

    def __init__(
        self,
        block1: ConditionalResidualBlock1d,
        block2: ConditionalResidualBlock1d,
        resample: nnx.Conv | nnx.ConvTranspose | None,
    ):
        self.block1 = block1
        self.block2 = block2
        self.resample = resample

    def blocks(self, x: jax.Array, cond: jax.Array) -> jax.Array:
        return self.block2(self.block1(x, cond), cond)

    def resample_or_identity(self, x: jax.Array) -> jax.Array:
        if self.resample is None:
            return x
        if isinstance(self.resample, nnx.ConvTranspose):
            return upsample_x2(self.resample, x)
        return self.resample(x)

    def torch_leaves(self) -> dict[str, TorchLeaf]:
        """LeRobot keys: `0.*`, `1.*` (residual blocks), `2.*` (down/up-sampling conv, absent if Identity)."""
        out = {**collect_leaves(self.block1, "0."), **collect_leaves(self.block2, "1.")}
        if self.resample is not None:
            out.update({f"2.{k}": v for k, v in conv_leaves(self.resample).items()})
        return out


class ConditionalUnet1d(nnx.Module):
    """`DiffusionConditionalUnet1d`: denoiser over (B, T, action_dim) conditioned on step and global_cond."""

    def __init__(
        self,
        action_dim: int,
        global_cond_dim: int,
        *,
        down_dims: Sequence[int] = (512, 1024, 2048),
        kernel_size: int = 5,
        n_groups: int = 8,
        diffusion_step_embed_dim: int = 128,
        use_film_scale_modulation: bool = True,
        rngs: nnx.Rngs,
    ):
        down_dims = tuple(int(d) for d in down_dims)
        if not down_dims:
            raise ValueError("down_dims must name at least one U-Net width")
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd (padding k//2 keeps the length), got {kernel_size}")
        d = int(diffusion_step_embed_dim)
        self.step_embed_dim = d
        self.step_fc1 = torch_linear(d, 4 * d, rngs=rngs)  # LeRobot: diffusion_step_encoder.1
        self.step_fc2 = torch_linear(4 * d, d, rngs=rngs)  # LeRobot: diffusion_step_encoder.3
        cond_dim = d + int(global_cond_dim)
        self.global_cond_dim = int(global_cond_dim)

        def res(cin: int, cout: int) -> ConditionalResidualBlock1d:
            return ConditionalResidualBlock1d(
                cin, cout, cond_dim, kernel_size, n_groups, use_film_scale_modulation, rngs=rngs
            )

        in_out = [(action_dim, down_dims[0]), *itertools.pairwise(down_dims)]
        down = []
        for i, (cin, cout) in enumerate(in_out):
            is_last = i == len(in_out) - 1
            resample = None if is_last else torch_conv1d(cout, cout, 3, 2, 1, rngs=rngs)
            down.append(UnetStage(res(cin, cout), res(cout, cout), resample))
        self.down_modules = nnx.List(down)
        self.mid_modules = nnx.List([res(down_dims[-1], down_dims[-1]), res(down_dims[-1], down_dims[-1])])
        up = []
        for cout, cin in reversed(in_out[1:]):
            # LeRobot's `is_last` test can never be true here, so every up stage upsamples.
            up.append(UnetStage(res(2 * cin, cout), res(cout, cout), torch_conv_transpose1d(cout, rngs=rngs)))
        self.up_modules = nnx.List(up)
        self.final_block = Conv1dBlock(down_dims[0], down_dims[0], kernel_size, FINAL_CONV_GROUPS, rngs=rngs)
        self.final_conv = torch_conv1d(down_dims[0], action_dim, 1, rngs=rngs)

    def step_embedding(self, timestep: jax.Array) -> jax.Array:
        emb = sinusoidal_step_embedding(timestep, self.step_embed_dim)
        return self.step_fc2(mish(self.step_fc1(emb)))

    def __call__(self, x: jax.Array, timestep: jax.Array, global_cond: jax.Array | None = None) -> jax.Array:
        """x (B, T, A), integer timestep (B,), global_cond (B, global_cond_dim) -> (B, T, A)."""
        cond = self.step_embedding(timestep)
        if global_cond is not None:
            cond = jnp.concatenate([cond, global_cond.astype(cond.dtype)], axis=-1)
        elif self.global_cond_dim:
            raise ValueError(
                f"this U-Net was built for a global_cond of width {self.global_cond_dim}; got None"
            )
        skips = []
        for stage in self.down_modules:
            x = stage.blocks(x, cond)
            skips.append(x)
            x = stage.resample_or_identity(x)
        for block in self.mid_modules:
            x = block(x, cond)
        for stage in self.up_modules:
            x = jnp.concatenate([x, skips.pop()], axis=-1)
            x = stage.resample_or_identity(stage.blocks(x, cond))
        return self.final_conv(self.final_block(x))

    def torch_leaves(self) -> dict[str, TorchLeaf]:
        """LeRobot's `diffusion.unet.*` key layout (relative)."""
        out = {f"diffusion_step_encoder.1.{k}": v for k, v in linear_leaves(self.step_fc1).items()}
        out.update({f"diffusion_step_encoder.3.{k}": v for k, v in linear_leaves(self.step_fc2).items()})
        for name in ("down_modules", "mid_modules", "up_modules"):
            for i, m in enumerate(getattr(self, name)):
                out.update(collect_leaves(m, f"{name}.{i}."))
        out.update(collect_leaves(self.final_block, "final_conv.0."))
        out.update({f"final_conv.1.{k}": v for k, v in conv_leaves(self.final_conv).items()})
        return out

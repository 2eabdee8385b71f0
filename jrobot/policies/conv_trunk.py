"""A small convolutional trunk for policies trained from scratch on a CPU, and DrQ's random shift.

LeRobot's policies see through an ImageNet ResNet18: 11M parameters and ~0.6 GFLOP per 96x128 image,
which a 2-core CPU cannot train from scratch in the minutes a demo has, and whose pretrained weights
cannot be downloaded everywhere. On small images of a simple scene, a few 3x3 convolutions with
GroupNorm learn what a pick-and-place policy needs (where the object and the gripper are) in a few
thousand steps, especially when the feature map is reduced to spatial soft-argmax keypoints
(`jrobot.policies.spatial_softmax`, as Diffusion Policy does) and the images are randomly shifted
by a few pixels during training (DrQ: Kostrikov et al., 2020; Yarats et al., 2021).

Each stage is `conv3x3(stride) -> GroupNorm -> ReLU` with torch's symmetric padding, so the output of a
stride-2 stage on an (h, w) input is (ceil(h / 2), ceil(w / 2)), as in the ResNet trunks.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from jrobot.policies.layers import torch_conv

_conv_init = nnx.initializers.variance_scaling(2.0, "fan_out", "normal")


def group_count(channels: int) -> int:
    """GroupNorm groups: 8 channels per group (at least one group)."""
    return max(1, channels // 8)


def validate_trunk(channels: Sequence[int], strides: Sequence[int], where: str) -> None:
    if not channels:
        raise ValueError(f"{where}: cnn_channels must list at least one stage")
    if len(channels) != len(strides):
        raise ValueError(
            f"{where}: cnn_channels ({len(channels)} stages) and cnn_strides ({len(strides)}) differ in length"
        )
    if any(int(c) < 1 for c in channels):
        raise ValueError(f"{where}: cnn_channels must be positive, got {tuple(channels)}")
    if any(int(s) not in (1, 2) for s in strides):
        raise ValueError(f"{where}: cnn_strides must be 1 or 2, got {tuple(strides)}")


def trunk_feature_hw(height: int, width: int, strides: Sequence[int]) -> tuple[int, int]:
    """Feature-map size of the trunk for an (height, width) image."""
    for s in strides:
        height, width = (height - 1) // s + 1, (width - 1) // s + 1
    return height, width


class ConvTrunk(nnx.Module):
    """(B, H, W, 3) normalized images -> (B, h, w, channels[-1]) features."""

    def __init__(self, channels: Sequence[int], strides: Sequence[int], *, rngs: nnx.Rngs, dtype: Any = None):
        validate_trunk(channels, strides, "ConvTrunk")
        self.channels, self.strides, self.dtype = tuple(map(int, channels)), tuple(map(int, strides)), dtype
        convs, norms = [], []
        in_ch = 3
        for ch, s in zip(self.channels, self.strides):
            convs.append(
                torch_conv(
                    in_ch,
                    ch,
                    3,
                    stride=s,
                    padding=1,
                    use_bias=False,
                    kernel_init=_conv_init,
                    dtype=dtype,
                    rngs=rngs,
                )
            )
            norms.append(nnx.GroupNorm(ch, num_groups=group_count(ch), epsilon=1e-5, dtype=dtype, rngs=rngs))
            in_ch = ch
        self.convs, self.norms = nnx.List(convs), nnx.List(norms)

    @property
    def out_channels(self) -> int:
        return self.channels[-1]

    def feature_hw(self, height: int, width: int) -> tuple[int, int]:
        return trunk_feature_hw(height, width, self.strides)

    def __call__(
        self,
        x: jnp.ndarray,
        *,
        train: bool = False,
        modulation: Sequence[tuple[jnp.ndarray, jnp.ndarray]] | None = None,
    ) -> jnp.ndarray:
        """`modulation`: FiLM (Perez et al., 2018) per stage, a (scale, shift) pair of (B, channels) applied
        as `x * (1 + scale) + shift` after the stage's GroupNorm and before its ReLU."""
        del train  # GroupNorm has no running statistics
        if modulation is not None and len(modulation) != len(self.convs):
            raise ValueError(f"ConvTrunk has {len(self.convs)} stages, got {len(modulation)} FiLM pairs")
        if x.ndim != 4 or x.shape[-1] != 3:
            raise ValueError(
                f"ConvTrunk expects (B, H, W, 3) channel-last images, got shape {tuple(x.shape)}"
            )
        if self.dtype is not None:
            x = x.astype(self.dtype)
        for i, (conv, norm) in enumerate(zip(self.convs, self.norms)):
            x = norm(conv(x))
            if modulation is not None:
                scale, shift = (m[:, None, None, :].astype(x.dtype) for m in modulation[i])
                x = x * (1 + scale) + shift
            x = jax.nn.relu(x)
        return x


def random_shift(images: jnp.ndarray, pad: int, rng: jax.Array) -> jnp.ndarray:
    """DrQ's augmentation: pad each (B, H, W, C) image by `pad` edge pixels, crop back at a random offset.

    Every image of the batch gets its own offset in [0, 2 * pad] along each axis (integer shifts, as DrQ's
    original; the sub-pixel bilinear variant of DrQ-v2 buys nothing at these resolutions).
    """
    if pad <= 0:
        return images
    b, h, w, c = images.shape
    padded = jnp.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="edge")
    offsets = jax.random.randint(rng, (b, 2), 0, 2 * pad + 1)

    def crop(img: jnp.ndarray, off: jnp.ndarray) -> jnp.ndarray:
        return jax.lax.dynamic_slice(img, (off[0], off[1], 0), (h, w, c))

    return jax.vmap(crop)(padded, offsets)

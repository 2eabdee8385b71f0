"""Camera images as keypoint tokens: a small conv trunk, spatial soft-argmax, one token per keypoint.

Why: a VLA must find the object its instruction names. SmolVLA finds it with SmolVLM2's pretrained
SigLIP tower; trained from scratch on a 2-core CPU, the same ViT at a CPU's width does not learn in a
demo's minutes to locate a cube a few pixels wide among others (2% success after 20 minutes,
`benchmarks/README.md`). The ACT demo's encoder, a few convolutions reduced to spatial soft-argmax
keypoints (`jrobot.policies.conv_trunk`, `jrobot.policies.spatial_softmax`), locates its cube within
a thousand steps. For a VLA the instruction has to select one of several objects, so each keypoint is
its own token rather than one vector per camera: its (x, y), the trunk's features averaged under its
attention map (what it found there, e.g. the colour), projected to the language model's width, plus a
learned embedding of which keypoint it is. A keypoint channel that tracks red things then becomes a
token the instruction's "red" can attend to.

Measured on the VLA demo (`benchmarks/README.md`, demo_recipes.py), it did not lift success: there the
limit turned out to be the flow-matching action head's precision at CPU size, not the vision.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from jrobot.policies.conv_trunk import ConvTrunk
from jrobot.policies.layers import torch_bias_init, torch_kernel_init
from jrobot.policies.spatial_softmax import SpatialSoftmax


class KeypointTokens(nnx.Module):
    """(B, H, W, 3) images in [-1, 1] -> (B, num_keypoints, width) tokens."""

    def __init__(
        self,
        image_hw: tuple[int, int],
        channels: Sequence[int],
        strides: Sequence[int],
        num_keypoints: int,
        width: int,
        *,
        rngs: nnx.Rngs,
        embedding_std: float = 0.3,
    ):
        self.image_hw = (int(image_hw[0]), int(image_hw[1]))
        self.trunk = ConvTrunk(channels, strides, rngs=rngs)
        c = self.trunk.out_channels
        self.pool = SpatialSoftmax(c, self.trunk.feature_hw(*self.image_hw), int(num_keypoints), rngs=rngs)
        self.proj = nnx.Linear(
            2 + c, width, kernel_init=torch_kernel_init, bias_init=torch_bias_init(2 + c), rngs=rngs
        )
        self.keypoint_embedding = nnx.Param(
            nnx.initializers.normal(embedding_std)(rngs.params(), (int(num_keypoints), width), jnp.float32)
        )

    def __call__(self, images: jax.Array) -> jax.Array:
        if images.shape[1:3] != self.image_hw:
            raise ValueError(
                f"the keypoint encoder was built for {self.image_hw[0]}x{self.image_hw[1]} images, got "
                f"{images.shape[1]}x{images.shape[2]} (resize_imgs_with_padding or the cameras' size changed)"
            )
        features = self.trunk(images.astype(jnp.float32))
        n, h, w, c = features.shape
        attention, xy = self.pool.attend(features)
        found = jnp.einsum("nkp,npc->nkc", attention, features.reshape(n, h * w, c))
        return self.proj(jnp.concatenate([xy, found], axis=-1)) + self.keypoint_embedding[...][None]


def image_hw_of(shapes: dict[str, Any], resize_wh: tuple[int, int] | None, where: str) -> tuple[int, int]:
    """The (H, W) every camera reaches the encoder at: `resize_wh` (width, height) if set, else the
    cameras' own size, which must then be the same for all (one trunk and one keypoint grid serve all)."""
    if resize_wh is not None:
        return int(resize_wh[1]), int(resize_wh[0])
    sizes = {k: (int(s[-2]), int(s[-1])) for k, s in shapes.items()}
    if len(set(sizes.values())) != 1:
        raise ValueError(
            f"{where}: the cameras differ in size {sizes}; set resize_imgs_with_padding so one keypoint "
            "encoder reads them all"
        )
    return next(iter(sizes.values()))

"""Spatial soft-argmax keypoints (LeRobot's `SpatialSoftmax`, a port of robomimic's without temperature).

A 1x1 conv maps the (h, w, C) feature map to K keypoint channels; each channel is softmaxed over its
h*w positions and the keypoint is the expected (x, y) under that distribution, on a grid spanning
[-1, 1] in both directions. The grid is built like LeRobot's buffer (numpy float64 meshgrid, then
float32), flattened row-major with column 0 = x (varying along the width) and column 1 = y. There is
no temperature: robomimic's learnable one was never ported to LeRobot.

LeRobot saves the grid in its state_dict (`pool.pos_grid`). Here it is a constant derived from the
feature-map size given at construction; the state-dict leaf writes it out, and loading checks that a
checkpoint's grid equals it (a mismatch means config.json's image/crop size disagrees with the weights).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jrobot.policies.layers import torch_conv
from jrobot.policies.lerobot.statedict import TorchLeaf, conv_leaves


def keypoint_grid(height: int, width: int) -> np.ndarray:
    """(h*w, 2) float32 grid of (x, y) coordinates in [-1, 1], row-major over (h, w)."""
    pos_x, pos_y = np.meshgrid(np.linspace(-1.0, 1.0, width), np.linspace(-1.0, 1.0, height))
    grid = np.concatenate([pos_x.reshape(height * width, 1), pos_y.reshape(height * width, 1)], axis=1)
    return grid.astype(np.float32)


class SpatialSoftmax(nnx.Module):
    """(N, h, w, C) feature maps -> (N, 2K) keypoints ordered [k0x, k0y, k1x, k1y, ...]."""

    def __init__(
        self, in_channels: int, feature_hw: tuple[int, int], num_keypoints: int | None, *, rngs: nnx.Rngs
    ):
        self.feature_hw = (int(feature_hw[0]), int(feature_hw[1]))
        self.num_keypoints = in_channels if num_keypoints is None else int(num_keypoints)
        self.nets = (
            torch_conv(in_channels, self.num_keypoints, 1, rngs=rngs) if num_keypoints is not None else None
        )

    def __call__(self, features: jax.Array) -> jax.Array:
        _, expected_xy = self.attend(features)
        return expected_xy.reshape(expected_xy.shape[0], -1)

    def attend(self, features: jax.Array) -> tuple[jax.Array, jax.Array]:
        """(attention (N, K, h*w) over row-major positions, keypoints (N, K, 2) as (x, y))."""
        if self.nets is not None:
            features = self.nets(features)
        n, h, w, k = features.shape
        if (h, w) != self.feature_hw:
            raise ValueError(
                f"spatial softmax was built for a {self.feature_hw} feature map, got {(h, w)} "
                "(the image size after resize/crop differs from the config)"
            )
        logits = jnp.moveaxis(features, -1, 1).reshape(n, k, h * w)
        attention = jax.nn.softmax(logits, axis=-1)
        return attention, jnp.einsum("nkp,pd->nkd", attention, jnp.asarray(keypoint_grid(h, w)))

    def torch_leaves(self) -> dict[str, TorchLeaf]:
        """LeRobot keys: `nets.{weight,bias}` and the `pos_grid` buffer (checked on load, not stored)."""
        h, w = self.feature_hw
        grid = keypoint_grid(h, w)

        def check(value: np.ndarray) -> None:
            if not np.array_equal(np.asarray(value, np.float32), grid):
                raise ValueError(
                    f"pool.pos_grid does not match the {h}x{w} keypoint grid this config implies "
                    "(image size, resize_shape or crop_shape disagree with the weights)"
                )

        out = {"pos_grid": TorchLeaf((h * w, 2), lambda: grid.copy(), check)}
        if self.nets is not None:
            out.update({f"nets.{k}": v for k, v in conv_leaves(self.nets).items()})
        return out

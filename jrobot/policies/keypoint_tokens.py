"""Camera images as keypoint tokens for a VLA: a small conv trunk, spatial soft-argmax, then tokens.

Why: a VLA must find the object its instruction names. SmolVLA finds it with SmolVLM2's pretrained
SigLIP tower; trained from scratch on a 2-core CPU, the same ViT at a CPU's width does not learn in a
demo's minutes to locate a cube a few pixels wide (2% success after 20 minutes, `benchmarks/README.md`).
The ACT demo's encoder, a few convolutions reduced to spatial soft-argmax keypoints
(`jrobot.policies.conv_trunk`, `jrobot.policies.spatial_softmax`), locates its cube within a thousand
steps. The trunk is shared by the cameras (as LeRobot's policies share one backbone); each camera has
its own keypoint detectors, as ACT has its own pool per camera, since a front view and a wrist view see
different things.

Two layouts put the keypoints into the VLM's prefix:
- `"per_camera"` (ACT's): one token per camera, that camera's own projection of all its keypoints'
  (x, y). The one that makes a VLA trained from scratch look (below).
- `"per_keypoint"`: one token per keypoint, its (x, y) and the trunk's features averaged under its
  attention map (what it found there, e.g. a colour) through one shared projection, plus a learned
  embedding of which keypoint of which camera it is.

Measured on the demos (`benchmarks/README.md`: demo_recipes.py, policy_precision.py): with a token per
keypoint the VLA learned to read the arm's joint state instead of its cameras. On the scripted
expert's own states its predictions hardly changed when it was shown another episode's images (x1.09
on the reach; ACT's error grew x3.5), so in closed loop it reached 1-3 cm beside the cube: 32% success
on the single-cube task where ACT reaches 96%. With one token per camera the cube's place is as easy
to read as the joints: the VLA looks (x2.19), the same 2,000 steps reach 80%, and a step costs half as
much (2 image tokens instead of 64).

On the instruction task (three cubes) one token per camera cannot say which cube is which, so the
instruction conditions the trunk itself (`condition_width`: RT-1's FiLM, a scale and shift of every
stage's channels from the instruction's embedding), and the keypoints can follow the cube it names.
FiLM alone was not enough (4%): the policy ignored the instruction, because after the first moves the
joints and the moving arm give the target away. With half the samples' joint state hidden and the
episodes' first frames oversampled in training (`SmolVLAConfig.state_dropout`,
`jrobot.pipeline.windows.oversample_episode_starts`) the same model reaches 50% after 5,000 steps.
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

LAYOUTS = ("per_keypoint", "per_camera")


class KeypointTokens(nnx.Module):
    """(B, H, W, 3) images in [-1, 1] of camera `camera` -> (B, tokens, width): `num_keypoints` tokens
    (`layout="per_keypoint"`), or one token of all the keypoints' positions (`"per_camera"`, ACT's)."""

    def __init__(
        self,
        image_hw: tuple[int, int],
        channels: Sequence[int],
        strides: Sequence[int],
        num_keypoints: int,
        width: int,
        *,
        rngs: nnx.Rngs,
        num_cameras: int = 1,
        layout: str = "per_keypoint",
        embedding_std: float = 0.3,
        condition_width: int | None = None,
    ):
        if int(num_cameras) < 1:
            raise ValueError(f"KeypointTokens needs num_cameras >= 1, got {num_cameras}")
        if layout not in LAYOUTS:
            raise ValueError(f"KeypointTokens layout must be one of {LAYOUTS}, got {layout!r}")
        self.layout = layout
        self.image_hw = (int(image_hw[0]), int(image_hw[1]))
        self.trunk = ConvTrunk(channels, strides, rngs=rngs)
        c = self.trunk.out_channels
        hw = self.trunk.feature_hw(*self.image_hw)
        self.pools = nnx.List(
            [SpatialSoftmax(c, hw, int(num_keypoints), rngs=rngs) for _ in range(int(num_cameras))]
        )
        k = int(num_keypoints)
        # RT-1's FiLM: the instruction scales and shifts every trunk stage's channels, so the keypoint
        # detectors can answer "where is the cube the instruction names". Zero-initialized: it starts as
        # the identity, the unconditioned encoder.
        self.film = (
            nnx.Linear(
                int(condition_width),
                2 * sum(self.trunk.channels),
                kernel_init=nnx.initializers.zeros_init(),
                bias_init=nnx.initializers.zeros_init(),
                rngs=rngs,
            )
            if condition_width is not None
            else None
        )
        if layout == "per_keypoint":
            self.proj = nnx.Linear(
                2 + c, width, kernel_init=torch_kernel_init, bias_init=torch_bias_init(2 + c), rngs=rngs
            )
            shape = (int(num_cameras), k, width)
            self.keypoint_embedding = nnx.Param(
                nnx.initializers.normal(embedding_std)(rngs.params(), shape, jnp.float32)
            )
        else:  # ACT's: the (x, y) of all a camera's keypoints in one vector, through its own projection
            self.camera_proj = nnx.List(
                [
                    nnx.Linear(
                        2 * k,
                        width,
                        kernel_init=torch_kernel_init,
                        bias_init=torch_bias_init(2 * k),
                        rngs=rngs,
                    )
                    for _ in range(int(num_cameras))
                ]
            )

    @property
    def num_cameras(self) -> int:
        return len(self.pools)

    def modulation(self, condition: jax.Array | None) -> list[tuple[jax.Array, jax.Array]] | None:
        """The trunk's per-stage FiLM (scale, shift) pairs from `condition`, None without FiLM."""
        if self.film is None:
            return None
        # unit RMS: a VLM's token embeddings are ~0.02 per entry, which would leave the zero-initialized
        # FiLM learning ~50x slower than the rest
        cond = condition.astype(jnp.float32)
        cond = cond * jax.lax.rsqrt(jnp.mean(cond * cond, axis=-1, keepdims=True) + 1e-6)
        out, pairs, start = self.film(cond), [], 0
        for ch in self.trunk.channels:
            pairs.append((out[:, start : start + ch], out[:, start + ch : start + 2 * ch]))
            start += 2 * ch
        return pairs

    def __call__(self, images: jax.Array, camera: int = 0, condition: jax.Array | None = None) -> jax.Array:
        """`condition` (B, condition_width), the instruction's embedding, is required exactly when the
        encoder was built with `condition_width` (FiLM)."""
        if not 0 <= camera < self.num_cameras:
            raise ValueError(f"camera {camera} out of range: the keypoint encoder has {self.num_cameras}")
        if images.shape[1:3] != self.image_hw:
            raise ValueError(
                f"the keypoint encoder was built for {self.image_hw[0]}x{self.image_hw[1]} images, got "
                f"{images.shape[1]}x{images.shape[2]} (resize_imgs_with_padding or the cameras' size changed)"
            )
        if (condition is None) != (self.film is None):
            raise ValueError(
                "KeypointTokens: pass the instruction's embedding exactly when the encoder was built with "
                f"condition_width (FiLM is {'on' if self.film is not None else 'off'})"
            )
        features = self.trunk(images.astype(jnp.float32), modulation=self.modulation(condition))
        n, h, w, c = features.shape
        attention, xy = self.pools[camera].attend(features)
        if self.layout == "per_camera":
            return self.camera_proj[camera](xy.reshape(n, -1))[:, None, :]
        found = jnp.einsum("nkp,npc->nkc", attention, features.reshape(n, h * w, c))
        return self.proj(jnp.concatenate([xy, found], axis=-1)) + self.keypoint_embedding[...][camera][None]


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

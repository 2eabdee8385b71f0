"""Diffusion Policy's networks in Flax NNX: the RGB encoder, LeRobot's `DiffusionModel`, and the policy
module with in-model normalization. Attribute names are LeRobot's state_dict names."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from jrobot.policies import resnet
from jrobot.policies.diffusion.config import DiffusionConfig
from jrobot.policies.diffusion.unet import ConditionalUnet1d
from jrobot.policies.layers import torch_linear
from jrobot.policies.lerobot.statedict import TorchLeaf, collect_leaves, linear_leaves
from jrobot.policies.normalize import Normalizer
from jrobot.policies.schedulers import NoiseScheduler
from jrobot.policies.spatial_softmax import SpatialSoftmax
from jrobot.policies.spec import ACTION_KEY, PolicySpec


# ---------------------------------------------------------------------------------------------------
# image encoder
def center_crop_offsets(height: int, width: int, crop: tuple[int, int]) -> tuple[int, int]:
    """torchvision CenterCrop's top/left: `int(round((H - h) / 2))` with Python's banker's rounding."""
    return round((height - crop[0]) / 2.0), round((width - crop[1]) / 2.0)


class RgbEncoder(nnx.Module):
    """`DiffusionRgbEncoder`: (N, H, W, 3) normalized images -> (N, 2K) features."""

    def __init__(self, config: DiffusionConfig, image_hw: tuple[int, int], *, rngs: nnx.Rngs):
        self.image_hw = (int(image_hw[0]), int(image_hw[1]))
        self.resize_shape = config.resize_shape
        self.crop_shape = config.crop_shape
        self.crop_is_random = config.crop_is_random
        norm = "group_norm" if config.use_group_norm else "batch_norm"
        self.backbone = resnet.ResNet(config.backbone_depth, norm, rngs=rngs)
        in_hw = self.crop_shape or self.resize_shape or self.image_hw
        if (
            self.crop_shape is not None
            and self.resize_shape is None
            and (self.crop_shape[0] > self.image_hw[0] or self.crop_shape[1] > self.image_hw[1])
        ):
            raise ValueError(f"crop_shape {self.crop_shape} does not fit in the {self.image_hw} images")
        self.feature_hw = resnet.resnet_feature_hw(*in_hw)
        k = config.spatial_softmax_num_keypoints
        self.pool = SpatialSoftmax(self.backbone.out_channels, self.feature_hw, k, rngs=rngs)
        self.feature_dim = 2 * k
        self.out = torch_linear(2 * k, self.feature_dim, rngs=rngs)

    def preprocess(self, x: jax.Array, *, train: bool, rng: jax.Array | None) -> jax.Array:
        """Resize (if configured) then crop: random per image in training, centre otherwise."""
        n, h, w, c = x.shape
        if self.resize_shape is not None and (h, w) != self.resize_shape:
            x = jax.image.resize(x, (n, *self.resize_shape, c), method="bilinear", antialias=True)
            h, w = self.resize_shape
        if self.crop_shape is None:
            return x
        ch, cw = self.crop_shape
        if train and self.crop_is_random:
            if rng is None:
                raise ValueError("the random training crop needs an rng (crop_is_random=True)")
            k_top, k_left = jax.random.split(rng)
            tops = jax.random.randint(k_top, (n,), 0, h - ch + 1)
            lefts = jax.random.randint(k_left, (n,), 0, w - cw + 1)

            def crop(img: jax.Array, top: jax.Array, left: jax.Array) -> jax.Array:
                return jax.lax.dynamic_slice(img, (top, left, 0), (ch, cw, c))

            return jax.vmap(crop)(x, tops, lefts)
        top, left = center_crop_offsets(h, w, self.crop_shape)
        return x[:, top : top + ch, left : left + cw]

    def __call__(self, x: jax.Array, *, train: bool = False, rng: jax.Array | None = None) -> jax.Array:
        x = self.preprocess(x, train=train, rng=rng)
        return jax.nn.relu(self.out(self.pool(self.backbone(x, train=train))))

    def torch_leaves(self) -> dict[str, TorchLeaf]:
        """LeRobot keys: `backbone.{0,1,4..7}.*` (Sequential of resnet children), `pool.*`, `out.*`."""
        out: dict[str, TorchLeaf] = {}
        for key, leaf in collect_leaves(self.backbone).items():
            head, _, rest = key.partition(".")
            out[f"backbone.{resnet.NAMED_TO_SEQUENTIAL[head]}.{rest}"] = leaf
        out.update(collect_leaves(self.pool, "pool."))
        out.update({f"out.{k}": v for k, v in linear_leaves(self.out).items()})
        return out


# ---------------------------------------------------------------------------------------------------
# the network (LeRobot's `DiffusionModel`; attribute names are its state_dict names)
class DiffusionModel(nnx.Module):
    def __init__(self, config: DiffusionConfig, spec: PolicySpec, *, rngs: nnx.Rngs):
        image_keys = spec.image_keys
        if spec.state_key is None:
            raise ValueError("Diffusion Policy needs a robot state input feature 'observation.state' (STATE)")
        cond_dim = spec.input_features[spec.state_key].shape[0]
        self.separate_encoders = bool(config.use_separate_rgb_encoder_per_camera)
        self.n_cams = len(image_keys)
        if image_keys:
            _, h, w = spec.input_features[image_keys[0]].shape
            if self.separate_encoders:
                self.rgb_encoder = nnx.List([RgbEncoder(config, (h, w), rngs=rngs) for _ in image_keys])
                feat = self.rgb_encoder[0].feature_dim
            else:
                self.rgb_encoder = RgbEncoder(config, (h, w), rngs=rngs)
                feat = self.rgb_encoder.feature_dim
            cond_dim += feat * len(image_keys)
        else:
            self.rgb_encoder = None
        if spec.env_state_key is not None:
            cond_dim += spec.input_features[spec.env_state_key].shape[0]
        self.unet = ConditionalUnet1d(
            spec.action_dim,
            cond_dim * config.n_obs_steps,
            down_dims=config.down_dims,
            kernel_size=config.kernel_size,
            n_groups=config.n_groups,
            diffusion_step_embed_dim=config.diffusion_step_embed_dim,
            use_film_scale_modulation=config.use_film_scale_modulation,
            rngs=rngs,
        )

    def global_conditioning(
        self,
        state: jax.Array,
        images: list[jax.Array],
        env: jax.Array | None,
        *,
        train: bool = False,
        rng: jax.Array | None = None,
    ) -> jax.Array:
        """Normalized state (B, S, Sd), images [(B, S, H, W, 3)] per camera, env (B, S, E) -> (B, D)."""
        b, s = state.shape[:2]
        feats = [state]
        if images:
            if self.separate_encoders:
                keys = list(jax.random.split(rng, len(images))) if rng is not None else [None] * len(images)
                per_cam = [
                    enc(im.reshape(b * s, *im.shape[2:]), train=train, rng=key).reshape(b, s, -1)
                    for enc, im, key in zip(self.rgb_encoder, images, keys, strict=True)
                ]
                feats.append(jnp.concatenate(per_cam, axis=-1))
            else:
                x = jnp.stack(images, axis=2)  # (B, S, N, H, W, 3): LeRobot's "(b s n)" order
                x = x.reshape(b * s * len(images), *x.shape[3:])
                feats.append(self.rgb_encoder(x, train=train, rng=rng).reshape(b, s, -1))
        if env is not None:
            feats.append(env)
        return jnp.concatenate([f.astype(jnp.float32) for f in feats], axis=-1).reshape(b, -1)


class DiffusionPolicy(nnx.Module):
    """Diffusion network + in-model normalization; carries its `config` and `spec` as static metadata."""

    def __init__(
        self,
        config: DiffusionConfig,
        spec: PolicySpec,
        stats: Mapping[str, Mapping[str, Any]] | None,
        *,
        rngs: nnx.Rngs,
        missing_stats: str = "error",
        eps: float = 1e-8,
    ):
        self.config, self.spec = config, spec
        used = [k for k in (spec.state_key, spec.env_state_key, *spec.image_keys) if k] + [ACTION_KEY]
        feats = {**spec.input_features, **spec.output_features}
        # first, so missing statistics fail before the (slow) network initialization
        self.normalizer = Normalizer(
            {k: feats[k] for k in used}, spec.normalization_mapping, stats, eps=eps, missing=missing_stats
        )
        self.diffusion = DiffusionModel(config, spec, rngs=rngs)

    @property
    def scheduler(self) -> NoiseScheduler:
        return self.config.noise_scheduler()

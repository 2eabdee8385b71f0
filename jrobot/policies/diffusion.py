"""Diffusion Policy in Flax NNX, numerically matching LeRobot 0.4.4's `DiffusionPolicy`.

Module tree and parameter names mirror LeRobot (`diffusion.rgb_encoder.backbone.0.weight`,
`diffusion.unet.down_modules.0.0.conv1.block.0.weight`, ...), so a LeRobot `model.safetensors` loads by
path (`from_lerobot`) and `statedict.state_dict(model)` writes LeRobot's layout back.

Behaviour (reference: ../shared/reference/lerobot_policies.md §3 and §7):
- Observations carry `n_obs_steps` (default 2) frames: (B, n_obs, S) state, (B, n_obs, H, W, 3) images.
  Per frame and camera: normalize (MEAN_STD, ImageNet stats in trained checkpoints), optional resize
  (bilinear, antialiased, as torchvision `Resize`), crop (random in training when `crop_is_random`,
  centre crop otherwise, offset `round((H - h) / 2)`), ResNet18 with GroupNorm(C//16), spatial-softmax
  keypoints (no temperature), Linear + ReLU. One encoder shared by all cameras or one per camera.
- Global conditioning, obs-step-major: flatten over steps of [state, cam0 feats, cam1 feats, ..., env].
- Denoiser: `diffusion_unet.ConditionalUnet1d` over the (B, horizon, A) normalized action trajectory.
- Noise: `schedulers.NoiseScheduler` (diffusers DDPM/DDIM arithmetic, LeRobot's options).
- Loss: MSE between the U-Net output and the noise ("epsilon") or the clean trajectory ("sample"), at
  uniformly drawn timesteps; with `do_mask_loss_for_padding` padded actions are zeroed and the mean
  taken over all elements (0.4.4, `mask_loss_reduction="mean_all"`) or over valid ones ("mean_valid",
  LeRobot HEAD).
- Inference: denoise from N(0, I) (or the given `noise`), keep actions [n_obs-1, n_obs-1+n_action_steps)
  of the trajectory (the window starts at the first observation step), unnormalize.

Differences from LeRobot, on purpose:
- the random training crop draws an offset per image (LeRobot's `RandomCrop` on a batched tensor uses
  one offset for the whole batch); inference is unaffected;
- optional EMA of the parameters (`use_ema`, on by default; LeRobot 0.4.4 has none): see `ema.py` and
  `ema_preset`.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from jrobot.policies import resnet
from jrobot.policies.base import (
    ImportedPolicy,
    OptimizerPreset,
    as_policy_features,
    build_from_lerobot,
    image_to_unit_float,
)
from jrobot.policies.diffusion_unet import ConditionalUnet1d
from jrobot.policies.ema import EMAConfig
from jrobot.policies.layers import torch_linear
from jrobot.policies.lerobot_checkpoint import policy_hyperparameters
from jrobot.policies.normalize import Normalizer
from jrobot.policies.schedulers import BETA_SCHEDULES, PREDICTION_TYPES, SCHEDULER_TYPES, NoiseScheduler
from jrobot.policies.spatial_softmax import SpatialSoftmax
from jrobot.policies.spec import (
    ACTION_KEY,
    FeatureType,
    HyperparameterDict,
    PolicyFeature,
    PolicySpec,
    parse_normalization_mapping,
    split_features,
)
from jrobot.policies.statedict import TorchLeaf, collect_leaves, linear_leaves

POLICY_TYPE = "diffusion"
MASK_LOSS_REDUCTIONS = ("mean_all", "mean_valid")
# Keys of newer LeRobot configs that change nothing numerically here (accepted silently).
_HARMLESS_LEROBOT_KEYS = frozenset({"gradient_checkpointing"})


def _default_norm_map() -> dict[str, str]:
    return {"VISUAL": "MEAN_STD", "STATE": "MIN_MAX", "ACTION": "MIN_MAX"}


def _pair(value: Any, name: str) -> tuple[int, int] | None:
    if value is None:
        return None
    try:
        h, w = (int(v) for v in value)
    except (TypeError, ValueError) as e:
        raise ValueError(
            f"DiffusionConfig.{name} must be a pair of ints (H, W) or None, got {value!r}"
        ) from e
    if h <= 0 or w <= 0:
        raise ValueError(f"DiffusionConfig.{name} must have positive dimensions, got {(h, w)}")
    return h, w


@dataclasses.dataclass(frozen=True)
class DiffusionConfig(HyperparameterDict):
    """LeRobot 0.4.4's `DiffusionConfig` hyperparameters (same names, same defaults) plus jrobot options.

    Defaults changed between LeRobot versions (crop_shape was (84, 84) before 0.4.4; HEAD uses
    horizon 64, n_action_steps 32, BatchNorm, ImageNet weights and one encoder per camera), so an
    imported checkpoint always uses its own config.json (`from_lerobot`), never these defaults.

    As in LeRobot, `resize_shape` with `crop_ratio < 1` sets `crop_shape = int(resize * ratio)`, and
    `resize_shape` with `crop_ratio == 1` disables cropping.

    jrobot options:
    - `mask_loss_reduction`: with `do_mask_loss_for_padding`, "mean_all" (0.4.4: padded entries are
      zeroed but counted) or "mean_valid" (LeRobot HEAD: divide by the number of valid entries).
    - `pretrained_backbone_path`: local file for `pretrained_backbone_weights` (BatchNorm trunks only).
    - `use_ema` and `ema_*`: EMA of the parameters kept by the trainer (`ema_preset`); LeRobot 0.4.4
      trains without one, the original Diffusion Policy with this schedule. `use_ema=False` reproduces
      LeRobot's training exactly.
    """

    n_obs_steps: int = 2
    horizon: int = 16
    n_action_steps: int = 8
    normalization_mapping: dict[str, str] = dataclasses.field(default_factory=_default_norm_map)
    drop_n_last_frames: int = 7
    vision_backbone: str = "resnet18"
    resize_shape: tuple[int, int] | None = None
    crop_ratio: float = 1.0
    crop_shape: tuple[int, int] | None = None
    crop_is_random: bool = True
    pretrained_backbone_weights: str | None = None
    use_group_norm: bool = True
    spatial_softmax_num_keypoints: int = 32
    use_separate_rgb_encoder_per_camera: bool = False
    down_dims: tuple[int, ...] = (512, 1024, 2048)
    kernel_size: int = 5
    n_groups: int = 8
    diffusion_step_embed_dim: int = 128
    use_film_scale_modulation: bool = True
    noise_scheduler_type: str = "DDPM"
    num_train_timesteps: int = 100
    beta_schedule: str = "squaredcos_cap_v2"
    beta_start: float = 1e-4
    beta_end: float = 0.02
    prediction_type: str = "epsilon"
    clip_sample: bool = True
    clip_sample_range: float = 1.0
    num_inference_steps: int | None = None
    compile_model: bool = False
    compile_mode: str = "reduce-overhead"
    do_mask_loss_for_padding: bool = False
    optimizer_lr: float = 1e-4
    optimizer_betas: tuple[float, float] = (0.95, 0.999)
    optimizer_eps: float = 1e-8
    optimizer_weight_decay: float = 1e-6
    scheduler_name: str = "cosine"
    scheduler_warmup_steps: int = 500
    # jrobot options
    mask_loss_reduction: str = "mean_all"
    pretrained_backbone_path: str | None = None
    use_ema: bool = True
    ema_power: float = 0.75
    ema_inv_gamma: float = 1.0
    ema_min_decay: float = 0.0
    ema_max_decay: float = 0.9999
    ema_update_after_step: int = 0

    def __post_init__(self) -> None:
        def put(name: str, value: Any) -> None:
            object.__setattr__(self, name, value)

        mapping = parse_normalization_mapping(
            self.normalization_mapping, where="DiffusionConfig.normalization_mapping"
        )
        put("normalization_mapping", {k: v.value for k, v in mapping.items()})
        put("down_dims", tuple(int(d) for d in self.down_dims))
        put("optimizer_betas", tuple(float(b) for b in self.optimizer_betas))
        put("resize_shape", _pair(self.resize_shape, "resize_shape"))
        put("crop_shape", _pair(self.crop_shape, "crop_shape"))
        if (
            not self.vision_backbone.startswith("resnet")
            or self.backbone_depth not in resnet.BLOCKS_PER_LAYER
        ):
            raise ValueError(
                f"vision_backbone must be one of {[f'resnet{d}' for d in resnet.BLOCKS_PER_LAYER]}, "
                f"got {self.vision_backbone!r}"
            )
        if self.prediction_type not in PREDICTION_TYPES:
            raise ValueError(
                f"prediction_type must be one of {list(PREDICTION_TYPES)}, got {self.prediction_type!r}"
            )
        if self.noise_scheduler_type not in SCHEDULER_TYPES:
            raise ValueError(
                f"noise_scheduler_type must be one of {list(SCHEDULER_TYPES)}, got {self.noise_scheduler_type!r}"
            )
        if self.beta_schedule not in BETA_SCHEDULES:
            raise ValueError(
                f"beta_schedule must be one of {list(BETA_SCHEDULES)}, got {self.beta_schedule!r}"
            )
        if not 0 < self.crop_ratio <= 1.0:
            raise ValueError(f"crop_ratio must be in (0, 1], got {self.crop_ratio}")
        if self.resize_shape is not None:
            if self.crop_ratio < 1.0:
                put(
                    "crop_shape",
                    (
                        int(self.resize_shape[0] * self.crop_ratio),
                        int(self.resize_shape[1] * self.crop_ratio),
                    ),
                )
                _pair(self.crop_shape, "crop_shape (derived from resize_shape * crop_ratio)")
            else:
                put("crop_shape", None)
        if self.n_obs_steps < 1:
            raise ValueError(f"n_obs_steps must be >= 1, got {self.n_obs_steps}")
        factor = 2 ** len(self.down_dims)
        if not self.down_dims or self.horizon % factor:
            raise ValueError(
                f"horizon ({self.horizon}) must be a multiple of 2**len(down_dims) = {factor} (LeRobot's rule; "
                f"down_dims={self.down_dims})"
            )
        if not 1 <= self.n_action_steps <= self.horizon - self.n_obs_steps + 1:
            raise ValueError(
                f"n_action_steps ({self.n_action_steps}) must be in [1, horizon - n_obs_steps + 1 = "
                f"{self.horizon - self.n_obs_steps + 1}]: the executed actions start at the current (last) "
                "observation step of the horizon"
            )
        if self.kernel_size % 2 == 0:
            raise ValueError(
                f"kernel_size must be odd (LeRobot pads k//2 and adds a residual), got {self.kernel_size}"
            )
        for d in self.down_dims:
            if d % self.n_groups or d % 8:
                raise ValueError(
                    f"every down_dims entry must be divisible by n_groups ({self.n_groups}) and by 8 "
                    f"(the final block's GroupNorm), got {self.down_dims}"
                )
        if self.diffusion_step_embed_dim < 4 or self.diffusion_step_embed_dim % 2:
            raise ValueError(
                f"diffusion_step_embed_dim must be even and >= 4, got {self.diffusion_step_embed_dim}"
            )
        if self.use_group_norm and self.pretrained_backbone_weights:
            raise ValueError(
                "use_group_norm=True with pretrained_backbone_weights: ImageNet batch-norm weights cannot "
                "initialize GroupNorm (LeRobot refuses too); set pretrained_backbone_weights=None"
            )
        if self.mask_loss_reduction not in MASK_LOSS_REDUCTIONS:
            raise ValueError(
                f"mask_loss_reduction must be one of {list(MASK_LOSS_REDUCTIONS)}, got {self.mask_loss_reduction!r}"
            )
        self.noise_scheduler()  # validates the scheduler options together (e.g. inference steps)
        if self.use_ema:
            self.ema_config()

    def __hash__(self) -> int:
        return hash(json.dumps(self.to_dict(), sort_keys=True))

    @property
    def backbone_depth(self) -> int:
        digits = self.vision_backbone[len("resnet") :]
        return int(digits) if digits.isdigit() else -1

    @property
    def observation_delta_indices(self) -> tuple[int, ...]:
        """Frames t-n_obs+1 .. t (LeRobot's property)."""
        return tuple(range(1 - self.n_obs_steps, 1))

    @property
    def action_delta_indices(self) -> tuple[int, ...]:
        """Actions t-n_obs+1 .. t-n_obs+horizon: the window starts at the first observation step."""
        return tuple(range(1 - self.n_obs_steps, 1 - self.n_obs_steps + self.horizon))

    def noise_scheduler(self) -> NoiseScheduler:
        return NoiseScheduler(
            kind=self.noise_scheduler_type,  # type: ignore[arg-type]
            num_train_timesteps=self.num_train_timesteps,
            beta_schedule=self.beta_schedule,
            beta_start=self.beta_start,
            beta_end=self.beta_end,
            prediction_type=self.prediction_type,
            clip_sample=self.clip_sample,
            clip_sample_range=self.clip_sample_range,
            num_inference_steps=self.num_inference_steps,
        )

    def ema_config(self) -> EMAConfig:
        return EMAConfig(
            power=self.ema_power,
            inv_gamma=self.ema_inv_gamma,
            min_decay=self.ema_min_decay,
            max_decay=self.ema_max_decay,
            update_after_step=self.ema_update_after_step,
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (tuples as lists); `from_dict(to_dict())` gives back an equal config."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            out[f.name] = list(v) if isinstance(v, tuple) else (dict(v) if isinstance(v, dict) else v)
        return out

    def to_lerobot(self) -> dict[str, Any]:
        """The hyperparameters LeRobot 0.4.4's config.json holds (jrobot options left out), plus `type`."""
        jrobot_only = {"mask_loss_reduction", "pretrained_backbone_path", "use_ema"} | {
            f.name for f in dataclasses.fields(self) if f.name.startswith("ema_")
        }
        return {"type": POLICY_TYPE, **{k: v for k, v in self.to_dict().items() if k not in jrobot_only}}

    @classmethod
    def from_lerobot(cls, d: Mapping[str, Any]) -> tuple[DiffusionConfig, list[str]]:
        """From a LeRobot config.json dict (base keys dropped). Every field missing from `d` is a note,
        because defaults differ across LeRobot versions; unknown keys are notes too.

        The jrobot EMA option is off for imported checkpoints (LeRobot trained them without one)."""
        hp = policy_hyperparameters(d)
        names = {f.name for f in dataclasses.fields(cls)}
        defaults = cls().to_lerobot()
        notes = [
            f"config.json key {k!r} is not a Diffusion hyperparameter jrobot knows; ignored"
            for k in sorted(set(hp) - names - _HARMLESS_LEROBOT_KEYS)
        ]
        notes += [
            f"config.json has no {k!r}; using LeRobot 0.4.4's default {defaults[k]!r}"
            for k in sorted(set(defaults) - {"type"} - set(hp))
        ]
        kwargs = {k: v for k, v in hp.items() if k in names}
        kwargs.setdefault("use_ema", False)
        return cls(**kwargs), notes


Config = DiffusionConfig


# ---------------------------------------------------------------------------------------------------
# image encoder
def _conv_out(n: int, kernel: int, stride: int, padding: int) -> int:
    return (n + 2 * padding - kernel) // stride + 1


def resnet_feature_hw(height: int, width: int) -> tuple[int, int]:
    """Spatial size of a torchvision ResNet18/34 layer4 map for an (H, W) input (stride 32, floor rules)."""

    def one(n: int) -> int:
        n = _conv_out(n, 7, 2, 3)  # conv1
        n = _conv_out(n, 3, 2, 1)  # maxpool
        for _ in range(3):  # layer2..4 first blocks
            n = _conv_out(n, 3, 2, 1)
        return n

    return one(height), one(width)


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
        self.feature_hw = resnet_feature_hw(*in_hw)
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


# ---------------------------------------------------------------------------------------------------
# entry points
def _history(x: Any, key: str, feature: PolicyFeature, n_obs: int) -> jax.Array:
    """(B, n_obs, *f) as given, or (B, *f) promoted to one step when n_obs_steps == 1."""
    x = jnp.asarray(x)
    visual = feature.type is FeatureType.VISUAL
    fdim = 3 if visual else len(feature.shape)
    if x.ndim == fdim + 1 and n_obs == 1:
        x = x[:, None]
    if x.ndim != fdim + 2 or x.shape[1] != n_obs:
        raise ValueError(
            f"{key}: expected (B, n_obs_steps={n_obs}, ...) with {fdim} feature axes, got shape {tuple(x.shape)}; "
            "Diffusion Policy reads an observation history (the runtime repeats the first frame to fill it)"
        )
    if visual and x.shape[-1] != 3:
        hint = (
            " (channel-first? convert with jrobot.policies.spec.images_chw_to_hwc)"
            if x.shape[-3] == 3
            else ""
        )
        raise ValueError(
            f"{key}: images must be channel-last (..., H, W, 3), got shape {tuple(x.shape)}{hint}"
        )
    return x


def prepare_observation(
    model: DiffusionPolicy, observation: Mapping[str, Any]
) -> tuple[jax.Array, list[jax.Array], jax.Array | None]:
    """Raw observation -> normalized (state (B,S,Sd), [images (B,S,H,W,3)], env (B,S,E) or None).

    Images may be uint8 (divided by 255, the pipeline's format) or float in [0, 1] (LeRobot's), channel-last.
    """
    spec, norm, n_obs = model.spec, model.normalizer, model.config.n_obs_steps

    def take(key: str) -> jax.Array:
        if key not in observation:
            raise KeyError(f"observation lacks {key!r} (Diffusion reads {list(spec.input_features)})")
        return _history(observation[key], key, spec.input_features[key], n_obs)

    state = norm.normalize(spec.state_key, take(spec.state_key).astype(jnp.float32))
    images = []
    for k in spec.image_keys:
        img = take(k)
        if model.config.resize_shape is None and img.shape[2:4] != spec.input_features[k].shape[1:]:
            raise ValueError(
                f"{k}: images are {img.shape[2:4]} but the policy was built for {spec.input_features[k].shape[1:]} "
                "(set resize_shape to accept other sizes)"
            )
        images.append(norm.normalize(k, image_to_unit_float(img, k)))
    env = None
    if spec.env_state_key:
        env = norm.normalize(spec.env_state_key, take(spec.env_state_key).astype(jnp.float32))
    return state, images, env


def global_conditioning(
    model: DiffusionPolicy,
    observation: Mapping[str, Any],
    *,
    train: bool = False,
    rng: jax.Array | None = None,
) -> jax.Array:
    """LeRobot's `_prepare_global_conditioning` from a raw observation: (B, global_cond_dim)."""
    state, images, env = prepare_observation(model, observation)
    return model.diffusion.global_conditioning(state, images, env, train=train, rng=rng)


def compute_loss(
    model: DiffusionPolicy,
    batch: Mapping[str, Any],
    *,
    eps: jax.Array,
    timesteps: jax.Array,
    train: bool = True,
    crop_rng: jax.Array | None = None,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """The loss for given noise `eps` (B, horizon, A) and integer `timesteps` (B,): LeRobot's `compute_loss`."""
    cfg, spec = model.config, model.spec
    if ACTION_KEY not in batch:
        raise KeyError(f"Diffusion loss needs {ACTION_KEY!r} in the batch")
    actions = jnp.asarray(batch[ACTION_KEY], jnp.float32)
    if actions.ndim != 3 or actions.shape[1:] != (cfg.horizon, spec.action_dim):
        raise ValueError(
            f"{ACTION_KEY}: expected (B, horizon={cfg.horizon}, {spec.action_dim}), got {actions.shape}"
        )
    gc = global_conditioning(model, batch, train=train, rng=crop_rng)
    x0 = model.normalizer.normalize(ACTION_KEY, actions)
    sched = model.scheduler
    timesteps = jnp.asarray(timesteps, jnp.int32)
    noisy = sched.add_noise(x0, eps, timesteps)
    pred = model.diffusion.unet(noisy, timesteps, gc)
    err = jnp.square(pred - sched.training_target(x0, eps))
    metrics: dict[str, jax.Array] = {}
    if cfg.do_mask_loss_for_padding:
        if "action_is_pad" not in batch:
            raise KeyError("do_mask_loss_for_padding=True needs 'action_is_pad' in the batch")
        valid = (~jnp.asarray(batch["action_is_pad"], bool))[..., None].astype(err.dtype)
        masked = err * valid
        if cfg.mask_loss_reduction == "mean_all":
            value = masked.mean()
        else:
            value = masked.sum() / jnp.maximum(valid.sum() * err.shape[-1], 1.0)
        metrics["mse_unmasked"] = err.mean()
    else:
        value = err.mean()
    metrics["loss"] = value
    return value, metrics


def loss(
    model: DiffusionPolicy, batch: Mapping[str, Any], rng: jax.Array, *, train: bool = True
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Training loss: draws the noise, the timesteps U{0..T-1} and (train mode) the random crops from `rng`.

    `train=False` gives a validation loss with centre crops and eval-mode batch norm (noise still drawn).
    """
    if rng is None:
        raise ValueError("the Diffusion loss draws noise and timesteps: it needs an rng")
    if ACTION_KEY not in batch:
        raise KeyError(f"Diffusion loss needs {ACTION_KEY!r} in the batch")
    shape = jnp.shape(batch[ACTION_KEY])
    k_eps, k_t, k_crop = jax.random.split(rng, 3)
    eps = jax.random.normal(k_eps, shape, jnp.float32)
    timesteps = jax.random.randint(k_t, shape[:1], 0, model.config.num_train_timesteps)
    return compute_loss(model, batch, eps=eps, timesteps=timesteps, train=train, crop_rng=k_crop)


def generate_trajectory(
    model: DiffusionPolicy,
    observation: Mapping[str, Any],
    rng: jax.Array | None = None,
    *,
    noise: jax.Array | None = None,
    step_noise: jax.Array | None = None,
) -> jax.Array:
    """The full denoised trajectory in normalized units (B, horizon, A), eval mode.

    `noise` (B, horizon, A) replaces the initial N(0, I) draw; `step_noise` (n_inference_steps, B, horizon,
    A) replaces DDPM's per-step variance noise (diffusers draws one per step, the last one unused). What
    is not given is drawn from `rng`.
    """
    cfg, spec = model.config, model.spec
    gc = global_conditioning(model, observation, train=False)
    b = gc.shape[0]
    shape = (b, cfg.horizon, spec.action_dim)
    k_init = k_steps = None
    if rng is not None:
        k_init, k_steps = jax.random.split(rng)
    if noise is None:
        if k_init is None:
            raise ValueError("sampling needs an rng or the initial `noise`")
        noise = jax.random.normal(k_init, shape, jnp.float32)
    noise = jnp.asarray(noise, jnp.float32)
    if tuple(noise.shape) != shape:
        raise ValueError(
            f"noise must have shape (B, horizon, action_dim) = {shape}, got {tuple(noise.shape)}"
        )
    unet = model.diffusion.unet
    return model.scheduler.sample(lambda x, t: unet(x, t, gc), noise, rng=k_steps, step_noise=step_noise)


def executed_slice(config: DiffusionConfig, trajectory: jax.Array) -> jax.Array:
    """Actions [n_obs-1, n_obs-1+n_action_steps) of a (B, horizon, A) trajectory (from the current step)."""
    start = config.n_obs_steps - 1
    return trajectory[:, start : start + config.n_action_steps]


def sample_actions(
    model: DiffusionPolicy,
    observation: Mapping[str, Any],
    rng: jax.Array | None = None,
    *,
    noise: jax.Array | None = None,
    step_noise: jax.Array | None = None,
) -> jax.Array:
    """Eval-mode actions to execute, in dataset units: (B, n_action_steps, A).

    `noise` may also come as `observation["noise"]` (B, horizon, A), the runtime's offline key, so a DDIM
    run reproduces LeRobot's output for the same noise (DDPM also needs `step_noise`).
    """
    if noise is None and "noise" in observation:
        noise = observation["noise"]
    traj = generate_trajectory(model, observation, rng, noise=noise, step_noise=step_noise)
    return model.normalizer.unnormalize(ACTION_KEY, executed_slice(model.config, traj))


def param_group(path: tuple) -> str:
    """Diffusion trains every parameter with one learning rate (LeRobot's `get_optim_params`)."""
    return "default"


def optimizer_preset(config: DiffusionConfig) -> OptimizerPreset:
    """torch Adam (coupled L2: optax add_decayed_weights before scale_by_adam), betas (0.95, 0.999), lr 1e-4,
    wd 1e-6, grad clip 10, diffusers "cosine" with 500 warmup steps over the run's total steps."""
    return OptimizerPreset(
        name="adam",
        lr=config.optimizer_lr,
        betas=tuple(config.optimizer_betas),  # type: ignore[arg-type]
        eps=config.optimizer_eps,
        weight_decay=config.optimizer_weight_decay,
        grad_clip_norm=10.0,
        scheduler={"name": config.scheduler_name, "num_warmup_steps": config.scheduler_warmup_steps},
    )


def ema_preset(config: DiffusionConfig) -> EMAConfig | None:
    """The EMA schedule the trainer applies to the parameters, or None when `use_ema` is off."""
    return config.ema_config() if config.use_ema else None


# ---------------------------------------------------------------------------------------------------
# construction
def make_spec(
    config: DiffusionConfig,
    input_features: Mapping[str, PolicyFeature],
    output_features: Mapping[str, PolicyFeature],
) -> PolicySpec:
    """The policy spec; checks Diffusion's feature requirements (LeRobot's `validate_features`).

    `chunk_size` = `n_action_steps`: `sample_actions` returns the executed slice, not the whole horizon.
    """
    spec = PolicySpec(
        type=POLICY_TYPE,
        input_features=dict(input_features),
        output_features=dict(output_features),
        normalization_mapping=config.normalization_mapping,
        n_obs_steps=config.n_obs_steps,
        chunk_size=config.n_action_steps,
        n_action_steps=config.n_action_steps,
        observation_delta_indices=config.observation_delta_indices,
        action_delta_indices=config.action_delta_indices,
        config=config.to_dict(),
    )
    if spec.state_key is None:
        raise ValueError("Diffusion Policy needs a robot state input feature 'observation.state' (STATE)")
    if not spec.image_keys and spec.env_state_key is None:
        raise ValueError(
            "Diffusion Policy needs at least one image or the environment state among its inputs"
        )
    action = spec.output_features[ACTION_KEY]
    if action.type is not FeatureType.ACTION or len(action.shape) != 1:
        raise ValueError(f"Diffusion needs a 1-D ACTION feature {ACTION_KEY!r}, got {action}")
    shapes = {k: spec.input_features[k].shape for k in spec.image_keys}
    if len(set(shapes.values())) > 1:
        raise ValueError(f"Diffusion Policy needs every camera at the same shape, got {shapes}")
    for k, shape in shapes.items():
        if shape[0] != 3:
            raise ValueError(f"{k}: the ResNet reads RGB images, shape (3, H, W); got {shape}")
        crop = config.crop_shape
        if config.resize_shape is None and crop is not None and (crop[0] > shape[1] or crop[1] > shape[2]):
            raise ValueError(f"crop_shape {crop} should fit within the image shape {shape} of {k!r}")
    return spec


def build(
    config: DiffusionConfig,
    features: Mapping[str, Any],
    stats: Mapping[str, Mapping[str, Any]] | None,
    *,
    seed: int = 0,
    load_pretrained_backbone: bool = True,
) -> DiffusionPolicy:
    """A freshly initialized Diffusion Policy from (config, dataset or policy features, dataset stats).

    Initialization follows LeRobot (torch defaults, torchvision's trunk init, GroupNorm ones/zeros); with a
    BatchNorm trunk and `pretrained_backbone_weights`, the ImageNet weights come from a local file.
    """
    inputs, outputs = split_features(as_policy_features(features))
    spec = make_spec(config, inputs, outputs)
    weights = config.pretrained_backbone_weights if load_pretrained_backbone and spec.image_keys else None
    # find the local ImageNet file before spending time on the random init
    weights_file = (
        resnet.find_pretrained_weights(weights, config.pretrained_backbone_path) if weights else None
    )
    model = DiffusionPolicy(config, spec, stats, rngs=nnx.Rngs(seed))
    if weights:
        encoders = model.diffusion.rgb_encoder
        for enc in encoders if isinstance(encoders, nnx.List) else [encoders]:
            resnet.load_pretrained(enc.backbone, weights, weights_file)
    return model


def from_lerobot(path: Any) -> ImportedPolicy:
    """Import a LeRobot Diffusion `pretrained_model` folder: config.json, model.safetensors and the stats.

    The architecture comes from the checkpoint's own config.json. Every tensor in model.safetensors must
    map to a jrobot leaf and vice versa (`StateDictError` otherwise, listing the keys), and the saved
    spatial-softmax grids must match the feature-map size the config implies. Stats come from the
    processor files (or pre-0.4 buffers); a feature without stats passes through unnormalized, as in
    LeRobot, with a warning.
    """
    return build_from_lerobot(
        path,
        policy_type=POLICY_TYPE,
        config_cls=DiffusionConfig,
        make_spec=make_spec,
        policy_cls=DiffusionPolicy,
    )


def global_cond_dim(model: DiffusionPolicy) -> int:
    """Width of the U-Net's global conditioning vector (per-step features x n_obs_steps)."""
    return int(model.diffusion.unet.global_cond_dim)


__all__ = [
    "POLICY_TYPE",
    "Config",
    "DiffusionConfig",
    "DiffusionModel",
    "DiffusionPolicy",
    "RgbEncoder",
    "build",
    "center_crop_offsets",
    "compute_loss",
    "ema_preset",
    "executed_slice",
    "from_lerobot",
    "generate_trajectory",
    "global_cond_dim",
    "global_conditioning",
    "loss",
    "make_spec",
    "optimizer_preset",
    "param_group",
    "prepare_observation",
    "resnet_feature_hw",
    "sample_actions",
]

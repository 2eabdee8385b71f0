"""Diffusion Policy's hyperparameters: LeRobot 0.4.4's `DiffusionConfig` plus jrobot options, and its
config.json mapping."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Any

from jrobot.policies import resnet
from jrobot.policies.ema import EMAConfig
from jrobot.policies.lerobot.checkpoint import policy_hyperparameters
from jrobot.policies.schedulers import BETA_SCHEDULES, PREDICTION_TYPES, SCHEDULER_TYPES, NoiseScheduler
from jrobot.policies.spec import HyperparameterDict, parse_normalization_mapping

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

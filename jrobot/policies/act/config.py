"""ACT's hyperparameters: LeRobot's `ACTConfig` (same names, same defaults) and its config.json mapping."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Any

import jax.numpy as jnp

from jrobot.policies import resnet
from jrobot.policies.conv_trunk import validate_trunk
from jrobot.policies.layers import activation
from jrobot.policies.lerobot.checkpoint import policy_hyperparameters
from jrobot.policies.spec import HyperparameterDict, parse_normalization_mapping

POLICY_TYPE = "act"
L1_REDUCTIONS = ("mean_all", "mean_valid")
IMAGE_FEATURES = ("feature_map", "spatial_softmax")
CNN_BACKBONE = "cnn"
COMPUTE_DTYPES = {"float32": None, "bfloat16": jnp.bfloat16}


def _default_norm_map() -> dict[str, str]:
    return {"VISUAL": "MEAN_STD", "STATE": "MEAN_STD", "ACTION": "MEAN_STD"}


@dataclasses.dataclass(frozen=True)
class ACTConfig(HyperparameterDict):
    """LeRobot's `ACTConfig` hyperparameters (same names, same defaults) plus jrobot options.

    jrobot options:
    - `vision_backbone="cnn"`: a small trunk trained from scratch (`jrobot.policies.conv_trunk`) with
      `cnn_channels` / `cnn_strides` per 3x3 stage, instead of a torchvision ResNet. A policy with it
      cannot be written back as a LeRobot checkpoint (LeRobot has no such backbone).
    - `image_features`: "feature_map" (LeRobot: one encoder token per feature-map cell, 2-D sinusoidal
      positions) or "spatial_softmax" (one token per camera from `spatial_softmax_num_keypoints`
      soft-argmax keypoints, with a learned position like the state token's).
    - `random_shift_pixels`: in training, shift every image by up to this many pixels (DrQ); 0 = off.
    - `l1_reduction`: "mean_all" (LeRobot 0.4.4: padded entries count in the denominator) or
      "mean_valid" (LeRobot HEAD: divide by the number of valid entries).
    - `pretrained_backbone_path`: local file with the torchvision weights named by
      `pretrained_backbone_weights` (never downloaded; see `resnet.find_pretrained_weights`).
    - `compute_dtype`: "float32" or "bfloat16" activations (parameters stay float32).
    """

    n_obs_steps: int = 1
    chunk_size: int = 100
    n_action_steps: int = 100
    normalization_mapping: dict[str, str] = dataclasses.field(default_factory=_default_norm_map)
    vision_backbone: str = "resnet18"
    pretrained_backbone_weights: str | None = "ResNet18_Weights.IMAGENET1K_V1"
    replace_final_stride_with_dilation: bool = False
    pre_norm: bool = False
    dim_model: int = 512
    n_heads: int = 8
    dim_feedforward: int = 3200
    feedforward_activation: str = "relu"
    n_encoder_layers: int = 4
    n_decoder_layers: int = 1
    use_vae: bool = True
    latent_dim: int = 32
    n_vae_encoder_layers: int = 4
    temporal_ensemble_coeff: float | None = None
    dropout: float = 0.1
    kl_weight: float = 10.0
    optimizer_lr: float = 1e-5
    optimizer_weight_decay: float = 1e-4
    optimizer_lr_backbone: float = 1e-5
    # jrobot options
    l1_reduction: str = "mean_all"
    pretrained_backbone_path: str | None = None
    compute_dtype: str = "float32"
    cnn_channels: tuple[int, ...] = (16, 32, 32)
    cnn_strides: tuple[int, ...] = (2, 2, 1)
    image_features: str = "feature_map"
    spatial_softmax_num_keypoints: int = 32
    random_shift_pixels: int = 0

    def __post_init__(self) -> None:
        mapping = parse_normalization_mapping(
            self.normalization_mapping, where="ACTConfig.normalization_mapping"
        )
        object.__setattr__(self, "normalization_mapping", {k: v.value for k, v in mapping.items()})
        if self.n_obs_steps != 1:
            raise ValueError(f"ACT reads one observation step: n_obs_steps must be 1, got {self.n_obs_steps}")
        if not 1 <= self.n_action_steps <= self.chunk_size:
            raise ValueError(
                f"n_action_steps ({self.n_action_steps}) must be between 1 and chunk_size ({self.chunk_size})"
            )
        if self.temporal_ensemble_coeff is not None and self.n_action_steps > 1:
            raise ValueError("temporal ensembling queries the policy every step: n_action_steps must be 1")
        object.__setattr__(self, "cnn_channels", tuple(int(c) for c in self.cnn_channels))
        object.__setattr__(self, "cnn_strides", tuple(int(s) for s in self.cnn_strides))
        supported = [f"resnet{d}" for d in resnet.BLOCKS_PER_LAYER] + [CNN_BACKBONE]
        if self.vision_backbone == CNN_BACKBONE:
            validate_trunk(self.cnn_channels, self.cnn_strides, "ACTConfig")
            if self.pretrained_backbone_weights:
                raise ValueError(
                    "vision_backbone='cnn' is trained from scratch: set pretrained_backbone_weights=None "
                    f"(got {self.pretrained_backbone_weights!r})"
                )
        elif self.backbone_depth not in resnet.BLOCKS_PER_LAYER:
            raise ValueError(
                f"vision_backbone {self.vision_backbone!r} is not supported; use one of {supported}"
            )
        if self.image_features not in IMAGE_FEATURES:
            raise ValueError(f"image_features must be one of {IMAGE_FEATURES}, got {self.image_features!r}")
        if self.spatial_softmax_num_keypoints < 1:
            raise ValueError(
                f"spatial_softmax_num_keypoints must be >= 1, got {self.spatial_softmax_num_keypoints}"
            )
        if self.random_shift_pixels < 0:
            raise ValueError(f"random_shift_pixels must be >= 0, got {self.random_shift_pixels}")
        if self.replace_final_stride_with_dilation:
            raise ValueError(
                "replace_final_stride_with_dilation=True: torchvision's BasicBlock (resnet18/34) does not "
                "support dilation, so LeRobot cannot build this model either"
            )
        activation(self.feedforward_activation)  # validates
        if self.dim_model % self.n_heads:
            raise ValueError(f"dim_model ({self.dim_model}) must be divisible by n_heads ({self.n_heads})")
        if self.l1_reduction not in L1_REDUCTIONS:
            raise ValueError(f"l1_reduction must be one of {L1_REDUCTIONS}, got {self.l1_reduction!r}")
        if self.compute_dtype not in COMPUTE_DTYPES:
            raise ValueError(
                f"compute_dtype must be one of {sorted(COMPUTE_DTYPES)}, got {self.compute_dtype!r}"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")

    def __hash__(self) -> int:
        return hash(json.dumps(self.to_dict(), sort_keys=True))

    @property
    def backbone_depth(self) -> int:
        if not self.vision_backbone.startswith("resnet"):
            return -1
        digits = self.vision_backbone[len("resnet") :]
        return int(digits) if digits.isdigit() else -1

    @classmethod
    def from_lerobot(cls, d: Mapping[str, Any]) -> tuple[ACTConfig, list[str]]:
        """From a LeRobot config.json dict; LeRobot base keys are dropped, unknown ones reported as notes."""
        hp = policy_hyperparameters(d)
        names = {f.name for f in dataclasses.fields(cls)}
        notes = [
            f"config.json key {k!r} is not an ACT hyperparameter jrobot knows; ignored"
            for k in sorted(set(hp) - names)
        ]
        return cls(**{k: v for k, v in hp.items() if k in names}), notes

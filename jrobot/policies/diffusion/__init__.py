"""Diffusion Policy in Flax NNX, numerically matching LeRobot 0.4.4's `DiffusionPolicy`.

Module tree and parameter names mirror LeRobot (`diffusion.rgb_encoder.backbone.0.weight`,
`diffusion.unet.down_modules.0.0.conv1.block.0.weight`, ...), so a LeRobot `model.safetensors` loads by
path (`from_lerobot`) and `lerobot.statedict.state_dict(model)` writes LeRobot's layout back.

Behaviour (reference: ../shared/reference/lerobot_policies.md §3 and §7):
- Observations carry `n_obs_steps` (default 2) frames: (B, n_obs, S) state, (B, n_obs, H, W, 3) images.
  Per frame and camera: normalize (MEAN_STD, ImageNet stats in trained checkpoints), optional resize
  (bilinear, antialiased, as torchvision `Resize`), crop (random in training when `crop_is_random`,
  centre crop otherwise, offset `round((H - h) / 2)`), ResNet18 with GroupNorm(C//16), spatial-softmax
  keypoints (no temperature), Linear + ReLU. One encoder shared by all cameras or one per camera.
- Global conditioning, obs-step-major: flatten over steps of [state, cam0 feats, cam1 feats, ..., env].
- Denoiser: `unet.ConditionalUnet1d` over the (B, horizon, A) normalized action trajectory.
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
- optional EMA of the parameters (`use_ema`, on by default; LeRobot 0.4.4 has none): see
  `jrobot.policies.ema` and `ema_preset`.

Layout: `config` (DiffusionConfig and its LeRobot mapping), `unet` (the 1-D conditional U-Net), `model`
(the RGB encoder and the network), `policy` (the entry points of the
`jrobot.policies.base.PolicyModule` contract, re-exported here).
"""

from jrobot.policies.diffusion.config import POLICY_TYPE, DiffusionConfig
from jrobot.policies.diffusion.model import (
    DiffusionModel,
    DiffusionPolicy,
    RgbEncoder,
    center_crop_offsets,
)
from jrobot.policies.diffusion.policy import (
    build,
    compute_loss,
    ema_preset,
    executed_slice,
    from_lerobot,
    generate_trajectory,
    global_cond_dim,
    global_conditioning,
    inference_model,
    loss,
    make_spec,
    optimizer_preset,
    param_group,
    prepare_observation,
    sample_actions,
)
from jrobot.policies.resnet import resnet_feature_hw

Config = DiffusionConfig

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
    "inference_model",
    "loss",
    "make_spec",
    "optimizer_preset",
    "param_group",
    "prepare_observation",
    "resnet_feature_hw",
    "sample_actions",
]

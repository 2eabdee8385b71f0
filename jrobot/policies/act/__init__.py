"""ACT (Action Chunking Transformer) in Flax NNX, numerically matching LeRobot 0.4.4's `ACTPolicy`.

Module tree and parameter names mirror LeRobot (`model.backbone.*`, `model.encoder.layers.0.self_attn.*`,
...), so a LeRobot `model.safetensors` loads by path (`from_lerobot`). Tensors are batch-first here
(LeRobot's transformer is sequence-first; the math is identical).

Behaviour (reference: ../shared/reference/lerobot_policies.md §2):
- ResNet18 trunk with frozen batch norm, 1x1 conv projection, 2-D sinusoid positions per camera
  (shared trunk, no per-camera embedding), tokens [latent, state, env, cam0 (h w), cam1 ...].
- Positional embeddings are added to queries and keys only, in every layer; post-norm by default;
  the decoder ends with an extra LayerNorm; decoder queries are zeros + learned `decoder_pos_embed`.
- Train mode with `use_vae`: VAE encoder over [cls, state, actions] with the action pad mask, latent
  `mu + exp(log_sigma_x2 / 2) * eps`; eval mode: zero latent, no dropout.
- Loss: masked L1 averaged over all (B, chunk, A) elements, padded ones included (0.4.4,
  `l1_reduction="mean_all"`) or over valid elements only (HEAD, `"mean_valid"`), plus
  `kl_weight * mean_B(sum_latent KL)`.
- Normalization (MEAN_STD by default) happens inside: observations in, dataset-unit actions out.

Layout: `config` (ACTConfig and its LeRobot mapping), `model` (the NNX networks), `policy` (the entry
points of the `jrobot.policies.base.PolicyModule` contract, re-exported here).
"""

from jrobot.policies.act.config import POLICY_TYPE, ACTConfig
from jrobot.policies.act.model import ACTModel, ACTPolicy
from jrobot.policies.act.policy import (
    build,
    ema_preset,
    forward,
    from_lerobot,
    inference_model,
    loss,
    make_spec,
    optimizer_preset,
    param_group,
    predict_chunk_normalized,
    prepare_observation,
    sample_actions,
)

Config = ACTConfig

__all__ = [
    "POLICY_TYPE",
    "ACTConfig",
    "ACTModel",
    "ACTPolicy",
    "Config",
    "build",
    "ema_preset",
    "forward",
    "from_lerobot",
    "inference_model",
    "loss",
    "make_spec",
    "optimizer_preset",
    "param_group",
    "predict_chunk_normalized",
    "prepare_observation",
    "sample_actions",
]

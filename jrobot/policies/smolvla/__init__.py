"""SmolVLA (vision-language-action) in Flax NNX, numerically matching LeRobot 0.4.4's `SmolVLAPolicy`.

SmolVLM's vision tower, pixel-shuffle connector and Llama text model (truncated to `num_vlm_layers`)
embed the cameras, the tokenized task and the state into a prefix; an action expert (a narrower Llama
with interleaved self- and cross-attention layers) denoises an action chunk by flow matching, Euler steps
from t=1 to 0 against the prefix's keys/values computed once. Reference: ../shared/reference/
lerobot_policies.md §4 and §7.

Layout: `config` (SmolVLAConfig, the VLM architecture), `model` (the NNX networks and numerics),
`vlm_folder` (finding the VLM folder, its config, tokenizer and pretrained weights), `policy` (the entry
points of the `jrobot.policies.base.PolicyModule` contract, re-exported here).
"""

from jrobot.policies.smolvla.config import POLICY_TYPE, SMOLVLM2_500M, SmolVLAConfig, VLMArch
from jrobot.policies.smolvla.model import SmolVLAPolicy, VLAFlowMatching
from jrobot.policies.smolvla.policy import (
    LANGUAGE_MASK,
    LANGUAGE_TOKENS,
    build,
    ema_preset,
    from_lerobot,
    inference_model,
    load_pretrained_vlm,
    loss,
    losses,
    make_spec,
    optimizer_preset,
    param_group,
    predict_chunk_normalized,
    prepare_inputs,
    sample_actions,
)

Config = SmolVLAConfig

__all__ = [
    "LANGUAGE_MASK",
    "LANGUAGE_TOKENS",
    "POLICY_TYPE",
    "SMOLVLM2_500M",
    "Config",
    "SmolVLAConfig",
    "SmolVLAPolicy",
    "VLAFlowMatching",
    "VLMArch",
    "build",
    "ema_preset",
    "from_lerobot",
    "inference_model",
    "load_pretrained_vlm",
    "loss",
    "losses",
    "make_spec",
    "optimizer_preset",
    "param_group",
    "predict_chunk_normalized",
    "prepare_inputs",
    "sample_actions",
]

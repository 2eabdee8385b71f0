"""SmolVLA (the smolvla_base architecture, ~450M parameters) fine-tuned on the instruction-conditioned
sim task, LeRobot's recipe, for a GPU or a TPU/GPU cluster.

    python -m jrobot.train --config configs/smolvla_so101_sim.py --workdir runs/smolvla \
        --config.data.shards=outputs/demo_vla/shards [--config.policy.config.vlm_model_name=DIR]
    python -m jrobot.export --workdir runs/smolvla --out bundles/smolvla
    python -m jrobot.eval --policy bundles/smolvla --env jrobot/SO101PickColor-v0 --out runs/smolvla/eval

LeRobot's SmolVLA (`jrobot.policies.smolvla`): the SmolVLM2 vision tower, connector and first
`num_vlm_layers` text layers embed both cameras, the episode's task instruction and the joint positions;
an action expert denoises a chunk of actions by flow matching. As LeRobot fine-tunes it, the VLM starts
from its pretrained weights (`load_vlm_weights`) and stays frozen (`train_expert_only`,
`freeze_vision_encoder`): frozen parts are held as buffers, so only the expert, the state/action
projections and the time embedding get gradients and AdamW state. `precision="bfloat16"` is LeRobot's
mixed mode (the VLM and expert computed and held in bf16, the plain projections in fp32). The recipe is
SmolVLA's preset: AdamW 1e-4, betas (0.9, 0.95), weight decay 1e-10, grad clip 10, cosine decay with
warmup; batch 64 as smolvla_base was trained.

`policy.config.vlm_model_name` is the VLM: LeRobot's hub id by default (resolved from the Hugging Face
cache, downloaded once when online), or a local folder with its config.json, tokenizer and, with
`load_vlm_weights`, model.safetensors; a local smolvla_base checkpoint imports with
`jrobot.export --from-lerobot`. Each sample's instruction is its episode's task in the shards,
tokenized once per task with the VLM's tokenizer (`jrobot.train.task_tokens`); the bundle carries the
tokenizer, so `jrobot.run --task` / `jrobot.eval` tokenize exactly as training did.

Sharding: the mesh puts every device on the `fsdp` axis and every parameter, buffer and optimizer
state on it (each leaf's largest divisible dimension), so the 450M parameters and their state are
split across the devices; `tests/train/test_distributed.py` checks the split and that the loss equals
one device's. `configs/smolvla_so101_sim_cpu.py` is the same model family at a CPU's size.
"""

import ml_collections

from configs import common
from jrobot.policies.smolvla import SmolVLAConfig
from jrobot.train.config_util import dataclass_config


def get_config() -> ml_collections.ConfigDict:
    c = common.run_config()
    c.batch_size = 64
    c.num_steps = 20_000
    c.log_every = 100
    c.data.shards = "outputs/demo_vla/shards"
    c.eval.env = "jrobot/SO101PickColor-v0"

    c.policy.type = "smolvla"
    # SmolVLA reads the joints and the cameras (LeRobot's SmolVLA has no environment-state input)
    c.policy.input_features = ("observation.state", "observation.images.front", "observation.images.wrist")
    c.policy.config = dataclass_config(
        SmolVLAConfig,
        vlm_model_name="HuggingFaceTB/SmolVLM2-500M-Video-Instruct",
        load_vlm_weights=True,
        freeze_vision_encoder=True,
        train_expert_only=True,
        num_vlm_layers=16,  # lerobot/smolvla_base keeps the first 16 of the VLM's 32 text layers
        chunk_size=50,
        n_action_steps=50,
        resize_imgs_with_padding=(512, 512),  # SmolVLM2's image size
        tokenizer_max_length=48,
        precision="bfloat16",
        scheduler_warmup_steps=1000,
        scheduler_decay_steps=20_000,
    )
    c.optimizer.lr = 1e-4  # SmolVLA's preset: AdamW (0.9, 0.95), clip 10, cosine decay with warmup
    c.mesh = ml_collections.ConfigDict({"data": 1, "fsdp": -1})
    c.sharding_rules = [(".*", "fsdp")]
    c.checkpoint.every = 2000
    c.checkpoint.keep = 3
    return c

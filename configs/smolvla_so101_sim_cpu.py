"""The SmolVLA architecture at a 2-core CPU's size, trained from scratch: what the VLA demo trains.

    python -m jrobot.train --config configs/smolvla_so101_sim_cpu.py --workdir runs/smolvla_cpu \
        --config.data.shards=outputs/demo_vla/shards
    python -m jrobot.export --workdir runs/smolvla_cpu --out bundles/smolvla_cpu
    python -m jrobot.eval --policy bundles/smolvla_cpu --env jrobot/SO101PickColor-v0 --out runs/eval

The same network as `configs/smolvla_so101_sim.py` (SigLIP-style vision tower, pixel-shuffle connector,
Llama text layers over [images, instruction, state], flow-matching action expert with interleaved
cross/self attention) on the CPU-sized SmolVLM folder shipped with jrobot
(`jrobot.policies.smolvla.tiny_vlm`: 64-wide vision and text, 8x8 patches of 64x64 images, a word-level
tokenizer), randomly initialized. Nothing is pretrained, so nothing is frozen: the whole model trains,
with SmolVLA's optimizer preset (AdamW, betas (0.9, 0.95), grad clip 10, cosine decay with warmup) at
a higher peak rate suited to a small model trained from scratch. The policy reads what a real arm has:
both cameras (48x64, padded to 64x64), the joint positions and the instruction.

Trained this way the policy does not yet follow the instruction well enough to succeed: see
`benchmarks/README.md` (demo_recipes.py) for the figures, the diagnosis and what is left to try.
"""

import ml_collections

from configs import smolvla_so101_sim
from jrobot.policies.smolvla.tiny_vlm import SHIPPED


def get_config() -> ml_collections.ConfigDict:
    c = smolvla_so101_sim.get_config()
    c.batch_size = 32
    c.num_steps = 5000
    c.max_train_seconds = 1200.0
    c.log_every = 250
    c.demo_image_size = "48x64"  # resolution the VLA demo stores in the shards
    c.data.num_workers = 0
    c.data.read_threads = 2
    c.data.prefetch = 2
    c.mesh = ml_collections.ConfigDict({"data": -1, "fsdp": 1})
    c.policy.config.update(
        {
            "vlm_model_name": str(SHIPPED),
            "load_vlm_weights": False,
            "freeze_vision_encoder": False,
            "train_expert_only": False,
            "num_vlm_layers": 4,
            "chunk_size": 30,
            "n_action_steps": 20,
            "resize_imgs_with_padding": (64, 64),
            "tokenizer_max_length": 16,
            "precision": "float32",
            "scheduler_warmup_steps": 100,
            "scheduler_decay_steps": 5000,
            "optimizer_lr": 1e-3,
            "scheduler_decay_lr": 1e-5,
        }
    )
    c.optimizer.lr = 1e-3
    c.checkpoint.every = 1000
    c.checkpoint.keep = 2
    return c

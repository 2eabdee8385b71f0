"""SmolVLA fine-tuned on the MuJoCo SO-101 pick-and-place demonstrations, run settings sized for a CPU.

    python -m jrobot.train --config configs/smolvla_so101_sim_cpu.py --workdir runs/smolvla_cpu \
        --config.data.shards=outputs/demo/shards
    python -m jrobot.export --workdir runs/smolvla_cpu --out bundles/smolvla_cpu
    python -m jrobot.eval --policy bundles/smolvla_cpu --out runs/smolvla_cpu/eval   # the env's instruction

LeRobot's SmolVLA (`jrobot.policies.smolvla`): the SmolVLM2 vision tower, connector and first
`num_vlm_layers` text layers embed both cameras, the episode's task instruction and the joint positions;
an action expert denoises a chunk of actions by flow matching. As LeRobot fine-tunes it, the VLM starts
from its pretrained weights (`load_vlm_weights`) and stays frozen (`train_expert_only`); the expert,
the state/action projections and the time embedding are trained. Each sample's instruction comes from
its episode's task in the shards, tokenized with the VLM's tokenizer to `tokenizer_max_length` tokens
(`jrobot.train.task_tokens`); the bundle carries that tokenizer, so `jrobot.run --task` / `jrobot.eval`
tokenize exactly as training did.

`policy.config.vlm_model_name` is the VLM: LeRobot's hub id by default (resolved from the Hugging Face
cache, downloaded once when online), or a local folder with its config.json, tokenizer and, with
`load_vlm_weights`, model.safetensors. The model records the folder it was built with
(`vlm_path`), which is where `jrobot.export` takes the tokenizer from.

What is CPU-sized here are the run settings (a small batch, a 30-step chunk, threads instead of worker
processes); the 500M VLM itself reads 512x512 images, so each step of it takes tens of seconds on a
laptop CPU: use it for a smoke run, a GPU for a real one. A VLM folder of your own that is small (e.g.
the tiny SmolVLM of the tests) trains in seconds per step:

    python -m jrobot.train --config configs/smolvla_so101_sim_cpu.py --workdir runs/smolvla_tiny \
        --config.data.shards=outputs/demo/shards --config.policy.config.vlm_model_name=path/to/vlm \
        --config.policy.config.load_vlm_weights=False \
        --config.policy.config.resize_imgs_with_padding="(64, 64)" --config.policy.config.num_vlm_layers=2

(`resize_imgs_with_padding` must be the VLM's own image size: the vision tower's position embeddings
are fixed to its grid.)
"""

import ml_collections

from configs import common
from jrobot.policies.smolvla import SmolVLAConfig
from jrobot.train.config_util import dataclass_config


def get_config() -> ml_collections.ConfigDict:
    c = common.run_config()
    c.batch_size = 8
    c.num_steps = 3000
    c.log_every = 25
    c.data.shards = "outputs/demo/shards"
    c.data.num_workers = 0
    c.data.read_threads = 2
    c.data.prefetch = 2

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
        chunk_size=30,
        n_action_steps=20,
        resize_imgs_with_padding=(512, 512),  # SmolVLM2's image size
        tokenizer_max_length=48,
        scheduler_warmup_steps=100,
        scheduler_decay_steps=3000,
    )
    c.optimizer.lr = 1e-4  # SmolVLA's preset: AdamW (0.9, 0.95), clip 10, cosine decay with warmup
    c.checkpoint.every = 500
    c.checkpoint.keep = 2
    return c

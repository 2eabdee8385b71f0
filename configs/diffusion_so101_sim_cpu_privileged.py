"""DEBUGGING ONLY: Diffusion Policy sized for a 2-core CPU, reading the simulator's cube pose.

    python -m jrobot.train --config configs/diffusion_so101_sim_cpu_privileged.py \
        --workdir runs/diffusion_priv --config.data.shards=outputs/demo/shards

The same network family as LeRobot's (FiLM-conditioned 1-D UNet, DDPM training), smaller (UNet
(64, 128, 256)), reading the joint positions and `observation.environment_state` (the cube's pose,
which only the simulator knows) instead of the cameras, sampling with DDIM in 10 steps so the runtime
computes a chunk in milliseconds. It checks the diffusion training loop in minutes; it cannot drive a
real arm. `configs/diffusion_so101_sim.py` is the camera-reading recipe (a GPU's worth of training).
"""

import ml_collections

from configs import diffusion_so101_sim


def get_config() -> ml_collections.ConfigDict:
    c = diffusion_so101_sim.get_config()
    c.batch_size = 64
    c.num_steps = 6000
    c.max_train_seconds = 1800.0
    c.log_every = 250
    c.data.shards = "outputs/demo/shards"
    c.data.num_workers = 0
    c.data.read_threads = 2
    c.policy.input_features = ("observation.state", "observation.environment_state")
    c.policy.config.update(
        {
            "crop_shape": None,
            "down_dims": (64, 128, 256),
            "kernel_size": 5,
            "n_groups": 8,
            "diffusion_step_embed_dim": 64,
            "horizon": 16,
            "n_action_steps": 8,
            "noise_scheduler_type": "DDIM",
            "num_train_timesteps": 100,
            "num_inference_steps": 10,
            "scheduler_warmup_steps": 200,
        }
    )
    c.optimizer.lr = 3e-4
    c.checkpoint.every = 5000
    c.checkpoint.keep = 2
    return c

"""DEBUGGING ONLY: the CPU-sized ACT reading the simulator's cube pose instead of the cameras.

    python -m jrobot.train --config configs/act_so101_sim_cpu_privileged.py --workdir runs/act_priv \
        --config.data.shards=outputs/demo/shards

`observation.environment_state` (the cube's position and yaw) exists only in the simulator, so a policy
trained on it can never drive a real arm: this config is for separating "the policy cannot see" from
"the loop is broken" (if this one succeeds and the camera one does not, look at vision). `make demo`
uses `configs/act_so101_sim_cpu.py`, which reads the cameras.

The scripted expert is deterministic, so the CVAE that ACT uses to model the spread of human
demonstrations is off (`use_vae=False`, as LeRobot allows), as is dropout; a higher learning rate with
a cosine decay suits the small model. Measured with 60 demonstrations, 2 dedicated cores per run,
100 evaluation episodes each: 5500 steps with the cosine decay reached 99% success, 4000 steps 80%,
4000 steps at a constant rate 55%, and the VAE version 14-28% after the same time.
"""

import ml_collections

from configs import act_so101_sim


def get_config() -> ml_collections.ConfigDict:
    c = act_so101_sim.get_config()
    c.batch_size = 64
    c.num_steps = 5500
    c.max_train_seconds = 780.0
    c.log_every = 250
    c.demo_image_size = "48x64"  # resolution the demo stores in the shards
    c.data.shards = "outputs/demo/shards"
    c.data.num_workers = 0
    c.data.read_threads = 2
    c.data.prefetch = 2
    c.policy.input_features = ("observation.state", "observation.environment_state")
    c.policy.config.update(
        {
            "chunk_size": 30,
            "n_action_steps": 20,
            "dim_model": 128,
            "n_heads": 4,
            "dim_feedforward": 512,
            "n_encoder_layers": 2,
            "n_decoder_layers": 1,
            "n_vae_encoder_layers": 2,
            "latent_dim": 32,
            "dropout": 0.0,
            "use_vae": False,
        }
    )
    c.optimizer.lr = 1e-3
    c.optimizer.scheduler.name = "cosine"
    c.optimizer.scheduler.num_warmup_steps = 100
    c.checkpoint.every = 2000
    c.checkpoint.keep = 2
    return c

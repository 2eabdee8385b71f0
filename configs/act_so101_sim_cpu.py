"""ACT sized for a 2-core CPU: what `make demo` trains on the MuJoCo pick-and-place demonstrations.

    python -m jrobot.train --config configs/act_so101_sim_cpu.py --workdir runs/act_cpu \
        --config.data.shards=outputs/demo/shards

LeRobot's ACT (VAE, transformer encoder/decoder, chunked actions), reading the joint positions and the
simulator's cube pose (`observation.environment_state`) instead of the cameras: a ResNet18 trained from
scratch on camera images needs far more steps than a 2-core CPU runs in the demo's few minutes (that is
what `configs/act_so101_sim.py` is for, on a GPU). The cameras are still recorded and sharded.
"""

import ml_collections

from configs import act_so101_sim


def get_config() -> ml_collections.ConfigDict:
    c = act_so101_sim.get_config()
    c.batch_size = 64
    c.num_steps = 3000
    c.log_every = 250
    c.demo_image_size = "48x64"  # resolution the demo stores in the shards
    c.data.shards = "outputs/demo/shards"
    c.data.num_workers = 0
    c.data.read_threads = 2
    c.data.prefetch = 2
    c.policy.input_features = ["observation.state", "observation.environment_state"]
    c.policy.config.update(
        {
            "chunk_size": 30,
            "n_action_steps": 10,
            "dim_model": 128,
            "n_heads": 4,
            "dim_feedforward": 512,
            "n_encoder_layers": 2,
            "n_decoder_layers": 1,
            "n_vae_encoder_layers": 2,
            "latent_dim": 32,
            "dropout": 0.1,
        }
    )
    c.optimizer = ml_collections.ConfigDict({"lr": 3e-4})
    c.checkpoint.every = 1000
    c.checkpoint.keep = 2
    return c

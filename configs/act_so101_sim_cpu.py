"""ACT sized for a 2-core CPU: what `make demo` trains on the MuJoCo pick-and-place demonstrations.

    python -m jrobot.train --config configs/act_so101_sim_cpu.py --workdir runs/act_cpu \
        --config.data.shards=outputs/demo/shards

LeRobot's ACT (transformer encoder/decoder, chunked actions), reading the joint positions and the
simulator's cube pose (`observation.environment_state`) instead of the cameras: a ResNet18 trained from
scratch on camera images needs far more steps than a 2-core CPU runs in the demo's few minutes (that is
what `configs/act_so101_sim.py` is for, on a GPU). The cameras are still recorded and sharded.

The scripted expert is deterministic, so the CVAE that ACT uses to model the spread of human
demonstrations is off (`use_vae=False`, as LeRobot allows), as is dropout; a higher learning rate with
a cosine decay suits the small model. Measured with 60 demonstrations, 2 dedicated cores per run,
100 evaluation episodes each: 5500 steps with the cosine decay reached 99% success, 4000 steps 80%,
4000 steps at a constant rate 55%, and the VAE version 14-28% after the same time.
`max_train_seconds` caps the training time so `make demo` stays within 20 minutes on a slow machine
(stopping early costs success rate).
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

"""ACT on the MuJoCo SO-101 pick-and-place demonstrations, full LeRobot size (for a GPU).

    python -m jrobot.train --config configs/act_so101_sim.py --workdir runs/act_sim \
        --config.data.shards=outputs/sim/shards

LeRobot's ACT defaults (dim 512, 4+1 layers, chunk 100, AdamW 1e-5, batch 8 in LeRobot; we use 64
as LeRobot's notebooks do on an A100). Images are trained at the shard resolution.
"""

import ml_collections
from ml_collections.config_dict import placeholder

from jrobot.policies.act import ACTConfig
from jrobot.train.config_util import dataclass_config


def get_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.seed = 1000
    c.batch_size = 64
    c.num_steps = 100_000
    c.grad_accum_steps = 1
    c.max_train_seconds = 0.0  # > 0: stop (with a checkpoint) once the run has taken this long
    c.log_every = 100

    c.data = ml_collections.ConfigDict()
    c.data.shards = "outputs/sim/shards"
    c.data.weights = placeholder(tuple)  # mixing weights when data.shards lists several sets
    c.data.val_fraction = 0.0
    c.data.num_workers = 8
    c.data.read_threads = 4
    c.data.prefetch = 4
    c.data.augment = None

    c.policy = ml_collections.ConfigDict()
    c.policy.type = "act"
    c.policy.config = dataclass_config(
        ACTConfig,
        chunk_size=100,
        n_action_steps=100,
        dim_model=512,
        n_heads=8,
        dim_feedforward=3200,
        n_encoder_layers=4,
        n_decoder_layers=1,
        n_vae_encoder_layers=4,
        latent_dim=32,
        dropout=0.1,
        kl_weight=10.0,
        pretrained_backbone_weights=None,  # or "ResNet18_Weights.IMAGENET1K_V1" + pretrained_backbone_path
    )
    c.policy.input_features = placeholder(tuple)  # None: every feature of the shards
    c.optimizer = ml_collections.ConfigDict(
        {
            "lr": 1e-5,
            "group_lr": {"backbone": 1e-5},
            # unset name: the policy preset's schedule (constant for ACT); see jrobot.train.optim
            "scheduler": {"name": placeholder(str), "num_warmup_steps": 0},
        }
    )

    c.mesh = ml_collections.ConfigDict({"data": -1, "fsdp": 1})
    c.sharding_rules = [(".*", "fsdp")]

    c.checkpoint = ml_collections.ConfigDict({"every": 5000, "keep": 3, "async_save": True})
    c.wandb = ml_collections.ConfigDict(
        {k: placeholder(str) for k in ("project", "mode", "entity", "name", "id")}
    )  # mode: online/offline/disabled; offline unless a project is set
    c.eval = ml_collections.ConfigDict(
        {"every": 0, "env": "jrobot/SO101PickPlace-v0", "episodes": 20, "seed": 10_000}
    )
    return c

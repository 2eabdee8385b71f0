"""ACT on the MuJoCo SO-101 pick-and-place demonstrations, full LeRobot size (for a GPU).

    python -m jrobot.train --config configs/act_so101_sim.py --workdir runs/act_sim \
        --config.data.shards=outputs/sim/shards

LeRobot's ACT defaults (dim 512, 4+1 layers, chunk 100, AdamW 1e-5, batch 8 in LeRobot; we use 64
as LeRobot's notebooks do on an A100). Images are trained at the shard resolution.
"""

import ml_collections

from configs import common
from jrobot.policies.act import ACTConfig
from jrobot.train.config_util import dataclass_config


def get_config() -> ml_collections.ConfigDict:
    c = common.run_config()
    c.batch_size = 64
    c.num_steps = 100_000

    c.policy.type = "act"
    # what a real arm has: joint positions and the two cameras (never the sim-only cube pose)
    c.policy.input_features = ("observation.state", "observation.images.front", "observation.images.wrist")
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
    c.optimizer.lr = 1e-5
    c.optimizer.group_lr = {"backbone": 1e-5}
    return c

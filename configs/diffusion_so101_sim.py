"""Diffusion Policy on the MuJoCo SO-101 pick-and-place demonstrations, LeRobot 0.4.4's size (GPU).

    python -m jrobot.train --config configs/diffusion_so101_sim.py --workdir runs/diffusion_sim \
        --config.data.shards=outputs/sim/shards

LeRobot's DiffusionConfig defaults (ResNet18 with GroupNorm and spatial-softmax keypoints, 1-D UNet
(512, 1024, 2048), DDPM with 100 steps, horizon 16, 2 observation steps, 8 executed actions), Adam with
the cosine schedule, plus an EMA of the parameters (what the original Diffusion Policy evaluates).
Images are cropped to 90% at random in training and at the centre at inference.
"""

import ml_collections

from configs import common
from jrobot.policies.diffusion import DiffusionConfig
from jrobot.train.config_util import dataclass_config


def get_config() -> ml_collections.ConfigDict:
    c = common.run_config()
    c.batch_size = 64
    c.num_steps = 100_000
    c.policy.type = "diffusion"
    # what a real arm has: joint positions and the two cameras (never the sim-only cube pose)
    c.policy.input_features = ("observation.state", "observation.images.front", "observation.images.wrist")
    c.policy.config = dataclass_config(DiffusionConfig, crop_shape=(86, 115), use_ema=True)
    c.optimizer.lr = 1e-4
    c.optimizer.group_lr = {}
    return c

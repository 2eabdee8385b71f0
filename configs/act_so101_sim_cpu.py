"""ACT sized for a 2-core CPU, reading the cameras and the joints: what `make demo` trains.

    python -m jrobot.train --config configs/act_so101_sim_cpu.py --workdir runs/act_cpu \
        --config.data.shards=outputs/demo/shards

LeRobot's ACT (transformer encoder/decoder, chunked actions) with the inputs a real SO-101 has: the
front and wrist cameras at 48x64 and the joint positions. An ImageNet ResNet18 is far too slow to train
from scratch on two cores (and its weights cannot be downloaded everywhere), so the images go through a
small trunk trained from scratch (`vision_backbone="cnn"`: three 3x3 conv stages, 16-32-32 channels,
GroupNorm), reduced to 32 spatial soft-argmax keypoints per camera (`image_features="spatial_softmax"`,
as Diffusion Policy does): one encoder token per camera, which carries where the cube and the gripper
are. The trunk trains at the same learning rate as the rest (a pretrained trunk would get LeRobot's
smaller `backbone` rate).

The scripted expert is deterministic, so the CVAE that ACT uses to model the spread of human
demonstrations is off (`use_vae=False`, as LeRobot allows), as is dropout; a higher learning rate with
a cosine decay suits the small model. The success-vs-training-time curve of this recipe and of the
alternatives tried (feature-map tokens, one camera, random-shift augmentation, fewer steps) is in
`benchmarks/README.md`. `max_train_seconds` caps the training time so `make demo` stays within 20
minutes, and `fit_steps_to_time` makes a machine too slow for 4,000 steps in that time train fewer steps
of the whole cosine schedule instead of stopping partway through it (`jrobot.train.time_fit`).

`configs/act_so101_sim_cpu_privileged.py` is the same policy reading the simulator's cube pose instead
of the cameras, for debugging only.
"""

import ml_collections

from configs import act_so101_sim


def get_config() -> ml_collections.ConfigDict:
    c = act_so101_sim.get_config()
    c.batch_size = 64
    c.num_steps = 4000
    c.max_train_seconds = 780.0
    c.fit_steps_to_time = True
    c.log_every = 250
    c.demo_image_size = "48x64"  # resolution the demo stores in the shards
    c.data.shards = "outputs/demo/shards"
    c.data.num_workers = 0
    c.data.read_threads = 2
    c.data.prefetch = 2
    c.policy.input_features = ("observation.state", "observation.images.front", "observation.images.wrist")
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
            "vision_backbone": "cnn",
            "pretrained_backbone_weights": None,
            "cnn_channels": (16, 32, 32),
            "cnn_strides": (2, 2, 1),
            "image_features": "spatial_softmax",
            "spatial_softmax_num_keypoints": 32,
            "random_shift_pixels": 0,
        }
    )
    c.optimizer.lr = 1e-3
    c.optimizer.group_lr = {"backbone": 1e-3}
    c.optimizer.scheduler.name = "cosine"
    c.optimizer.scheduler.num_warmup_steps = 100
    c.checkpoint.every = 2000
    c.checkpoint.keep = 2
    return c

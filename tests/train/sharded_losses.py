"""Run as a script (in a process with 8 simulated CPU devices): the same 3 training steps on one device
and on a (data=2, fsdp=4) mesh; prints both loss sequences and whether parameters were sharded.

    XLA_FLAGS=--xla_force_host_platform_device_count=8 python tests/train/sharded_losses.py SHARDS
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import jax
import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).parent))


def main(shards: str) -> None:
    from conftest import TINY_ACT

    from configs import act_so101_sim
    from jrobot.pipeline.loader import DataLoader, make_train_dataset
    from jrobot.shards.format import ShardSet
    from jrobot.train import sharding as shd
    from jrobot.train.trainer import pipeline_config, setup_training

    config = act_so101_sim.get_config()
    config.data.shards = shards
    config.data.num_workers = 0
    config.batch_size = 8
    config.num_steps = 3
    config.policy.config.update({**TINY_ACT, "use_vae": True, "dropout": 0.1})
    config.sharding_rules = [(".*", "fsdp")]
    shard_sets = [ShardSet(shards)]
    results = {}
    for name, mesh in {
        "one_device": shd.make_mesh(1, 1, devices=jax.devices()[:1]),
        "data2_fsdp4": shd.make_mesh(2, 4),
    }.items():
        setup = setup_training(config, mesh, shard_sets)
        loader = DataLoader(
            make_train_dataset(pipeline_config(config, setup.policy.spec)), to_device=setup.batcher
        )
        state = setup.init()
        losses = []
        for _ in range(3):
            state, metrics = setup.step(state, next(loader))
            losses.append(float(metrics["loss"]))
        loader.close()
        sharded = [
            str(leaf.sharding.spec)
            for leaf in jax.tree.leaves(state["params"])
            if any(ax is not None for ax in leaf.sharding.spec)
        ]
        results[name] = {"losses": losses, "sharded_leaves": len(sharded), "devices": mesh.devices.size}
    print(json.dumps(results))


if __name__ == "__main__":
    np.set_printoptions(precision=8)
    main(sys.argv[1])

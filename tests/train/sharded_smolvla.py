"""Run as a script (in a process with 8 simulated CPU devices): SmolVLA on the `fsdp` axis.

    XLA_FLAGS=--xla_force_host_platform_device_count=8 python tests/train/sharded_smolvla.py SHARDS VLM

1. `full_size`: configs/smolvla_so101_sim.py's model (smolvla_base's ~450M parameters, abstract: never
   allocated) laid out on that config's mesh over the 8 devices: how much of the parameters, frozen
   buffers and optimizer state each device holds, which large leaves stay whole, and how many
   parameters have optimizer state (only the trainable ones should).
2. `tiny`: three real training steps of a tiny SmolVLA on one device and on an (fsdp=8) mesh.
Prints one JSON line.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

LARGE = 1_000_000  # elements: a leaf this big must be split


def _elements(tree) -> int:
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


def full_size() -> dict:
    from flax import nnx

    from jrobot.features import Feature
    from jrobot.policies import smolvla
    from jrobot.policies.smolvla.config import SMOLVLM2_500M
    from jrobot.train import sharding as shd
    from jrobot.train.config_util import load_config_file
    from jrobot.train.trainer import plan_train_state, policy_config_dict

    config = load_config_file(REPO / "configs" / "smolvla_so101_sim.py")
    pcfg = smolvla.SmolVLAConfig.from_dict(policy_config_dict(config))
    # the architecture of the hub VLM, without its folder; nothing is allocated, so no weights either
    pcfg = dataclasses.replace(pcfg, vlm=SMOLVLM2_500M.to_dict(), load_vlm_weights=False)
    names = [f"j{i}" for i in range(6)]
    features = {
        "observation.state": Feature("float32", (6,), names),
        "action": Feature("float32", (6,), names),
        **{
            f"observation.images.{c}": Feature("video", (96, 128, 3), ["height", "width", "channels"])
            for c in ("front", "wrist")
        },
    }
    stats = {k: {"mean": np.zeros(6), "std": np.ones(6)} for k in ("observation.state", "action")}
    model = nnx.eval_shape(lambda: smolvla.build(pcfg, features, stats))
    _, params, frozen = nnx.split(model, nnx.Param, ...)
    mesh = shd.make_mesh(int(config.mesh.data), int(config.mesh.fsdp))
    plan = plan_train_state(config, smolvla, model.config, params, frozen, mesh)

    per_device = total = 0
    whole_large = []
    for path, leaf in jax.tree_util.tree_leaves_with_path(plan.abstract):
        nbytes = int(np.prod(leaf.shape)) * leaf.dtype.itemsize
        shard = leaf.sharding.shard_shape(leaf.shape)
        total += nbytes
        per_device += int(np.prod(shard)) * leaf.dtype.itemsize
        if int(np.prod(leaf.shape)) >= LARGE and tuple(shard) == tuple(leaf.shape):
            whole_large.append(jax.tree_util.keystr(path))
    opt_floats = sum(
        int(np.prod(x.shape))
        for x in jax.tree.leaves(plan.abstract["opt_state"])
        if jnp.issubdtype(x.dtype, jnp.floating) and x.ndim > 0
    )
    return {
        "devices": int(mesh.devices.size),
        "fsdp": int(mesh.shape["fsdp"]),
        "trainable": _elements(params),
        "frozen": _elements(frozen),
        "optimizer_floats": opt_floats,
        "state_bytes": total,
        "per_device_bytes": per_device,
        "whole_large_leaves": whole_large,
        "frozen_dtypes": sorted({str(x.dtype) for x in jax.tree.leaves(frozen)}),
    }


def tiny(shards: str, vlm: str) -> dict:
    from jrobot.pipeline.loader import DataLoader, make_train_dataset
    from jrobot.shards.format import ShardSet
    from jrobot.train import sharding as shd
    from jrobot.train.config_util import load_config_file
    from jrobot.train.trainer import pipeline_config, setup_training

    config = load_config_file(REPO / "configs" / "smolvla_so101_sim_cpu.py")
    config.data.shards = shards
    config.data.read_threads = 1
    config.batch_size = 8
    config.num_steps = 3
    config.policy.config.update(
        {
            "vlm_model_name": vlm,
            "resize_imgs_with_padding": (64, 64),
            "num_vlm_layers": 2,
            "chunk_size": 4,
            "n_action_steps": 4,
        }
    )
    results = {}
    for name, mesh in {
        "one_device": shd.make_mesh(1, 1, devices=jax.devices()[:1]),
        "fsdp8": shd.make_mesh(1, 8),
    }.items():
        setup = setup_training(config, mesh, [ShardSet(shards)])
        loader = DataLoader(make_train_dataset(pipeline_config(config, setup.policy.spec)))
        state = setup.init()
        losses = []
        for _ in range(3):
            state, metrics = setup.step(state, setup.to_device(next(loader)))
            losses.append(float(metrics["loss"]))
        loader.close()
        sharded = [leaf for leaf in jax.tree.leaves(state["params"]) if any(leaf.sharding.spec)]
        results[name] = {"losses": losses, "sharded_leaves": len(sharded), "devices": int(mesh.devices.size)}
    return results


if __name__ == "__main__":
    print(json.dumps({"full_size": full_size(), "tiny": tiny(sys.argv[1], sys.argv[2])}))

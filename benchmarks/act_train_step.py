"""ACT training steps/s for a config and batch, jrobot (JAX) vs LeRobot (PyTorch) on the same machine.

    python benchmarks/act_train_step.py --config configs/act_so101_sim_cpu_privileged.py --batch 8 --steps 20
    JROBOT_LEROBOT_PYTHON=/path/to/lerobot-venv/bin/python python benchmarks/act_train_step.py ...

Both sides train the same architecture on the same synthetic batch (state 6, action 6, the config's
cameras and image size) with the same optimizer preset; the figure is the median over timed steps
after warm-up (compilation excluded, reported separately). Without a LeRobot interpreter only jrobot
is measured and the ratio is against nothing (printed as n/a).
"""

from __future__ import annotations

import argparse
import os
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
from common import print_result, run_lerobot_script

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def synthetic_problem(policy_cfg: dict, cams: int, hw: tuple[int, int], batch: int, seed: int = 0):
    from jrobot.features import SO101_JOINT_KEYS, Feature

    h, w = hw
    feats = {
        "action": Feature("float32", (6,), list(SO101_JOINT_KEYS)),
        "observation.state": Feature("float32", (6,), list(SO101_JOINT_KEYS)),
    }
    names = ["front", "wrist", "top", "side"][:cams]
    for c in names:
        feats[f"observation.images.{c}"] = Feature("video", (h, w, 3), ["height", "width", "channels"])
    stats = {
        "action": {"mean": np.zeros(6, np.float32), "std": np.ones(6, np.float32)},
        "observation.state": {"mean": np.zeros(6, np.float32), "std": np.ones(6, np.float32)},
    }
    for c in names:
        stats[f"observation.images.{c}"] = {
            "mean": np.full((3, 1, 1), 0.45, np.float32),
            "std": np.full((3, 1, 1), 0.25, np.float32),
        }
    rng = np.random.default_rng(seed)
    chunk = int(policy_cfg.get("chunk_size", 100))
    data = {
        "observation.state": rng.normal(size=(batch, 1, 6)).astype(np.float32),
        "action": rng.normal(size=(batch, chunk, 6)).astype(np.float32),
        "action_is_pad": np.zeros((batch, chunk), bool),
    }
    for c in names:
        data[f"observation.images.{c}"] = rng.integers(0, 256, (batch, 1, h, w, 3), dtype=np.uint8)
    return feats, stats, data


def bench_jrobot(config, batch: int, steps: int, cams: int, hw: tuple[int, int]) -> dict:
    import jax
    from flax import nnx

    from jrobot.policies.base import load_policy_module
    from jrobot.train.optim import apply_overrides, make_optimizer
    from jrobot.train.trainer import Policy, make_train_step

    pcfg_dict = config.policy.config.to_dict()
    feats, stats, data = synthetic_problem(pcfg_dict, cams, hw, batch)
    module = load_policy_module("act")
    pcfg = module.Config.from_dict(pcfg_dict)
    model = module.build(pcfg, feats, stats, seed=0)
    graphdef, params, frozen = nnx.split(model, nnx.Param, ...)
    policy = Policy(module, pcfg, model.spec, graphdef, feats, stats)
    preset = apply_overrides(module.optimizer_preset(pcfg), config.get("optimizer", {}).to_dict())
    tx, lr_fn = make_optimizer(preset, params, module.param_group, 10_000)
    state = {
        "step": jax.numpy.zeros((), "int32"),
        "params": params,
        "frozen": frozen,
        "opt_state": tx.init(params),
        "rng": jax.random.PRNGKey(0),
    }
    step = jax.jit(make_train_step(policy, tx, lr_fn, 1, None), donate_argnums=0)
    batch_dev = jax.device_put(data)
    t0 = time.perf_counter()
    state, m = step(state, batch_dev)
    jax.block_until_ready(m["loss"])
    compile_s = time.perf_counter() - t0
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        state, m = step(state, batch_dev)
        jax.block_until_ready(m["loss"])
        times.append(time.perf_counter() - t0)
    n_params = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(params))
    return {
        "device": str(jax.devices()[0].platform),
        "step_s_median": float(np.median(times)),
        "steps_per_s": 1.0 / float(np.median(times)),
        "compile_s": compile_s,
        "params": n_params,
        "loss": float(m["loss"]),
    }


LEROBOT_SCRIPT = textwrap.dedent(
    """
    import json, sys, time, numpy as np, torch
    from lerobot.policies.act.configuration_act import ACTConfig
    from lerobot.policies.act.modeling_act import ACTPolicy
    from lerobot.configs.types import FeatureType, PolicyFeature
    args = json.loads(sys.argv[1])
    torch.set_num_threads(args["threads"])
    h, w = args["hw"]
    names = ["front", "wrist", "top", "side"][: args["cams"]]
    inputs = {"observation.state": PolicyFeature(FeatureType.STATE, (6,))}
    for c in names:
        inputs[f"observation.images.{c}"] = PolicyFeature(FeatureType.VISUAL, (3, h, w))
    cfg = ACTConfig(input_features=inputs, output_features={"action": PolicyFeature(FeatureType.ACTION, (6,))},
                    pretrained_backbone_weights=None, **args["policy"])
    policy = ACTPolicy(cfg)
    policy.train()
    opt = torch.optim.AdamW(policy.parameters(), lr=1e-5, weight_decay=1e-4)
    b, chunk = args["batch"], cfg.chunk_size
    g = torch.Generator().manual_seed(0)
    batch = {"observation.state": torch.randn(b, 6, generator=g), "action": torch.randn(b, chunk, 6, generator=g),
             "action_is_pad": torch.zeros(b, chunk, dtype=torch.bool)}
    for c in names:
        batch[f"observation.images.{c}"] = torch.rand(b, 3, h, w, generator=g)
    def step():
        loss, _ = policy.forward(batch)
        opt.zero_grad(); loss.backward()
        torch.nn.utils.clip_grad_norm_(policy.parameters(), 10.0)
        opt.step()
        return float(loss)
    t0 = time.perf_counter(); step(); warm = time.perf_counter() - t0
    times = []
    for _ in range(args["steps"]):
        t0 = time.perf_counter(); step(); times.append(time.perf_counter() - t0)
    print(json.dumps({"step_s_median": float(np.median(times)), "first_step_s": warm, "torch": torch.__version__}))
    """
)

LEROBOT_KEYS = (
    "chunk_size", "n_action_steps", "dim_model", "n_heads", "dim_feedforward", "n_encoder_layers",
    "n_decoder_layers", "n_vae_encoder_layers", "latent_dim", "dropout", "kl_weight", "use_vae",
)  # fmt: skip


def bench_lerobot(python: str, config, batch: int, steps: int, cams: int, hw) -> dict | None:
    pol = {k: v for k, v in config.policy.config.to_dict().items() if k in LEROBOT_KEYS}
    if cams and not str(pol.get("vision_backbone", "resnet18")).startswith("resnet"):
        print(f"LeRobot has no {pol['vision_backbone']!r} vision backbone: no comparison", file=sys.stderr)
        return None
    args = {
        "policy": pol,
        "batch": batch,
        "steps": steps,
        "cams": cams,
        "hw": list(hw),
        "threads": os.cpu_count(),
    }
    return run_lerobot_script(python, LEROBOT_SCRIPT, args, timeout=3600)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    # the CPU-sized ACT with LeRobot's own ResNet18 trunk (the demo's from-scratch `cnn` trunk has no
    # LeRobot counterpart to compare with); --cams adds the cameras
    p.add_argument("--config", default=str(REPO / "configs/act_so101_sim_cpu_privileged.py"))
    p.add_argument("--batch", type=int, default=None, help="default: the config's batch_size")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--cams", type=int, default=2)
    p.add_argument("--hw", default="96x128", help="image HxW")
    p.add_argument("--lerobot-python", default=os.environ.get("JROBOT_LEROBOT_PYTHON"))
    args = p.parse_args()
    import importlib.util

    spec = importlib.util.spec_from_file_location("cfg", args.config)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    config = mod.get_config()
    load_avg_start = os.getloadavg()
    batch = args.batch or int(config.batch_size)
    hw = tuple(int(v) for v in args.hw.split("x"))
    j = bench_jrobot(config, batch, args.steps, args.cams, hw)
    print(
        f"jrobot ACT train step ({j['device']}, {j['params'] / 1e6:.1f}M params, batch {batch}, {args.cams} cams "
        f"{hw[0]}x{hw[1]}): {j['step_s_median'] * 1e3:.0f} ms/step = {j['steps_per_s']:.2f} steps/s "
        f"(compile {j['compile_s']:.0f} s)"
    )
    result = {
        "jrobot": j, "batch": batch, "cams": args.cams, "hw": hw, "config": args.config,
        "load_avg_start": load_avg_start,
    }  # fmt: skip
    if args.lerobot_python:
        lr = bench_lerobot(args.lerobot_python, config, batch, args.steps, args.cams, hw)
        if lr is not None:
            ratio = lr["step_s_median"] / j["step_s_median"]
            print(f"LeRobot ACT train step (torch {lr['torch']}): {lr['step_s_median'] * 1e3:.0f} ms/step")
            print(f"ratio jrobot/LeRobot steps/s: {ratio:.2f}x")
            result["lerobot"] = lr
            result["ratio"] = ratio
    else:
        print("ratio: n/a (set JROBOT_LEROBOT_PYTHON to a LeRobot venv's python to compare)")
    print_result(result)


if __name__ == "__main__":
    main()

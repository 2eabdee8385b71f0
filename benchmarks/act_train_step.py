"""ACT training step time on CPU, jrobot (JAX) vs LeRobot (PyTorch) on the same machine.

    .venv/bin/python benchmarks/act_train_step.py                          # jrobot only
    JROBOT_LEROBOT_PYTHON=.venvs/lerobot/bin/python .venv/bin/python benchmarks/act_train_step.py
    .venv/bin/python benchmarks/act_train_step.py --cases cpu@96x128 --rounds 1

Cases (`--cases`, comma list of MODEL@HxW):
- `cpu@48x64`, `cpu@96x128`: the CPU-sized ACT of `--config` (by default the demo's ACT size with
  LeRobot's ResNet18 trunk: dim 128, chunk 30, no VAE) with 2 cameras at the demo's stored size and
  at the recorded size;
- `default@480x640`: LeRobot 0.4.4's default ACT (dim 512, 4+1 layers, VAE with 4 layers, chunk 100,
  ResNet18) with 2 cameras at 480x640.
Both sides train the same architecture on the same synthetic batch (state 6, action 6) with AdamW and
gradient clipping at 10; jrobot's step takes uint8 frames and normalizes them inside, LeRobot's takes
float frames (its normalization runs in its processor, outside the timed step). The figure is the median step
time after warm-up (compilation excluded, reported separately). This VM's speed drifts by up to
+-20% over minutes, so the sides alternate for `--rounds` rounds, the ratio is taken within each
round and the median round is reported (target: >= 1.0x). Both sides use the same kind of device:
JAX's default one, and for LeRobot CUDA when torch sees a GPU (else the CPU). jrobot's achieved FLOP/s (XLA's cost
analysis of the compiled step) are stated against the float32 matmul ceiling of JAX's default device,
measured in the same run. Without a LeRobot interpreter only jrobot is measured and the ratio is n/a.
"""

from __future__ import annotations

import argparse
import os
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
from common import matmul_ceiling_gflops, median_round, print_result, run_lerobot_script

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
# the compile times printed below are compiles, not loads from a cache an earlier run filled
os.environ["JROBOT_COMPILE_CACHE"] = "0"


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


class JrobotStep:
    """One case's compiled jrobot train step, kept across rounds (compiled once)."""

    def __init__(self, policy_cfg: dict, batch: int, cams: int, hw: tuple[int, int], optimizer: dict):
        import jax
        from flax import nnx

        from jrobot.policies.base import load_policy_module
        from jrobot.train.optim import apply_overrides, make_optimizer
        from jrobot.train.trainer import Policy, make_train_step

        feats, stats, data = synthetic_problem(policy_cfg, cams, hw, batch)
        module = load_policy_module("act")
        pcfg = module.Config.from_dict(policy_cfg)
        model = module.build(pcfg, feats, stats, seed=0, load_pretrained_backbone=False)
        graphdef, params, frozen = nnx.split(model, nnx.Param, ...)
        policy = Policy(module, pcfg, model.spec, graphdef, feats, stats)
        preset = apply_overrides(module.optimizer_preset(pcfg), optimizer)
        tx, lr_fn = make_optimizer(preset, params, module.param_group, 10_000)
        self.state = {
            "step": jax.numpy.zeros((), "int32"),
            "params": params,
            "frozen": frozen,
            "opt_state": tx.init(params),
            "rng": jax.random.PRNGKey(0),
        }
        self.batch = jax.device_put(data)
        self.params = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(params))
        t0 = time.perf_counter()
        compiled = (
            jax.jit(make_train_step(policy, tx, lr_fn, 1, None), donate_argnums=0)
            .lower(self.state, self.batch)
            .compile()
        )
        cost = compiled.cost_analysis()
        cost = cost[0] if isinstance(cost, list) else cost
        self.flops = float(cost["flops"])
        self.step = compiled
        self.state, m = self.step(self.state, self.batch)
        jax.block_until_ready(m["loss"])
        self.compile_s = time.perf_counter() - t0

    def time(self, steps: int) -> dict:
        import jax

        times = []
        for _ in range(steps):
            t0 = time.perf_counter()
            self.state, m = self.step(self.state, self.batch)
            jax.block_until_ready(m["loss"])
            times.append(time.perf_counter() - t0)
        step_s = float(np.median(times))
        return {"step_s_median": step_s, "gflops_per_s": self.flops / step_s / 1e9, "loss": float(m["loss"])}


LEROBOT_SCRIPT = textwrap.dedent(
    """
    import json, sys, time, numpy as np, torch
    from lerobot.policies.act.configuration_act import ACTConfig
    from lerobot.policies.act.modeling_act import ACTPolicy
    from lerobot.configs.types import FeatureType, PolicyFeature
    args = json.loads(sys.argv[1])
    torch.set_num_threads(args["threads"])
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")  # the GPU jrobot runs on, if any
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    out = {"torch": torch.__version__, "threads": torch.get_num_threads(), "device": str(device), "cases": {}}
    for case in args["cases"]:
        h, w = case["hw"]
        names = ["front", "wrist", "top", "side"][: case["cams"]]
        inputs = {"observation.state": PolicyFeature(FeatureType.STATE, (6,))}
        for c in names:
            inputs[f"observation.images.{c}"] = PolicyFeature(FeatureType.VISUAL, (3, h, w))
        cfg = ACTConfig(input_features=inputs, output_features={"action": PolicyFeature(FeatureType.ACTION, (6,))},
                        pretrained_backbone_weights=None, **case["policy"])
        torch.manual_seed(0)
        policy = ACTPolicy(cfg).to(device)
        policy.train()
        opt = torch.optim.AdamW(policy.parameters(), lr=1e-5, weight_decay=1e-4)
        b, chunk = case["batch"], cfg.chunk_size
        g = torch.Generator().manual_seed(0)
        batch = {"observation.state": torch.randn(b, 6, generator=g), "action": torch.randn(b, chunk, 6, generator=g),
                 "action_is_pad": torch.zeros(b, chunk, dtype=torch.bool)}
        for c in names:
            batch[f"observation.images.{c}"] = torch.rand(b, 3, h, w, generator=g)
        batch = {k: v.to(device) for k, v in batch.items()}
        def step():
            loss, _ = policy.forward(batch)
            opt.zero_grad(); loss.backward()
            torch.nn.utils.clip_grad_norm_(policy.parameters(), 10.0)
            opt.step()
            sync()
            return float(loss)
        t0 = time.perf_counter(); step(); warm = time.perf_counter() - t0
        times = []
        for _ in range(case["steps"]):
            t0 = time.perf_counter(); step(); times.append(time.perf_counter() - t0)
        out["cases"][case["name"]] = {"step_s_median": float(np.median(times)), "first_step_s": warm}
    print(json.dumps(out))
    """
)

LEROBOT_KEYS = (
    "chunk_size", "n_action_steps", "dim_model", "n_heads", "dim_feedforward", "n_encoder_layers",
    "n_decoder_layers", "n_vae_encoder_layers", "latent_dim", "dropout", "kl_weight", "use_vae",
)  # fmt: skip
# LeRobot 0.4.4's ACTConfig defaults (with the trunk trained from scratch: no download here)
DEFAULT_ACT = {
    "chunk_size": 100, "n_action_steps": 100, "dim_model": 512, "n_heads": 8, "dim_feedforward": 3200,
    "n_encoder_layers": 4, "n_decoder_layers": 1, "use_vae": True, "latent_dim": 32,
    "n_vae_encoder_layers": 4, "dropout": 0.1, "kl_weight": 10.0, "vision_backbone": "resnet18",
    "pretrained_backbone_weights": None,
}  # fmt: skip


def parse_cases(text: str, config) -> list[dict]:
    """`MODEL@HxW` items -> cases with the policy config each side builds."""
    cpu = config.policy.config.to_dict()
    if not str(cpu.get("vision_backbone", "resnet18")).startswith("resnet"):
        raise SystemExit(
            f"{cpu['vision_backbone']!r} has no LeRobot counterpart: use a config with a ResNet trunk"
        )
    models = {"cpu": cpu, "default": {**cpu, **DEFAULT_ACT}}
    cases = []
    for item in (t.strip() for t in text.split(",") if t.strip()):
        model, _, size = item.partition("@")
        if model not in models or "x" not in size:
            raise SystemExit(f"--cases item {item!r}: use MODEL@HxW with MODEL one of {sorted(models)}")
        cases.append({"name": item, "policy": models[model], "hw": tuple(int(v) for v in size.split("x"))})
    return cases


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    # the CPU-sized ACT with LeRobot's own ResNet18 trunk (the demo's from-scratch `cnn` trunk has no
    # LeRobot counterpart to compare with)
    p.add_argument("--config", default=str(REPO / "configs/act_so101_sim_cpu_privileged.py"))
    p.add_argument("--cases", default="cpu@48x64,cpu@96x128,default@480x640", help="comma list of MODEL@HxW")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--steps", type=int, default=10, help="timed steps per case and round (cpu cases)")
    p.add_argument("--steps-default", type=int, default=3, help="timed steps per round of the default case")
    p.add_argument("--cams", type=int, default=2)
    p.add_argument("--rounds", type=int, default=3, help="alternations of LeRobot and jrobot timings")
    p.add_argument("--lerobot-python", default=os.environ.get("JROBOT_LEROBOT_PYTHON"))
    args = p.parse_args()
    # The matmul ceiling below runs jax before the trainer is imported: apply the trainer's malloc
    # settings first, as a `jrobot.train` process has them from its first import.
    from jrobot.malloc_tuning import keep_freed_memory

    tuned = keep_freed_memory()
    import importlib.util

    spec = importlib.util.spec_from_file_location("cfg", args.config)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    config = mod.get_config()
    cases = parse_cases(args.cases, config)
    for c in cases:
        c["steps"] = args.steps_default if c["name"].startswith("default") else args.steps
    result = {
        "batch": args.batch, "cams": args.cams, "config": args.config, "cores": os.cpu_count(),
        "load_avg_start": os.getloadavg(), "malloc_tuning": tuned, "cases": {},
    }  # fmt: skip
    ceiling = matmul_ceiling_gflops()
    result["matmul_ceiling_gflops"] = ceiling
    print(f"this CPU's float32 matmul ceiling under XLA: {ceiling:.0f} GFLOP/s ({os.cpu_count()} cores)")
    optimizer = config.get("optimizer", {}).to_dict()
    steps = {}
    for c in cases:
        steps[c["name"]] = s = JrobotStep(c["policy"], args.batch, args.cams, c["hw"], optimizer)
        print(
            f"[{c['name']}] jrobot: {s.params / 1e6:.1f}M params, {s.flops / 1e9:.1f} GFLOP per step "
            f"(XLA cost analysis), compile {s.compile_s:.0f} s",
            flush=True,
        )
    lr_cases = [
        {"name": c["name"], "policy": {k: v for k, v in c["policy"].items() if k in LEROBOT_KEYS},
         "hw": list(c["hw"]), "cams": args.cams, "batch": args.batch, "steps": c["steps"]}
        for c in cases
    ]  # fmt: skip
    rounds: dict[str, list[dict]] = {c["name"]: [] for c in cases}
    for k in range(args.rounds):
        lr = None
        if args.lerobot_python:
            print(f"round {k + 1}/{args.rounds}: LeRobot ...", flush=True)
            lr = run_lerobot_script(
                args.lerobot_python,
                LEROBOT_SCRIPT,
                {"cases": lr_cases, "threads": os.cpu_count()},
                timeout=3600,
            )
            if lr is not None:
                result["lerobot"] = {"torch": lr["torch"], "threads": lr["threads"], "device": lr["device"]}
        for c in cases:
            name = c["name"]
            j = steps[name].time(c["steps"])
            r = {"jrobot": j, "ratio": None}
            line = (
                f"[{name}] round {k + 1}: jrobot {j['step_s_median'] * 1e3:.0f} ms/step, "
                f"{j['gflops_per_s']:.0f} GFLOP/s ({100 * j['gflops_per_s'] / ceiling:.0f}% of the ceiling)"
            )
            if lr is not None and name in lr["cases"]:
                r["lerobot"] = lr["cases"][name]
                r["ratio"] = r["lerobot"]["step_s_median"] / j["step_s_median"]
                line += (
                    f"; LeRobot {r['lerobot']['step_s_median'] * 1e3:.0f} ms/step; ratio {r['ratio']:.2f}x"
                )
            print(line, flush=True)
            rounds[name].append(r)
    for c in cases:
        name, rs, s = c["name"], rounds[c["name"]], steps[c["name"]]
        median = median_round(
            name, rs, what="LeRobot step time / jrobot step time", fallback=lambda r: r["jrobot"]["step_s_median"],
            target=1.0, lerobot_given=bool(args.lerobot_python),
        )  # fmt: skip
        result["cases"][name] = {
            **median, "rounds": rs, "hw": c["hw"], "params": s.params, "gflop_per_step": s.flops / 1e9,
            "compile_s": s.compile_s,
        }  # fmt: skip
    print_result(result)


if __name__ == "__main__":
    main()

"""ACT inference latency on this CPU: an exported jrobot bundle vs LeRobot's ACT in PyTorch, batch 1.

    .venv/bin/python benchmarks/act_inference.py                         # ~3-5 min on 2 cores
    .venv/bin/python benchmarks/act_inference.py --calls 50 --cases default
    JROBOT_LEROBOT_PYTHON=/work/lerobot-ref/bin/python .venv/bin/python benchmarks/act_inference.py

Cases:
- `fixture`: the parity fixture's LeRobot checkpoint (`fixtures/parity/act_so101_tiny`: d=64, 2 cameras
  96x128, chunk 10), exported with `python -m jrobot.export --from-lerobot`.
- `default`: LeRobot's default ACT size (d=512, 8 heads, ff 3200, 4 encoder / 1 decoder layers,
  chunk 100, ResNet18) with 2 cameras 480x640 and 6-D state/action, random weights. With a LeRobot
  interpreter the checkpoint is written by LeRobot itself (`ACTPolicy(ACTConfig(...,
  pretrained_backbone_weights=None)).save_pretrained` plus its processors with stats) and imported
  with `--from-lerobot`, so both sides run the same weights; without it the jrobot model is built
  with `jrobot.policies.act.build` and exported with `jrobot.train.export.write_bundle`.

jrobot figure: `BundlePolicy.predict(observation)` end to end (uint8 HWC camera frames in, action chunk
in dataset units out: input checks, host->device, uint8->float, normalization, model, unnormalization).
LeRobot figure: `policy.predict_action_chunk(batch)` in eval mode under `torch.inference_mode()` on an
already-normalized float batch (its pre/post-processors excluded: a conservative comparison for
jrobot). Both: batch 1, `--warmup` calls then `--calls` timed calls, p50/p99; torch gets
`torch.set_num_threads(cores)`, XLA uses its default intra-op pool (one thread per core). With the
same weights the two action chunks are compared (max |diff|, dataset units). Ratio = LeRobot p50 /
jrobot p50, target >= 2. This VM's speed drifts by up to +-20% over minutes, so the two sides alternate
for `--rounds` rounds (default 3); the ratio is taken within each round and the median is reported.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

import numpy as np
from common import median_round, print_result, run_lerobot_script

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
FIXTURE = REPO.parent / "shared" / "fixtures" / "parity" / "act_so101_tiny" / "pretrained_model"
CAMS = ("observation.images.front", "observation.images.wrist")

# LeRobot ACTConfig defaults, spelled out so both sides build exactly this
DEFAULT_ACT = {
    "chunk_size": 100, "n_action_steps": 100, "dim_model": 512, "n_heads": 8, "dim_feedforward": 3200,
    "n_encoder_layers": 4, "n_decoder_layers": 1, "use_vae": True, "latent_dim": 32,
    "n_vae_encoder_layers": 4, "dropout": 0.1, "vision_backbone": "resnet18",
    "pretrained_backbone_weights": None,
}  # fmt: skip


def pct(x: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(x), q))


def make_observation(image_hw: tuple[int, int], seed: int = 0) -> dict[str, np.ndarray]:
    """Batch-1 raw observation: joint state (degrees) and uint8 HWC camera frames."""
    rng = np.random.default_rng(seed)
    h, w = image_hw
    obs = {"observation.state": rng.uniform(-30, 30, (1, 6)).astype(np.float32)}
    for c in CAMS:
        obs[c] = rng.integers(0, 256, (1, h, w, 3), dtype=np.uint8)
    return obs


def default_stats() -> dict[str, dict[str, np.ndarray]]:
    stats = {
        "observation.state": {"mean": np.zeros(6, np.float32), "std": np.full(6, 30.0, np.float32)},
        "action": {"mean": np.zeros(6, np.float32), "std": np.full(6, 30.0, np.float32)},
    }
    for c in CAMS:
        stats[c] = {
            "mean": np.array([0.485, 0.456, 0.406], np.float32).reshape(3, 1, 1),
            "std": np.array([0.229, 0.224, 0.225], np.float32).reshape(3, 1, 1),
        }
    return stats


# ---------------------------------------------------------------------------------------------------
# LeRobot (separate interpreter)

LEROBOT_SCRIPT = textwrap.dedent(
    """
    import json, os, sys, time
    import numpy as np
    import torch

    def main():
        a = json.loads(sys.argv[1])
        torch.set_num_threads(a["threads"])
        from lerobot.configs.types import FeatureType, PolicyFeature
        from lerobot.policies.act.configuration_act import ACTConfig
        from lerobot.policies.act.modeling_act import ACTPolicy
        from lerobot.policies.factory import make_pre_post_processors
        import lerobot
        out = {"torch": torch.__version__, "lerobot": lerobot.__version__, "threads": torch.get_num_threads(),
               "cases": {}}
        for case in a["cases"]:
            d = case["dir"]
            if case.get("create") and not os.path.isfile(os.path.join(d, "model.safetensors")):
                c = case["create"]
                h, w = c["hw"]
                inputs = {"observation.state": PolicyFeature(FeatureType.STATE, (6,))}
                for cam in c["cams"]:
                    inputs[cam] = PolicyFeature(FeatureType.VISUAL, (3, h, w))
                cfg = ACTConfig(input_features=inputs,
                                output_features={"action": PolicyFeature(FeatureType.ACTION, (6,))},
                                device="cpu", **c["policy"])
                torch.manual_seed(0)
                policy = ACTPolicy(cfg)
                policy.save_pretrained(d)
                stats = {k: {s: np.asarray(v, np.float32) for s, v in sd.items()} for k, sd in c["stats"].items()}
                pre, post = make_pre_post_processors(cfg, dataset_stats=stats)
                pre.save_pretrained(d)
                post.save_pretrained(d)
            policy = ACTPolicy.from_pretrained(d)
            policy.eval()
            pre, post = make_pre_post_processors(policy.config, pretrained_path=d)
            obs = dict(np.load(case["obs"]))
            raw = {"observation.state": torch.from_numpy(obs["observation.state"])}
            for k, v in obs.items():
                if k.startswith("observation.images."):
                    raw[k] = torch.from_numpy(v).permute(0, 3, 1, 2).float() / 255.0
            with torch.inference_mode():
                batch = pre(raw)
                for _ in range(a["warmup"]):
                    policy.predict_action_chunk(batch)
                times = []
                for _ in range(a["calls"]):
                    t0 = time.perf_counter()
                    chunk = policy.predict_action_chunk(batch)
                    times.append(time.perf_counter() - t0)
                actions = post(chunk)
            np.save(case["out"], actions.numpy())
            n_params = sum(p.numel() for p in policy.parameters())
            out["cases"][case["name"]] = {"p50_ms": float(np.percentile(times, 50) * 1e3),
                                          "p99_ms": float(np.percentile(times, 99) * 1e3),
                                          "mean_ms": float(np.mean(times) * 1e3), "params": n_params}
        print(json.dumps(out))

    if __name__ == "__main__":
        main()
    """
)


def run_lerobot(python: str, cases: list[dict[str, Any]], calls: int, warmup: int, threads: int):
    args = {"cases": cases, "calls": calls, "warmup": warmup, "threads": threads}
    return run_lerobot_script(python, LEROBOT_SCRIPT, args, timeout=3600)


# ---------------------------------------------------------------------------------------------------
# jrobot


def export_from_lerobot(ckpt: Path, bundle: Path) -> float:
    from jrobot.commands.export import main as export_main

    t0 = time.perf_counter()
    rc = export_main(["--from-lerobot", str(ckpt), "--out", str(bundle)])
    if rc != 0:
        raise RuntimeError(f"jrobot.export --from-lerobot {ckpt} failed ({rc})")
    return time.perf_counter() - t0


def export_jrobot_default(bundle: Path, hw: tuple[int, int]) -> float:
    """No LeRobot: the default-size ACT built by jrobot (random init) and exported."""
    from jrobot.features import SO101_JOINT_KEYS, Feature
    from jrobot.policies import act
    from jrobot.train.export import write_bundle

    feats = {
        "action": Feature("float32", (6,), list(SO101_JOINT_KEYS)),
        "observation.state": Feature("float32", (6,), list(SO101_JOINT_KEYS)),
        **{c: Feature("video", (*hw, 3), ["height", "width", "channels"]) for c in CAMS},
    }
    cfg = act.ACTConfig(**DEFAULT_ACT)
    t0 = time.perf_counter()
    model = act.build(cfg, feats, default_stats(), seed=0, load_pretrained_backbone=False)
    write_bundle(
        model, act, bundle, features=feats, fps=30, robot_type=None, source={"benchmark": "random init"}
    )
    return time.perf_counter() - t0


def time_bundle(bundle: Path, obs: dict[str, np.ndarray], calls: int, warmup: int) -> dict[str, Any]:
    import jax

    from jrobot.runtime.policy import BundlePolicy

    policy = BundlePolicy(bundle)
    t0 = time.perf_counter()
    out = policy.predict(obs)
    first = time.perf_counter() - t0
    for _ in range(warmup - 1):
        policy.predict(obs)
    times = []
    for _ in range(calls):
        t0 = time.perf_counter()
        out = policy.predict(obs)
        times.append(time.perf_counter() - t0)
    n_params = sum(int(np.prod(v.shape)) for v in policy.params.values())
    return {
        "p50_ms": pct(times, 50) * 1e3,
        "p99_ms": pct(times, 99) * 1e3,
        "mean_ms": float(np.mean(times) * 1e3),
        "first_call_s": first,
        "params": n_params,
        "device": str(jax.devices()[0]),
        "actions": out,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cases", default="fixture,default", help="comma list of: fixture, default")
    p.add_argument("--calls", type=int, default=30, help="timed calls per case (after warm-up)")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--rounds", type=int, default=3, help="alternations of LeRobot and jrobot timings")
    p.add_argument("--hw", default="480x640", help="camera HxW of the default-size case")
    p.add_argument("--work", type=Path, default=None, help="keep checkpoints/bundles here (default: temp)")
    p.add_argument("--lerobot-python", default=os.environ.get("JROBOT_LEROBOT_PYTHON"))
    args = p.parse_args()
    # The exports below run jax in this process before the runtime is imported: apply the runtime's
    # malloc settings first, as a `jrobot.run` process has them from its first import.
    from jrobot.malloc_tuning import keep_freed_memory

    tuned = keep_freed_memory()
    cores = os.cpu_count() or 1
    hw = tuple(int(v) for v in args.hw.split("x"))
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    tmp = Path(tempfile.mkdtemp(prefix="jrobot-bench-act-")) if args.work is None else None
    work = (args.work or tmp).absolute()
    work.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {
        "cores": cores,
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "load_avg_start": os.getloadavg(),
        "malloc_tuning": tuned,
        "cases": {},
    }
    try:
        specs = {
            "fixture": {"hw": (96, 128), "ckpt": FIXTURE},
            "default": {"hw": hw, "ckpt": work / f"lerobot_act_default_{hw[0]}x{hw[1]}"},
        }
        lr_cases = []
        for name in cases:
            if name not in specs:
                raise SystemExit(f"unknown case {name!r}; use fixture and/or default")
            obs = make_observation(specs[name]["hw"])
            np.savez(work / f"obs_{name}.npz", **obs)
            case = {"name": name, "dir": str(specs[name]["ckpt"]), "obs": str(work / f"obs_{name}.npz"),
                    "out": str(work / f"lerobot_actions_{name}.npy")}  # fmt: skip
            if name == "default":
                case["create"] = {
                    "hw": list(hw), "cams": list(CAMS), "policy": DEFAULT_ACT,
                    "stats": {k: {s: v.tolist() for s, v in sd.items()} for k, sd in default_stats().items()},
                }  # fmt: skip
            lr_cases.append(case)
        exports = {}
        for case in lr_cases:
            name, ckpt = case["name"], Path(case["dir"])
            bundle = work / f"bundle_{name}"
            if (ckpt / "model.safetensors").is_file():
                how = "exported from the LeRobot checkpoint (--from-lerobot)"
                export_s = export_from_lerobot(ckpt, bundle)
            elif name == "default" and args.lerobot_python:
                how = None  # LeRobot writes this checkpoint in its first round; export after it
                export_s = 0.0
            else:
                how = "built by jrobot (random init), exported with write_bundle"
                export_s = export_jrobot_default(bundle, hw)
            exports[name] = {"bundle": bundle, "how": how, "export_s": export_s}
        # This VM's speed drifts by up to +-20% over minutes: LeRobot and jrobot alternate for
        # `--rounds` rounds, the ratio is taken within each round and the median round is reported.
        rounds: dict[str, list[dict[str, Any]]] = {c["name"]: [] for c in lr_cases}
        for k in range(args.rounds):
            lr = None
            if args.lerobot_python:
                print(
                    f"round {k + 1}/{args.rounds}: LeRobot timing {', '.join(cases)} ({args.calls} calls each) ...",
                    flush=True,
                )
                lr = run_lerobot(args.lerobot_python, lr_cases, args.calls, args.warmup, cores)
                if lr is not None:
                    result["lerobot"] = {key: v for key, v in lr.items() if key != "cases"}
            for case in lr_cases:
                name = case["name"]
                e = exports[name]
                if e["how"] is None:  # the default-size checkpoint LeRobot has just written (or not)
                    if (Path(case["dir"]) / "model.safetensors").is_file():
                        e["how"] = "exported from the LeRobot checkpoint (--from-lerobot)"
                        e["export_s"] = export_from_lerobot(Path(case["dir"]), e["bundle"])
                    else:
                        e["how"] = "built by jrobot (random init), exported with write_bundle"
                        e["export_s"] = export_jrobot_default(e["bundle"], hw)
                obs = dict(np.load(case["obs"]))
                j = time_bundle(e["bundle"], obs, args.calls, args.warmup)
                actions = j.pop("actions")
                r: dict[str, Any] = {"jrobot": j}
                print(
                    f"[{name}] round {k + 1}: jrobot bundle ({e['how']}; {j['params'] / 1e6:.1f}M params, "
                    f"2 cameras {specs[name]['hw'][0]}x{specs[name]['hw'][1]}): p50 {j['p50_ms']:.1f} ms, "
                    f"p99 {j['p99_ms']:.1f} ms over {args.calls} calls (first call incl. compile "
                    f"{j['first_call_s']:.1f} s; export {e['export_s']:.1f} s)"
                )
                if lr is not None and name in lr["cases"]:
                    lc = lr["cases"][name]
                    ref = np.load(case["out"])
                    r["lerobot"] = lc
                    r["max_abs_diff_actions"] = float(np.max(np.abs(ref.reshape(actions.shape) - actions)))
                    r["ratio"] = lc["p50_ms"] / j["p50_ms"]
                    print(
                        f"[{name}] round {k + 1}: LeRobot {lr['lerobot']} predict_action_chunk (torch "
                        f"{lr['torch']}, {lr['threads']} threads): p50 {lc['p50_ms']:.1f} ms, p99 "
                        f"{lc['p99_ms']:.1f} ms; same weights: max |action diff| {r['max_abs_diff_actions']:.2e}"
                    )
                else:
                    r["ratio"] = None
                rounds[name].append(r)
        for case in lr_cases:
            name = case["name"]
            rs = rounds[name]
            e = exports[name]
            median = median_round(
                name, rs, what="LeRobot p50 / jrobot p50", fallback=lambda r: r["jrobot"]["p50_ms"], target=2.0,
                lerobot_given=bool(args.lerobot_python),
            )  # fmt: skip
            result["cases"][name] = {
                **median,
                "rounds": rs,
                "export_s": e["export_s"],
                "how": e["how"],
                "hw": specs[name]["hw"],
            }
        result["threads"] = {"jax_xla_cpu": f"default intra-op pool ({cores} cores)", "torch": cores}
        print_result(result)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()

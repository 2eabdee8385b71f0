"""SmolVLA inference latency on this CPU: an exported jrobot bundle vs LeRobot's SmolVLA in PyTorch, batch 1.

    JROBOT_LEROBOT_PYTHON=.lerobot-ref/bin/python .venv/bin/python benchmarks/smolvla_inference.py
    .venv/bin/python benchmarks/smolvla_inference.py --cases fixture --rounds 1     # jrobot only

Cases:
- `fixture`: the public parity fixture (`fixtures/parity/smolvla_so101_tiny`: tiny VLM, 2 cameras 48x64
  resized with padding to 64x64, chunk 8, 3 flow steps), exported with `python -m jrobot.export
  --from-lerobot`.
- `full`: the smolvla_base architecture (SmolVLM2-500M: SigLIP 768 wide x 12 layers at 512 px, 16 of 32
  Llama layers 960 wide, expert 720, 3 cameras 256x256 upscaled with padding to 512x512, 48 language
  tokens padded to max_length, chunk 50, 10 flow steps; ~450M parameters), random weights. LeRobot
  writes the checkpoint itself (`SmolVLAPolicy(SmolVLAConfig(..., load_vlm_weights=False,
  vlm_model_name=<a local folder with SmolVLM2-500M's config>)).save_pretrained` plus its processors),
  and jrobot imports it with `--from-lerobot`, so both sides run the same weights.

jrobot figure: `BundlePolicy.predict(observation, task=...)` end to end (uint8 HWC frames and the task
string in; tokenization, input checks, host->device, normalization, resize with padding, the model,
unnormalization; action chunk out). LeRobot figure: `policy.predict_action_chunk(batch, noise=...)`
under `torch.inference_mode()` on an already-preprocessed batch (tokenizer and normalizer excluded: a
conservative comparison for jrobot). Both: batch 1, the same initial noise, `--warmup` calls then
`--calls` timed calls, p50/p99; torch gets `torch.set_num_threads(cores)`, XLA its default intra-op
pool. The two chunks are compared (max |diff|, dataset units). Ratio = LeRobot p50 / jrobot p50
(target >= 1.5x at full size); the sides alternate for `--rounds` rounds and the median round is
reported (this VM's speed drifts by up to +-20% over minutes).

Also printed: FLOPs per chunk from XLA's cost analysis of the same computation traced without loops
(`smolvla.model.unrolled`; XLA counts a loop body once), the achieved GFLOP/s, and the share of this
CPU's measured ceiling (the best of a few large float32 matmuls under XLA in the same run).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

import numpy as np
from common import matmul_ceiling_gflops, median_round, print_result, run_lerobot_script

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
FIXTURE = REPO.parent / "shared" / "fixtures" / "parity" / "smolvla_so101_tiny"
TASK = "pick the cube"
FULL_CAMS = ("observation.images.camera1", "observation.images.camera2", "observation.images.camera3")
# SmolVLM2-500M-Video-Instruct (../shared/reference/lerobot_policies.md §4.2), as a transformers config
FULL_VLM = {
    "model_type": "smolvlm",
    "scale_factor": 4,
    "vision_config": {
        "model_type": "smolvlm_vision", "hidden_size": 768, "intermediate_size": 3072,
        "num_hidden_layers": 12, "num_attention_heads": 12, "image_size": 512, "patch_size": 16,
        "hidden_act": "gelu_pytorch_tanh", "layer_norm_eps": 1e-6, "num_channels": 3,
    },
    "text_config": {
        "model_type": "llama", "hidden_size": 960, "intermediate_size": 2560, "num_hidden_layers": 32,
        "num_attention_heads": 15, "num_key_value_heads": 5, "head_dim": 64, "rms_norm_eps": 1e-5,
        "vocab_size": 49280, "rope_theta": 100000.0, "hidden_act": "silu", "attention_bias": False,
        "mlp_bias": False, "tie_word_embeddings": False,
    },
    "tie_word_embeddings": False,
}  # fmt: skip


def pct(x: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(x), q))


def make_observation(cams: dict[str, tuple[int, int]], seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    obs = {"observation.state": rng.uniform(-30, 30, (1, 6)).astype(np.float32)}
    for c, (h, w) in cams.items():
        obs[c] = rng.integers(0, 256, (1, h, w, 3), dtype=np.uint8)
    return obs


def write_full_vlm(folder: Path) -> None:
    """A VLM folder with SmolVLM2-500M's architecture and the fixture's tokenizer/processor files (the
    tokenizer only maps the task to ids; its small vocabulary fits SmolVLM2's)."""
    folder.mkdir(parents=True, exist_ok=True)
    for f in (FIXTURE / "vlm").iterdir():
        if f.name != "config.json":
            shutil.copy(f, folder / f.name)
    (folder / "config.json").write_text(json.dumps(FULL_VLM, indent=2))


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
        os.environ["HF_HUB_OFFLINE"] = "1"
        from lerobot.configs.types import FeatureType, PolicyFeature
        from lerobot.policies.smolvla.configuration_smolvla import SmolVLAConfig
        from lerobot.policies.smolvla.modeling_smolvla import SmolVLAPolicy
        from lerobot.policies.factory import make_pre_post_processors
        import lerobot
        out = {"torch": torch.__version__, "lerobot": lerobot.__version__, "threads": torch.get_num_threads(),
               "cases": {}}
        for case in a["cases"]:
            d = case["dir"]
            os.chdir(case["cwd"])
            if case.get("create") and not os.path.isfile(os.path.join(d, "model.safetensors")):
                c = case["create"]
                inputs = {"observation.state": PolicyFeature(FeatureType.STATE, (6,))}
                for cam, (h, w) in c["cams"].items():
                    inputs[cam] = PolicyFeature(FeatureType.VISUAL, (3, h, w))
                cfg = SmolVLAConfig(input_features=inputs,
                                    output_features={"action": PolicyFeature(FeatureType.ACTION, (6,))},
                                    device="cpu", **c["policy"])
                torch.manual_seed(0)
                policy = SmolVLAPolicy(cfg)
                policy.save_pretrained(d)
                stats = {k: {s: np.asarray(v, np.float32) for s, v in sd.items()} for k, sd in c["stats"].items()}
                pre, post = make_pre_post_processors(cfg, dataset_stats=stats)
                pre.save_pretrained(d)
                post.save_pretrained(d)
                del policy
            policy = SmolVLAPolicy.from_pretrained(d)
            policy.eval()
            pre, post = make_pre_post_processors(policy.config, pretrained_path=d)
            obs = dict(np.load(case["obs"]))
            raw = {"observation.state": torch.from_numpy(obs["observation.state"]), "task": [a["task"]]}
            for k, v in obs.items():
                if k.startswith("observation.images."):
                    raw[k] = torch.from_numpy(v).permute(0, 3, 1, 2).float() / 255.0
            noise = torch.from_numpy(obs["noise"])
            with torch.inference_mode():
                batch = pre(raw)
                for _ in range(a["warmup"]):
                    policy.predict_action_chunk(batch, noise=noise)
                times = []
                for _ in range(a["calls"]):
                    t0 = time.perf_counter()
                    chunk = policy.predict_action_chunk(batch, noise=noise)
                    times.append(time.perf_counter() - t0)
                actions = post(chunk)
            np.save(case["out"], actions.numpy())
            out["cases"][case["name"]] = {"p50_ms": float(np.percentile(times, 50) * 1e3),
                                          "p99_ms": float(np.percentile(times, 99) * 1e3),
                                          "mean_ms": float(np.mean(times) * 1e3),
                                          "params": sum(p.numel() for p in policy.parameters())}
            del policy
        print(json.dumps(out))

    if __name__ == "__main__":
        main()
    """
)


# ---------------------------------------------------------------------------------------------------
# jrobot


def export_from_lerobot(ckpt: Path, bundle: Path) -> float:
    from jrobot.commands.export import main as export_main

    t0 = time.perf_counter()
    if export_main(["--from-lerobot", str(ckpt), "--out", str(bundle)]) != 0:
        raise RuntimeError(f"jrobot.export --from-lerobot {ckpt} failed")
    return time.perf_counter() - t0


def build_jrobot_full(bundle: Path, vlm: Path, cams: dict[str, tuple[int, int]]) -> float:
    """No LeRobot: the full-size SmolVLA built by jrobot (random init) and exported."""
    from jrobot.features import SO101_JOINT_KEYS, Feature
    from jrobot.policies import smolvla
    from jrobot.train.export import write_bundle

    feats = {
        "action": Feature("float32", (6,), list(SO101_JOINT_KEYS)),
        "observation.state": Feature("float32", (6,), list(SO101_JOINT_KEYS)),
        **{c: Feature("video", (h, w, 3), ["height", "width", "channels"]) for c, (h, w) in cams.items()},
    }
    cfg = smolvla.SmolVLAConfig(vlm_model_name=str(vlm), pad_language_to="max_length")
    t0 = time.perf_counter()
    model = smolvla.build(cfg, feats, full_stats(), seed=0)
    write_bundle(
        model, smolvla, bundle, features=feats, fps=30, robot_type=None, source={"benchmark": "random"}
    )
    return time.perf_counter() - t0


def full_stats() -> dict[str, dict[str, list[float]]]:
    return {k: {"mean": [0.0] * 6, "std": [30.0] * 6} for k in ("observation.state", "action")}


def time_bundle(bundle: Path, obs: dict[str, np.ndarray], calls: int, warmup: int) -> dict[str, Any]:
    import jax

    from jrobot.runtime.policy import BundlePolicy

    policy = BundlePolicy(bundle)
    noise = obs["noise"]
    frames = {k: v for k, v in obs.items() if k != "noise"}
    t0 = time.perf_counter()
    out = policy.predict(frames, task=TASK, noise=noise)
    first = time.perf_counter() - t0
    for _ in range(warmup - 1):
        policy.predict(frames, task=TASK, noise=noise)
    times = []
    for _ in range(calls):
        t0 = time.perf_counter()
        out = policy.predict(frames, task=TASK, noise=noise)
        times.append(time.perf_counter() - t0)
    return {
        "p50_ms": pct(times, 50) * 1e3,
        "p99_ms": pct(times, 99) * 1e3,
        "mean_ms": float(np.mean(times) * 1e3),
        "first_call_s": first,
        "params": sum(int(np.prod(v.shape)) for v in policy.params.values()),
        "device": str(jax.devices()[0]),
        "actions": np.asarray(out),
    }


def flops_per_chunk(ckpt: Path, obs: dict[str, np.ndarray]) -> float:
    """XLA's cost analysis of the sampler traced without loops, on abstract weights (no values needed)."""
    import warnings

    import jax
    from flax import nnx

    from jrobot.policies import smolvla
    from jrobot.policies.lerobot.checkpoint import read_lerobot_checkpoint
    from jrobot.policies.smolvla.model import SmolVLAPolicy, unrolled

    ck = read_lerobot_checkpoint(ckpt, expected_type="smolvla")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cfg, _ = smolvla.SmolVLAConfig.from_lerobot(ck.config)
        cfg, tok, _ = smolvla.policy.with_vlm(cfg, search=(ck.path, ck.path.parent))
    spec = smolvla.make_spec(cfg, ck.input_features, ck.output_features)
    model = nnx.eval_shape(lambda: SmolVLAPolicy(cfg, spec, ck.stats, rngs=nnx.Rngs(0), tokenizer=tok))
    graphdef, state = nnx.split(model)
    ids, mask = tok.encode([TASK], padding="max_length")
    o = {**obs, smolvla.LANGUAGE_TOKENS: ids.astype(np.int32), smolvla.LANGUAGE_MASK: mask}
    with unrolled():
        lowered = jax.jit(lambda s, x: smolvla.sample_actions(nnx.merge(graphdef, s), x)).lower(state, o)
    cost = lowered.compile().cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    return float(cost["flops"])


def main() -> None:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--cases", default="fixture,full", help="comma list of: fixture, full")
    p.add_argument("--calls", type=int, default=5, help="timed calls per case (after warm-up)")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--rounds", type=int, default=3, help="alternations of LeRobot and jrobot timings")
    p.add_argument("--work", type=Path, default=None, help="keep checkpoints/bundles here (default: temp)")
    p.add_argument("--lerobot-python", default=os.environ.get("JROBOT_LEROBOT_PYTHON"))
    args = p.parse_args()
    cores = os.cpu_count() or 1
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    tmp = Path(tempfile.mkdtemp(prefix="jrobot-bench-smolvla-")) if args.work is None else None
    work = (args.work or tmp).absolute()
    work.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {"cores": cores, "load_avg_start": os.getloadavg(), "cases": {}}
    try:
        full_vlm = work / "smolvlm2_500m_config"
        write_full_vlm(full_vlm)
        full_cams = {c: (256, 256) for c in FULL_CAMS}
        specs = {
            "fixture": {
                "cams": {"observation.images.front": (48, 64), "observation.images.wrist": (48, 64)},
                "ckpt": FIXTURE / "pretrained_model",
                "cwd": FIXTURE,
                "noise": (8, 32),
            },
            "full": {
                "cams": full_cams,
                "ckpt": work / "lerobot_smolvla_full",
                "cwd": work,
                "noise": (50, 32),
            },
        }
        lr_cases = []
        for name in cases:
            if name not in specs:
                raise SystemExit(f"unknown case {name!r}; use fixture and/or full")
            s = specs[name]
            obs = make_observation(s["cams"])
            obs["noise"] = np.random.default_rng(1).standard_normal((1, *s["noise"])).astype(np.float32)
            np.savez(work / f"obs_{name}.npz", **obs)
            case = {"name": name, "dir": str(s["ckpt"]), "cwd": str(s["cwd"]), "obs": str(work / f"obs_{name}.npz"),
                    "out": str(work / f"lerobot_actions_{name}.npy")}  # fmt: skip
            if name == "full":
                case["create"] = {
                    "cams": {c: list(hw) for c, hw in full_cams.items()},
                    "policy": {"vlm_model_name": str(full_vlm), "load_vlm_weights": False,
                               "pad_language_to": "max_length"},
                    "stats": full_stats(),
                }  # fmt: skip
            lr_cases.append(case)
        ceiling = matmul_ceiling_gflops()
        result["matmul_ceiling_gflops"] = ceiling
        print(f"this CPU's float32 matmul ceiling under XLA: {ceiling:.0f} GFLOP/s ({cores} cores)")
        exports: dict[str, dict[str, Any]] = {}
        rounds: dict[str, list[dict[str, Any]]] = {c["name"]: [] for c in lr_cases}
        for k in range(args.rounds):
            lr = None
            if args.lerobot_python:
                print(f"round {k + 1}/{args.rounds}: LeRobot timing {', '.join(cases)} ...", flush=True)
                lr = run_lerobot_script(
                    args.lerobot_python,
                    LEROBOT_SCRIPT,
                    {
                        "cases": lr_cases,
                        "calls": args.calls,
                        "warmup": args.warmup,
                        "threads": cores,
                        "task": TASK,
                    },
                )
                if lr is not None:
                    result["lerobot"] = {key: v for key, v in lr.items() if key != "cases"}
            for case in lr_cases:
                name, ckpt = case["name"], Path(case["dir"])
                bundle = work / f"bundle_{name}"
                if name not in exports:
                    if (ckpt / "model.safetensors").is_file():
                        how, export_s = (
                            "imported from the LeRobot checkpoint (--from-lerobot)",
                            export_from_lerobot(ckpt, bundle),
                        )
                        flops = flops_per_chunk(ckpt, dict(np.load(case["obs"])))
                    else:
                        how = "built by jrobot (random init), exported with write_bundle"
                        export_s, flops = build_jrobot_full(bundle, full_vlm, full_cams), None
                    exports[name] = {"how": how, "export_s": export_s, "flops": flops}
                e = exports[name]
                obs = dict(np.load(case["obs"]))
                j = time_bundle(bundle, obs, args.calls, args.warmup)
                actions = j.pop("actions")
                r: dict[str, Any] = {"jrobot": j}
                extra = ""
                if e["flops"]:
                    j["gflops_per_s"] = e["flops"] / (j["p50_ms"] / 1e3) / 1e9
                    j["share_of_ceiling"] = j["gflops_per_s"] / ceiling
                    extra = (
                        f"; {e['flops'] / 1e9:.1f} GFLOP/chunk -> {j['gflops_per_s']:.0f} GFLOP/s, "
                        f"{100 * j['share_of_ceiling']:.0f}% of the matmul ceiling"
                    )
                print(
                    f"[{name}] round {k + 1}: jrobot bundle ({e['how']}; {j['params'] / 1e6:.1f}M params): "
                    f"p50 {j['p50_ms']:.1f} ms, p99 {j['p99_ms']:.1f} ms over {args.calls} calls (first call incl. "
                    f"compile {j['first_call_s']:.1f} s; export {e['export_s']:.1f} s){extra}",
                    flush=True,
                )
                if lr is not None and name in lr["cases"]:
                    lc = lr["cases"][name]
                    ref = np.load(case["out"])
                    r["lerobot"] = lc
                    r["max_abs_diff_actions"] = float(np.max(np.abs(ref.reshape(actions.shape) - actions)))
                    r["ratio"] = lc["p50_ms"] / j["p50_ms"]
                    print(
                        f"[{name}] round {k + 1}: LeRobot {lr['lerobot']} predict_action_chunk (torch {lr['torch']}, "
                        f"{lr['threads']} threads, {lc['params'] / 1e6:.1f}M params): p50 {lc['p50_ms']:.1f} ms, "
                        f"p99 {lc['p99_ms']:.1f} ms; same weights and noise: max |action diff| "
                        f"{r['max_abs_diff_actions']:.2e}",
                        flush=True,
                    )
                else:
                    r["ratio"] = None
                rounds[name].append(r)
        for case in lr_cases:
            name = case["name"]
            rs = rounds[name]
            median = median_round(
                name, rs, what="LeRobot p50 / jrobot p50", fallback=lambda r: r["jrobot"]["p50_ms"],
                target=1.5 if name == "full" else None, lerobot_given=bool(args.lerobot_python),
            )  # fmt: skip
            result["cases"][name] = {**median, "rounds": rs, **exports[name]}
        print_result(result)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()

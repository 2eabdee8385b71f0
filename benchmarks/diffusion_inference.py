"""Diffusion Policy CPU latency per action chunk, DDPM-100 and DDIM-10: jrobot bundle vs LeRobot PyTorch.

    .venv/bin/python benchmarks/diffusion_inference.py                    # a few minutes on 2 cores
    .venv/bin/python benchmarks/diffusion_inference.py --calls-ddpm 30 --calls-ddim 30
    JROBOT_LEROBOT_PYTHON=/work/lerobot-ref/bin/python .venv/bin/python benchmarks/diffusion_inference.py

Config (stated): LeRobot 0.4.4's `DiffusionConfig` defaults for the architecture -- ResNet18 with
GroupNorm and 32 spatial-softmax keypoints shared by the cameras, 1-D conditional U-Net with down_dims
(512, 1024, 2048), kernel 5, FiLM scale modulation, n_obs_steps 2, horizon 16, n_action_steps 8,
100 training timesteps, squaredcos_cap_v2, epsilon prediction, no crop -- with the parity fixture's
cameras (2 cameras, `--hw` 64x64 by default) and 6-D state/action. Two schedulers on the same weights:
DDPM with all 100 steps (`num_inference_steps=None`, LeRobot's default) and DDIM with 10 steps.

With a LeRobot interpreter the checkpoints are written by LeRobot (random weights, `save_pretrained`
with processors and MIN_MAX/MEAN_STD stats) and imported with `python -m jrobot.export --from-lerobot`,
so both sides run the same weights and the DDIM chunks from the same initial noise are compared.
Without it the jrobot model is built with `jrobot.policies.diffusion.build` and exported with
`jrobot.train.export.write_bundle`.

jrobot figure: `BundlePolicy.predict` end to end (uint8 frames in, the 8 executed actions in dataset
units out; the initial and per-step noise drawn inside the exported function). LeRobot figure:
`policy.diffusion.generate_actions(batch)` (what `predict_action_chunk` runs on its stacked
observation queues) in eval mode under `torch.inference_mode()` on an already-normalized batch, with
`torch.set_num_threads(cores)`. p50/p99 over the timed calls after warm-up; ratio = LeRobot p50 /
jrobot p50. Also reported: one U-Net call on each side (jrobot: the jitted U-Net alone), which is
what the 100 or 10 steps repeat.

This VM's speed drifts by up to +-20% over minutes: the sides alternate for `--rounds` rounds
(default 3), the ratio is taken within each round and the median round is reported (target >= 1.5x).
The weight-streaming ceiling is also measured in the same run: one U-Net call has to read all its
float32 weights (1.02 GB at the default size) from memory, so a jitted sum over that many bytes bounds
the U-Net call from below on this machine.

Time: one U-Net call is measured first on each side; the timed calls (`--calls-ddim`, `--calls-ddpm`)
are cut so that warm-up plus calls fit `--budget-s` (default 90 s per side and scheduler), and a chunk
that alone would exceed the budget is not run: its latency is reported as steps x U-Net call and
marked as an estimate. Raise `--budget-s` for full measurements.
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
from common import median_round, memory_read_gbps, print_result, run_lerobot_script

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
CAMS = ("observation.images.front", "observation.images.wrist")

STEPS = {"ddpm100": 100, "ddim10": 10}
SCHEDULERS = {
    "ddpm100": {"noise_scheduler_type": "DDPM", "num_inference_steps": None},
    "ddim10": {"noise_scheduler_type": "DDIM", "num_inference_steps": 10},
}
# LeRobot 0.4.4 DiffusionConfig defaults, spelled out so both sides build exactly this
BASE = {
    "n_obs_steps": 2, "horizon": 16, "n_action_steps": 8, "vision_backbone": "resnet18",
    "crop_shape": None, "pretrained_backbone_weights": None, "use_group_norm": True,
    "spatial_softmax_num_keypoints": 32, "use_separate_rgb_encoder_per_camera": False,
    "down_dims": [512, 1024, 2048], "kernel_size": 5, "n_groups": 8, "diffusion_step_embed_dim": 128,
    "use_film_scale_modulation": True, "num_train_timesteps": 100, "beta_schedule": "squaredcos_cap_v2",
    "prediction_type": "epsilon", "clip_sample": True, "clip_sample_range": 1.0,
}  # fmt: skip


def pct(x: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(x), q))


def make_observation(hw: tuple[int, int], seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    obs = {"observation.state": rng.uniform(-30, 30, (1, 6)).astype(np.float32)}
    for c in CAMS:
        obs[c] = rng.integers(0, 256, (1, *hw, 3), dtype=np.uint8)
    return obs


def stats() -> dict[str, dict[str, np.ndarray]]:
    out = {
        k: {
            "min": np.full(6, -90.0, np.float32),
            "max": np.full(6, 90.0, np.float32),
            "mean": np.zeros(6, np.float32),
            "std": np.full(6, 30.0, np.float32),
        }
        for k in ("observation.state", "action")
    }
    for c in CAMS:
        out[c] = {
            "mean": np.array([0.485, 0.456, 0.406], np.float32).reshape(3, 1, 1),
            "std": np.array([0.229, 0.224, 0.225], np.float32).reshape(3, 1, 1),
            "min": np.zeros((3, 1, 1), np.float32),
            "max": np.ones((3, 1, 1), np.float32),
        }
    return out


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
        from lerobot.policies.diffusion.configuration_diffusion import DiffusionConfig
        from lerobot.policies.diffusion.modeling_diffusion import DiffusionPolicy
        from lerobot.policies.factory import make_pre_post_processors
        import lerobot
        out = {"torch": torch.__version__, "lerobot": lerobot.__version__, "threads": torch.get_num_threads(),
               "cases": {}}
        obs = dict(np.load(a["obs"]))
        noise = torch.from_numpy(np.load(a["noise"]))
        for case in a["cases"]:
            d = case["dir"]
            if not os.path.isfile(os.path.join(d, "model.safetensors")):
                h, w = a["hw"]
                inputs = {"observation.state": PolicyFeature(FeatureType.STATE, (6,))}
                for cam in a["cams"]:
                    inputs[cam] = PolicyFeature(FeatureType.VISUAL, (3, h, w))
                kw = dict(a["base"], **case["scheduler"])
                kw["down_dims"] = tuple(kw["down_dims"])
                cfg = DiffusionConfig(input_features=inputs,
                                      output_features={"action": PolicyFeature(FeatureType.ACTION, (6,))},
                                      device="cpu", **kw)
                torch.manual_seed(0)
                policy = DiffusionPolicy(cfg)
                policy.save_pretrained(d)
                st = {k: {s: np.asarray(v, np.float32) for s, v in sd.items()} for k, sd in a["stats"].items()}
                pre, post = make_pre_post_processors(cfg, dataset_stats=st)
                pre.save_pretrained(d)
                post.save_pretrained(d)
            policy = DiffusionPolicy.from_pretrained(d)
            policy.eval()
            pre, post = make_pre_post_processors(policy.config, pretrained_path=d)
            raw = {"observation.state": torch.from_numpy(obs["observation.state"])}
            for cam in a["cams"]:
                raw[cam] = torch.from_numpy(obs[cam]).permute(0, 3, 1, 2).float() / 255.0
            n_obs = policy.config.n_obs_steps
            with torch.inference_mode():
                frame = pre(raw)
                # LeRobot's queues start filled with copies of the first observation
                batch = {"observation.state": torch.stack([frame["observation.state"]] * n_obs, dim=1)}
                imgs = torch.stack([frame[c] for c in policy.config.image_features], dim=-4)
                batch["observation.images"] = torch.stack([imgs] * n_obs, dim=1)
                gc = policy.diffusion._prepare_global_conditioning(batch)
                x = noise.clone()
                t = torch.full((1,), 10, dtype=torch.long)
                policy.diffusion.unet(x, t, global_cond=gc)
                unet = []
                for _ in range(5):
                    t0 = time.perf_counter()
                    policy.diffusion.unet(x, t, global_cond=gc)
                    unet.append(time.perf_counter() - t0)
                unet_s = float(np.percentile(unet, 50))
                steps = int(policy.diffusion.num_inference_steps)
                est = steps * unet_s
                times = []
                if est <= a["budget_s"]:
                    n = min(case["calls"], max(1, int(a["budget_s"] / est) - a["warmup"]))
                    for _ in range(a["warmup"]):
                        policy.diffusion.generate_actions(batch)
                    for _ in range(n):
                        t0 = time.perf_counter()
                        policy.diffusion.generate_actions(batch)
                        times.append(time.perf_counter() - t0)
                actions = post(policy.diffusion.generate_actions(batch, noise=noise)) if case["compare"] else None
            if actions is not None:
                np.save(case["out"], actions.numpy())
            measured = bool(times)
            out["cases"][case["name"]] = {
                "p50_ms": float(np.percentile(times, 50) * 1e3) if measured else est * 1e3,
                "p99_ms": float(np.percentile(times, 99) * 1e3) if measured else None,
                "calls": len(times), "measured": measured, "unet_call_ms_p50": unet_s * 1e3,
                "params": sum(p.numel() for p in policy.parameters()), "inference_steps": steps}
        print(json.dumps(out))

    if __name__ == "__main__":
        main()
    """
)


def run_lerobot(python: str, args: dict[str, Any]) -> dict[str, Any] | None:
    return run_lerobot_script(python, LEROBOT_SCRIPT, args, timeout=7200)


# ---------------------------------------------------------------------------------------------------
# jrobot


def export_bundle(
    ckpt: Path, bundle: Path, scheduler: dict[str, Any], hw: tuple[int, int]
) -> tuple[float, str]:
    t0 = time.perf_counter()
    if (ckpt / "model.safetensors").is_file():
        from jrobot.commands.export import main as export_main

        if export_main(["--from-lerobot", str(ckpt), "--out", str(bundle)]) != 0:
            raise RuntimeError(f"jrobot.export --from-lerobot {ckpt} failed")
        return time.perf_counter() - t0, "exported from the LeRobot checkpoint (--from-lerobot)"
    from jrobot.features import SO101_JOINT_KEYS, Feature
    from jrobot.policies import diffusion
    from jrobot.train.export import write_bundle

    feats = {
        "action": Feature("float32", (6,), list(SO101_JOINT_KEYS)),
        "observation.state": Feature("float32", (6,), list(SO101_JOINT_KEYS)),
        **{c: Feature("video", (*hw, 3), ["height", "width", "channels"]) for c in CAMS},
    }
    cfg = diffusion.DiffusionConfig(**{**BASE, **scheduler, "use_ema": False})
    model = diffusion.build(cfg, feats, stats(), seed=0, load_pretrained_backbone=False)
    write_bundle(
        model, diffusion, bundle, features=feats, fps=30, robot_type=None, source={"benchmark": "random"}
    )
    return time.perf_counter() - t0, "built by jrobot (random init), exported with write_bundle"


def unet_call_ms(bundle: Path, noise: np.ndarray, calls: int = 10) -> tuple[float, int]:
    """One jitted U-Net call of the bundle's architecture (the unit the sampler repeats), and its weight bytes.

    The weights are a fresh random init (the U-Net's cost does not depend on their values), laid out
    as export stores them (`diffusion.inference_model`).
    """
    import jax
    import jax.numpy as jnp
    from flax import nnx

    from jrobot.bundle import read_info
    from jrobot.policies import diffusion

    info = read_info(bundle)
    cfg = diffusion.DiffusionConfig.from_dict(info.spec.config)
    feats = {**info.spec.input_features, **info.spec.output_features}
    model = diffusion.build(cfg, feats, info.stats, seed=0, load_pretrained_backbone=False)
    graphdef, state = nnx.split(diffusion.inference_model(model).diffusion.unet)

    @jax.jit
    def call(state, x, t, gc):
        return nnx.merge(graphdef, state)(x, t, gc)

    x = jnp.asarray(noise)
    t = jnp.full((1,), 10, jnp.int32)
    gc = jnp.zeros((1, diffusion.global_cond_dim(model)), jnp.float32)
    call(state, x, t, gc).block_until_ready()
    times = []
    for _ in range(calls):
        t0 = time.perf_counter()
        call(state, x, t, gc).block_until_ready()
        times.append(time.perf_counter() - t0)
    return pct(times, 50) * 1e3, sum(int(x.nbytes) for x in jax.tree.leaves(state))


def time_bundle(
    bundle: Path, obs: dict[str, np.ndarray], noise: np.ndarray, calls: int, warmup: int, compare: bool
) -> tuple[dict[str, Any], np.ndarray | None]:
    from jrobot.runtime.policy import BundlePolicy

    policy = BundlePolicy(bundle)
    t0 = time.perf_counter()
    policy.predict(obs)
    first = time.perf_counter() - t0
    for _ in range(max(0, warmup - 1)):
        policy.predict(obs)
    times = []
    for _ in range(calls):
        t0 = time.perf_counter()
        policy.predict(obs)
        times.append(time.perf_counter() - t0)
    with_noise = policy.predict(obs, noise=noise) if compare else None
    return {
        "p50_ms": pct(times, 50) * 1e3,
        "p99_ms": pct(times, 99) * 1e3,
        "calls": calls,
        "measured": True,
        "first_call_s": first,
        "params": sum(int(np.prod(v.shape)) for v in policy.params.values()),
    }, with_noise


def describe(m: dict[str, Any], steps: int) -> str:
    unet = f"one U-Net call {m['unet_call_ms_p50']:.0f} ms"
    if not m["measured"]:
        return (
            f"NOT RUN: {steps} x U-Net call = ~{m['p50_ms'] / 1e3:.0f} s per chunk exceeds --budget-s; "
            f"estimate used ({unet})"
        )
    first = f", first call incl. compile {m['first_call_s']:.1f} s" if "first_call_s" in m else ""
    return (
        f"p50 {m['p50_ms']:.0f} ms, p99 {m['p99_ms']:.0f} ms per chunk over {m['calls']} calls "
        f"({m['params'] / 1e6:.0f}M params{first}; {unet})"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--schedulers", default="ddim10,ddpm100", help="comma list of ddim10, ddpm100")
    p.add_argument("--calls-ddim", type=int, default=20)
    p.add_argument("--calls-ddpm", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--rounds", type=int, default=3, help="alternations of LeRobot and jrobot timings")
    p.add_argument(
        "--budget-s",
        type=float,
        default=90.0,
        help="per side and scheduler: timed calls are cut to fit; a chunk longer than this is not run but "
        "estimated as steps x U-Net call",
    )
    p.add_argument("--hw", default="64x64", help="camera HxW (the parity fixture's size by default)")
    p.add_argument("--work", type=Path, default=None, help="keep checkpoints/bundles here (default: temp)")
    p.add_argument("--lerobot-python", default=os.environ.get("JROBOT_LEROBOT_PYTHON"))
    args = p.parse_args()
    cores = os.cpu_count() or 1
    hw = tuple(int(v) for v in args.hw.split("x"))
    names = [s.strip() for s in args.schedulers.split(",") if s.strip()]
    for n in names:
        if n not in SCHEDULERS:
            raise SystemExit(f"unknown scheduler {n!r}; use {list(SCHEDULERS)}")
    calls = {"ddim10": args.calls_ddim, "ddpm100": args.calls_ddpm}
    tmp = Path(tempfile.mkdtemp(prefix="jrobot-bench-diffusion-")) if args.work is None else None
    work = (args.work or tmp).absolute()
    work.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {"cores": cores, "hw": hw, "load_avg_start": os.getloadavg(), "cases": {}}
    try:
        obs = make_observation(hw)
        noise = np.random.default_rng(1).normal(size=(1, BASE["horizon"], 6)).astype(np.float32)
        np.savez(work / "obs.npz", **obs)
        np.save(work / "noise.npy", noise)
        ckpts = {n: work / f"lerobot_diffusion_{n}_{hw[0]}x{hw[1]}" for n in names}
        lr_args = {
            "obs": str(work / "obs.npz"), "noise": str(work / "noise.npy"), "hw": list(hw),
            "cams": list(CAMS), "base": BASE, "threads": cores, "warmup": args.warmup, "budget_s": args.budget_s,
            "stats": {k: {s: v.tolist() for s, v in sd.items()} for k, sd in stats().items()},
            "cases": [
                {"name": n, "dir": str(ckpts[n]), "scheduler": SCHEDULERS[n], "calls": calls[n],
                 "out": str(work / f"lerobot_actions_{n}.npy"), "compare": n.startswith("ddim")}
                for n in names
            ],
        }  # fmt: skip
        # This VM's speed drifts by up to +-20% over minutes: LeRobot and jrobot alternate for
        # `--rounds` rounds, the ratio is taken within each round and the median round is reported.
        # LeRobot writes its checkpoints in the first round; jrobot's bundles are exported from them
        # once, right after.
        exports: dict[str, dict[str, Any]] = {}
        rounds: dict[str, list[dict[str, Any]]] = {n: [] for n in names}
        for k in range(args.rounds):
            lr = None
            if args.lerobot_python:
                print(f"round {k + 1}/{args.rounds}: LeRobot timing {', '.join(names)} ...", flush=True)
                lr = run_lerobot(args.lerobot_python, lr_args)
                if lr is not None:
                    result["lerobot"] = {key: v for key, v in lr.items() if key != "cases"}
            for n in names:
                if n not in exports:
                    bundle = work / f"bundle_{n}"
                    export_s, how = export_bundle(ckpts[n], bundle, SCHEDULERS[n], hw)
                    unet_ms, unet_bytes = unet_call_ms(bundle, noise)
                    floor_ms = unet_bytes / memory_read_gbps(unet_bytes) / 1e6
                    exports[n] = {"bundle": bundle, "how": how, "export_s": export_s, "unet_ms": unet_ms}
                    result["unet_weight_bytes"] = unet_bytes
                    result["unet_floor_ms"] = floor_ms
                    print(
                        f"[{n}] one U-Net call: jrobot {unet_ms:.0f} ms; reading its {unet_bytes / 1e9:.2f} GB "
                        f"of weights once takes {floor_ms:.0f} ms on this machine (the floor of a call)",
                        flush=True,
                    )
                e = exports[n]
                est_s = STEPS[n] * e["unet_ms"] / 1e3
                if est_s <= args.budget_s:
                    c = min(calls[n], max(1, int(args.budget_s / est_s) - args.warmup))
                    j, actions = time_bundle(
                        e["bundle"], obs, noise, c, args.warmup, compare=n.startswith("ddim")
                    )
                else:  # one chunk would not fit the budget: report steps x U-Net call, clearly marked
                    j, actions = {"p50_ms": est_s * 1e3, "p99_ms": None, "calls": 0, "measured": False}, None
                j["unet_call_ms_p50"] = e["unet_ms"]
                r: dict[str, Any] = {"jrobot": j}
                print(
                    f"[{n}] round {k + 1}: jrobot bundle ({e['how']}, 2 cameras {hw[0]}x{hw[1]}): "
                    f"{describe(j, STEPS[n])}"
                )
                if lr is not None and n in lr["cases"]:
                    lc = lr["cases"][n]
                    r["lerobot"] = lc
                    r["ratio"] = lc["p50_ms"] / j["p50_ms"]
                    r["ratio_is_estimate"] = not (lc["measured"] and j["measured"])
                    if actions is not None and (work / f"lerobot_actions_{n}.npy").is_file():
                        ref = np.load(work / f"lerobot_actions_{n}.npy")
                        r["max_abs_diff_actions_same_noise"] = float(np.max(np.abs(ref - actions)))
                    same = (
                        f"; same initial noise: max |action diff| {r['max_abs_diff_actions_same_noise']:.2e}"
                        if "max_abs_diff_actions_same_noise" in r
                        else ""
                    )
                    print(
                        f"[{n}] round {k + 1}: LeRobot {lr['lerobot']} generate_actions (torch {lr['torch']}, "
                        f"{lr['threads']} threads): {describe(lc, STEPS[n])}{same}"
                    )
                else:
                    r["ratio"] = None
                rounds[n].append(r)
        for n in names:
            rs, e = rounds[n], exports[n]
            median = median_round(
                n, rs, what="LeRobot p50 / jrobot p50", fallback=lambda r: r["jrobot"]["p50_ms"], target=1.5,
                lerobot_given=bool(args.lerobot_python),
                note=lambda r: " (ESTIMATED from U-Net calls, see above)" if r["ratio_is_estimate"] else "",
            )  # fmt: skip
            result["cases"][n] = {**median, "rounds": rs, "export_s": e["export_s"], "how": e["how"]}
        print_result(result)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()

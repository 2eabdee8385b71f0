"""GPU suite: training steps/s and MFU of the full-size ACT, Diffusion and SmolVLA fed by the real input
pipeline, the share of step time spent waiting for data, and each bundle's inference latency per chunk.

    python benchmarks/gpu_suite.py --out /tmp/gpu_suite                 # on a machine with an NVIDIA GPU
    python benchmarks/gpu_suite.py --small --out /tmp/gpu_suite_small   # any machine: the same path, tiny

Everything is made on the spot, nothing is downloaded: scripted-expert episodes recorded in the MuJoCo
simulator (`jrobot.train.demo.stage_record`, the instruction-conditioned task, two cameras; EGL on a
GPU machine, OSMesa elsewhere), ArrayRecord shards at each policy's resolution (`stage_shards`), and
for SmolVLA a VLM folder with smolvla_base's architecture (SmolVLM2-500M, 16 text layers kept,
random weights: `benchmarks/smolvla_inference.write_full_vlm`) trained as LeRobot's recipe does (bf16
mixed precision, VLM frozen, `train_expert_only`). Each policy trains from its config
(`configs/{act,diffusion,smolvla}_so101_sim.py`, batch `--batch`) through the trainer's own
`setup_training` and `DataLoader` (grain workers, shared memory, device_put), so what is timed is
what `jrobot.train` runs:

- step time: `--steps` steps after `--warmup` (compilation reported apart), wall clock to the last
  step's results;
- data wait: the time `next(loader)` blocked, as a share of the timed wall clock (target <= 5%);
- MFU: XLA's cost analysis of the compiled step (FLOPs per step) x steps/s / the device's dense bf16
  peak (a table of NVIDIA parts by `device_kind`, or `--peak-tflops`); on a CPU it is n/a;
- inference: the trained params exported as a bundle (`write_bundle`) and run by the runtime's
  `BundlePolicy` on the same device, batch 1, p50/p99 per chunk over `--calls` calls.

Targets (issue 16): SmolVLA training >= 40% MFU, data wait <= 5% of step time, ACT step at batch 8 <=
1/3 of LeRobot's published 0.055 s on an A100 (`--act-batch8`, on by default, measures it). Baseline:
the device's peak (MFU) and LeRobot's published ACT figure; with `JROBOT_LEROBOT_PYTHON` naming a
LeRobot interpreter on the same machine, `benchmarks/act_train_step.py` gives LeRobot's step there.

The machine needs this repo and a Python with jrobot's dependencies, and no network. On the lent GPU
machine (its image has JAX with CUDA, flax, optax, orbax-checkpoint, pyarrow, OpenCV, tokenizers and
safetensors), `benchmarks/gpu_device.sh` runs it with the rest carried as wheels that
`scripts/gpu_carry.sh` downloads here (58 MiB with the repository, of the 64 a call may carry):
gymnasium, ml_collections, mujoco's Python part, PyOpenGL, portpicker and Farama-Notifications
(pure Python), and grain, array_record, av, mujoco-core and simplejpeg (compiled: no pure-Python
package records AV1, reads ArrayRecord or simulates the arm), with the EGL loader packages. The
issue gives it 8 minutes on one GPU; its GPU time is not measured yet (no GPU was lent). One JSON
line with every figure comes last.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
# the compile times printed below are compiles, not loads from a cache an earlier run filled
os.environ["JROBOT_COMPILE_CACHE"] = "0"


def _has_nvidia() -> bool:
    return shutil.which("nvidia-smi") is not None or Path("/dev/nvidia0").exists()


os.environ.setdefault("MUJOCO_GL", "egl" if _has_nvidia() else "osmesa")

import numpy as np  # noqa: E402
from common import print_result  # noqa: E402

# dense bf16 tensor-core peak (TFLOP/s, no sparsity) of NVIDIA parts, by a substring of jax's device_kind
BF16_PEAK_TFLOPS = {
    "H200": 989.0,
    "H100 PCIe": 756.0,
    "H100": 989.0,
    "GH200": 989.0,
    "B200": 2250.0,
    "A100": 312.0,
    "A10G": 125.0,
    "A10": 125.0,
    "L40S": 362.0,
    "L40": 181.0,
    "L4": 121.0,
    "RTX 4090": 165.0,
    "RTX 3090": 71.0,
    "V100": 125.0,
    "T4": 65.0,
}
LEROBOT_ACT_A100_STEP_S = 0.055  # LeRobot's published ACT step on an A100 at batch 8

# (config, shard resolution HxW, recorded on the task) per policy; --small swaps in CPU-sized ones
POLICIES = {
    "act": ("configs/act_so101_sim.py", (224, 224)),
    "diffusion": ("configs/diffusion_so101_sim.py", (96, 96)),
    "smolvla": ("configs/smolvla_so101_sim.py", (512, 512)),
}
SMALL = {
    "act": ("configs/act_so101_sim.py", (32, 32)),
    "diffusion": ("configs/diffusion_so101_sim.py", (32, 32)),
    "smolvla": ("configs/smolvla_so101_sim_cpu.py", (64, 64)),
}
TINY_POLICY = {  # --small: the architecture's knobs turned down (the path is the same)
    "act": {
        "chunk_size": 8, "n_action_steps": 4, "dim_model": 32, "n_heads": 4, "dim_feedforward": 64,
        "n_encoder_layers": 1, "n_decoder_layers": 1, "n_vae_encoder_layers": 1, "latent_dim": 8,
    },
    "diffusion": {
        "horizon": 8, "n_action_steps": 4, "down_dims": (16, 32), "diffusion_step_embed_dim": 16,
        "crop_shape": None, "num_inference_steps": 2, "spatial_softmax_num_keypoints": 8,
    },
    "smolvla": {},
}  # fmt: skip


def bf16_peak(device: Any, override: float | None) -> float | None:
    """FLOP/s of the device's dense bf16 peak, or None where unknown (a CPU)."""
    if override:
        return override * 1e12
    if device.platform != "gpu":
        return None
    kind = str(getattr(device, "device_kind", ""))
    for name, tflops in BF16_PEAK_TFLOPS.items():  # the longer names come first where they overlap
        if name in kind:
            return tflops * 1e12
    return None


def record_dataset(out: Path, episodes: int, size: tuple[int, int]) -> dict[str, Any]:
    """The demo's own recording stage, on the instruction-conditioned task (SmolVLA reads the task)."""
    from jrobot.train.demo import stage_record

    t0 = time.perf_counter()
    return {
        **stage_record(out, episodes, 0, size, task="pick_color", episode_time_s=14.0),
        "s": time.perf_counter() - t0,
    }


def make_shards(dataset: Path, out: Path, resolution: tuple[int, int]) -> Path:
    """The demo's shard stage, once per resolution (ACT at batch 64 and at batch 8 share one set)."""
    from jrobot.train.demo import stage_shards

    if not (out / "manifest.json").exists():
        stage_shards(dataset, out, resolution)
    return out


def policy_config(name: str, config_file: str, shards: Path, args: argparse.Namespace, vlm: Path | None):
    from jrobot.train.config_util import load_config_file

    c = load_config_file(REPO / config_file)
    c.data.shards = str(shards)
    c.data.num_workers = args.workers
    c.batch_size = args.batch if name != "act8" else 8
    c.num_steps = args.warmup + args.steps
    c.wandb.mode = "disabled"
    if args.small:
        for k, v in TINY_POLICY.get(name.removesuffix("8"), {}).items():
            c.policy.config[k] = v
    if name == "smolvla" and vlm is not None:
        c.policy.config.vlm_model_name = str(vlm)
        c.policy.config.load_vlm_weights = False  # smolvla_base's architecture, random weights
    return c


def flops_per_step(step_fn: Any, state: Any, batch: Any) -> float | None:
    try:
        cost = step_fn.lower(state, batch).compile().cost_analysis()
    except Exception as e:  # a backend without cost analysis
        print(f"  (no XLA cost analysis: {type(e).__name__}: {e})")
        return None
    if isinstance(cost, list | tuple):
        cost = cost[0] if cost else {}
    flops = (cost or {}).get("flops")
    return float(flops) if flops else None


def train_figures(name: str, config: Any, args: argparse.Namespace, peak: float | None) -> tuple[dict, Any]:
    import jax

    from jrobot.pipeline.loader import DataLoader, make_train_dataset
    from jrobot.shards.format import ShardSet
    from jrobot.train import sharding as shd
    from jrobot.train.config_util import as_plain_dict
    from jrobot.train.trainer import pipeline_config, setup_training

    mesh = shd.make_mesh(**as_plain_dict(config.mesh))
    shard_sets = [ShardSet(config.data.shards)]
    setup = setup_training(config, mesh, shard_sets)
    pcfg = pipeline_config(config, setup.policy.spec)
    loader = DataLoader(make_train_dataset(pcfg), to_device=setup.to_device)
    try:
        state = setup.init()
        batch = next(loader)
        t0 = time.perf_counter()
        flops = flops_per_step(setup.step, state, batch)  # compiles the step (the call below reuses it)
        state, metrics = setup.step(state, batch)
        jax.block_until_ready(metrics)
        compile_s = time.perf_counter() - t0
        for _ in range(args.warmup - 1):
            state, metrics = setup.step(state, next(loader))
        jax.block_until_ready(metrics)
        wait0 = loader.wait_s
        t0 = time.perf_counter()
        for _ in range(args.steps):
            state, metrics = setup.step(state, next(loader))
        jax.block_until_ready((state, metrics))
        wall = time.perf_counter() - t0
        wait = loader.wait_s - wait0
    finally:
        loader.close()
    step_s = wall / args.steps
    out = {
        "batch": int(config.batch_size),
        "step_ms": step_s * 1e3,
        "steps_per_s": 1.0 / step_s,
        "compile_s": compile_s,
        "data_wait_share": wait / wall,
        "gflop_per_step": flops / 1e9 if flops else None,
        "tflops_achieved": flops / step_s / 1e12 if flops else None,
        "mfu": flops / step_s / peak if flops and peak else None,
        "loss": float(jax.device_get(metrics["loss"])),
        "params": int(sum(np.prod(x.shape) for x in jax.tree.leaves(state["params"]))),
        "frozen": int(sum(np.prod(x.shape) for x in jax.tree.leaves(state["frozen"]))),
    }
    return out, (setup, state)


def inference_figures(name: str, trained: Any, bundle: Path, calls: int, device: Any) -> dict:
    import jax
    from flax import nnx

    from jrobot.runtime.policy import BundlePolicy
    from jrobot.train.export import write_bundle

    setup, state = trained
    policy = setup.policy
    params = state.get("ema", state["params"])
    model = nnx.merge(policy.graphdef, jax.device_get(params), jax.device_get(state["frozen"]))
    write_bundle(model, policy.module, bundle, features=policy.features, fps=30, robot_type=None, source={})
    runner = BundlePolicy(bundle, device=device)
    rng = np.random.default_rng(0)
    obs: dict[str, np.ndarray] = {}
    for key, feat in runner.info.features.items():
        if key.startswith("observation.images."):
            h, w, _ = runner.info.image_shapes.get(key, feat.shape)
            obs[key] = rng.integers(0, 256, (1, h, w, 3), dtype=np.uint8)
        elif key == "observation.state":
            obs[key] = rng.normal(size=(1, *feat.shape)).astype(np.float32)
    task = "put the red cube in the bin" if runner.spec.language_keys else None
    t0 = time.perf_counter()
    runner.predict(obs, task=task)
    first = time.perf_counter() - t0
    for _ in range(2):
        runner.predict(obs, task=task)
    times = []
    for _ in range(calls):
        t0 = time.perf_counter()
        np.asarray(runner.predict(obs, task=task))
        times.append(time.perf_counter() - t0)
    return {
        "p50_ms": float(np.percentile(times, 50) * 1e3),
        "p99_ms": float(np.percentile(times, 99) * 1e3),
        "first_call_s": first,
        "device": str(runner.device),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=None, help="work folder (default: a temporary one, removed)")
    ap.add_argument("--policies", default="act,diffusion,smolvla")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=20, help="timed training steps per policy")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--episodes", type=int, default=12, help="simulated demonstrations to record")
    ap.add_argument("--record-size", default="240x320", help="camera HxW recorded")
    ap.add_argument(
        "--workers", type=int, default=None, help="pipeline worker processes (default: cores - 2)"
    )
    ap.add_argument("--calls", type=int, default=30, help="timed inference calls per bundle")
    ap.add_argument("--peak-tflops", type=float, default=None, help="the device's dense bf16 peak")
    ap.add_argument(
        "--no-act-batch8", action="store_true", help="skip ACT at batch 8 (LeRobot's A100 figure)"
    )
    ap.add_argument("--small", action="store_true", help="CPU smoke sizes: tiny models, a few steps")
    args = ap.parse_args()
    if args.small:
        args.batch, args.steps, args.warmup, args.episodes, args.calls = 4, 2, 1, 2, 3
        args.record_size = "48x64"
    cores = os.cpu_count() or 2
    args.workers = args.workers if args.workers is not None else max(0, min(8, cores - 2))
    t_start = time.perf_counter()
    work = args.out or Path(tempfile.mkdtemp(prefix="jrobot-gpu-suite-"))
    work.mkdir(parents=True, exist_ok=True)

    import jax

    device = jax.devices()[0]
    peak = bf16_peak(device, args.peak_tflops)
    result: dict[str, Any] = {
        "device": str(device),
        "device_kind": str(getattr(device, "device_kind", "")),
        "platform": device.platform,
        "bf16_peak_tflops": peak / 1e12 if peak else None,
        "cores": cores,
        "load_avg_start": os.getloadavg(),
        "small": args.small,
        "train": {},
        "inference": {},
    }
    print(
        f"device {device} ({result['device_kind']}), bf16 peak {result['bf16_peak_tflops'] or 'n/a'} TFLOP/s"
    )
    size = tuple(int(v) for v in args.record_size.split("x"))
    dataset = work / "dataset"
    if not (dataset / "meta" / "info.json").exists():
        result["record"] = record_dataset(dataset, args.episodes, size)
        print(f"recorded {result['record']}")
    table = SMALL if args.small else POLICIES
    names = [n for n in args.policies.split(",") if n]
    if "act" in names and not args.no_act_batch8:
        names.append("act8")
    vlm = None
    if "smolvla" in names and not args.small:
        from smolvla_inference import write_full_vlm

        vlm = work / "smolvla_base_vlm"
        write_full_vlm(vlm)
    for name in names:
        config_file, resolution = table[name.removesuffix("8")]
        shards = make_shards(dataset, work / f"shards_{resolution[0]}x{resolution[1]}", resolution)
        config = policy_config(name, config_file, shards, args, vlm)
        print(
            f"\n== {name}: {config_file}, batch {config.batch_size}, images {resolution[0]}x{resolution[1]}"
        )
        figures, trained = train_figures(name, config, args, peak)
        result["train"][name] = figures
        mfu = f"{figures['mfu']:.1%}" if figures["mfu"] is not None else "n/a"
        print(
            f"  step {figures['step_ms']:.1f} ms ({figures['steps_per_s']:.2f} steps/s), compile "
            f"{figures['compile_s']:.1f} s, data wait {figures['data_wait_share']:.1%} of the step time, "
            f"{figures['gflop_per_step'] or float('nan'):.1f} GFLOP/step, MFU {mfu}"
        )
        if name != "act8":
            inf = inference_figures(name, trained, work / f"bundle_{name}", args.calls, device)
            result["inference"][name] = inf
            print(
                f"  inference per chunk p50 {inf['p50_ms']:.2f} ms, p99 {inf['p99_ms']:.2f} ms ({inf['device']})"
            )
        del trained
    if "act8" in result["train"]:
        step = result["train"]["act8"]["step_ms"] / 1e3
        result["act_batch8_vs_lerobot_a100"] = LEROBOT_ACT_A100_STEP_S / step
        print(
            f"\nRATIO LeRobot ACT step on an A100 at batch 8 (published {LEROBOT_ACT_A100_STEP_S * 1e3:.0f} ms) / "
            f"jrobot's here: {LEROBOT_ACT_A100_STEP_S / step:.2f}x (target >= 3)"
        )
    for name, fig in result["train"].items():
        if fig["mfu"] is not None:
            print(f"RATIO {name} achieved / bf16 peak (MFU): {fig['mfu']:.1%}")
    result["load_avg_end"] = os.getloadavg()
    result["total_s"] = time.perf_counter() - t_start
    print(f"total {result['total_s'] / 60:.1f} min")
    if args.out is None:
        shutil.rmtree(work, ignore_errors=True)
    print_result(result)


if __name__ == "__main__":
    main()

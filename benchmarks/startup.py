"""Time to the first action chunk from a fresh process: a jrobot ACT bundle with XLA's compilation cache
off, cold and warm, against LeRobot's ACT loaded from its checkpoint.

    .venv/bin/python benchmarks/startup.py                         # both cases, 3 rounds, jrobot only
    JROBOT_LEROBOT_PYTHON=/work/lerobot-ref/bin/python .venv/bin/python benchmarks/startup.py  # < 5 min, 2 cores

What a user waits for every time `jrobot.run`, `jrobot.eval` or `jrobot.serve` starts on a CPU: the
interpreter, the imports, reading the bundle, compiling the policy (or loading it compiled) and the
first call. jrobot: `BundlePolicy(bundle).predict(observation)` in a new interpreter, with
`JROBOT_COMPILE_CACHE=0` (off), with an empty cache folder (cold: compiles and stores) and with the
folder the cold run filled (warm: what every later run of the bundle sees). LeRobot: a new interpreter
imports lerobot, `ACTPolicy.from_pretrained`, its pre/post processors, and one `predict_action_chunk`
(torch runs eagerly: nothing to compile). Every figure is wall time from spawning the interpreter to
the action chunk in its hands, so both sides pay their imports.

Cases as in `act_inference.py`: `fixture` (the parity checkpoint, 2 cameras 96x128) and `default`
(LeRobot's default ACT, 2 cameras 480x640; written by LeRobot when its interpreter is given, else built
by jrobot with random weights). The four variants alternate for `--rounds` rounds; ratios are taken
within each round (LeRobot / warm, off / warm) and the median round is reported.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

# this process exports bundles with jax: keep its compiles out of every cache the children use
os.environ["JROBOT_COMPILE_CACHE"] = "0"

import numpy as np
from act_inference import (
    CAMS,
    DEFAULT_ACT,
    FIXTURE,
    default_stats,
    export_from_lerobot,
    export_jrobot_default,
    make_observation,
    run_lerobot,
)
from common import median_round, print_result, print_rounds, run_lerobot_script

REPO = Path(__file__).resolve().parents[1]
VARIANTS = ("off", "cold", "warm")

JROBOT_CHILD = textwrap.dedent(
    """
    import json, sys, time
    a = json.loads(sys.argv[1])
    import numpy as np
    from jrobot.runtime.policy import BundlePolicy
    t_import = time.time()
    policy = BundlePolicy(a["bundle"])
    obs = dict(np.load(a["obs"]))
    t_read = time.time()
    actions = policy.predict(obs)
    t_done = time.time()
    print(json.dumps({"import_s": t_import - a["t0"], "read_s": t_read - t_import,
                      "first_call_s": t_done - t_read, "total_s": t_done - a["t0"]}))
    """
)

LEROBOT_CHILD = textwrap.dedent(
    """
    import json, os, sys, time
    a = json.loads(sys.argv[1])
    import numpy as np
    import torch
    torch.set_num_threads(a["threads"])
    from lerobot.policies.act.modeling_act import ACTPolicy
    from lerobot.policies.factory import make_pre_post_processors
    t_import = time.time()
    policy = ACTPolicy.from_pretrained(a["dir"])
    policy.eval()
    pre, post = make_pre_post_processors(policy.config, pretrained_path=a["dir"])
    obs = dict(np.load(a["obs"]))
    t_read = time.time()
    raw = {"observation.state": torch.from_numpy(obs["observation.state"])}
    for k, v in obs.items():
        if k.startswith("observation.images."):
            raw[k] = torch.from_numpy(v).permute(0, 3, 1, 2).float() / 255.0
    with torch.inference_mode():
        actions = post(policy.predict_action_chunk(pre(raw)))
    t_done = time.time()
    print(json.dumps({"import_s": t_import - a["t0"], "read_s": t_read - t_import,
                      "first_call_s": t_done - t_read, "total_s": t_done - a["t0"]}))
    """
)


def jrobot_first_chunk(bundle: Path, obs: Path, cache: str) -> dict[str, float]:
    """One fresh interpreter: bundle to first action chunk, with JROBOT_COMPILE_CACHE=`cache`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("JAX_COMPILATION_CACHE")}
    env["JROBOT_COMPILE_CACHE"] = cache
    args = json.dumps({"bundle": str(bundle), "obs": str(obs), "t0": time.time()})
    out = subprocess.run(
        [sys.executable, "-c", JROBOT_CHILD, args], cwd=REPO, env=env, capture_output=True, text=True
    )
    if out.returncode != 0:
        raise RuntimeError(f"jrobot child failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def lerobot_first_chunk(python: str, ckpt: Path, obs: Path, threads: int) -> dict[str, float] | None:
    args = {"dir": str(ckpt), "obs": str(obs), "threads": threads, "t0": time.time()}
    return run_lerobot_script(python, LEROBOT_CHILD, args, timeout=1200)


def phases(r: dict[str, float]) -> str:
    return (
        f"{r['total_s']:.1f} s (imports {r['import_s']:.1f}, read {r['read_s']:.1f}, "
        f"first call {r['first_call_s']:.1f})"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cases", default="fixture,default", help="comma list of: fixture, default")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--hw", default="480x640", help="camera HxW of the default-size case")
    p.add_argument("--work", type=Path, default=None, help="keep checkpoints/bundles here (default: temp)")
    p.add_argument("--lerobot-python", default=os.environ.get("JROBOT_LEROBOT_PYTHON"))
    args = p.parse_args()
    cores = os.cpu_count() or 1
    hw = tuple(int(v) for v in args.hw.split("x"))
    tmp = Path(tempfile.mkdtemp(prefix="jrobot-bench-startup-")) if args.work is None else None
    work = (args.work or tmp).absolute()
    work.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {"cores": cores, "load_avg_start": os.getloadavg(), "cases": {}}
    try:
        for name in [c.strip() for c in args.cases.split(",") if c.strip()]:
            if name == "fixture":
                image_hw, ckpt = (96, 128), FIXTURE
            elif name == "default":
                image_hw, ckpt = hw, work / f"lerobot_act_default_{hw[0]}x{hw[1]}"
            else:
                raise SystemExit(f"unknown case {name!r}; use fixture and/or default")
            obs = work / f"obs_{name}.npz"
            np.savez(obs, **make_observation(image_hw))
            if name == "default" and args.lerobot_python and not (ckpt / "model.safetensors").is_file():
                stats = {k: {s: v.tolist() for s, v in sd.items()} for k, sd in default_stats().items()}
                create = {"hw": list(hw), "cams": list(CAMS), "policy": DEFAULT_ACT, "stats": stats}
                case = {"name": name, "dir": str(ckpt), "obs": str(obs), "out": str(work / "unused.npy"),
                        "create": create}  # fmt: skip
                run_lerobot(args.lerobot_python, [case], 1, 0, cores)  # writes the checkpoint
            bundle = work / f"bundle_{name}"
            if (ckpt / "model.safetensors").is_file():
                how = "exported from the LeRobot checkpoint"
                export_from_lerobot(ckpt, bundle)
            else:
                how = "built by jrobot (random init)"
                export_jrobot_default(bundle, hw)
                ckpt = None
            label = f"{name}, 2 cameras {image_hw[0]}x{image_hw[1]}, {how}"
            rounds = []
            for k in range(args.rounds):
                cache = work / f"xla_{name}_{k}"
                shutil.rmtree(cache, ignore_errors=True)
                r: dict[str, Any] = {
                    "off": jrobot_first_chunk(bundle, obs, "0"),
                    "cold": jrobot_first_chunk(bundle, obs, str(cache)),
                    "warm": jrobot_first_chunk(bundle, obs, str(cache)),
                }
                r["cache_mb"] = sum(f.stat().st_size for f in cache.rglob("*") if f.is_file()) / 1e6
                r["off_over_warm"] = r["off"]["total_s"] / r["warm"]["total_s"]
                lr = None
                if args.lerobot_python and ckpt is not None:
                    lr = lerobot_first_chunk(args.lerobot_python, ckpt, obs, cores)
                r["lerobot"] = lr
                r["ratio"] = lr["total_s"] / r["warm"]["total_s"] if lr else None
                print(f"[{label}] round {k + 1}: " + "; ".join(f"{v} {phases(r[v])}" for v in VARIANTS))
                print(
                    f"[{label}] round {k + 1}: cache {r['cache_mb']:.1f} MB; "
                    f"LeRobot {phases(lr) if lr else 'n/a'}",
                    flush=True,
                )
                rounds.append(r)
            print_rounds(
                f"[{name}] cache off / warm, time to first chunk", [r["off_over_warm"] for r in rounds]
            )
            for v in VARIANTS:
                print_rounds(
                    f"[{name}] jrobot {v}, time to first chunk (s)", [r[v]["total_s"] for r in rounds]
                )
            chosen = median_round(
                name,
                rounds,
                what="LeRobot / jrobot warm, time to first chunk",
                fallback=lambda r: r["warm"]["total_s"],
                target=None,
                lerobot_given=bool(args.lerobot_python),
            )
            result["cases"][name] = {
                "how": how,
                "hw": list(image_hw),
                "rounds": rounds,
                "median_round": chosen,
            }
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    print_result(result)


if __name__ == "__main__":
    main()

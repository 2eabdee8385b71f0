"""Success rate vs training time of the demo's camera ACT and the alternatives, against the privileged policy.

    python benchmarks/demo_recipes.py --out outputs/recipes                  # records 60 demonstrations
    python benchmarks/demo_recipes.py --shards outputs/demo/shards --runs camera@1500,3000 privileged@3000

Each run trains one recipe for a number of steps (its own cosine schedule over exactly those steps, so
a point is what a run of that length gives, not a checkpoint halfway through a longer one), exports the
bundle and evaluates it on the demo's seeded episodes through the real-time runtime; it is the demo's
own code (`jrobot.demo` stages). The baseline, measured in the same invocation on the same data, is
the same ACT reading the simulator's exact cube pose instead of the cameras (`privileged`): the ratio
says how much of what the privileged policy reaches the camera policy reaches. The table and a JSON
line go to stdout; `OUT/results.json` keeps every run.

Recipes (all `configs/act_so101_sim_cpu.py` except `privileged`):
  camera         the demo's: cnn trunk 16-32-32, 32 spatial-softmax keypoints per camera, both cameras
  camera_shift2  + DrQ random shift of up to 2 pixels in training
  feature_map    the cnn trunk's 12x16 feature map as encoder tokens (LeRobot's ACT layout)
  front_only     the front camera alone
  privileged     `configs/act_so101_sim_cpu_privileged.py`: the cube pose, no camera
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from common import print_result

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

CAMERA = REPO / "configs" / "act_so101_sim_cpu.py"
PRIVILEGED = REPO / "configs" / "act_so101_sim_cpu_privileged.py"
RECIPES: dict[str, tuple[Path, dict[str, Any]]] = {
    "camera": (CAMERA, {}),
    "camera_shift2": (CAMERA, {"policy.config.random_shift_pixels": 2}),
    "feature_map": (CAMERA, {"policy.config.image_features": "feature_map"}),
    "front_only": (CAMERA, {"policy.input_features": ("observation.state", "observation.images.front")}),
    "privileged": (PRIVILEGED, {}),
}
DEFAULT_RUNS = ["privileged@3000", "camera@1000,2000,3000,4000", "camera_shift2@3000"]
DEFAULT_RUNS += ["feature_map@3000", "front_only@3000"]


def parse_runs(specs: list[str]) -> list[tuple[str, int]]:
    runs = []
    for spec in specs:
        name, _, steps = spec.partition("@")
        if name not in RECIPES or not steps:
            raise SystemExit(f"--runs {spec!r}: expected RECIPE@STEPS[,STEPS...], recipes: {sorted(RECIPES)}")
        runs += [(name, int(s)) for s in steps.split(",")]
    return runs


def run_one(name: str, steps: int, shards: Path, out: Path, eval_episodes: int, seed: int) -> dict[str, Any]:
    from jrobot.demo import stage_eval, stage_export, stage_train
    from jrobot.train.config_util import load_config_file

    path, overrides = RECIPES[name]
    config = load_config_file(path)
    for key, value in overrides.items():
        node = config
        *parents, leaf = key.split(".")
        for p in parents:
            node = node[p]
        node[leaf] = value
    config.max_train_seconds = 0.0  # the step count decides, not the clock
    config.log_every = max(steps // 4, 1)
    run_dir = out / f"{name}_{steps}"
    t0 = time.perf_counter()
    train = stage_train(config, shards, run_dir / "train", steps)
    train_s = time.perf_counter() - t0
    stage_export(run_dir / "train", run_dir / "bundle")
    ev = stage_eval(run_dir / "bundle", run_dir / "eval", eval_episodes, 100_000 + seed)
    return {
        "recipe": name,
        "steps": steps,
        "train_s": round(train_s, 1),
        "steps_per_s": train["steps_per_s"],
        "final_loss": train["final_loss"],
        "success_rate": ev["success_rate"],
        "episodes": ev["episodes"],
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=Path("outputs/recipes"))
    p.add_argument("--shards", type=Path, default=None, help="reuse these shards (default: record anew)")
    p.add_argument("--episodes", type=int, default=60, help="demonstrations to record without --shards")
    p.add_argument("--eval-episodes", type=int, default=50)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--runs", nargs="+", default=DEFAULT_RUNS, help="RECIPE@STEPS[,STEPS...] ...")
    args = p.parse_args()
    runs = parse_runs(args.runs)
    os.environ.setdefault("WANDB_MODE", "disabled")
    import logging

    logging.basicConfig(level=logging.WARNING)
    load_avg_start = os.getloadavg()
    args.out.mkdir(parents=True, exist_ok=True)
    shards = args.shards
    if shards is None:
        from jrobot.demo import stage_record, stage_shards

        print(f"recording {args.episodes} demonstrations ...", file=sys.stderr)
        stage_record(args.out / "dataset", args.episodes, args.seed, (96, 128))
        shards = args.out / "shards"
        stage_shards(args.out / "dataset", shards, (48, 64))
    results: list[dict[str, Any]] = []
    for name, steps in runs:
        print(f"== {name} @ {steps} steps", file=sys.stderr, flush=True)
        results.append(run_one(name, steps, shards, args.out, args.eval_episodes, args.seed))
        (args.out / "results.json").write_text(json.dumps(results, indent=2))
        print(json.dumps(results[-1]), file=sys.stderr, flush=True)

    base = [r for r in results if r["recipe"] == "privileged"]
    base_rate = max((r["success_rate"] for r in base), default=None)
    print(f"\n{'recipe':<14} {'steps':>6} {'train min':>9} {'steps/s':>8} {'success':>8} {'vs privileged':>14}")
    for r in results:
        ratio = f"{r['success_rate'] / base_rate:.2f}x" if base_rate else "n/a"
        r["ratio_vs_privileged"] = r["success_rate"] / base_rate if base_rate else None
        print(
            f"{r['recipe']:<14} {r['steps']:>6} {r['train_s'] / 60:>9.1f} {r['steps_per_s']:>8.2f} "
            f"{r['success_rate']:>8.0%} {ratio:>14}"
        )
    print_result(
        {
            "benchmark": "demo_recipes",
            "shards": str(shards),
            "eval_episodes": args.eval_episodes,
            "privileged_success": base_rate,
            "runs": results,
            "load_avg_start": load_avg_start,
        }
    )


if __name__ == "__main__":
    main()

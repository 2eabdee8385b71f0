"""Success rate vs training steps of the demos' camera policies and the alternatives, against a baseline.

    python benchmarks/demo_recipes.py --out outputs/recipes                 # records what it needs
    python benchmarks/demo_recipes.py --shards act=outputs/demo/shards --runs camera@1500,3000 privileged@3000
    python benchmarks/demo_recipes.py --shards smolvla=outputs/demo_vla/shards --runs vla@1500,3000

Each run trains one recipe for a number of steps (its own learning-rate schedule over exactly those
steps, so a point is what a run of that length gives, not a checkpoint halfway through a longer one),
exports the bundle and evaluates it on the demo's seeded episodes through the real-time runtime; it is
the demo's own code (`jrobot.train.demo` stages). A recipe belongs to one demo (`jrobot.train.demo.DEMOS`), whose
task is recorded (unless `--shards DEMO=DIR` is given) and whose env evaluates it.

Baselines, measured in the same invocation on the same data and seeds:
- ACT: the same ACT reading the simulator's exact cube pose instead of the cameras (`privileged`); the
  ratio says how much of what the privileged policy reaches the camera policy reaches.
- VLA: the scripted expert that recorded the demonstrations, on the evaluation seeds (the ceiling of
  imitating it). VLA runs are also evaluated with each episode's instruction naming another cube
  (`swapped`: success means the newly named cube is in the bin).

Training minutes on this machine are measured; `--cpu-steps-per-s DEMO=R` adds the minutes the same
steps take on another machine (e.g. the 2-core CPU, where `make demo` runs), so a sweep run on a fast
machine still gives the success-vs-CPU-minutes curve. The table and a JSON line go to stdout;
`OUT/results.json` keeps every run.

ACT recipes (`configs/act_so101_sim_cpu.py` unless named):
  camera         the demo's: cnn trunk 16-32-32, 32 spatial-softmax keypoints per camera, both cameras
  camera_shift2  + DrQ random shift of up to 2 pixels in training
  feature_map    the cnn trunk's 12x16 feature map as encoder tokens (LeRobot's ACT layout)
  front_only     the front camera alone
  privileged     `configs/act_so101_sim_cpu_privileged.py`: the cube pose, no camera
VLA recipes (`configs/smolvla_so101_sim_cpu.py`):
  vla            the demo's: keypoint vision, one token per camera, FiLM on the instruction, half the
                 samples without the joint state, episode starts drawn 5x, state/actions padded to 6,
                 training images cropped to 90-100% at random; each 30-step chunk executed whole
  vla_no_crop    the demo's without the random crop (the demo until 2026-12-06); every recipe below
                 keeps the images whole, as they were measured
  vla_n20        `vla_no_crop`, 20 of each 30 steps executed (the demo until 2026-12-05); every
                 recipe below but `vla_zero_noise` and `vla_ema` executes 20
  vla_zero_noise `vla_no_crop`, each chunk sampled from zero noise (`sampling_noise_scale=0`, deterministic)
  vla_ema        `vla_no_crop`, evaluated with an EMA of its weights (`ema_decay=0.999`; openpi's pi0 keeps one)
  vla_no_start_oversampling   `vla_n20` without the episode-start oversampling
  vla_siglip     the demo's config before: SmolVLM's SigLIP-style tower (64 wide) on both cameras 48x64
                 padded to 64x64, state and actions padded to 32; every recipe below starts from it
  vla_lr3e-4     peak learning rate 3e-4 instead of 1e-3
  vla_front_only the front camera alone
  vla_keypoints  the ACT demo's vision for the VLA: `image_encoder="keypoints"` (cnn trunk 16-32-32, 32
                 soft-argmax keypoints per camera, one token each) on the 48x64 images, no padding
  vla_keypoints_dim6  + `max_state_dim = max_action_dim = 6` (the SO-101's joints; LeRobot's 32 makes the
                 flow-matching loss fit 26 padded dims of pure noise)
  vla_pick_place the same VLA (keypoints, dim 6) on the ACT demo's single-cube task: no object to choose,
                 so it measures the flow-matching policy's precision apart from grounding the instruction
  vla_pick_place_wide_expert  + `expert_width_multiplier=2.0` (a 128-wide action expert)
  vla_pick_place_batch64      + batches of 64 (ACT's) instead of 32
  vla_pick_place_per_camera   `vla_pick_place` with `keypoint_tokens="per_camera"`: one token per camera
                 (ACT's layout) instead of one per keypoint
  vla_keypoints_per_camera    the same on the instruction task: `vla_keypoints_dim6` with one token per camera
  vla_keypoints_film          + `keypoint_film`: the instruction scales and shifts the keypoint trunk's
                 channels (RT-1's FiLM), so the keypoints can follow the cube it names
  vla_keypoints_film_drop     + `state_dropout=0.5`: half the training samples without the joint state
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from common import print_result

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


@dataclasses.dataclass(frozen=True)
class Recipe:
    demo: str  # key of jrobot.train.demo.DEMOS: the task recorded and the env evaluated
    config: Path
    overrides: dict[str, Any] = dataclasses.field(default_factory=dict)


ACT_CAMERA = REPO / "configs" / "act_so101_sim_cpu.py"
VLA = REPO / "configs" / "smolvla_so101_sim_cpu.py"
STATE_FRONT = ("observation.state", "observation.images.front")
# the VLA demo's images until 2026-12-06 (third session): whole, not cropped at random in training;
# every VLA recipe measured before then keeps them
UNCROPPED = {"data.augment": None}
# how the VLA demo ran its chunks until 2026-12-05: 20 of each 30 steps executed
N20 = {**UNCROPPED, "policy.config.n_action_steps": 20}
# the VLA demo's config before the keypoint recipe (2026-12-05): the recipes measured from it keep it
VLA_SIGLIP = {
    **N20,
    "policy.config.image_encoder": "siglip",
    "policy.config.keypoint_tokens": "per_keypoint",
    "policy.config.keypoint_film": False,
    "policy.config.state_dropout": 0.0,
    "policy.config.max_state_dim": 32,
    "policy.config.max_action_dim": 32,
    "policy.config.resize_imgs_with_padding": (64, 64),
    "data.episode_start_frames": 0,
    "data.episode_start_repeats": 0,
}
VLA_KEYPOINTS = {
    **VLA_SIGLIP,
    "policy.config.image_encoder": "keypoints",
    "policy.config.resize_imgs_with_padding": None,
}
VLA_DIM6 = {"policy.config.max_state_dim": 6, "policy.config.max_action_dim": 6}
PER_CAMERA = {"policy.config.keypoint_tokens": "per_camera"}
FILM = {**VLA_KEYPOINTS, **VLA_DIM6, **PER_CAMERA, "policy.config.keypoint_film": True}
RECIPES: dict[str, Recipe] = {
    "camera": Recipe("act", ACT_CAMERA),
    "camera_shift2": Recipe("act", ACT_CAMERA, {"policy.config.random_shift_pixels": 2}),
    "feature_map": Recipe("act", ACT_CAMERA, {"policy.config.image_features": "feature_map"}),
    "front_only": Recipe("act", ACT_CAMERA, {"policy.input_features": STATE_FRONT}),
    "privileged": Recipe("act", REPO / "configs" / "act_so101_sim_cpu_privileged.py"),
    "vla": Recipe("smolvla", VLA),
    "vla_n20": Recipe("smolvla", VLA, N20),
    "vla_no_crop": Recipe("smolvla", VLA, UNCROPPED),
    "vla_zero_noise": Recipe("smolvla", VLA, {**UNCROPPED, "policy.config.sampling_noise_scale": 0.0}),
    "vla_ema": Recipe("smolvla", VLA, {**UNCROPPED, "policy.config.ema_decay": 0.999}),
    "vla_no_start_oversampling": Recipe("smolvla", VLA, {**N20, "data.episode_start_repeats": 0}),
    "vla_siglip": Recipe("smolvla", VLA, VLA_SIGLIP),
    "vla_lr3e-4": Recipe(
        "smolvla", VLA, {**VLA_SIGLIP, "optimizer.lr": 3e-4, "policy.config.optimizer_lr": 3e-4}
    ),
    "vla_front_only": Recipe("smolvla", VLA, {**VLA_SIGLIP, "policy.input_features": STATE_FRONT}),
    "vla_keypoints": Recipe("smolvla", VLA, VLA_KEYPOINTS),
    "vla_keypoints_dim6": Recipe("smolvla", VLA, {**VLA_KEYPOINTS, **VLA_DIM6}),
    "vla_pick_place": Recipe("act", VLA, {**VLA_KEYPOINTS, **VLA_DIM6}),
    "vla_pick_place_wide_expert": Recipe(
        "act", VLA, {**VLA_KEYPOINTS, **VLA_DIM6, "policy.config.expert_width_multiplier": 2.0}
    ),
    "vla_pick_place_batch64": Recipe("act", VLA, {**VLA_KEYPOINTS, **VLA_DIM6, "batch_size": 64}),
    "vla_pick_place_per_camera": Recipe("act", VLA, {**VLA_KEYPOINTS, **VLA_DIM6, **PER_CAMERA}),
    "vla_keypoints_per_camera": Recipe("smolvla", VLA, {**VLA_KEYPOINTS, **VLA_DIM6, **PER_CAMERA}),
    "vla_keypoints_film": Recipe("smolvla", VLA, FILM),
    "vla_keypoints_film_drop": Recipe("smolvla", VLA, {**FILM, "policy.config.state_dropout": 0.5}),
}
DEFAULT_RUNS = ["privileged@3000", "camera@1000,2000,3000,4000", "camera_shift2@3000"]
DEFAULT_RUNS += ["feature_map@3000", "front_only@3000", "vla@5000,12000"]


def parse_runs(specs: list[str]) -> list[tuple[str, int]]:
    runs = []
    for spec in specs:
        name, _, steps = spec.partition("@")
        if name not in RECIPES or not steps:
            raise SystemExit(f"--runs {spec!r}: expected RECIPE@STEPS[,STEPS...], recipes: {sorted(RECIPES)}")
        runs += [(name, int(s)) for s in steps.split(",")]
    return runs


def parse_pairs(specs: list[str], flag: str, cast) -> dict[str, Any]:
    from jrobot.train.demo import DEMOS

    pairs = {}
    for spec in specs:
        demo, sep, value = spec.partition("=")
        if not sep or demo not in DEMOS:
            raise SystemExit(f"{flag} {spec!r}: expected DEMO=VALUE with DEMO one of {sorted(DEMOS)}")
        pairs[demo] = cast(value)
    return pairs


def recipe_config(name: str, steps: int):
    from jrobot.train.config_util import load_config_file

    recipe = RECIPES[name]
    config = load_config_file(recipe.config)
    for key, value in recipe.overrides.items():
        node = config
        *parents, leaf = key.split(".")
        for p in parents:
            node = node[p]
        node[leaf] = value
    config.max_train_seconds = 0.0  # the step count decides, not the clock
    config.log_every = max(steps // 4, 1)
    if "scheduler_decay_steps" in config.policy.config:  # SmolVLA: decay over exactly this run
        config.policy.config.scheduler_decay_steps = steps
    return config


def run_one(name: str, steps: int, shards: Path, out: Path, eval_episodes: int, seed: int) -> dict[str, Any]:
    from jrobot.train.demo import DEMOS, stage_eval, stage_export, stage_train

    recipe = RECIPES[name]
    env = DEMOS[recipe.demo].env
    config = recipe_config(name, steps)
    run_dir = out / f"{name}_{steps}"
    t0 = time.perf_counter()
    train = stage_train(config, shards, run_dir / "train", steps)
    train_s = time.perf_counter() - t0
    stage_export(run_dir / "train", run_dir / "bundle")
    eval_seed = 100_000 + seed
    ev = stage_eval(run_dir / "bundle", run_dir / "eval", eval_episodes, eval_seed, env, False, False)
    result = {
        "recipe": name,
        "demo": recipe.demo,
        "steps": steps,
        "train_s": round(train_s, 1),
        "steps_per_s": train["steps_per_s"],
        "final_loss": train["final_loss"],
        "success_rate": ev["success_rate"],
        "episodes": ev["episodes"],
    }
    if "wrong_object_rate" in ev:
        result["wrong_object_rate"] = ev["wrong_object_rate"]
        sw = stage_eval(
            run_dir / "bundle", run_dir / "eval_swapped", eval_episodes, eval_seed, env, True, False
        )
        result["swapped_success_rate"] = sw["success_rate"]
        result["swapped_wrong_object_rate"] = sw.get("wrong_object_rate")
    return result


def expert_success(env_id: str, episodes: int, seed: int) -> float:
    """The scripted expert on the evaluation seeds (the env's own instruction, no cameras)."""
    import gymnasium as gym
    import numpy as np

    import jrobot.sim  # noqa: F401  (registers the envs)
    from jrobot.sim.expert import PickPlaceExpert

    env = gym.make(env_id, cameras=())
    ok = 0
    for ep in range(episodes):
        env.reset(seed=seed + ep)
        expert = PickPlaceExpert(env.unwrapped.sim)
        success = False
        while True:
            action = np.asarray(expert.next_action(), np.float32)
            _, _, terminated, truncated, info = env.step(action)
            success = success or bool(info.get("is_success", False))
            if success or terminated or truncated:
                break
        ok += success
    env.close()
    return ok / episodes


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=Path("outputs/recipes"))
    p.add_argument(
        "--shards", nargs="*", default=[], help="DEMO=DIR: reuse these shards (default: record anew)"
    )
    p.add_argument(
        "--episodes", nargs="*", default=[], help="DEMO=N demonstrations to record (default: the demo's)"
    )
    p.add_argument(
        "--cpu-steps-per-s", nargs="*", default=[], help="DEMO=R: also report minutes at R steps/s"
    )
    p.add_argument("--eval-episodes", type=int, default=50)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--runs", nargs="+", default=DEFAULT_RUNS, help="RECIPE@STEPS[,STEPS...] ...")
    args = p.parse_args()
    runs = parse_runs(args.runs)
    shards = {k: Path(v) for k, v in parse_pairs(args.shards, "--shards", str).items()}
    episodes = parse_pairs(args.episodes, "--episodes", int)
    cpu_rate = parse_pairs(args.cpu_steps_per_s, "--cpu-steps-per-s", float)
    os.environ.setdefault("WANDB_MODE", "disabled")
    import logging

    logging.basicConfig(level=logging.WARNING)
    load_avg_start = os.getloadavg()
    args.out.mkdir(parents=True, exist_ok=True)

    from jrobot.train.config_util import load_config_file
    from jrobot.train.demo import DEMOS, stage_record, stage_shards

    for demo in dict.fromkeys(RECIPES[name].demo for name, _ in runs):
        if demo in shards:
            continue
        d = DEMOS[demo]
        n = episodes.get(demo, d.episodes)
        size = tuple(int(v) for v in load_config_file(d.config).demo_image_size.split("x"))
        print(f"recording {n} demonstrations of {d.task} ...", file=sys.stderr, flush=True)
        stage_record(
            args.out / f"dataset_{demo}", n, args.seed, (96, 128), d.task, d.episode_time_s, d.regrasp_rate
        )
        shards[demo] = args.out / f"shards_{demo}"
        stage_shards(args.out / f"dataset_{demo}", shards[demo], size)

    results: list[dict[str, Any]] = []
    for name, steps in runs:
        print(f"== {name} @ {steps} steps", file=sys.stderr, flush=True)
        results.append(
            run_one(name, steps, shards[RECIPES[name].demo], args.out, args.eval_episodes, args.seed)
        )
        (args.out / "results.json").write_text(json.dumps(results, indent=2))
        print(json.dumps(results[-1]), file=sys.stderr, flush=True)

    baselines: dict[str, float] = {}
    act_base = [r["success_rate"] for r in results if r["recipe"] == "privileged"]
    if act_base:
        baselines["act"] = max(act_base)
    if any(r["demo"] == "smolvla" for r in results):
        baselines["smolvla"] = expert_success(DEMOS["smolvla"].env, args.eval_episodes, 100_000 + args.seed)
    header = f"{'recipe':<15} {'steps':>6} {'train min':>9} {'cpu min':>8} {'steps/s':>8} {'success':>8}"
    print(f"\n{header} {'wrong obj':>9} {'swapped':>8} {'vs baseline':>12}")
    for r in results:
        base = baselines.get(r["demo"])
        r["ratio_vs_baseline"] = r["success_rate"] / base if base else None
        if r["demo"] in cpu_rate:
            r["cpu_minutes"] = round(r["steps"] / cpu_rate[r["demo"]] / 60, 1)
        cpu_min = f"{r['cpu_minutes']:.1f}" if "cpu_minutes" in r else "-"
        wrong = f"{r['wrong_object_rate']:.0%}" if "wrong_object_rate" in r else "-"
        swapped = f"{r['swapped_success_rate']:.0%}" if "swapped_success_rate" in r else "-"
        ratio = f"{r['ratio_vs_baseline']:.2f}x" if base else "n/a"
        print(
            f"{r['recipe']:<15} {r['steps']:>6} {r['train_s'] / 60:>9.1f} {cpu_min:>8} {r['steps_per_s']:>8.2f} "
            f"{r['success_rate']:>8.0%} {wrong:>9} {swapped:>8} {ratio:>12}"
        )
    print(f"baselines: {baselines} (act: privileged ACT; smolvla: the scripted expert on the same seeds)")
    print_result(
        {
            "benchmark": "demo_recipes",
            "shards": {k: str(v) for k, v in shards.items()},
            "eval_episodes": args.eval_episodes,
            "baselines": baselines,
            "runs": results,
            "load_avg_start": load_avg_start,
        }
    )


if __name__ == "__main__":
    main()

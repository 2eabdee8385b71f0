"""The demo's recipes and stages: record in the simulator, build shards, train, export, evaluate, each
through the same functions the command-line tools call.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
log = logging.getLogger("jrobot.demo")


@dataclasses.dataclass(frozen=True)
class DemoRecipe:
    """What one demo records, trains and evaluates."""

    config: Path  # training config
    task: str  # simulator task the expert demonstrates (`jrobot.sim.tasks.TASKS`)
    env: str  # gymnasium id the policy is evaluated in
    out: Path  # default output directory
    episodes: int  # default number of demonstrations
    episode_time_s: float
    regrasp_rate: float = 0.0  # share of demonstrations whose first grasp misses (`PickPlaceExpertConfig`)


DEMOS: dict[str, DemoRecipe] = {
    "act": DemoRecipe(
        REPO / "configs" / "act_so101_sim_cpu.py", "pick_place", "jrobot/SO101PickPlace-v0",
        Path("outputs/demo"), 60, 12.0,
    ),
    "smolvla": DemoRecipe(
        REPO / "configs" / "smolvla_so101_sim_cpu.py", "pick_color", "jrobot/SO101PickColor-v0",
        Path("outputs/demo_vla"), 200, 14.0,
    ),
}  # fmt: skip
DEFAULT_CONFIG = DEMOS["act"].config


def stage_record(
    out: Path,
    episodes: int,
    seed: int,
    image_size: tuple[int, int],
    task: str = "pick_place",
    episode_time_s: float = 12.0,
    regrasp_rate: float = 0.0,
    actuation_noise: float = 0.0,
) -> dict[str, Any]:
    from jrobot.recording.record import DatasetRecordConfig, RecordOptions, record
    from jrobot.sim.robot import SimExpertTeleop, SimRobot

    # the cube pose is recorded too (`observation.environment_state`), for analysis and for the
    # `*_privileged` debugging configs; the demo's policies do not read it
    robot = SimRobot(
        task=task, image_size=image_size, environment_state=True, actuation_noise=actuation_noise
    )
    teleop = SimExpertTeleop(robot, {"regrasp_rate": regrasp_rate} if regrasp_rate else None)
    cfg = DatasetRecordConfig(root=out, num_episodes=episodes, episode_time_s=episode_time_s)
    summary = record(robot, teleop, RecordOptions(dataset=cfg, seed=seed, status=sys.stderr.isatty()))
    ok = sum(bool(e["success"]) for e in summary["saved"])
    return {
        "episodes": len(summary["saved"]), "frames": summary["num_frames"], "expert_successes": ok,
        "regrasp_rate": regrasp_rate, "actuation_noise": actuation_noise,
    }  # fmt: skip


def stage_shards(dataset: Path, out: Path, resolution: tuple[int, int]) -> dict[str, Any]:
    from jrobot.shards.builder import build_shards

    m = build_shards(
        dataset, out, resolution=resolution, image_format="jpeg:90", overwrite=True, progress=False
    )
    return {"frames": m.num_frames, "files": len(m.files), "resolution": list(resolution)}


def stage_train(config, shards: Path, workdir: Path, steps: int) -> dict[str, Any]:
    from jrobot.train.trainer import train

    config.data.shards = str(shards)
    config.num_steps = steps
    config.checkpoint.every = steps
    config.wandb.mode = "disabled"
    metrics = train(config, workdir)
    return {
        "steps": int(metrics["steps"]),
        "configured_steps": steps,
        "final_loss": metrics.get("loss"),
        "steps_per_s": metrics.get("steps_per_s"),
    }


def stage_export(workdir: Path, bundle: Path) -> dict[str, Any]:
    from jrobot.features import features_from_json
    from jrobot.train.export import load_from_workdir, write_bundle

    model, module, meta = load_from_workdir(workdir)
    info = write_bundle(
        model,
        module,
        bundle,
        features=features_from_json(meta["features"]),
        fps=int(meta["fps"]),
        robot_type=meta.get("robot_type"),
        source={"workdir": str(workdir), "step": meta["step"]},
        training_config=meta.get("config"),
    )
    return {"variants": info.variants, "policy_inputs": list(model.spec.input_features)}


def stage_eval(
    bundle: Path,
    out: Path,
    episodes: int,
    seed: int,
    env_id: str = "jrobot/SO101PickPlace-v0",
    swap_instruction: bool = False,
    videos: bool = True,
) -> dict[str, Any]:
    """`jrobot.eval` of the bundle; with `swap_instruction`, each episode's instruction names another
    object than the one the scene was set up for, and success means that other object is in the bin."""
    from jrobot.runtime.evaluate import evaluate
    from jrobot.runtime.policy import BundlePolicy

    policy = BundlePolicy(bundle)
    policy.warmup()
    report = evaluate(
        policy, env_id=env_id, episodes=episodes, seed=seed, out=out, videos=videos,
        swap_instruction=swap_instruction,
    )  # fmt: skip
    result = {
        "success_rate": report["success_rate"],
        "episodes": report["num_episodes"],
        "latency": report["latency"],
    }
    if "wrong_object_rate" in report:
        result["wrong_object_rate"] = report["wrong_object_rate"]
    if policy.info.spec.language_keys:
        result["per_episode"] = [
            {k: e.get(k) for k in ("seed", "task", "success", "wrong_object", "steps")}
            for e in report["episodes"]
        ]
    return result


@dataclasses.dataclass
class DemoOptions:
    """`python -m jrobot.demo` flags (jrobot's one flag grammar: `--train-steps=N` or `--train_steps N`)."""

    policy: str = "act"  # act (pick-and-place) or smolvla (the instruction names the cube)
    out: Path | None = None  # output directory (replaced); default outputs/demo or outputs/demo_vla
    config: Path | None = None  # training config (default: the policy's CPU-sized one)
    episodes: int | None = None  # demonstrations to record (default 60 for act, 200 for smolvla)
    train_steps: int | None = None  # default: the config's
    eval_episodes: int = 50
    record_size: str = "96x128"  # camera HxW recorded into the dataset
    train_size: str | None = None  # HxW of the training images (default: the config's)
    regrasp_rate: float | None = None  # share of demonstrations showing a missed grasp and its recovery
    actuation_noise: float = 0.0  # degrees: demonstrations off the expert's path (`SimRobotConfig`)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.policy not in DEMOS:
            raise ValueError(f"--policy {self.policy!r}: choose one of {sorted(DEMOS)}")
        recipe = DEMOS[self.policy]
        self.out = Path(self.out or recipe.out)
        self.config = Path(self.config or recipe.config)
        self.episodes = int(self.episodes or recipe.episodes)
        self.regrasp_rate = float(recipe.regrasp_rate if self.regrasp_rate is None else self.regrasp_rate)
        from jrobot.sim.expert import PickPlaceExpertConfig
        from jrobot.sim.robot import check_actuation_noise

        PickPlaceExpertConfig(regrasp_rate=self.regrasp_rate)  # checked where the expert checks it
        check_actuation_noise(self.actuation_noise)  # and where the simulated arm checks it


def run_demo(args: DemoOptions) -> dict[str, Any]:
    """Every stage of `args`' demo into `args.out` (replaced), with `report.json` kept current; the report."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    from absl import logging as absl_logging

    from jrobot.train.config_util import load_config_file

    absl_logging.set_verbosity(absl_logging.WARNING)
    for noisy in ("jax", "OpenGL", "orbax", "absl"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

    out = Path(args.out)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    config = load_config_file(args.config)
    record_size = tuple(int(v) for v in args.record_size.split("x"))
    train_size = tuple(int(v) for v in (args.train_size or config.get("demo_image_size", "48x64")).split("x"))
    steps = int(args.train_steps or config.num_steps)
    report: dict[str, Any] = {"stages": {}, "out": str(out.absolute())}
    t_all = time.perf_counter()

    def stage(name: str, fn, *a):
        print(f"\n== {name} ==", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        result = fn(*a)
        result["seconds"] = round(time.perf_counter() - t0, 1)
        report["stages"][name] = result
        print(f"== {name} done in {result['seconds']:.0f} s: {result}", file=sys.stderr, flush=True)
        (out / "report.json").write_text(json.dumps(report, indent=2))
        return result

    recipe = DEMOS[args.policy]
    report["policy"] = args.policy
    report["env"] = recipe.env
    eval_seed = 100_000 + args.seed
    stage(
        "record", stage_record, out / "dataset", args.episodes, args.seed, record_size, recipe.task,
        recipe.episode_time_s, args.regrasp_rate, args.actuation_noise,
    )  # fmt: skip
    stage("shards", stage_shards, out / "dataset", out / "shards", train_size)
    stage("train", stage_train, config, out / "shards", out / "train", steps)
    stage("export", stage_export, out / "train", out / "bundle")
    ev = stage("eval", stage_eval, out / "bundle", out / "eval", args.eval_episodes, eval_seed, recipe.env)
    report["success_rate"] = ev["success_rate"]
    summary = f"success rate {ev['success_rate']:.0%}"
    if "wrong_object_rate" in ev:
        report["wrong_object_rate"] = ev["wrong_object_rate"]
        summary += f", wrong object {ev['wrong_object_rate']:.0%}"
    if args.policy == "smolvla":
        sw = stage(
            "eval_swapped", stage_eval, out / "bundle", out / "eval_swapped", args.eval_episodes, eval_seed,
            recipe.env, True, False,
        )  # fmt: skip
        report["swapped_instruction_success_rate"] = sw["success_rate"]
        report["swapped_instruction_wrong_object_rate"] = sw.get("wrong_object_rate")
        summary += f"; with the instruction naming another cube: success {sw['success_rate']:.0%}"
    report["summary"] = summary
    report["total_seconds"] = round(time.perf_counter() - t_all, 1)
    (out / "report.json").write_text(json.dumps(report, indent=2))
    return report

"""`make demo` / `python -m jrobot.demo`: the whole jrobot loop on the MuJoCo SO-101, on a laptop CPU.

    python -m jrobot.demo [--out outputs/demo] [--episodes 60] [--train-steps 1500] [--eval-episodes 50]

1. record   scripted pick-and-place demonstrations in the simulator (`jrobot.record`, two cameras),
            into a LeRobot v3.0 dataset that LeRobot itself can load
2. shards   convert the dataset into ArrayRecord training shards (`data_tools.build_shards`)
3. train    the CPU-sized ACT (`configs/act_so101_sim_cpu.py`) with the grain pipeline and orbax; it
            reads what a real arm has, the two cameras and the joint positions
4. export   a self-contained policy bundle (`jrobot.export`)
5. eval     50 seeded episodes in the simulator through the real-time runtime (`jrobot.eval`), with videos

It prints the success rate and where the videos are; `--out DIR` also gets `report.json` with the
success rate, the features the policy reads and the time each stage took. Each stage is the same code
the command-line tools run.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from jrobot.cli import Binder, run_tool

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = REPO / "configs" / "act_so101_sim_cpu.py"
log = logging.getLogger("jrobot.demo")


def stage_record(out: Path, episodes: int, seed: int, image_size: tuple[int, int]) -> dict[str, Any]:
    from jrobot.record import DatasetRecordConfig, RecordOptions, record
    from jrobot.sim.robot import SimExpertTeleop, SimRobot

    # the cube pose is recorded too (`observation.environment_state`), for analysis and for the
    # `*_privileged` debugging configs; the demo's policy does not read it
    robot = SimRobot(image_size=image_size, environment_state=True)
    teleop = SimExpertTeleop(robot)
    cfg = DatasetRecordConfig(root=out, num_episodes=episodes, episode_time_s=12.0)
    summary = record(robot, teleop, RecordOptions(dataset=cfg, seed=seed, status=sys.stderr.isatty()))
    ok = sum(bool(e["success"]) for e in summary["saved"])
    return {"episodes": len(summary["saved"]), "frames": summary["num_frames"], "expert_successes": ok}


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
    return {"steps": steps, "final_loss": metrics.get("loss"), "steps_per_s": metrics.get("steps_per_s")}


def stage_export(workdir: Path, bundle: Path) -> dict[str, Any]:
    from jrobot.export import load_from_workdir, write_bundle
    from jrobot.features import features_from_json

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


def stage_eval(bundle: Path, out: Path, episodes: int, seed: int) -> dict[str, Any]:
    from jrobot.eval import evaluate
    from jrobot.runtime.policy import BundlePolicy

    policy = BundlePolicy(bundle)
    policy.warmup()
    report = evaluate(policy, episodes=episodes, seed=seed, out=out)
    return {
        "success_rate": report["success_rate"],
        "episodes": report["num_episodes"],
        "latency": report["latency"],
    }


@dataclasses.dataclass
class DemoOptions:
    """`python -m jrobot.demo` flags (jrobot's one flag grammar: `--train-steps=N` or `--train_steps N`)."""

    out: Path = Path("outputs/demo")  # output directory (replaced)
    config: Path = DEFAULT_CONFIG  # training config
    episodes: int = 60  # demonstrations to record
    train_steps: int | None = None  # default: the config's
    eval_episodes: int = 50
    record_size: str = "96x128"  # camera HxW recorded into the dataset
    train_size: str | None = None  # HxW of the training images (default: the config's)
    seed: int = 0


def main(argv: Sequence[str]) -> int:
    binder = Binder.from_argv(argv)
    args = binder.build(DemoOptions)
    binder.finish()
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

    stage("record", stage_record, out / "dataset", args.episodes, args.seed, record_size)
    stage("shards", stage_shards, out / "dataset", out / "shards", train_size)
    stage("train", stage_train, config, out / "shards", out / "train", steps)
    stage("export", stage_export, out / "train", out / "bundle")
    ev = stage("eval", stage_eval, out / "bundle", out / "eval", args.eval_episodes, 100_000 + args.seed)
    report["success_rate"] = ev["success_rate"]
    report["total_seconds"] = round(time.perf_counter() - t_all, 1)
    (out / "report.json").write_text(json.dumps(report, indent=2))
    print(
        f"\njrobot demo: success rate {ev['success_rate']:.0%} over {ev['episodes']} simulated episodes, "
        f"total {report['total_seconds'] / 60:.1f} min\n"
        f"  dataset (LeRobot v3.0): {out / 'dataset'}\n  policy bundle: {out / 'bundle'}\n"
        f"  videos: {out / 'eval' / 'videos'}\n  report: {out / 'report.json'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(run_tool(main, usage=__doc__ or ""))

"""`python -m jrobot.run`: drive a robot with an exported policy bundle, in real time, on the CPU.

    # the simulated arm (3 episodes, each scored)
    python -m jrobot.run --policy bundles/act --robot.type=sim --episodes=3
    # a real SO-101 for 60 s, recording what happens
    python -m jrobot.run --policy bundles/act --robot.type=so101_follower --robot.port=/dev/ttyACM0 \\
        --robot.id=black --robot.cameras="{front: {type: opencv, index_or_path: 0, width: 640, height: 480, fps: 30}}" \\
        --duration_s=60 --dataset.root=data/eval_act --dataset.single_task="pick the cube"
    # offline: a batch of recorded observations in, action chunks out (no robot)
    python -m jrobot.run --policy bundles/diffusion --observations in.npz --out out.npz
    # a language-conditioned policy (VLA) follows an instruction
    python -m jrobot.run --policy bundles/smolvla --robot.type=sim --task "pick the cube"

The control loop runs at the bundle's fps; the next chunk is computed on a worker thread so the loop
never waits for inference (`--mode=sync` waits, as LeRobot's select_action does). Every action is
clamped to the joint range seen in training (widened by `--safety_margin`), the robot's
`max_relative_target` applies, and a non-finite action is never sent: the arm holds its last safe
position and the run stops. Ctrl-C or SIGTERM switch torque off. At the end a latency report gives
inference and loop-period p50/p99.

A language-conditioned policy needs `--task`, its instruction; without the flag it follows
`--dataset.single_task`, else the robot's own task (the simulated arm's), else the run stops with an
error. Offline, IN.npz may hold `task`, a (B,) string array (one instruction per row; `--task` then
only fills in when it is absent), and `noise`, the initial noise of a stochastic policy. Policies
without language ignore the task.

This module needs jax, numpy and the bundle; it does not import flax, grain, optax, orbax or wandb.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from jrobot.cli import Binder, CliError, run_tool
from jrobot.hw.safety import graceful_stop, torque_safety
from jrobot.record import DatasetWriterOptions, open_writer
from jrobot.robot import EpisodicRobot
from jrobot.runtime.loop import PolicyController, SafetyLimits, run_episode
from jrobot.runtime.policy import NEEDS_TASK, BundlePolicy

USAGE = __doc__ or ""
log = logging.getLogger("jrobot.run")


@dataclasses.dataclass
class RunOptions:
    policy: Path
    task: str | None = None  # the instruction of a language-conditioned policy ("pick the cube")
    observations: Path | None = None  # offline mode: IN.npz
    out: Path | None = None  # offline mode: OUT.npz
    duration_s: float | None = None  # real robots: stop after this long (default: until Ctrl-C)
    episodes: int = 1  # simulated robot: episodes to run (each reset with seed + i)
    max_steps: int | None = None  # per episode
    mode: str = "async"
    realtime: bool | None = None  # default: paced for real robots, as fast as possible for the sim
    seed: int = 0
    safety_margin: float = 0.1
    report: Path | None = None
    dataset: DatasetWriterOptions | None = None  # record the run: record's --dataset.* writer flags

    def __post_init__(self) -> None:
        self.policy = Path(self.policy)
        if self.mode not in ("async", "sync"):
            raise ValueError(f"--mode must be async or sync, got {self.mode!r}")
        if (self.observations is None) != (self.out is None):
            raise ValueError("offline mode needs both --observations IN.npz and --out OUT.npz")


def run_offline(
    policy: BundlePolicy, observations: Path, out: Path, *, task: str | None = None
) -> dict[str, Any]:
    """IN.npz (raw observations by feature name, optional `noise`, optional `task` (B,) strings) ->
    OUT.npz (`action` chunks). `task` is the instruction for every row when IN.npz holds none."""
    try:
        with np.load(observations, allow_pickle=False) as z:
            obs = {k: z[k] for k in z.files}
    except (OSError, ValueError) as e:
        raise CliError(f"--observations {observations}: cannot read the npz file ({e})") from e
    noise = obs.pop("noise", None)
    actions = policy.predict(obs, task=task, noise=noise)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(out, action=actions)
    return {
        "batch": int(actions.shape[0]),
        "chunk": int(actions.shape[1]),
        "action_dim": int(actions.shape[2]),
    }


def policy_task(policy: BundlePolicy, opts: RunOptions, robot: Any) -> str | None:
    """The instruction a language policy follows on a robot: --task, else the recorded
    --dataset.single_task, else the robot's own (the sim's); None for policies without language."""
    if not policy.needs_task:
        if opts.task is not None:
            log.warning("--task ignored: this policy takes no task instruction")
        return None
    task = (
        opts.task
        or (opts.dataset.single_task if opts.dataset is not None else None)
        or getattr(robot, "task", None)
    )
    if not task:
        raise CliError(f'{NEEDS_TASK}: give --task "..."')
    return task


def run_robot(robot: Any, policy: BundlePolicy, opts: RunOptions) -> dict[str, Any]:
    info = policy.info
    episodic = isinstance(robot, EpisodicRobot)
    realtime = (not episodic) if opts.realtime is None else opts.realtime
    safety = None
    stats = info.stats.get("action", {})
    names = info.features["action"].flat_names
    if "min" in stats and names:
        safety = SafetyLimits.from_stats(names, stats, margin=opts.safety_margin)
    instruction = policy_task(policy, opts, robot)
    controller = PolicyController(policy, mode=opts.mode, safety=safety, task=instruction)
    writer = None
    results = []
    try:
        with torque_safety(robot):
            robot.connect()
            missing = [n for n in names if n not in robot.action_features]
            if missing:
                raise CliError(f"the policy's actions {missing} are not joints of this robot ({robot.name})")
            if opts.dataset is not None:
                writer = open_writer(opts.dataset, robot, info.fps, resume=False)
            task = (
                (opts.dataset.single_task if opts.dataset else None)
                or instruction
                or getattr(robot, "task", None)
                or "policy run"
            )
            on_step = None
            if writer is not None:
                from jrobot.features import pack_frame

                feats = writer.features
                on_step = lambda obs, sent: writer.add_frame(pack_frame(feats, obs, sent), task=task)  # noqa: E731
            n_episodes = opts.episodes if episodic else 1
            with graceful_stop():  # Ctrl-C/SIGTERM end the run between steps, never mid-packet
                for ep in range(n_episodes):
                    if episodic:
                        robot.reset(seed=opts.seed + ep)
                    if not (opts.task or (opts.dataset.single_task if opts.dataset else None)):
                        # the robot's own task is per episode (the sim's instruction-conditioned tasks)
                        own = getattr(robot, "task", None)
                        if own:
                            task = own
                            if policy.needs_task:
                                controller.task = own
                    controller.reset()
                    policy.seed(opts.seed + ep)
                    max_steps = opts.max_steps
                    if episodic and max_steps is None:
                        max_steps = int((opts.duration_s or 10.0) * info.fps)
                    run_episode(
                        robot,
                        controller,
                        fps=info.fps,
                        max_steps=max_steps,
                        duration_s=None if episodic else opts.duration_s,
                        realtime=realtime,
                        on_step=on_step,
                        should_stop=(lambda: robot.is_success()) if episodic else None,
                    )
                    result = {"episode": ep}
                    if episodic:
                        result["success"] = bool(robot.is_success())
                    results.append(result)
                    if writer is not None and writer.episode_length:
                        writer.save_episode()
                    log.info("episode %d: %s", ep, result)
    finally:
        controller.close()
        if writer is not None:
            writer.finalize()
    report = {"episodes": results, **controller.stats.report()}
    if episodic and results:
        report["success_rate"] = float(np.mean([r["success"] for r in results]))
    return report


def main(argv: Sequence[str]) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    binder = Binder.from_argv(argv)
    opts = binder.build(RunOptions)
    robot = None
    if opts.observations is None:
        from jrobot.devices import robot_from_flags

        robot = robot_from_flags(binder)
    binder.finish()
    policy = BundlePolicy(opts.policy)
    if robot is None:
        summary = run_offline(policy, opts.observations, opts.out, task=opts.task)
        print(f"wrote {opts.out}: action chunks {summary}")
        return 0
    policy.warmup()
    report = run_robot(robot, policy, opts)

    def ms(key: str) -> str:
        return "n/a" if report.get(key) is None else f"{report[key]:.1f} ms"

    lines = [
        f"steps {report['steps']}",
        f"inference p50 {ms('inference_ms_p50')}, p99 {ms('inference_ms_p99')}",
        f"loop period p50 {ms('loop_period_ms_p50')}, p99 {ms('loop_period_ms_p99')}",
        f"overruns {report['overruns']}, stale actions dropped {report['stale_actions_dropped']}",
    ]
    if "success_rate" in report:
        lines.append(f"success rate {report['success_rate']:.0%} over {len(report['episodes'])} episodes")
    print("latency report: " + "; ".join(lines))
    if opts.report is not None:
        opts.report.write_text(json.dumps(report, indent=2, default=_json_default))
    return 0


def _json_default(x: Any) -> Any:
    if isinstance(x, float) and x != x:
        return None
    return str(x)


if __name__ == "__main__":
    sys.exit(run_tool(main, usage=USAGE))

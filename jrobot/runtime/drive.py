"""Driving a robot with a policy (`run_robot`: episodes of the runtime's control loop, recording them
when asked), or the policy on recorded observations (`run_offline`), as `jrobot.run` does.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from jrobot.cli import CliError
from jrobot.display import DisplayOptions
from jrobot.hw.safety import graceful_stop, torque_safety
from jrobot.policies.ensemble import MERGE_RULES
from jrobot.recording.record import DatasetWriterOptions, open_writer
from jrobot.robot import EpisodicRobot
from jrobot.runtime.errors import PolicyTimeoutError
from jrobot.runtime.loop import PolicyController, SafetyLimits, run_episode
from jrobot.runtime.observations import NEEDS_TASK
from jrobot.runtime.sources import RemoteOptions, is_remote

log = logging.getLogger("jrobot.run")


@dataclasses.dataclass(kw_only=True)
class RunOptions(DisplayOptions):
    """Besides these: `--display_data` / `--display_url` / `--display_save`, the live rerun view with
    the policy's predicted chunks (`jrobot.display`)."""

    policy: str  # a bundle folder or hf://USER/REPO[@REV]; or a server: ws://HOST:PORT (jrobot.serve), openpi://HOST:PORT
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
    safety_limits: Path | None = None  # a jrobot.find_joint_limits file: also clamp to its joint ranges
    merge: str | None = None  # latest | average | weighted | ensemble (default: the policy's own rule)
    chunk_threshold: float | None = None  # ask for the next chunk at this fraction of n_action_steps left
    n_action_steps: int | None = None  # override the policy's (an openpi policy: all of each chunk)
    token_file: Path | None = None  # a policy server's shared secret
    report: Path | None = None
    dataset: DatasetWriterOptions | None = None  # record the run: record's --dataset.* writer flags
    remote: RemoteOptions | None = None  # --remote.*: a policy server's connection

    def __post_init__(self) -> None:
        self.policy = str(self.policy)
        if self.mode not in ("async", "sync"):
            raise ValueError(f"--mode must be async or sync, got {self.mode!r}")
        if self.merge is not None and self.merge not in MERGE_RULES:
            raise ValueError(f"--merge must be one of {', '.join(MERGE_RULES)}, got {self.merge!r}")
        if (self.observations is None) != (self.out is None):
            raise ValueError("offline mode needs both --observations IN.npz and --out OUT.npz")
        self.remote = self.remote or RemoteOptions()


def _read_npz(observations: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(observations, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (OSError, ValueError) as e:
        raise CliError(f"--observations {observations}: cannot read the npz file ({e})") from e


def run_offline(policy: Any, observations: Path, out: Path, *, task: str | None = None) -> dict[str, Any]:
    """IN.npz (raw observations by feature name, optional `noise`, optional `task` (B,) strings) ->
    OUT.npz (`action` chunks). `task` is the instruction for every row when IN.npz holds none.

    A bundle or a jrobot server computes the batch at once; an openpi server gets one request per row
    (openpi policies take unbatched observations), the replies stacked."""
    obs = _read_npz(observations)
    noise = obs.pop("noise", None)
    if hasattr(policy, "predict_rows"):
        actions = policy.predict_rows(obs, task=task)
    else:
        actions = policy.predict(obs, task=task, noise=noise)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(out, action=actions)
    return {
        "batch": int(actions.shape[0]),
        "chunk": int(actions.shape[1]),
        "action_dim": int(actions.shape[2]),
    }


def policy_task(policy: Any, opts: RunOptions, robot: Any) -> str | None:
    """The instruction a language policy follows on a robot: --task, else the recorded
    --dataset.single_task, else the robot's own (the sim's); None for policies without language."""
    if not policy.needs_task:
        if getattr(policy, "accepts_task", False):  # an openpi server: the prompt goes out when there is one
            own = opts.dataset.single_task if opts.dataset is not None else None
            return opts.task or own or getattr(robot, "task", None)
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


def run_robot(robot: Any, policy: Any, opts: RunOptions) -> dict[str, Any]:
    """Drive `robot` with `policy` (a bundle run here, or a remote one) until the run ends."""
    episodic = isinstance(robot, EpisodicRobot)
    realtime = (not episodic) if opts.realtime is None else opts.realtime
    names = policy.action_names
    fps = int(policy.fps)
    stats = policy.action_stats
    safety = SafetyLimits.from_stats(names, stats, margin=opts.safety_margin) if stats is not None else None
    if opts.safety_limits is not None:  # the joint ranges found by jrobot.find_joint_limits narrow the clamp
        from jrobot.recording.joint_limits import narrow_to_joint_limits

        seen = (safety.lower, safety.upper) if safety is not None else ()
        safety = SafetyLimits(list(names), *narrow_to_joint_limits(opts.safety_limits, names, *seen))
    instruction = policy_task(policy, opts, robot)
    remote = is_remote(opts.policy)
    controller = PolicyController(
        policy,
        mode=opts.mode,
        safety=safety,
        task=instruction,
        merge=opts.merge,
        chunk_threshold=opts.chunk_threshold,
        n_action_steps=opts.n_action_steps,
        timeout_s=opts.remote.timeout_s if remote else None,
    )
    writer = None
    viewer = None
    results = []
    stopped = None
    try:
        with torque_safety(robot):
            robot.connect()
            missing = [n for n in names if n not in robot.action_features]
            if missing:
                in_ee = all(n.startswith("ee.") for n in names)
                hint = (
                    "; the policy acts in end-effector space: add --robot.space=ee"
                    if in_ee
                    else "; the robot is in end-effector space and the policy in joints: drop --robot.space=ee"
                    if all(n.startswith("ee.") for n in robot.action_features)
                    else ""
                )
                raise CliError(
                    f"the policy's actions {missing} are not actions of this robot ({robot.name}: "
                    f"{list(robot.action_features)}){hint}"
                )
            if opts.dataset is not None:
                writer = open_writer(opts.dataset, robot, fps, resume=False)
            task = (
                (opts.dataset.single_task if opts.dataset else None)
                or instruction
                or getattr(robot, "task", None)
                or "policy run"
            )
            steps: list[Callable[[dict, dict], None]] = []
            if writer is not None:
                from jrobot.features import pack_frame

                feats = writer.features
                steps.append(lambda obs, sent: writer.add_frame(pack_frame(feats, obs, sent), task=task))
            viewer = opts.open(f"jrobot_run_{getattr(robot, 'name', 'robot')}")
            if viewer is not None:
                shown = [0]

                def show(obs: dict, sent: dict) -> None:
                    viewer.log(shown[0], obs, sent, fps=fps)
                    shown[0] += 1

                steps.append(show)
                controller.on_chunk = lambda rows, step: viewer.log_chunk(step, rows, names, fps=fps)

            def on_step(obs: dict, sent: dict) -> None:
                for call in steps:
                    call(obs, sent)

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
                            if policy.needs_task or getattr(policy, "accepts_task", False):
                                controller.task = own
                    controller.reset()
                    policy.seed(opts.seed + ep)
                    max_steps = opts.max_steps
                    if episodic and max_steps is None:
                        max_steps = int((opts.duration_s or 10.0) * fps)
                    try:
                        run_episode(
                            robot,
                            controller,
                            fps=fps,
                            max_steps=max_steps,
                            duration_s=None if episodic else opts.duration_s,
                            realtime=realtime,
                            on_step=on_step if steps else None,
                            should_stop=(lambda: robot.is_success()) if episodic else None,
                        )
                    except PolicyTimeoutError as e:  # the policy server is gone: stop, keep the report
                        stopped = str(e)
                        log.error("%s", e)
                    result = {"episode": ep}
                    if episodic:
                        result["success"] = bool(robot.is_success())
                    results.append(result)
                    if writer is not None and writer.episode_length:
                        writer.save_episode()
                    log.info("episode %d: %s", ep, result)
                    if stopped is not None:
                        break
    finally:
        controller.close()
        if writer is not None:
            writer.finalize()
        if viewer is not None:
            viewer.close()
            log.info("%s", viewer.summary())
    report = {"episodes": results, **controller.stats.report()}
    server_ms = getattr(policy, "server_infer_ms", None)
    if server_ms:
        report["server_infer_ms_p50"] = float(np.percentile(server_ms, 50))
        report["server_infer_ms_p99"] = float(np.percentile(server_ms, 99))
    if episodic and results:
        report["success_rate"] = float(np.mean([r["success"] for r in results]))
    if stopped is not None:
        report["stopped"] = stopped
    return report


def latency_summary(report: dict[str, Any]) -> str:
    """One line of `run_robot`'s report: steps, inference and loop-period percentiles, what went late."""

    def ms(key: str) -> str:
        return "n/a" if report.get(key) is None else f"{report[key]:.1f} ms"

    lines = [
        f"steps {report['steps']}",
        f"inference p50 {ms('inference_ms_p50')}, p99 {ms('inference_ms_p99')}",
        f"loop period p50 {ms('loop_period_ms_p50')}, p99 {ms('loop_period_ms_p99')}",
        f"overruns {report['overruns']}, stale actions dropped {report['stale_actions_dropped']}",
        f"ticks without a fresh action {report['ticks_without_fresh_action']}",
    ]
    if "server_infer_ms_p50" in report:
        lines.append(f"server inference p50 {ms('server_infer_ms_p50')}, p99 {ms('server_infer_ms_p99')}")
    if "success_rate" in report:
        lines.append(f"success rate {report['success_rate']:.0%} over {len(report['episodes'])} episodes")
    return "latency report: " + "; ".join(lines)


def write_report(path: Path, report: dict[str, Any]) -> None:
    """`report` as JSON (NaN as null)."""
    path.write_text(json.dumps(report, indent=2, default=_json_default))


def _json_default(x: Any) -> Any:
    if isinstance(x, float) and x != x:
        return None
    return str(x)

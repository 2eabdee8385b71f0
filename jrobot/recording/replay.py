"""Replaying a recorded episode on a robot: its actions at the dataset's fps through the runtime's
safety path (`SafetyLimits`: clamps and `max_relative_target`), and how closely the arm followed.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from jrobot.display import DisplayOptions, RerunDisplay
from jrobot.errors import InputError
from jrobot.hw.safety import graceful_stop, torque_safety
from jrobot.pacer import Pacer
from jrobot.robot import EpisodicRobot
from jrobot.runtime.loop import SafetyLimits

log = logging.getLogger("jrobot.replay")

ACTION = "action"
STATE = "observation.state"


class ReplayError(ValueError, InputError):
    """The episode cannot be replayed on this robot (names, values or limits do not fit)."""


@dataclasses.dataclass
class ReplayDatasetOptions:
    """LeRobot's `--dataset.*` of lerobot-replay: which dataset and episode."""

    root: Path | None = None  # a local dataset folder
    repo_id: str | None = None  # a Hub dataset id (used when no root is given)
    episode: int = 0
    fps: float | None = None  # default: the dataset's

    def __post_init__(self) -> None:
        if self.root is None and not self.repo_id:
            raise ValueError("give the dataset: --dataset.root=DIR or --dataset.repo_id=USER/NAME")
        if self.episode < 0:
            raise ValueError(f"--dataset.episode must be >= 0, got {self.episode}")
        if self.fps is not None and not self.fps > 0:
            raise ValueError(f"--dataset.fps must be positive, got {self.fps}")

    @property
    def source(self) -> str | Path:
        return self.root if self.root is not None else str(self.repo_id)


@dataclasses.dataclass(kw_only=True)
class ReplayOptions(DisplayOptions):
    """Besides these: `--display_data` / `--display_url` / `--display_save`, the live rerun view."""

    dataset: ReplayDatasetOptions
    safety_margin: float = 0.1  # widen the stats' action range by this fraction of its span per side
    safety_limits: Path | None = None  # a jrobot.find_joint_limits file: clamp to its joint ranges too
    approach_s: float = 1.0  # move from the present position to the first action in this long
    settle_s: float = 0.5  # keep reading the joints this long after the last action
    max_lag_s: float = 0.5  # the longest servo lag the lag-compensated error looks for
    realtime: bool | None = None  # default: paced for real robots, unpaced for the sim
    seed: int = 0  # the sim: its scene is reset with seed + episode index, as jrobot.record seeded it
    report: Path | None = None  # write the report as JSON here

    def __post_init__(self) -> None:
        for name in ("safety_margin", "approach_s", "settle_s", "max_lag_s"):
            if getattr(self, name) < 0:
                raise ValueError(f"--{name} must be >= 0, got {getattr(self, name)}")


@dataclasses.dataclass
class ReplayEpisode:
    """One episode's actions (T, D) and their names, as read from a dataset."""

    source: str
    episode: int
    fps: float
    names: list[str]
    actions: np.ndarray
    action_min: np.ndarray  # the dataset's action stats (none stored: the action column's range)
    action_max: np.ndarray
    state: np.ndarray | None = None  # (T, D) the recorded observation.state, in `names` order
    robot_type: str | None = None


def load_episode(opts: ReplayDatasetOptions) -> ReplayEpisode:
    """Episode `opts.episode`'s action column (and recorded state), read with `jrobot.data`."""
    from jrobot.data.errors import DatasetError
    from jrobot.data.read.reader import open_dataset

    ds = open_dataset(opts.source)
    try:
        feats = ds.features
        if ACTION not in feats:
            raise DatasetError(f"{ds.root}: no {ACTION!r} feature to replay (features: {list(feats)})")
        names = feats[ACTION].flat_names
        width = int(np.prod(feats[ACTION].shape))
        if not names or len(names) != width:
            raise DatasetError(
                f"{ds.root}: the {ACTION!r} feature has no per-joint names ({names!r}); "
                "cannot tell which joint each value drives"
            )
        if opts.episode not in {e.index for e in ds.episodes}:
            have = [e.index for e in ds.episodes]
            shown = f"{have[0]}..{have[-1]}" if have == list(range(have[0], have[-1] + 1)) else str(have)
            raise DatasetError(f"{ds.root}: no episode {opts.episode} (episodes: {shown})")
        keys = [ACTION] + ([STATE] if STATE in feats else [])
        cols = ds.episode_columns(opts.episode, keys)
        actions = np.array(cols[ACTION], dtype=np.float64).reshape(len(cols[ACTION]), width)
        if len(actions) == 0:
            raise DatasetError(f"{ds.root}: episode {opts.episode} has no frames")
        lo = hi = None
        stats = (ds.stats or {}).get(ACTION)
        if stats is not None and "min" in stats and "max" in stats:
            lo = np.asarray(stats["min"], np.float64).reshape(-1)
            hi = np.asarray(stats["max"], np.float64).reshape(-1)
            if lo.shape != (width,) or hi.shape != (width,) or not np.all(np.isfinite(lo) & np.isfinite(hi)):
                log.warning("%s: unusable action stats (min %s, max %s); ignored", ds.root, lo, hi)
                lo = hi = None
        if lo is None:
            column = np.asarray(ds.column(ACTION), np.float64).reshape(-1, width)
            finite = np.where(np.isfinite(column), column, np.nan)
            lo, hi = np.nanmin(finite, axis=0), np.nanmax(finite, axis=0)
            log.warning("%s: no action stats stored; clamping to the action column's own range", ds.root)
        state = None
        state_names = feats[STATE].flat_names if STATE in feats else None
        if state_names and set(names) <= set(state_names):
            s = np.asarray(cols[STATE], np.float64).reshape(len(actions), -1)
            state = s[:, [state_names.index(n) for n in names]]
        return ReplayEpisode(
            source=str(ds.root),
            episode=opts.episode,
            fps=float(opts.fps or ds.fps),
            names=list(names),
            actions=actions,
            action_min=lo,
            action_max=hi,
            state=state,
            robot_type=ds.robot_type,
        )
    finally:
        ds.close()


def check_names(names: Sequence[str], robot: Any) -> None:
    """The episode's action names must be exactly the robot's joints (in any order)."""
    joints = list(robot.action_features)
    missing = [j for j in joints if j not in names]
    unknown = [n for n in names if n not in joints]
    if missing or unknown:
        parts = []
        if missing:
            parts.append(f"the robot's joints {missing} are missing from the dataset's actions")
        if unknown:
            parts.append(f"the dataset's actions {unknown} are not joints of this robot")
        raise ReplayError(
            f"{'; '.join(parts)} (dataset actions {list(names)}, robot {getattr(robot, 'name', '?')} "
            f"joints {joints})"
        )


def check_finite(episode: ReplayEpisode) -> None:
    """Refuse an episode with a NaN or infinite action before anything moves."""
    bad = ~np.isfinite(episode.actions)
    if bad.any():
        frames = np.nonzero(bad.any(axis=1))[0]
        joints = [n for n, b in zip(episode.names, bad.any(axis=0), strict=True) if b]
        shown = ", ".join(map(str, frames[:10])) + (", ..." if len(frames) > 10 else "")
        raise ReplayError(
            f"episode {episode.episode} has non-finite actions for {joints} at frames {shown}; "
            "nothing was sent"
        )


def safety_limits(
    episode: ReplayEpisode, *, margin: float = 0.1, limits_file: Path | None = None
) -> SafetyLimits:
    """The clamp of `jrobot.run` (`SafetyLimits.from_stats`) on the dataset's action range, narrowed to
    a `jrobot.find_joint_limits` file's joint ranges when given."""
    stats = {"min": episode.action_min, "max": episode.action_max}
    limits = SafetyLimits.from_stats(episode.names, stats, margin=margin)
    if limits_file is not None:
        from jrobot.recording.joint_limits import narrow_to_joint_limits

        lower, upper = narrow_to_joint_limits(limits_file, episode.names, limits.lower, limits.upper)
        limits = SafetyLimits(list(episode.names), lower, upper)
    return limits


@dataclasses.dataclass
class ReplayResult:
    """What was commanded and measured, tick by tick (rows in `names` order).

    `measured[k]` is read at tick k, before `sent[k]` goes out; the rows after the last action are
    the settle readings, so `measured[k + 1]` is the first reading after command k.
    """

    names: list[str]
    fps: float
    realtime: bool
    requested: np.ndarray  # (T, D) the dataset's actions
    safe: np.ndarray  # (T, D) after the safety clamp
    sent: np.ndarray  # (T, D) what the robot reports it sent (its max_relative_target, range clip)
    measured: np.ndarray  # (T + settle ticks, D)
    approach_steps: int
    period_s: list[float]
    overruns: int
    dropped: int
    elapsed_s: float


def _vector(
    values: Mapping[str, Any], names: Sequence[str], fallback: np.ndarray | None = None
) -> np.ndarray:
    out = np.empty(len(names))
    for i, n in enumerate(names):
        v = values.get(n)
        out[i] = float(v) if v is not None else (np.nan if fallback is None else fallback[i])
    return out


def _as_action(names: Sequence[str], row: np.ndarray) -> dict[str, float]:
    return {n: float(v) for n, v in zip(names, row, strict=True)}


def replay(
    robot: Any,
    episode: ReplayEpisode,
    limits: SafetyLimits,
    *,
    realtime: bool = True,
    approach_s: float = 1.0,
    settle_s: float = 0.5,
    seed: int | None = None,
    viewer: RerunDisplay | None = None,
) -> ReplayResult:
    """Connect `robot`, move to the first action, send every action at the episode's fps (clamped by
    `limits`), keep reading for `settle_s`, disconnect (torque off); see the module docstring.
    `seed`: reset a simulated robot's scene with it first (the objects where the recording had them)."""
    names = episode.names
    fps = episode.fps
    check_names(names, robot)
    check_finite(episode)
    if list(limits.names) != list(names):
        raise ValueError(f"safety limits are for {limits.names}, the episode's actions are {names}")
    n = len(episode.actions)
    safe = np.empty_like(episode.actions)
    sent = np.empty_like(episode.actions)
    measured: list[np.ndarray] = []
    period_s: list[float] = []
    with torque_safety(robot):
        robot.connect()
        if seed is not None and isinstance(robot, EpisodicRobot):
            robot.reset(seed=seed)
        with graceful_stop():  # Ctrl-C/SIGTERM end the replay between ticks, never mid-packet
            first = limits.apply(episode.actions[0])
            steps = round(approach_s * fps)
            if steps > 0:
                pacer = Pacer(fps, realtime=realtime)
                start = _vector(robot.get_observation(), names, fallback=first)
                for i in range(1, steps + 1):
                    waypoint = start + (first - start) * (i / steps)
                    robot.send_action(_as_action(names, limits.apply(waypoint)))
                    pacer.tick()
            pacer = Pacer(fps, realtime=realtime)
            t_prev = pacer.t_start
            for k in range(n):
                obs = robot.get_observation()
                measured.append(_vector(obs, names))
                safe[k] = limits.apply(episode.actions[k])
                done = robot.send_action(_as_action(names, safe[k]))
                sent[k] = _vector(done, names, fallback=safe[k])
                if viewer is not None:
                    viewer.log(k, obs, done, fps=fps)
                pacer.tick()
                if realtime:
                    now = time.perf_counter()
                    period_s.append(now - t_prev)
                    t_prev = now
            overruns, dropped, elapsed = pacer.overruns, pacer.dropped, pacer.wall_s
            hold = _as_action(names, safe[-1])  # the last goal again: the simulator's clock moves on
            for _ in range(max(1, round(settle_s * fps))):
                measured.append(_vector(robot.get_observation(), names))
                robot.send_action(hold)
                pacer.tick()
    return ReplayResult(
        names=list(names),
        fps=fps,
        realtime=realtime,
        requested=episode.actions.copy(),
        safe=safe,
        sent=sent,
        measured=np.asarray(measured),
        approach_steps=steps,
        period_s=period_s,
        overruns=overruns,
        dropped=dropped,
        elapsed_s=elapsed,
    )


def _errors_at(result: ReplayResult, lag: int) -> np.ndarray:
    """|sent[k] - measured[k + lag]| for every command that has a reading `lag` ticks later."""
    n = min(len(result.sent), len(result.measured) - lag)
    return np.abs(result.sent[:n] - result.measured[lag : lag + n])


def tracking_report(
    result: ReplayResult, state: np.ndarray | None = None, *, max_lag_s: float = 0.5
) -> dict[str, Any]:
    """Per-joint tracking error (commanded - measured) and loop timing; see the module docstring."""
    fps = result.fps
    next_reading = _errors_at(result, 1)
    max_lag = max(1, min(round(max_lag_s * fps), len(result.measured) - 1))
    scores = {lag: float(np.nanmean(_errors_at(result, lag))) for lag in range(1, max_lag + 1)}
    best = min(scores, key=lambda lag: (scores[lag], lag))
    lagged = _errors_at(result, best)
    clamped = np.abs(result.safe - result.requested) > 1e-4
    by_robot = np.abs(result.sent - result.safe) > 1e-4
    joints: dict[str, dict[str, Any]] = {}
    for j, name in enumerate(result.names):
        row = {
            "mean_abs": float(np.nanmean(next_reading[:, j])),
            "max_abs": float(np.nanmax(next_reading[:, j])),
            "lag_compensated_mean_abs": float(np.nanmean(lagged[:, j])),
            "lag_compensated_max_abs": float(np.nanmax(lagged[:, j])),
            "clamped_by_limits": int(clamped[:, j].sum()),
            "limited_by_robot": int(by_robot[:, j].sum()),
        }
        if state is not None:
            n = min(len(state), len(result.sent))
            diff = np.abs(result.measured[:n, j] - state[:n, j])
            row["recorded_state_mean_abs"] = float(np.nanmean(diff))
            row["recorded_state_max_abs"] = float(np.nanmax(diff))
        joints[name] = row

    def pct(q: float) -> float | None:
        return float(np.percentile(result.period_s, q) * 1e3) if result.period_s else None

    steps = len(result.sent)
    return {
        "frames": steps,
        "fps": fps,
        "realtime": result.realtime,
        "approach_steps": result.approach_steps,
        "elapsed_s": result.elapsed_s,
        "achieved_fps": steps / result.elapsed_s if result.elapsed_s > 0 else None,
        "loop_period_ms_p50": pct(50),
        "loop_period_ms_p99": pct(99),
        "overruns": result.overruns,
        "dropped_ticks": result.dropped,
        "lag_ms": best * 1e3 / fps,
        "lag_steps": best,
        "joints": joints,
    }


def format_report(report: Mapping[str, Any]) -> str:
    """The report as text: a timing line, then one row per joint."""

    def ms(key: str) -> str:
        return "n/a" if report.get(key) is None else f"{report[key]:.1f} ms"

    fps = report.get("achieved_fps")
    lines = [
        f"replayed {report['frames']} frames at {report['fps']:g} fps in {report['elapsed_s']:.2f} s "
        f"({'n/a' if fps is None else f'{fps:.1f}'} fps); loop period p50 {ms('loop_period_ms_p50')}, "
        f"p99 {ms('loop_period_ms_p99')}; {report['overruns']} overruns, "
        f"{report['dropped_ticks']} dropped ticks",
        f"tracking error |commanded - measured|: at the next reading, and at the best lag "
        f"({report['lag_ms']:.0f} ms)",
    ]
    has_state = any("recorded_state_mean_abs" in r for r in report["joints"].values())
    head = ["joint", "mean", "max", "mean@lag", "max@lag", "clamped", "by robot"]
    if has_state:
        head += ["vs recorded"]
    rows = [head]
    for name, r in report["joints"].items():
        row = [
            name,
            _num(r["mean_abs"]),
            _num(r["max_abs"]),
            _num(r["lag_compensated_mean_abs"]),
            _num(r["lag_compensated_max_abs"]),
            str(r["clamped_by_limits"]),
            str(r["limited_by_robot"]),
        ]
        if has_state:
            row.append(_num(r["recorded_state_mean_abs"]) if "recorded_state_mean_abs" in r else "")
        rows.append(row)
    width = max(len(r[0]) for r in rows) + 2
    lines += [r[0].ljust(width) + "".join(f"{c:>12}" for c in r[1:]) for r in rows]
    return "\n".join(lines)


def _num(value: float) -> str:
    """A tracking error in the feature's units: degrees as 1.23, metres (end-effector space) as 0.00042."""
    return f"{value:.2f}" if value == 0 or abs(value) >= 0.1 else f"{value:.2g}"


def _json_default(x: Any) -> Any:
    if isinstance(x, np.generic):
        return x.item()
    return str(x)


def replay_episode(robot: Any, opts: ReplayOptions) -> dict[str, Any]:
    """Replay `opts.dataset`'s episode on `robot` (checked against it before anything moves) and report
    the tracking error; writes the report to `opts.report` when one is given."""
    episode = load_episode(opts.dataset)
    check_names(episode.names, robot)  # before connecting: a mismatch moves nothing
    check_finite(episode)
    limits = safety_limits(episode, margin=opts.safety_margin, limits_file=opts.safety_limits)
    realtime = (not isinstance(robot, EpisodicRobot)) if opts.realtime is None else opts.realtime
    log.info(
        "replaying episode %d of %s (%d frames at %g fps) on %s",
        episode.episode,
        episode.source,
        len(episode.actions),
        episode.fps,
        getattr(robot, "name", type(robot).__name__),
    )
    viewer = opts.open(f"jrobot_replay_{getattr(robot, 'name', 'robot')}")
    try:
        result = replay(
            robot,
            episode,
            limits,
            realtime=realtime,
            approach_s=opts.approach_s,
            settle_s=opts.settle_s,
            seed=opts.seed + episode.episode,
            viewer=viewer,
        )
    finally:
        if viewer is not None:
            viewer.close()
    report = tracking_report(result, episode.state, max_lag_s=opts.max_lag_s)
    report = {"dataset": episode.source, "episode": episode.episode, **report}
    if opts.report is not None:
        opts.report.parent.mkdir(parents=True, exist_ok=True)
        opts.report.write_text(json.dumps(report, indent=2, default=_json_default) + "\n")
    return report

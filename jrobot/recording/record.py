"""Recording episodes: the control loop (observe, teleoperate, send, write), the reset phase between
episodes, and opening the dataset writer (a new dataset or `resume` of one), as `jrobot.record` runs them.

The recorded action is what was actually sent to the robot (after its clamps); each saved episode is
final on disk before the next begins, so a crash or Ctrl-C loses at most the episode in progress.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from jrobot.cli import CliError
from jrobot.data.video.encode import VideoOptions
from jrobot.data.write.writer import DatasetWriter
from jrobot.display import DisplayOptions, RerunDisplay
from jrobot.features import dataset_features_for_robot, pack_frame
from jrobot.hw.safety import graceful_stop, torque_safety
from jrobot.pacer import Pacer
from jrobot.recording.keyboard import RecordEvents
from jrobot.robot import EpisodicRobot

log = logging.getLogger("jrobot.record")


@dataclasses.dataclass
class DatasetWriterOptions:
    """Where and how a recording is written (`--dataset.*`): shared by `record` and `jrobot.run`."""

    root: Path
    single_task: str | None = None
    video: bool = True  # cameras as mp4 (encoded while recording); false: PNG images
    vcodec: str = "libsvtav1"
    crf: int = 30
    g: int = 2
    # Frames per camera waiting for the encoder before add_frame blocks. The encoders run below the
    # loop's priority and catch up from this queue: 90 is 3 s at 30 fps (83 MB per 640x480 camera);
    # with 30 (LeRobot's) a 2-core computer recording two 640x480 cameras missed 213 of 1,800 ticks.
    encoder_queue_maxsize: int = 90

    def __post_init__(self) -> None:
        self.root = Path(self.root)

    def video_options(self) -> VideoOptions:
        return VideoOptions(codec=self.vcodec, crf=self.crf, g=self.g)


@dataclasses.dataclass
class DatasetRecordConfig(DatasetWriterOptions):
    """LeRobot's `--dataset.*` options (those that apply to a local dataset), plus codec settings."""

    repo_id: str | None = None
    fps: int | None = None  # default: the robot's own rate (sim), else 30
    episode_time_s: float = 60.0
    reset_time_s: float = 60.0
    num_episodes: int = 50
    push_to_hub: bool = False
    private: bool = False
    push_videos: bool = True  # False: the Hub copy without videos/ (LeRobot's push_videos)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.num_episodes < 1:
            raise ValueError(f"num_episodes must be >= 1, got {self.num_episodes}")
        if self.episode_time_s <= 0 or self.reset_time_s < 0:
            raise ValueError("episode_time_s must be > 0 and reset_time_s >= 0")
        if self.fps is not None and self.fps <= 0:
            raise ValueError(f"fps must be positive, got {self.fps}")
        if self.push_to_hub and not self.repo_id:
            raise ValueError("push_to_hub needs --dataset.repo_id=<user>/<name>")


@dataclasses.dataclass(kw_only=True)
class RecordOptions(DisplayOptions):
    """Besides these: `--display_data` / `--display_url` / `--display_save`, the live rerun view."""

    dataset: DatasetRecordConfig
    resume: bool = False
    seed: int = 0  # simulation: episode e is seeded with seed + e
    realtime: bool | None = None  # pace the loop at fps; default: yes for real arms, no for the sim
    end_after_success_s: float = 0.5  # simulation: keep recording this long after the task succeeds
    status: bool = True  # live status line on stderr


@dataclasses.dataclass
class EpisodeResult:
    frames: int
    duration_s: float
    dropped_frames: int
    achieved_fps: float
    success: bool | None


class StatusLine:
    """One self-overwriting line: episode i/N, phase, time left, achieved fps, dropped frames."""

    def __init__(self, enabled: bool, stream=sys.stderr):
        self.enabled = enabled
        self.stream = stream
        self._last = 0.0
        self.tty = enabled and hasattr(stream, "isatty") and stream.isatty()

    def update(self, text: str, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now - self._last < 0.2:
            return
        self._last = now
        if self.tty:
            self.stream.write("\r\x1b[K" + text)
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def done(self) -> None:
        if self.enabled and self.tty:
            self.stream.write("\n")
            self.stream.flush()


def _is_episodic(robot: Any) -> bool:
    return isinstance(robot, EpisodicRobot)


def control_loop(
    robot: Any,
    teleop: Any,
    *,
    fps: int,
    duration_s: float,
    events: RecordEvents,
    status: StatusLine,
    label: str,
    realtime: bool,
    writer: DatasetWriter | None = None,
    features: dict | None = None,
    task: str | None = None,
    end_after_success_s: float | None = None,
    viewer: RerunDisplay | None = None,
    step0: int = 0,
) -> EpisodeResult:
    """Teleoperate at `fps` for `duration_s` (recording into `writer` when given) until a key ends it."""
    pacer = Pacer(fps, realtime=realtime)
    period = pacer.period
    frames = 0
    success_frames = 0
    success = None
    episodic = _is_episodic(robot)
    while True:
        if events.take_exit_early():
            break
        elapsed = pacer.elapsed_s
        if elapsed >= duration_s:
            break
        obs = robot.get_observation()
        action = teleop.get_action()
        sent = robot.send_action(action)
        if writer is not None:
            writer.add_frame(pack_frame(features, obs, sent), task=task)
        if viewer is not None:
            viewer.log(step0 + frames, obs, sent, fps=fps)
        frames += 1
        if episodic and writer is not None and end_after_success_s is not None:
            success = bool(robot.is_success())
            success_frames = success_frames + 1 if success else 0
            if success_frames * period >= end_after_success_s:
                break
            if getattr(teleop, "is_done", False) and not success:
                break  # the expert gave up or finished without success: nothing more to record
        pacer.tick()
        wall = pacer.wall_s
        status.update(
            f"{label} | {max(0.0, duration_s - elapsed):5.1f} s left | "
            f"{frames / wall if wall > 0 else 0:5.1f} fps | dropped {pacer.dropped}"
        )
    wall = pacer.wall_s
    return EpisodeResult(frames, wall, pacer.dropped, frames / wall if wall > 0 else 0.0, success)


def open_writer(cfg: DatasetWriterOptions, robot: Any, fps: int, resume: bool) -> DatasetWriter:
    """A writer for `robot`'s features at `fps`: a new dataset at `cfg.root`, or (`resume`) more
    episodes onto the one there; a clear error for a non-empty root without `resume`."""
    features = dataset_features_for_robot(
        robot.observation_features, robot.action_features, use_videos=cfg.video
    )
    video = cfg.video_options()
    if resume:
        if not (cfg.root / "meta" / "info.json").is_file():
            raise CliError(f"--resume=true but {cfg.root} holds no dataset (no meta/info.json)")
        return DatasetWriter.resume(
            cfg.root, fps=fps, features=features, robot_type=robot.name, video_options=video
        )
    if cfg.root.exists() and any(cfg.root.iterdir()):
        raise CliError(
            f"{cfg.root} already exists; pass --resume=true to add episodes, or choose another root"
        )
    return DatasetWriter.create(
        cfg.root,
        fps=fps,
        features=features,
        robot_type=robot.name,
        video_options=video,
        encoder_queue_size=cfg.encoder_queue_maxsize,
    )


def record(
    robot: Any,
    teleop: Any,
    opts: RecordOptions,
    *,
    events: RecordEvents | None = None,
    key_listener: Callable[[RecordEvents], Any] | None = None,
) -> dict[str, Any]:
    """Connect, record `num_episodes` episodes, disconnect (torque off); returns a summary.

    `key_listener(events)` (e.g. `TerminalKeys`) is entered once the devices are connected, so that
    calibration prompts at connect time still read the terminal normally.
    """
    cfg = opts.dataset
    events = events or RecordEvents()
    episodic = _is_episodic(robot)
    fps = int(cfg.fps or getattr(robot, "fps", 30))
    realtime = (not episodic) if opts.realtime is None else bool(opts.realtime)
    status = StatusLine(opts.status)
    summary: dict[str, Any] = {"saved": [], "discarded": 0}
    writer = None
    viewer: RerunDisplay | None = None
    keys: Any = contextlib.nullcontext()
    try:
        # Torque goes off first on every way out (leaving this block); the dataset is closed after.
        with torque_safety(teleop, robot):
            robot.connect()
            teleop.connect()
            task = cfg.single_task or (robot.task if episodic else None)
            if not task:
                raise CliError(
                    "--dataset.single_task is required (the instruction recorded with every frame)"
                )
            writer = open_writer(cfg, robot, fps, opts.resume)
            features = writer.features
            viewer = opts.open(f"jrobot_record_{getattr(robot, 'name', 'robot')}")
            if key_listener is not None:
                keys = key_listener(events)
            keys.__enter__()
            with graceful_stop():  # Ctrl-C/SIGTERM stop the loop at its next tick, never mid-frame
                recorded = shown = 0
                while recorded < cfg.num_episodes and not events.stop_recording:
                    index = writer.num_episodes
                    if episodic:
                        robot.reset(seed=opts.seed + index)
                        # An instruction-conditioned sim task draws a new instruction per episode.
                        task = cfg.single_task or robot.task
                    label = f"episode {recorded + 1}/{cfg.num_episodes} (#{index}) | recording"
                    result = control_loop(
                        robot,
                        teleop,
                        fps=fps,
                        duration_s=cfg.episode_time_s,
                        events=events,
                        status=status,
                        label=label,
                        realtime=realtime,
                        writer=writer,
                        features=features,
                        task=task,
                        end_after_success_s=opts.end_after_success_s if episodic else None,
                        viewer=viewer,
                        step0=shown,
                    )
                    shown += result.frames
                    if events.rerecord_episode:
                        events.rerecord_episode = False
                        writer.discard_episode()
                        summary["discarded"] += 1
                        status.update(
                            f"episode {recorded + 1}/{cfg.num_episodes}: discarded, re-recording", force=True
                        )
                        status.done()
                        if not episodic:
                            _reset_phase(robot, teleop, cfg, fps, events, status, recorded, realtime)
                        continue
                    if writer.episode_length == 0:
                        break
                    t0 = time.perf_counter()
                    ep = writer.save_episode()
                    save_s = time.perf_counter() - t0
                    recorded += 1
                    summary["saved"].append(
                        {
                            "episode_index": ep,
                            "frames": result.frames,
                            "achieved_fps": round(result.achieved_fps, 2),
                            "dropped_frames": result.dropped_frames,
                            "save_s": round(save_s, 4),
                            "success": result.success,
                        }
                    )
                    status.update(
                        f"episode {recorded}/{cfg.num_episodes} saved (#{ep}, {result.frames} frames, "
                        f"dropped {result.dropped_frames}, save {save_s * 1e3:.0f} ms)",
                        force=True,
                    )
                    status.done()
                    last = recorded >= cfg.num_episodes
                    if not events.stop_recording and not last and not episodic:
                        _reset_phase(robot, teleop, cfg, fps, events, status, recorded, realtime)
    except BaseException:
        # Ctrl-C, SIGTERM or an error: the episode in progress is dropped, saved ones stay.
        if writer is not None and writer.episode_length:
            writer.discard_episode()
            summary["discarded"] += 1
        raise
    finally:
        keys.__exit__(None, None, None)
        status.done()
        if viewer is not None:
            viewer.close()
            summary["display"] = {"logged": viewer.logged, "dropped": viewer.dropped}
        if writer is not None:
            writer.finalize()
            summary["num_episodes"] = writer.num_episodes
            summary["num_frames"] = writer.num_frames
    summary["root"] = str(cfg.root)
    if cfg.push_to_hub:
        from jrobot.hub import push_dataset

        summary["hub"] = push_dataset(cfg.root, cfg.repo_id, private=cfg.private, push_videos=cfg.push_videos)
    return summary


def _reset_phase(robot, teleop, cfg, fps, events, status, recorded, realtime) -> None:
    """Time to put the scene back: teleoperation continues, nothing is recorded; → ends it early."""
    if cfg.reset_time_s <= 0:
        return
    control_loop(
        robot,
        teleop,
        fps=fps,
        duration_s=cfg.reset_time_s,
        events=events,
        status=status,
        label=f"episode {recorded}/{cfg.num_episodes} | reset",
        realtime=realtime,
    )
    status.done()

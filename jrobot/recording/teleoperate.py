"""Teleoperation: the follower follows a teleoperator (leader arm, keyboard, sim expert) at a fixed rate,
with both arms' torque handled on every way out (`torque_safety`).
"""

from __future__ import annotations

import dataclasses
import logging
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from jrobot.display import DisplayOptions, RerunDisplay
from jrobot.hw.safety import graceful_stop, torque_safety
from jrobot.pacer import Pacer

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class TeleoperateOptions(DisplayOptions):
    """With the rerun view's `--display_data` / `--display_url` / `--display_save` (`jrobot.display`)."""

    fps: float = 60.0
    duration_s: float | None = None
    teleop_time_s: float | None = None  # LeRobot's name for duration_s

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.fps > 0:
            raise ValueError(f"fps must be positive, got {self.fps}")
        if self.duration_s is None:
            self.duration_s = self.teleop_time_s
        if self.duration_s is not None and self.duration_s < 0:
            raise ValueError(f"duration_s must be >= 0, got {self.duration_s}")


@dataclasses.dataclass
class TeleopStats:
    steps: int
    elapsed_s: float
    loop_ms_p50: float
    loop_ms_p99: float
    overruns: int  # steps that took longer than 1/fps

    @property
    def achieved_fps(self) -> float:
        return self.steps / self.elapsed_s if self.elapsed_s > 0 else 0.0


def teleop_loop(
    teleop: Any,
    robot: Any,
    fps: float,
    duration_s: float | None,
    display: bool = False,
    on_step: Callable[[dict[str, Any], dict[str, float]], None] | None = None,
    viewer: RerunDisplay | None = None,
) -> TeleopStats:
    """Run leader -> follower at `fps` until `duration_s` (None: until interrupted).

    `on_step(observation, sent)` sees each step's follower observation (read before the action is
    sent, as LeRobot does) and the action actually sent; `jrobot.find_joint_limits` records its
    ranges this way.
    """
    durations: list[float] = []
    pacer = Pacer(fps)
    try:
        with graceful_stop():  # Ctrl-C/SIGTERM end the loop between steps, never mid-packet
            while duration_s is None or pacer.wall_s < duration_s:
                t0 = time.perf_counter()
                obs = robot.get_observation()
                action = teleop.get_action()
                sent = robot.send_action(action)
                if on_step is not None:
                    on_step(obs, sent)
                if viewer is not None:
                    viewer.log(len(durations), obs, sent, fps=fps)
                dt = time.perf_counter() - t0
                durations.append(dt)
                if display and sys.stdout.isatty():
                    rows = " ".join(f"{k.removesuffix('.pos')}={v:7.2f}" for k, v in sent.items())
                    print(f"\r{dt * 1e3:6.2f} ms  {rows}", end="", flush=True)
                pacer.tick()
    finally:
        if display and sys.stdout.isatty():
            print()
    arr = np.asarray(durations or [0.0]) * 1e3
    return TeleopStats(
        len(durations),
        pacer.wall_s,
        float(np.percentile(arr, 50)),
        float(np.percentile(arr, 99)),
        pacer.overruns,
    )


def teleoperate(teleop: Any, robot: Any, opts: TeleoperateOptions) -> tuple[TeleopStats, str | None]:
    """Connect both devices and run the loop with `opts`' live view; the torque goes off on every way out.

    Returns the loop's figures and the live view's summary (None without one).
    """
    with torque_safety(teleop, robot):
        teleop.connect()
        robot.connect()
        viewer = opts.open(f"jrobot_teleoperate_{getattr(robot, 'name', 'robot')}")
        try:
            stats = teleop_loop(teleop, robot, opts.fps, opts.duration_s, opts.display_data, viewer=viewer)
        finally:
            if viewer is not None:
                viewer.close()
    return stats, (viewer.summary() if viewer is not None else None)

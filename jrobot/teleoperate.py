"""Drive a follower arm from a leader arm (`lerobot-teleoperate`).

    python -m jrobot.teleoperate \\
        --robot.type=so101_follower --robot.port=/dev/ttyACM0 --robot.id=black \\
        --robot.cameras="{front: {type: opencv, index_or_path: 0, width: 640, height: 480, fps: 30}}" \\
        --teleop.type=so101_leader --teleop.port=/dev/ttyACM1 --teleop.id=blue \\
        --fps=60 --duration_s=30

    python -m jrobot.teleoperate --robot.type=so101_follower --robot.port=/dev/ttyACM0 --robot.id=black \
        --teleop.type=keyboard_ee [--teleop.ee_bounds=black_limits.json] [--teleop.step_m=0.005]
    python -m jrobot.teleoperate --robot.type=sim --teleop.type=keyboard_ee     # try it on the simulated arm

Each step reads the follower's observation (as LeRobot does), reads the teleoperator, and sends the
joint positions to the follower. `keyboard_ee` moves the gripper in Cartesian space from this terminal
(w/s, a/d, r/f along x, y, z of the base frame; e/q open/close), through IK in LeRobot's frame, inside
the end-effector box of a `find_joint_limits` file. Robot and teleoperator types are those of
`jrobot.devices`. Ctrl-C, SIGTERM or an error end the loop with both arms' torque off.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from jrobot.cli import Binder, CliError, run_tool
from jrobot.devices import robot_from_flags, teleop_from_flags
from jrobot.display import DisplayOptions, RerunDisplay
from jrobot.hw.safety import graceful_stop, torque_safety
from jrobot.pacer import Pacer

USAGE = __doc__ or ""
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


def main(argv: Sequence[str]) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    binder = Binder.from_argv(argv)
    robot = robot_from_flags(binder, required=False)
    teleop = teleop_from_flags(binder, robot, required=False)
    opts = binder.build(TeleoperateOptions)
    binder.finish()
    if robot is None or teleop is None:
        raise CliError("teleoperate needs --robot.* and --teleop.*")
    with torque_safety(teleop, robot):
        teleop.connect()
        robot.connect()
        viewer = opts.open(f"jrobot_teleoperate_{getattr(robot, 'name', 'robot')}")
        try:
            stats = teleop_loop(teleop, robot, opts.fps, opts.duration_s, opts.display_data, viewer=viewer)
        finally:
            if viewer is not None:
                viewer.close()
                print(viewer.summary())
    print(
        f"teleoperated {stats.steps} steps in {stats.elapsed_s:.2f} s ({stats.achieved_fps:.1f} fps of {opts.fps:g}); "
        f"loop p50 {stats.loop_ms_p50:.2f} ms, p99 {stats.loop_ms_p99:.2f} ms, {stats.overruns} overruns; "
        f"rejected actions {getattr(robot, 'rejected_actions', 0)}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(run_tool(main, usage=USAGE))

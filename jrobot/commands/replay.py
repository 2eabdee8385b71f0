"""`python -m jrobot.replay`: send a recorded episode's actions to a robot and measure how it follows
(`lerobot-replay`).

    python -m jrobot.replay --robot.type=so101_follower --robot.port=/dev/ttyACM0 --robot.id=black \\
        --dataset.root=data/pick_cube --dataset.episode=3 [--report=replay.json]
    # a Hub dataset (downloaded when online), on the virtual arm
    python -m jrobot.replay --robot.type=virtual --dataset.repo_id=USER/my_dataset --dataset.episode=0

The episode's `action` column is read with jrobot's dataset reader (`jrobot.data.open_dataset`; any
LeRobot v2.0/v2.1/v3.0 dataset), its names matched to the robot's joints (a joint missing on either
side is an error naming it; nothing moves), and the actions are sent at the dataset's fps
(`--dataset.fps` overrides it) through the safety path of `jrobot.run`:

- every action is clamped to the action range of the dataset's stats, widened by `--safety_margin`
  of its span on each side (no stats: the range of the action column itself); `--safety_limits FILE`
  (written by `jrobot.find_joint_limits`) narrows that to the joint ranges in the file;
- an episode with a non-finite action is refused before anything moves;
- the robot's own `max_relative_target` and calibrated range apply (inside its `send_action`).

First the arm moves from where it is to the episode's first action in `--approach_s` seconds (a
straight line in joint space, through the same clamp), so a replay never starts with a jump. Each
tick reads the robot's observation before sending; after the last action the arm holds it and the
readings go on for `--settle_s` seconds. The report (printed; `--report` writes it as JSON) gives
the tracking error per joint, commanded (the action sent) minus measured: at the first reading after
each command (one period later), and lag-compensated (at the lag, up to `--max_lag_s`, that
minimises the mean error: the servo's own delay); the frames clamped by the limits or by the robot;
the error against the recorded `observation.state` when the dataset has one; and the loop timing
(period p50/p99, overruns, dropped ticks). Ctrl-C or SIGTERM stop the replay between ticks with
torque off, as every control loop does.

The simulated arm (`--robot.type=sim`) advances one control period per action and is replayed
unpaced unless `--realtime=true`; its scene is reset with `--seed` + the episode index first, as
`jrobot.record` seeds each episode, so the objects are where the recording had them. Nothing here
imports jax.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

from jrobot.cli import Binder, run_tool
from jrobot.recording.devices import robot_from_flags
from jrobot.recording.replay import ReplayOptions, format_report, replay_episode

USAGE = __doc__ or ""


def main(argv: Sequence[str]) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    binder = Binder.from_argv(argv)
    robot = robot_from_flags(binder)
    opts = binder.build(ReplayOptions)
    binder.finish()
    print(format_report(replay_episode(robot, opts)))
    return 0


if __name__ == "__main__":
    sys.exit(run_tool(main, usage=USAGE))

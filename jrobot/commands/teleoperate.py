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
`jrobot.recording.devices`. Ctrl-C, SIGTERM or an error end the loop with both arms' torque off.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

from jrobot.cli import Binder, CliError, run_tool
from jrobot.recording.devices import robot_from_flags, teleop_from_flags
from jrobot.recording.teleoperate import TeleoperateOptions, teleoperate

USAGE = __doc__ or ""


def main(argv: Sequence[str]) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    binder = Binder.from_argv(argv)
    robot = robot_from_flags(binder, required=False)
    teleop = teleop_from_flags(binder, robot, required=False)
    opts = binder.build(TeleoperateOptions)
    binder.finish()
    if robot is None or teleop is None:
        raise CliError("teleoperate needs --robot.* and --teleop.*")
    stats, view_summary = teleoperate(teleop, robot, opts)
    if view_summary is not None:
        print(view_summary)
    print(
        f"teleoperated {stats.steps} steps in {stats.elapsed_s:.2f} s ({stats.achieved_fps:.1f} fps of {opts.fps:g}); "
        f"loop p50 {stats.loop_ms_p50:.2f} ms, p99 {stats.loop_ms_p99:.2f} ms, {stats.overruns} overruns; "
        f"rejected actions {getattr(robot, 'rejected_actions', 0)}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(run_tool(main, usage=USAGE))

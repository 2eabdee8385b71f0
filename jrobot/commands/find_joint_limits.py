"""`python -m jrobot.find_joint_limits`: the range of each joint and of the gripper's position, found by
moving the leader (`lerobot-find-joint-limits`).

    python -m jrobot.find_joint_limits \\
        --robot.type=so101_follower --robot.port=/dev/ttyACM0 --robot.id=black \\
        --teleop.type=so101_leader --teleop.port=/dev/ttyACM1 --teleop.id=blue \\
        [--teleop_time_s=30] [--fps=60] [--out=limits.json]
    # in the simulator (the scripted expert moves the arm)
    python -m jrobot.find_joint_limits --robot.type=sim --robot.cameras=[] --teleop.type=sim_expert \\
        --teleop_time_s=10 --out=sim_limits.json

For `--teleop_time_s` seconds the follower follows the leader (the loop of `jrobot.teleoperate`): move
every joint through the range the arm may use. Each step records the follower's measured joint
positions and the end-effector position computed from them as LeRobot computes it
(`jrobot.kinematics.so101`: the `gripper_frame_link` frame of TheRobotStudio's so101_new_calib.urdf,
in metres, in its `base_link` frame), so the box bounds LeRobot-style end-effector control. At the end a table
of the ranges is printed and written as JSON, by default next to the robot's calibration file
(`<calibration folder>/<robot id>_limits.json`; the simulated arm: `<calibration
root>/robots/so101_sim/<id>_limits.json`):

    {
      "format": "jrobot.joint_limits", "version": 1,
      "robot": {"type": "so101_follower", "name": "so101_follower", "id": "black"},
      "joints": {"shoulder_pan.pos": {"min": -85.2, "max": 88.0}, ..., "gripper.pos": {...}},
      "joint_units": "degrees (gripper: 0..100)",
      "ee_position_m": {"min": [x, y, z], "max": [x, y, z], "link": "gripper_frame_link", "frame": "base_link"},
      "recorded_s": 30.0, "samples": 1800, "stopped_early": false
    }

Joint values are in the robot's own units, the keys its action keys (`--robot.use_degrees=false`:
-100..100 instead of degrees). `ee_position_m` is null for a robot whose joints are not the SO-101's.
Ctrl-C or SIGTERM end the recording early: torque goes off, and the ranges found so far are still
printed and written (marked `"stopped_early": true`), then the command exits 130 (143).

`load_joint_limits(path, names)` reads the joint ranges back as arrays; `narrow_to_joint_limits` narrows
a safety clamp's range to them (`jrobot.replay --safety_limits`, `jrobot.run --safety_limits`);
`load_ee_bounds(path)` reads the end-effector box.
Nothing here imports jax.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

from jrobot.cli import Binder, run_tool
from jrobot.recording.devices import robot_from_flags, teleop_from_flags
from jrobot.recording.joint_limits import (
    FindJointLimitsOptions,
    default_limits_path,
    find_joint_limits,
    format_table,
    write_limits,
)

USAGE = __doc__ or ""


def main(argv: Sequence[str]) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    binder = Binder.from_argv(argv)
    robot = robot_from_flags(binder)
    teleop = teleop_from_flags(binder, robot)
    opts = binder.build(FindJointLimitsOptions)
    binder.finish()
    out = opts.out or default_limits_path(robot)
    fps = opts.fps or getattr(robot, "fps", None) or 60.0
    found = find_joint_limits(
        robot, teleop, fps=float(fps), teleop_time_s=opts.teleop_time_s, display=opts.display_data
    )
    limits = found.limits
    write_limits(out, limits)
    print(format_table(limits))
    early = " (stopped early)" if limits["stopped_early"] else ""
    print(f"{limits['samples']} samples over {limits['recorded_s']:.1f} s{early}; limits written to {out}")
    if found.loop is not None:
        loop = found.loop
        print(
            f"loop: {loop.achieved_fps:.1f} fps of {fps:g}, p50 {loop.loop_ms_p50:.2f} ms, "
            f"p99 {loop.loop_ms_p99:.2f} ms, {loop.overruns} overruns"
        )
    if found.stop is not None:
        raise found.stop  # the exit status of a stop signal (130 for Ctrl-C), the file saved
    return 0


if __name__ == "__main__":
    sys.exit(run_tool(main, usage=USAGE))

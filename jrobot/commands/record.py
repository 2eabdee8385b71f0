"""`python -m jrobot.record`: record demonstrations into a LeRobot v3.0 dataset.

    # real arms (a leader drives the follower), cameras included
    python -m jrobot.record \\
        --robot.type=so101_follower --robot.port=/dev/ttyACM0 --robot.id=black \\
        --robot.cameras="{front: {type: opencv, index_or_path: 0, width: 640, height: 480, fps: 30}}" \\
        --teleop.type=so101_leader --teleop.port=/dev/ttyACM1 --teleop.id=blue \\
        --dataset.root=data/pick_cube --dataset.single_task="pick the cube" \\
        --dataset.num_episodes=50 --dataset.episode_time_s=30 --dataset.reset_time_s=10

    # any machine: the scripted expert in the MuJoCo simulation
    python -m jrobot.record --robot.type=sim --teleop.type=sim_expert \\
        --dataset.root=data/sim_pick --dataset.num_episodes=20

    # instruction-conditioned: pick the cube the episode's instruction names (or
    # --robot.task=jrobot/SO101PickColor-v0)
    python -m jrobot.record --robot.type=sim --robot.task=pick_color --teleop.type=sim_expert \\
        --dataset.root=data/sim_pick_color --dataset.num_episodes=50

Keys (in this terminal, also over SSH): → ends the current episode or reset early, ← re-records the
episode, Esc stops (the partial episode is saved, as in LeRobot). Ctrl-C stops too, but discards the
episode in progress. Either way every episode saved before stays in the dataset, and the robot's
torque is switched off. `--resume=true` appends episodes to an existing dataset.

Unlike LeRobot 0.4.x, the recorded action is the action actually sent to the follower (after
`max_relative_target` clamping), camera features are kept as images with `--dataset.video=false`, and
videos are encoded while recording, so saving an episode takes a fraction of a second.

The simulated robot advances one control period per action, so it records as fast as the CPU allows
(`--realtime=true` paces it); each sim episode is seeded with `--seed` + its index, and ends shortly
after the task succeeds or when the expert is done. Without `--dataset.single_task` each sim episode is
recorded with the robot's own instruction for that episode, e.g. with `--robot.task=pick_color` (three
cubes, a new target colour and wording each episode) every instruction used lands in meta/tasks.parquet
and each frame's task_index points at its episode's.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

from jrobot.cli import Binder, run_tool
from jrobot.recording.devices import robot_from_flags, teleop_from_flags
from jrobot.recording.keyboard import RecordEvents, TerminalKeys
from jrobot.recording.record import RecordOptions, record

USAGE = __doc__ or ""


def main(argv: Sequence[str]) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    binder = Binder.from_argv(argv)
    robot = robot_from_flags(binder)
    teleop = teleop_from_flags(binder, robot)
    opts = binder.build(RecordOptions)
    binder.finish()
    on_key = getattr(teleop, "press", None)  # a keyboard teleoperator shares the terminal's one reader
    if on_key is not None:
        teleop.external_keys = True
    summary = record(
        robot, teleop, opts, events=RecordEvents(), key_listener=lambda ev: TerminalKeys(ev, on_key=on_key)
    )
    saved = summary["saved"]
    print(
        f"recorded {len(saved)} episode(s) into {summary['root']} "
        f"(dataset now holds {summary.get('num_episodes')} episodes, {summary.get('num_frames')} frames)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(run_tool(main, usage=USAGE))

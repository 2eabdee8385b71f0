"""`python -m jrobot` / `jrobot`: the list of jrobot's commands, by stage of the data flow; and their launcher.

Every command is also a console script (`jrobot-record`, `jrobot-train`, ...; LeRobot's names with
`jrobot-` for `lerobot-` where LeRobot has the command) and stays runnable as `python -m <module>`.
The console scripts all enter through `launch`, which runs the command's module as `__main__` (the
same code path as `python -m`), so a command is defined once, in its module. `jrobot <command> ...`
runs a command by its short name.
"""

from __future__ import annotations

import dataclasses
import difflib
import runpy
import sys
from pathlib import Path


@dataclasses.dataclass(frozen=True)
class Command:
    name: str  # console script is "jrobot-<name>"
    module: str  # python -m <module>
    stage: str
    summary: str
    example: str

    @property
    def script(self) -> str:
        return f"jrobot-{self.name}"


STAGES = ("robots and recording", "datasets", "training", "running policies")

COMMANDS = (
    Command(
        "find-port",
        "jrobot.commands.find_port",
        STAGES[0],
        "which serial port is which arm",
        "jrobot-find-port",
    ),
    Command(
        "find-cameras",
        "jrobot.commands.find_cameras",
        STAGES[0],
        "which camera index is which",
        "jrobot-find-cameras",
    ),
    Command(
        "setup-motors",
        "jrobot.commands.setup_motors",
        STAGES[0],
        "give a new arm's motors their ids and baud rate",
        "jrobot-setup-motors --robot.type=so101_follower --robot.port=/dev/ttyACM0",
    ),
    Command(
        "calibrate",
        "jrobot.commands.calibrate",
        STAGES[0],
        "calibrate a follower or leader arm",
        "jrobot-calibrate --robot.type=so101_follower --robot.port=/dev/ttyACM0 --robot.id=black",
    ),
    Command(
        "teleoperate",
        "jrobot.commands.teleoperate",
        STAGES[0],
        "drive the follower from the leader",
        "jrobot-teleoperate --robot.type=so101_follower --robot.port=/dev/ttyACM0 "
        "--teleop.type=so101_leader --teleop.port=/dev/ttyACM1",
    ),
    Command(
        "find-joint-limits",
        "jrobot.commands.find_joint_limits",
        STAGES[0],
        "the range of each joint and of the gripper position, found by moving the leader",
        "jrobot-find-joint-limits --robot.type=so101_follower --robot.port=/dev/ttyACM0 "
        "--teleop.type=so101_leader --teleop.port=/dev/ttyACM1 --teleop_time_s=30",
    ),
    Command(
        "record",
        "jrobot.commands.record",
        STAGES[0],
        "record demonstrations into a LeRobot v3.0 dataset",
        "jrobot-record --robot.type=sim --teleop.type=sim_expert --dataset.root=data/sim_pick "
        "--dataset.num_episodes=20",
    ),
    Command(
        "replay",
        "jrobot.commands.replay",
        STAGES[0],
        "send a recorded episode's actions to the arm and measure how it follows",
        "jrobot-replay --robot.type=so101_follower --robot.port=/dev/ttyACM0 "
        "--dataset.root=data/pick_cube --dataset.episode=0",
    ),
    Command(
        "virtual-arm",
        "jrobot.commands.virtual_arm",
        STAGES[0],
        "a virtual SO-101 servo bus on a pty, for any tool",
        "jrobot-virtual-arm",
    ),
    Command(
        "inspect",
        "data_tools.inspect",
        STAGES[1],
        "what is in a dataset, and every problem found",
        "jrobot-inspect data/pick_cube",
    ),
    Command(
        "convert-lerobot",
        "data_tools.convert_lerobot",
        STAGES[1],
        "any LeRobot dataset (v2.x/v3.0, local or hub) -> a clean v3.0 one",
        "jrobot-convert-lerobot lerobot/some_dataset --out data/converted",
    ),
    Command(
        "convert-rlds",
        "data_tools.convert_rlds",
        STAGES[1],
        "an RLDS / Open X-Embodiment dataset (TFDS folder) -> a LeRobot v3.0 one",
        "jrobot-convert-rlds ~/tensorflow_datasets/bridge/0.1.0 --out data/bridge --fps 5",
    ),
    Command(
        "export-tfds",
        "data_tools.export_tfds",
        STAGES[1],
        "a LeRobot dataset -> an RLDS TFDS dataset (ArrayRecord) for Octo/openpi pipelines",
        "jrobot-export-tfds data/pick_cube --out data/pick_cube_rlds",
    ),
    Command(
        "push-dataset",
        "data_tools.push_dataset",
        STAGES[1],
        "upload a dataset to the Hugging Face Hub as LeRobot does (card, v3.0 tag)",
        "jrobot-push-dataset data/pick_cube --repo_id me/pick_cube",
    ),
    Command(
        "edit",
        "data_tools.edit",
        STAGES[1],
        "delete, split, merge, remove or rename features",
        "jrobot-edit --help",
    ),
    Command(
        "view",
        "data_tools.view",
        STAGES[1],
        "plots and a side-by-side video of one episode",
        "jrobot-view data/pick_cube --episode 3 --out view/",
    ),
    Command(
        "build-shards",
        "data_tools.build_shards",
        STAGES[1],
        "episode store -> ArrayRecord training shards",
        "jrobot-build-shards data/pick_cube --out shards/pick_cube --resolution 224x224",
    ),
    Command(
        "train",
        "jrobot.commands.train",
        STAGES[2],
        "train a policy from a config file",
        "jrobot-train --config configs/act_so101_sim.py --workdir runs/act",
    ),
    Command(
        "export",
        "jrobot.commands.export",
        STAGES[2],
        "a training run or a LeRobot checkpoint -> a policy bundle",
        "jrobot-export --workdir runs/act --out bundles/act",
    ),
    Command(
        "run",
        "jrobot.commands.run",
        STAGES[3],
        "drive a robot with a policy bundle in real time (or offline on an npz)",
        "jrobot-run --policy bundles/act --robot.type=so101_follower --robot.port=/dev/ttyACM0",
    ),
    Command(
        "serve",
        "jrobot.commands.serve",
        STAGES[3],
        "serve a bundle to robots over the network (openpi's protocol)",
        "jrobot-serve --policy bundles/smolvla --host 0.0.0.0 --token_file token.txt",
    ),
    Command(
        "eval",
        "jrobot.commands.eval",
        STAGES[3],
        "success rate and videos of a bundle in the simulator",
        "jrobot-eval --policy bundles/act --episodes 50 --out eval/act",
    ),
    Command(
        "demo",
        "jrobot.commands.demo",
        STAGES[3],
        "the whole loop on the MuJoCo SO-101 (what `make demo` runs)",
        "jrobot-demo",
    ),
)
BY_NAME = {c.name: c for c in COMMANDS}
BY_SCRIPT = {c.script: c for c in COMMANDS}


def command_list() -> str:
    lines = ["usage: jrobot <command> [flags]   (or jrobot-<command>, or python -m <module>)", ""]
    width = max(len(c.script) for c in COMMANDS)
    for stage in STAGES:
        lines.append(f"{stage}:")
        for c in (c for c in COMMANDS if c.stage == stage):
            lines.append(f"  {c.script:<{width}}  {c.summary}")
            lines.append(f"  {'':<{width}}    e.g. {c.example}")
        lines.append("")
    lines.append("`jrobot-<command> --help` lists a command's flags.")
    return "\n".join(lines)


def run_command(command: Command, args: list[str]) -> None:
    """Run `command` as `python -m` would, with `args` as its command line (exits with its status)."""
    sys.argv = [command.script, *args]
    runpy.run_module(command.module, run_name="__main__", alter_sys=True)


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(command_list())
        return 0
    name = argv[0].removeprefix("jrobot-")
    command = BY_NAME.get(name)
    if command is None:
        close = difflib.get_close_matches(name, list(BY_NAME), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        print(f"error: unknown command {argv[0]!r}{hint} (jrobot --help lists them)", file=sys.stderr)
        return 2
    run_command(command, argv[1:])
    return 0


def launch() -> None:
    """Console-script entry: `jrobot-<name>` runs that command, `jrobot` the list or a named command."""
    script = Path(sys.argv[0]).name
    command = BY_SCRIPT.get(script)
    if command is None:
        sys.exit(main(sys.argv[1:]))
    run_command(command, sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

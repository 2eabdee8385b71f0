"""The dotted-flag parser that the hardware tools (and later `record`) use."""

from __future__ import annotations

import ast
import dataclasses
import subprocess
import sys
from pathlib import Path
from typing import Literal

import pytest

from jrobot import cli
from jrobot.cli import Binder, CliError, build_dataclass, parse_flags, parse_value
from jrobot.hw.factory import ROBOT_CONFIGS, TELEOP_CONFIGS
from jrobot.hw.opencv_camera import OpenCVCameraConfig


@dataclasses.dataclass
class Options:
    fps: int = 30
    resume: bool = False
    root: Path | None = None
    name: str = "x"
    rate: float | None = None
    tags: list[str] | None = None


def test_parse_flags_forms():
    flags = parse_flags(["--a.b=1", "--c", "two words", "--d", "--e=x=y"])
    assert flags == {"a.b": "1", "c": "two words", "d": "true", "e": "x=y"}
    with pytest.raises(CliError, match="unexpected argument 'stray'"):
        parse_flags(["stray"])


def test_values_parse_like_draccus():
    assert parse_value("{front: {type: opencv, index_or_path: 0}}") == {
        "front": {"type": "opencv", "index_or_path": 0}
    }
    assert parse_value("[1, 2]") == [1, 2]
    assert parse_value("1e-3") == "1e-3"  # YAML 1.1: a float needs a dot...
    assert parse_value("1.0e-3") == 0.001  # ...like this


@pytest.mark.parametrize("text", ["true", "True", "yes", "on", "1"])
def test_booleans(text):
    assert build_dataclass(Options, {"resume": text}).resume is True


@pytest.mark.parametrize("text", ["false", "FALSE", "no", "off", "0"])
def test_booleans_false(text):
    assert build_dataclass(Options, {"resume": text}).resume is False


def test_types_and_bare_flag():
    opts = build_dataclass(
        Options,
        parse_flags(["--resume", "--fps=15", "--root=~/d", "--name=007", "--rate=null", "--tags=[a, b]"]),
    )
    assert opts == Options(fps=15, resume=True, root=Path("~/d"), name="007", rate=None, tags=["a", "b"])


def test_errors_name_the_flag():
    with pytest.raises(CliError, match="--fps: expected an integer, got 'fast'"):
        build_dataclass(Options, {"fps": "fast"})
    with pytest.raises(CliError, match="--resume: expected true or false"):
        build_dataclass(Options, {"resume": "maybe"})
    with pytest.raises(CliError, match="unknown flag --fsp; did you mean --fps"):
        build_dataclass(Options, {"fsp": "3"})


def test_robot_with_compact_cameras_and_overrides():
    binder = Binder.from_argv(
        [
            "--robot.type=so101_follower",
            "--robot.port=/dev/ttyACM0",
            "--robot.id=black",
            "--robot.cameras={front: {type: opencv, index_or_path: 0, width: 640, height: 480, fps: 30}, "
            "wrist: {index_or_path: /dev/video2, width: 320, height: 240, fps: 30, rotation: -90}}",
            "--robot.cameras.front.fps=15",
            "--robot.max_relative_target=10",
            "--robot.use_degrees=false",
        ]
    )
    robot = binder.choice(ROBOT_CONFIGS, "robot")
    binder.finish()
    assert robot.port == "/dev/ttyACM0" and robot.id == "black" and robot.use_degrees is False
    assert robot.max_relative_target == 10.0  # a float, as LeRobot requires
    assert robot.cameras["front"] == OpenCVCameraConfig(index_or_path=0, width=640, height=480, fps=15)
    assert robot.cameras["wrist"].index_or_path == "/dev/video2" and robot.cameras["wrist"].rotation == -90


def test_per_motor_max_relative_target_and_types():
    caps = "{shoulder_pan: 5, shoulder_lift: 5, elbow_flex: 5, wrist_flex: 5, wrist_roll: 5, gripper: 10}"
    for kind in ("so100_follower", "so_follower"):
        binder = Binder({"robot.type": kind, "robot.port": "p", "robot.max_relative_target": caps})
        assert binder.choice(ROBOT_CONFIGS, "robot").max_relative_target["gripper"] == 10.0
    binder = Binder({"teleop.type": "so101_leader", "teleop.port": "p", "teleop.id": "blue"})
    assert binder.choice(TELEOP_CONFIGS, "teleop").id == "blue"


def test_choice_errors():
    with pytest.raises(CliError, match="did you mean 'so101_follower'"):
        Binder({"robot.type": "so101_folower"}).choice(ROBOT_CONFIGS, "robot")
    with pytest.raises(CliError, match=r"missing required flag --robot.port"):
        Binder({"robot.type": "so101_follower"}).choice(ROBOT_CONFIGS, "robot")
    with pytest.raises(CliError, match="camera 'c' needs width, height, fps"):
        Binder(
            {"robot.type": "so101_follower", "robot.port": "p", "robot.cameras": "{c: {index_or_path: 0}}"}
        ).choice(ROBOT_CONFIGS, "robot")
    assert Binder({}).choice(ROBOT_CONFIGS, "robot", required=False) is None
    binder = Binder({"robot.type": "so101_follower", "robot.port": "p", "robot.porrt": "q"})
    binder.choice(ROBOT_CONFIGS, "robot")
    with pytest.raises(CliError, match=r"unknown flag --robot.porrt; did you mean --robot.port"):
        binder.finish()


def test_hardware_layer_does_not_import_the_command_line_parser():
    """Flags become device configs in `jrobot.recording.devices`; the hardware package never parses them."""
    hw = Path(__file__).resolve().parents[2] / "jrobot" / "hw"
    offenders = []
    for path in sorted(hw.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            offenders += [f"{path.name}: {n}" for n in names if n == "jrobot.cli"]
    assert not offenders


@pytest.mark.parametrize("module", ["jrobot.run", "jrobot.eval"])
def test_run_and_eval_share_the_flag_grammar_and_its_one_line_errors(module, tmp_path):
    """Both take `--policy=...`, `--episodes N`, `--max-steps`/`--max_steps`; a typo is one clear line."""
    flags = [f"--policy={tmp_path / 'bundle'}", "--episodes", "2", "--max-steps=3", "--episdoes=4"]
    flags.append(f"--out={tmp_path / 'out'}" if module == "jrobot.eval" else "--robot.type=sim")
    proc = subprocess.run([sys.executable, "-m", module, *flags], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.splitlines()[0] == "error: unknown flag --episdoes; did you mean --episodes?"
    assert "Traceback" not in proc.stderr


# The same grammar for the data tools and jrobot.export: positionals, lists, subcommands, help.


@dataclasses.dataclass
class _Inspect:
    """inspect a dataset"""

    dataset: str = cli.positional(help="dataset folder or hub id")
    json: bool = cli.flag(False, help="print JSON")
    max_episodes: int = cli.flag(20, help="episodes listed")


@dataclasses.dataclass(kw_only=True)
class _Merge:
    """merge datasets"""

    datasets: list[str] = cli.positional(help="datasets", metavar="DATASET")
    out: str = cli.flag(help="new dataset", metavar="DST")
    mode: Literal["auto", "always", "never"] = cli.flag("auto", help="when to recompute")


@dataclasses.dataclass(kw_only=True)
class _Remove:
    """remove features"""

    dataset: str = cli.positional(help="dataset")
    features: list[str] = cli.flag(help="names")
    splits: list[str] | None = cli.flag(None, help="optional list")
    seed: int = cli.flag(0, help="seed")


def _bind(cls, argv):
    binder = Binder.from_argv(argv)
    opts = binder.build(cls)
    binder.finish()
    return opts


@pytest.mark.parametrize(
    "argv",
    [
        ["data/x", "--json", "--max-episodes", "3"],
        ["--json", "data/x", "--max_episodes=3"],  # a bare boolean flag may precede the argument
        ["--max-episodes", "3", "data/x", "--json", "true"],
    ],
)
def test_positional_arguments_bind_to_named_fields(argv):
    assert _bind(_Inspect, argv) == _Inspect(dataset="data/x", json=True, max_episodes=3)


def test_positional_errors_are_one_clear_line():
    with pytest.raises(CliError, match=r"^missing argument DATASET$"):
        _bind(_Inspect, ["--json"])
    with pytest.raises(CliError, match=r"^unexpected argument 'b': this command takes DATASET$"):
        _bind(_Inspect, ["a", "b"])
    with pytest.raises(CliError, match=r"^unexpected argument 'c': this command takes DATASET$"):
        _bind(_Inspect, ["a", "--max-episodes", "3", "c"])
    # a typo'd flag that swallowed the argument is reported as the typo, in the spelling typed
    with pytest.raises(CliError, match=r"^unknown flag --max-episdes; did you mean --max-episodes\?$"):
        _bind(_Inspect, ["--max-episdes", "3"])
    with pytest.raises(CliError, match=r"^unknown flag --jsn; did you mean --json\?$"):
        _bind(_Inspect, ["--jsn", "data/x"])
    assert _bind(_Inspect, ["--json", "false", "d"]).json is False  # a boolean's own value stays its value


def test_without_positional_fields_bare_arguments_are_still_errors():
    with pytest.raises(CliError, match="unexpected argument 'stray': flags look like --name=value"):
        _bind(Options, ["stray", "--fps=3"])
    with pytest.raises(CliError, match="unexpected argument '4'"):
        _bind(Options, ["--fps", "3", "4"])
    with pytest.raises(CliError, match="--resume: expected true or false, got 'maybe'"):
        _bind(Options, ["--resume", "maybe"])  # no argument to give it back to: still a bad value


def test_list_flags_take_values_up_to_the_next_flag_or_one_yaml_list():
    opts = _bind(_Remove, ["d", "--features", "a", "b", "--splits", "train=0-3", "val=4", "--seed", "-1"])
    assert opts == _Remove(dataset="d", features=["a", "b"], splits=["train=0-3", "val=4"], seed=-1)
    assert _bind(_Remove, ["d", "--features", "[a, b]"]).features == ["a", "b"]
    assert _bind(_Remove, ["d", "--features=a,b"]).features == ["a,b"]  # the command splits commas
    assert _bind(_Remove, ["d", "--features", "x: 1"]).features == ["x: 1"]  # text stays text
    assert _bind(_Remove, ["d", "--features", "a", "--splits=null"]).splits is None
    assert _bind(_Remove, ["--features", "a", "b", "--seed", "2", "d"]).dataset == "d"
    with pytest.raises(CliError, match=r"^--features: expected one or more values$"):
        _bind(_Remove, ["d", "--features", "--seed", "1"])
    with pytest.raises(CliError, match=r"^missing required flag --features$"):
        _bind(_Remove, ["d"])
    assert build_dataclass(Options, {"tags": "[a, b]"}).tags == ["a", "b"]  # dotted tools: unchanged


def test_a_list_positional_takes_the_rest_and_literal_choices_are_checked():
    opts = _bind(_Merge, ["a", "b", "--out", "m", "c"])
    assert opts == _Merge(datasets=["a", "b", "c"], out="m")
    with pytest.raises(CliError, match=r"^missing argument DATASET$"):
        _bind(_Merge, ["--out", "m"])
    assert _bind(_Merge, ["a", "--out", "m", "--mode", "never"]).mode == "never"
    with pytest.raises(CliError, match=r"^--mode: 'alwys' is not one of auto, always, never; did you mean"):
        _bind(_Merge, ["a", "--out", "m", "--mode", "alwys"])


def test_subcommand_selects_the_options_class():
    commands = {"merge": _Merge, "remove-features": _Remove}
    binder = Binder.from_argv(["remove-features", "d", "--features", "a"])
    name, cls = binder.subcommand(commands)
    assert (name, binder.build(cls)) == ("remove-features", _Remove(dataset="d", features=["a"]))
    binder.finish()
    with pytest.raises(
        CliError, match=r"^unknown command 'merg' \(one of: merge, remove-features\); did you "
    ):
        Binder.from_argv(["merg", "a"]).subcommand(commands)
    with pytest.raises(CliError, match=r"^missing command \(one of: merge, remove-features\)$"):
        Binder.from_argv(["--out", "x", "merge"]).subcommand(commands)  # the command comes first


def test_exactly_one_of_exclusive_flags():
    @dataclasses.dataclass
    class Export:
        workdir: str | None = None
        from_lerobot: str | None = None

    assert cli.exactly_one(Export(workdir="w"), "workdir", "from_lerobot") == "workdir"
    with pytest.raises(CliError, match=r"^--workdir and --from-lerobot cannot be used together$"):
        cli.exactly_one(Export("w", "l"), "workdir", "from_lerobot")
    with pytest.raises(CliError, match=r"^give one of --workdir or --from-lerobot$"):
        cli.exactly_one(Export(), "workdir", "from_lerobot")
    assert cli.exactly_one(Export(), "workdir", "from_lerobot", required=False) is None


def test_generated_help(capsys):
    text = cli.usage("python -m x", _Remove, "The doc.")
    lines = text.splitlines()
    assert lines[0] == "usage: python -m x DATASET --features TEXT [TEXT ...] [flags]"
    assert lines[2] == "The doc."
    assert "  --features TEXT [TEXT ...]  names (required)" in lines
    assert any(line.startswith("  --seed N") and line.endswith("seed (default: 0)") for line in lines)
    assert any(line.startswith("  --splits TEXT [TEXT ...]") and line.endswith("list") for line in lines)
    assert "  DATASET" in text and "dataset" in text
    assert "(default: 20)" in cli.usage("p", _Inspect)
    both = cli.commands_usage("python -m e", {"merge": _Merge, "remove-features": _Remove}, "Edits.")
    assert both.splitlines()[0] == "usage: python -m e {merge,remove-features} ..."
    assert "python -m e merge DATASET [DATASET ...] --out DST [flags]" in both
    assert "    merge datasets" in both and "    --mode {auto,always,never}" in both
    assert cli.run_tool(lambda argv: 1, ["x", "--help"], usage=lambda argv: f"help for {argv[0]}") == 0
    assert capsys.readouterr().out == "help for x\n"


_TYPO_COMMANDS = [
    ("data_tools.inspect", ["data/nope", "--jsn"], "--jsn; did you mean --json?"),
    ("data_tools.convert_lerobot", ["src", "--out", "dst", "--quite"], "--quite; did you mean --quiet?"),
    (
        "data_tools.edit",
        ["delete", "ds", "--episodes", "1", "--out", "o", "--wrkers", "2"],
        "--wrkers; did you mean --workers?",
    ),
    (
        "data_tools.view",
        ["ds", "--episode", "1", "--out", "o", "--no-vidoe"],
        "--no-vidoe; did you mean --no-video?",
    ),
    (
        "data_tools.build_shards",
        ["src", "--out", "o", "--shard-size-md", "8"],
        "--shard-size-md; did you mean --shard-size-mb?",
    ),
    ("jrobot.export", ["--workdir", "w", "--out", "o", "--stpe", "3"], "--stpe; did you mean --step?"),
]


@pytest.mark.parametrize(("module", "args", "message"), _TYPO_COMMANDS, ids=[m for m, _, _ in _TYPO_COMMANDS])
def test_converted_commands_reject_a_typo_in_one_line(module, args, message, tmp_path):
    """Every command: a typo'd flag exits 2 with one error line naming it; `--help` exits 0."""
    proc = subprocess.run(
        [sys.executable, "-m", module, *args], capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.splitlines()[0] == f"error: unknown flag {message}"
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    assert not (tmp_path / "o").exists() and not (tmp_path / "dst").exists()
    proc = subprocess.run(
        [sys.executable, "-m", module, "--help"], capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert proc.returncode == 0 and proc.stdout.startswith(f"usage: python -m {module} "), proc.stderr


def test_a_misspelt_required_flag_is_named():
    @dataclasses.dataclass
    class Needs:
        policy: str
        episodes: int = 1

    with pytest.raises(
        CliError, match=r"^missing required flag --policy \(unknown flag --polcy; did you mean --policy\?\)$"
    ):
        build_dataclass(Needs, {"polcy": "b", "episodes": "2"})
    with pytest.raises(CliError, match=r"^missing required flag --policy$"):
        build_dataclass(Needs, {"episodes": "2"})

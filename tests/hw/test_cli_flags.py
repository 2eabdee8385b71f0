"""The dotted-flag parser that the hardware tools (and later `record`) use."""

from __future__ import annotations

import ast
import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

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
    """Flags become device configs in `jrobot.devices`; the hardware package never parses them."""
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

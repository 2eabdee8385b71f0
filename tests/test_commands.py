"""The command list (`python -m jrobot`, `jrobot`) and the console scripts every command installs."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from jrobot.__main__ import BY_NAME, COMMANDS, STAGES, command_list

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def test_every_command_is_a_console_script_and_a_module():
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert set(scripts) == {"jrobot"} | {c.script for c in COMMANDS}
    assert set(scripts.values()) == {"jrobot.__main__:launch"}
    for c in COMMANDS:
        base = REPO.joinpath(*c.module.split("."))
        assert base.with_suffix(".py").is_file() or (base / "__main__.py").is_file(), c.module
        assert c.stage in STAGES and c.example.startswith(c.script)
    # LeRobot's names, with jrobot- for lerobot-, where LeRobot has the command
    for lerobot in (
        "record",
        "teleoperate",
        "calibrate",
        "find-port",
        "find-cameras",
        "setup-motors",
        "train",
        "eval",
    ):
        assert lerobot in BY_NAME


def test_python_m_jrobot_lists_the_commands_by_stage():
    out = subprocess.run(
        [sys.executable, "-m", "jrobot"], cwd=REPO, capture_output=True, text=True, timeout=60, check=True
    ).stdout
    assert out == command_list() + "\n"
    positions = [out.index(f"{stage}:") for stage in STAGES]
    assert positions == sorted(positions)
    for c in COMMANDS:
        assert f"  {c.script}" in out and f"e.g. {c.example}" in out


def test_unknown_command_is_one_line_with_the_closest_name():
    proc = subprocess.run(
        [sys.executable, "-m", "jrobot", "recrod"], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "error: unknown command 'recrod'; did you mean 'record'? (jrobot --help lists them)"
    ]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c.script)
def test_console_script_runs_its_command(command):
    """The installed script runs the module's own main: --help exits 0 with the module's usage."""
    script = BIN / command.script
    assert script.is_file(), f"{script} is not installed (pip install -e . installs the console scripts)"
    proc = subprocess.run([str(script), "--help"], cwd=REPO, capture_output=True, text=True, timeout=120)
    # absl (jrobot.train) ends --help with status 1; every other command with 0
    assert proc.returncode == (1 if command.module == "jrobot.train" else 0), proc.stderr[-2000:]
    module_help = subprocess.run(
        [sys.executable, "-m", command.module, "--help"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert module_help.returncode == proc.returncode and module_help.stdout.strip()
    assert proc.stdout == module_help.stdout

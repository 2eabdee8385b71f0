"""The command list (`python -m jrobot`, `jrobot`) and the console scripts every command installs."""

from __future__ import annotations

import ast
import importlib.util
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
    assert proc.returncode == 0, proc.stderr[-2000:]
    module_help = subprocess.run(
        [sys.executable, "-m", command.module, "--help"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert module_help.returncode == proc.returncode and module_help.stdout.strip()
    assert proc.stdout == module_help.stdout


def _short_name(command) -> str:
    """`jrobot.<name>`: what `python -m` accepted before the commands moved into one package."""
    return "jrobot." + command.module.rpartition(".")[2]


def test_the_commands_live_together_and_the_top_level_holds_stages():
    commands = REPO / "jrobot" / "commands"
    for c in COMMANDS:
        assert c.module.startswith(("jrobot.commands.", "data_tools.")), c.module
    own = {p.stem for p in commands.glob("*.py")} - {"__init__"}
    assert own == {c.module.rpartition(".")[2] for c in COMMANDS if c.module.startswith("jrobot.commands.")}
    # no command module left at the top level: it would shadow the short name, and is not a stage
    top = {p.stem for p in (REPO / "jrobot").glob("*.py")}
    assert not top & own, f"commands at jrobot's top level: {sorted(top & own)}"
    for path in (REPO / "jrobot").rglob("*.py"):
        if commands in path.parents or path.name == "__main__.py":
            continue
        src = path.read_text()
        for node in ast.parse(src).body:
            if isinstance(node, ast.FunctionDef) and node.name == "main":
                raise AssertionError(
                    f"{path.relative_to(REPO)} defines main(): commands live in jrobot/commands"
                )


@pytest.mark.parametrize(
    "path", sorted((REPO / "jrobot" / "commands").glob("[!_]*.py")), ids=lambda p: p.stem
)
def test_a_command_module_parses_flags_and_calls_its_stage(path):
    """Thin: at module level imports, its usage, flag classes (`*Options`, a private parser), `main` (and
    `launch`, `make_parser`) and private helpers of parsing and error reporting; any other public
    function or class is stage logic and belongs to the stage the command drives. And short."""
    text = path.read_text()
    tree = ast.parse(text)
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            ok = node.name in {"main", "launch", "make_parser"} or node.name.startswith("_")
            assert ok, f"{path.name}: {node.name}() is stage logic; move it to the stage"
        elif isinstance(node, ast.ClassDef):
            ok = node.name.endswith("Options") or node.name.startswith("_")
            assert ok, f"{path.name}: class {node.name} belongs to a stage"
    assert any(isinstance(n, ast.FunctionDef) and n.name == "main" for n in tree.body), path.name
    assert len(text.splitlines()) <= 200, f"{path.name}: {len(text.splitlines())} lines; a command is thin"


@pytest.mark.parametrize(
    "command", [c for c in COMMANDS if c.module.startswith("jrobot.commands.")], ids=lambda c: c.name
)
def test_python_m_keeps_each_commands_short_name(command):
    """`python -m jrobot.record` runs jrobot/commands/record.py (`jrobot.train`: the package's __main__)."""
    spec = importlib.util.find_spec(_short_name(command))
    assert spec is not None, _short_name(command)
    expected = REPO / "jrobot" / "commands" / f"{command.module.rpartition('.')[2]}.py"
    if spec.submodule_search_locations is not None:  # a stage package of the same name
        main = importlib.util.find_spec(_short_name(command) + ".__main__")
        assert main is not None and f"from {command.module} import" in Path(main.origin).read_text()
    else:
        assert Path(spec.origin) == expected
    assert importlib.util.find_spec("jrobot.no_such_command") is None


def test_the_short_name_runs_the_command_as_main():
    proc = subprocess.run(
        [sys.executable, "-m", "jrobot.find_port", "--help"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0 and "lerobot-find-port" in proc.stdout, proc.stderr[-2000:]

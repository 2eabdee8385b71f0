"""The import rules of design.md: a recording laptop needs no jax, a robot laptop no training stack."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

CHECK = """
import importlib, pkgutil, sys
for name in {modules!r}:
    importlib.import_module(name)
for pkg in {packages!r}:
    for info in pkgutil.iter_modules(importlib.import_module(pkg).__path__):
        importlib.import_module(pkg + "." + info.name)
bad = sorted({{m.split(".")[0] for m in sys.modules}} & {forbidden!r})
print(bad)
sys.exit(1 if bad else 0)
"""


def _check(modules, packages, forbidden):
    code = CHECK.format(modules=list(modules), packages=list(packages), forbidden=set(forbidden))
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"forbidden imports {proc.stdout.strip()}\n{proc.stderr[-2000:]}"


def test_hardware_simulation_recording_and_data_code_never_import_jax():
    _check(
        [
            "jrobot.features",
            "jrobot.robot",
            "jrobot.record",
            "jrobot.devices",
            "jrobot.keyboard",
            "jrobot.calibrate",
            "jrobot.setup_motors",
            "jrobot.teleoperate",
            "jrobot.find_cameras",
            "jrobot.find_port",
            "jrobot.policies.spec",
            "jrobot.policies.ensemble",
            "data_tools.inspect",
            "data_tools.edit",
            "data_tools.convert_lerobot",
            "data_tools.view",
            "data_tools.build_shards",
        ],
        ["jrobot.data", "jrobot.hw", "jrobot.sim"],
        {"jax", "jaxlib", "flax", "optax", "orbax", "grain"},
    )


def test_runtime_never_imports_the_training_stack():
    _check(
        ["jrobot.run", "jrobot.eval", "jrobot.bundle", "jrobot.devices"],
        ["jrobot.runtime"],
        {"flax", "optax", "orbax", "grain", "wandb"},
    )

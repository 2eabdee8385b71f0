"""Fixtures for the data_tools tests: the store tests' synthetic episodes, odd datasets built from the
shared LeRobot fixtures, and access to a LeRobot interpreter (when one exists) for cross-checks."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
# store_synth (synthetic episodes with the fixture's stripes) and lerobot_probe live with the store tests.
sys.path.insert(0, str(REPO / "tests" / "data"))
sys.path.insert(0, str(HERE))


@pytest.fixture()
def run_cli():
    """Run `python -m <module> args...` in the repo root; returns the CompletedProcess (never raises)."""
    import os
    import subprocess

    def run(module: str, *args: str, env: dict[str, str] | None = None, timeout: float = 300):
        return subprocess.run(
            [sys.executable, "-m", module, *map(str, args)],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})},
        )

    return run

"""Where the optional LeRobot 0.4.x interpreter is, for the tests that let LeRobot itself check jrobot.

LeRobot is never a dependency: those tests run in a separate interpreter and are skipped without one.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def lerobot_python() -> str | None:
    """JROBOT_LEROBOT_PYTHON, this interpreter if lerobot imports here, or a reference venv beside the
    repository (`.lerobot-ref/` made by ../shared/tools/lerobot_reference_env.sh, or ../lerobot-ref)."""
    if os.environ.get("JROBOT_LEROBOT_PYTHON"):
        return os.environ["JROBOT_LEROBOT_PYTHON"]
    if importlib.util.find_spec("lerobot") is not None:
        return sys.executable
    for candidate in (REPO / ".lerobot-ref/bin/python", REPO.parent / "lerobot-ref/bin/python"):
        if candidate.is_file():
            return str(candidate)
    return None

"""Where the optional LeRobot 0.4.x interpreter is, for the tests that let LeRobot itself check jrobot.

LeRobot is never a dependency: those tests run in a separate interpreter and are skipped without one.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
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


def lerobot_probe(roots: list[Path], out: Path, tmp: Path, timeout: float = 1200) -> list[dict]:
    """LeRobot's own view of each dataset: tests/data/lerobot_probe.py run offline in the LeRobot
    interpreter dumps every item to `out/<n>.npz`; returns its summary and fails on any load error."""
    python = lerobot_python()
    assert python is not None
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_CACHE": str(tmp / "hf-datasets-cache"),
        "HF_LEROBOT_HOME": str(tmp / "lerobot-home"),
    }
    proc = subprocess.run(
        [python, str(REPO / "tests/data/lerobot_probe.py"), str(out), *map(str, roots)],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        cwd=tmp,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    errors = {r["root"]: (out / f"{n}.error").read_text() for n, r in enumerate(summary) if r.get("error")}
    assert not errors, errors
    return summary

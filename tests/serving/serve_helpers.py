"""Helpers of the serving tests: exporting a LeRobot parity checkpoint, and `jrobot.serve` started in
its own process on 127.0.0.1 (`jrobot.serving.process`, as the serving benchmark starts it)."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from jrobot.serving.process import ServerProcess, serve_in_background

REPO = Path(__file__).resolve().parents[2]


def export_lerobot(shared_dir: Path, name: str, out: Path, *flags: str) -> Path:
    subprocess.run(
        [
            sys.executable, "-m", "jrobot.export", "--from-lerobot",
            str(shared_dir / "fixtures" / "parity" / name / "pretrained_model"), "--out", str(out), *flags,
        ],
        check=True, capture_output=True, text=True, cwd=REPO,
    )  # fmt: skip
    return out


Served = ServerProcess  # a running `jrobot.serve`; the tests' name for it


@contextlib.contextmanager
def serving(bundle: Path, *flags: str, port: int = 0, timeout_s: float = 90.0) -> Iterator[ServerProcess]:
    """Start `jrobot.serve` on `bundle` and wait until it listens; stopped on exit."""
    with serve_in_background(bundle, *flags, port=port, timeout_s=timeout_s, cwd=REPO) as served:
        yield served

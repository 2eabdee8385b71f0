"""Helpers of the serving tests: exporting a LeRobot parity checkpoint, and `jrobot.serve` started in
its own process on 127.0.0.1."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

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


class Served:
    """A running `python -m jrobot.serve` process; `url` is ws://127.0.0.1:PORT."""

    def __init__(self, proc: subprocess.Popen, port: int, lines: list[str]):
        self.proc, self.port, self.lines = proc, port, lines

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    @property
    def log(self) -> str:
        return "".join(self.lines)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=20)


@contextlib.contextmanager
def serving(bundle: Path, *flags: str, port: int = 0, timeout_s: float = 90.0) -> Iterator[Served]:
    """Start `jrobot.serve` on `bundle` and wait until it listens; killed on exit."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "jrobot.serve", f"--policy={bundle}", f"--port={port}", *flags],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO, env=env,
    )  # fmt: skip
    lines: list[str] = []
    found: list[int] = []
    ready = threading.Event()

    def pump() -> None:
        for line in proc.stdout:
            lines.append(line)
            m = re.search(r"on ws://[^:]+:(\d+)", line)
            if m and not found:
                found.append(int(m.group(1)))
                ready.set()
        ready.set()

    threading.Thread(target=pump, daemon=True).start()
    deadline = time.monotonic() + timeout_s
    while not ready.wait(0.1):
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError("jrobot.serve did not start:\n" + "".join(lines))
    if not found:
        proc.wait(timeout=10)
        raise AssertionError(f"jrobot.serve exited with {proc.returncode}:\n" + "".join(lines))
    served = Served(proc, found[0], lines)
    try:
        yield served
    finally:
        served.kill()

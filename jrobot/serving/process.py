"""`jrobot.serve` in a process of its own, for a script or notebook that wants a server next to it:

    with serve_in_background("bundles/act") as server:
        policy = RemotePolicy(server.url)

The server listens on a free loopback port unless told otherwise (`--port=0`; the port it got is read
from the line it prints once it listens), its output is kept (`log`), and it is stopped with SIGTERM
(then killed) when the block ends, whatever happened inside it.
"""

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

_LISTENING = re.compile(r"^serving .* on ws://[^ ]+:(\d+) ")


class ServerProcess:
    """A running `python -m jrobot.serve`; `url` is ws://127.0.0.1:PORT."""

    def __init__(self, proc: subprocess.Popen, port: int, lines: list[str], start_s: float) -> None:
        self.proc, self.port, self.lines, self.start_s = proc, port, lines, start_s

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    @property
    def log(self) -> str:
        return "".join(self.lines)

    def kill(self) -> None:
        """SIGKILL: the server vanishes mid-whatever, as a crashed machine's would."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def stop(self, timeout_s: float = 20.0) -> int:
        """SIGTERM, as Ctrl-C: the server closes its connections and exits; killed if it does not."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.proc.returncode


@contextlib.contextmanager
def serve_in_background(
    bundle: str | Path,
    *flags: str,
    port: int = 0,
    cpus: set[int] | None = None,
    timeout_s: float = 90.0,
    cwd: str | Path | None = None,
) -> Iterator[ServerProcess]:
    """Start `jrobot.serve --policy BUNDLE --port PORT FLAGS...` and wait until it listens (RuntimeError
    with its output if it exits or is not listening within `timeout_s`); `cpus` pins it to those cores."""
    cmd = [sys.executable, "-m", "jrobot.serve", f"--policy={bundle}", f"--port={port}", *flags]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    pin = (lambda: os.sched_setaffinity(0, cpus)) if cpus else None
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=cwd, env=env, preexec_fn=pin
    )
    lines: list[str] = []
    found: list[int] = []
    ready = threading.Event()

    def pump() -> None:
        for line in proc.stdout:
            lines.append(line)
            m = _LISTENING.search(line)
            if m and not found:
                found.append(int(m.group(1)))
                ready.set()
        ready.set()  # the process ended

    threading.Thread(target=pump, name="jrobot-serve-output", daemon=True).start()
    server = ServerProcess(proc, 0, lines, 0.0)
    try:
        if not ready.wait(timeout_s):
            raise RuntimeError(
                f"jrobot.serve is not listening after {timeout_s:g} s:\n{''.join(lines[-30:])}"
            )
        if not found:
            proc.wait(timeout=10)
            raise RuntimeError(f"jrobot.serve exited with {proc.returncode}:\n{''.join(lines[-30:])}")
        server.port, server.start_s = found[0], time.perf_counter() - t0
        yield server
    finally:
        server.stop()

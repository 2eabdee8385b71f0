"""Helpers for the hardware-layer tests: scripted user input and a scripted person moving joints.

A plain module (not conftest.py) so test files import it by a name no other test directory uses.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from jrobot.sim.sts3215 import INST_SYNC_READ
from jrobot.sim.virtual_arm import SO101_MECHANICS, VirtualArm

# ids of the joints whose range is recorded (all but wrist_roll)
RANGED_IDS = (1, 2, 3, 4, 6)


class ScriptedPrompter:
    """A `Prompter` whose answers and ENTER presses come from the test.

    `answers` are returned by `ask` in order (default ""); `on_message(text)` is called for every
    prompt and message so a test can react (e.g. start a hand sweep); `stop()` decides when range
    recording ends.
    """

    def __init__(
        self,
        answers: list[str] | None = None,
        stop: Callable[[], bool] | None = None,
        on_message: Callable[[str], None] | None = None,
    ) -> None:
        self.answers = list(answers or [])
        self.stop = stop or (lambda: True)
        self.on_message = on_message
        self.messages: list[str] = []

    def ask(self, message: str) -> str:
        self.messages.append(message)
        if self.on_message:
            self.on_message(message)
        return self.answers.pop(0) if self.answers else ""

    def enter_pressed(self) -> bool:
        return self.stop()

    def show(self, text: str) -> None:
        self.messages.append(text)
        if self.on_message:
            self.on_message(text)

    def live(self, text: str) -> None:
        pass


def sweep_ranges(arm: VirtualArm, ids=RANGED_IDS) -> None:
    """A person moving each joint to both mechanical stops and back (blocking).

    Each pose is held until the host has finished two sync reads after it, so the recording loop
    sees every extreme however slowly a loaded machine runs it.
    """
    for id_ in ids:
        m = SO101_MECHANICS[id_ - 1]
        for target in (m.lower, m.upper, m.zero):
            arm.move_by_hand({id_: target}, frame="actual")
            arm.wait_for_packets(2, instr=INST_SYNC_READ, timeout=20)


class Sweep:
    """`sweep_ranges` in a background thread; `done()` tells the prompter when to press ENTER."""

    def __init__(self, arm: VirtualArm) -> None:
        self.thread = threading.Thread(target=sweep_ranges, args=(arm,), daemon=True)
        self.thread.start()

    def done(self) -> bool:
        return not self.thread.is_alive()


def calibrating_prompter(arm: VirtualArm, answers: list[str] | None = None) -> ScriptedPrompter:
    """Answers ENTER, sweeps the joints when asked to, and presses ENTER when the sweep is over."""
    sweeps: list[Sweep] = []

    def react(text: str) -> None:
        if text.startswith("Move all joints"):
            sweeps.append(Sweep(arm))

    return ScriptedPrompter(answers, stop=lambda: bool(sweeps) and sweeps[-1].done(), on_message=react)


def expected_calibration(offsets_from: dict[int, float] | None = None) -> dict[str, dict[str, int]]:
    """What calibrating the default virtual arm from its start (zero) pose must produce (LeRobot's rules)."""
    names = ["shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll", "gripper"]
    out = {}
    for i, name in enumerate(names):
        m = SO101_MECHANICS[i]
        mid = round(m.zero) if offsets_from is None else round(offsets_from[i + 1])
        offset = mid - 2047
        if name == "wrist_roll":
            lo, hi = 0, 4095
        else:
            lo, hi = round(m.lower) - offset, round(m.upper) - offset
        out[name] = {"id": i + 1, "drive_mode": 0, "homing_offset": offset, "range_min": lo, "range_max": hi}
    return out


def write_lerobot_calibration(path: Path, cal: dict[str, dict[str, int]]) -> bytes:
    """A calibration file exactly as LeRobot (draccus, JSON indent 4) writes it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(cal, indent=4).encode()
    path.write_bytes(text)
    return text


def eventually(check: Callable[[], bool], timeout: float = 3.0, period: float = 0.01) -> bool:
    """Poll `check` until it holds (e.g. a broadcast write, which has no reply, has been processed)."""
    deadline = time.monotonic() + timeout
    while True:
        if check():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(period)


class Tool:
    """A `python -m jrobot.<tool>` subprocess whose output can be waited on, prompt by prompt."""

    def __init__(self, module: str, *args: str, env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", module, *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
        )
        self.out = b""
        self._lock = threading.Lock()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        while chunk := os.read(self.proc.stdout.fileno(), 4096):
            with self._lock:
                self.out += chunk

    @property
    def text(self) -> str:
        with self._lock:
            return self.out.decode(errors="replace")

    def wait_for(self, needle: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while needle not in self.text:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                time.sleep(0.1)
                raise AssertionError(f"never saw {needle!r}; output:\n{self.text}")
            time.sleep(0.01)

    def send(self, line: str = "") -> None:
        self.proc.stdin.write((line + "\n").encode())
        self.proc.stdin.flush()

    def finish(self, timeout: float = 60.0) -> int:
        rc = self.proc.wait(timeout=timeout)
        time.sleep(0.05)
        return rc


class CpuLoad:
    """`n` busy-loop processes (default: two per CPU) for as long as the `with` block lasts.

    Stands in for a machine shared with other jobs: a loaded scheduler is what once turned a clean
    Ctrl-C into a hang (a signal landing inside the camera encoder's queue hand-off).
    """

    def __init__(self, n: int | None = None) -> None:
        self.n = n if n is not None else 2 * (os.cpu_count() or 1)
        self.procs: list[subprocess.Popen] = []

    def __enter__(self) -> CpuLoad:
        self.procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(self.n)]
        return self

    def __exit__(self, *exc: object) -> None:
        for p in self.procs:
            p.kill()
        for p in self.procs:
            p.wait()

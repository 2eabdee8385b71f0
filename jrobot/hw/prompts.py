"""User prompts for calibration and setup, scriptable through stdin.

The procedures only talk to a `Prompter`: `ask()` blocks for a line (ENTER, or 'c' + ENTER),
`enter_pressed()` polls without blocking (to stop range recording), `show()` prints and `live()`
redraws a status table. `ConsolePrompter` reads the stdin file descriptor directly with its own line
buffer, so lines written by a test (or typed ahead) are never stuck in Python's stdin buffer where
`select()` cannot see them.
"""

from __future__ import annotations

import os
import select
import sys
from typing import Protocol, TextIO


class Prompter(Protocol):
    def ask(self, message: str) -> str: ...

    def enter_pressed(self) -> bool: ...

    def show(self, text: str) -> None: ...

    def live(self, text: str) -> None: ...


class ConsolePrompter:
    """Prompts on a terminal or a pipe. A closed stdin is an error for `ask` and a stop for polling.

    Use `ConsolePrompter.shared()` for the process's stdin: every device must read through the same
    line buffer, or a line read ahead by one prompter would be lost to the next.
    """

    _shared: ConsolePrompter | None = None

    @classmethod
    def shared(cls) -> ConsolePrompter:
        if cls._shared is None or cls._shared.stdin is not sys.stdin:
            cls._shared = cls()
        return cls._shared

    def __init__(self, stdin: TextIO | None = None, stdout: TextIO | None = None) -> None:
        self.stdin = stdin if stdin is not None else sys.stdin
        self.stdout = stdout if stdout is not None else sys.stdout
        self._buf = b""
        self._eof = False
        self._live_lines = 0

    def _fd(self) -> int:
        return self.stdin.fileno()

    def _fill(self, timeout: float | None) -> None:
        if self._eof:
            return
        if os.name == "posix":
            ready, _, _ = select.select([self._fd()], [], [], timeout)
            if not ready:
                return
            chunk = os.read(self._fd(), 4096)
        else:  # Windows consoles: no select on stdin; fall back to a blocking line read
            if timeout == 0:
                import msvcrt

                if not msvcrt.kbhit():
                    return
            chunk = self.stdin.readline().encode()
        if chunk:
            self._buf += chunk
        else:
            self._eof = True

    def _take_line(self) -> str | None:
        if b"\n" in self._buf:
            line, self._buf = self._buf.split(b"\n", 1)
            return line.decode(errors="replace").rstrip("\r")
        return None

    def ask(self, message: str) -> str:
        self._end_live()
        self.stdout.write(message)
        self.stdout.flush()
        while True:
            line = self._take_line()
            if line is not None:
                if not self.stdin.isatty():  # a terminal echoes the ENTER; a pipe does not
                    self.stdout.write("\n")
                    self.stdout.flush()
                return line
            if self._eof:
                raise EOFError(f"stdin closed while waiting for an answer to: {message.strip()}")
            self._fill(None)

    def enter_pressed(self) -> bool:
        self._fill(0)
        line = self._take_line()
        if line is not None:
            return True
        return self._eof

    def show(self, text: str) -> None:
        self._end_live()
        self.stdout.write(text + "\n")
        self.stdout.flush()

    def live(self, text: str) -> None:
        """Redraw a block of lines in place on a terminal; print nothing when stdout is not a tty."""
        if not self.stdout.isatty():
            return
        if self._live_lines:
            self.stdout.write(f"\x1b[{self._live_lines}F\x1b[J")
        self.stdout.write(text + "\n")
        self.stdout.flush()
        self._live_lines = text.count("\n") + 1

    def _end_live(self) -> None:
        self._live_lines = 0


class AcceptCalibrationFile:
    """Answers every calibration prompt with ENTER: write the calibration file's values to the motors.

    For unattended arms (the virtual follower, benchmarks) whose calibration file is already right.
    """

    def ask(self, message: str) -> str:
        return ""

    def enter_pressed(self) -> bool:
        return True

    def show(self, text: str) -> None:
        pass

    def live(self, text: str) -> None:
        pass

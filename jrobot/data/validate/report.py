"""What the validator reports: `Problem` (severity, file, message) and the collector the checks share."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from jrobot.data.format.meta import VideoSpan

EXAMPLES = 5  # row-level problems show this many example rows


@dataclasses.dataclass(frozen=True)
class Problem:
    """One thing wrong with a dataset: `severity` "error" or "warning", the file, what is wrong."""

    severity: str
    file: str
    message: str

    def __str__(self) -> str:
        return f"{self.severity}: {self.file or '.'}: {self.message}"

    def to_json(self) -> dict[str, str]:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class EpisodeMeta:
    """An episode as its metadata describes it."""

    index: int
    length: int
    start: int
    tasks: list[str]
    data_file: Path | None  # v2: its own file; v3: the file its row claims
    videos: dict[str, VideoSpan]  # camera -> its file and time span
    stats: dict[str, dict[str, np.ndarray]] | None
    where: str  # the metadata file describing it


class Report:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.problems: list[Problem] = []

    def rel(self, path: Path | str) -> str:
        try:
            return Path(path).relative_to(self.root).as_posix()
        except ValueError:
            return str(path)

    def error(self, path: Path | str, message: str) -> None:
        self.problems.append(Problem("error", self.rel(path), message))

    def warn(self, path: Path | str, message: str) -> None:
        self.problems.append(Problem("warning", self.rel(path), message))

    def rows(
        self, path: Path | str, bad: np.ndarray, what: str, example: Any, severity: str = "error"
    ) -> None:
        """Report a row-level check that failed on the rows where `bad` is True (global row numbers)."""
        rows = np.nonzero(bad)[0]
        if not rows.size:
            return
        shown = ", ".join(example(int(r)) for r in rows[:EXAMPLES])
        more = f" (and {rows.size - EXAMPLES} more)" if rows.size > EXAMPLES else ""
        msg = f"{what} in {rows.size} row(s): {shown}{more}"
        (self.error if severity == "error" else self.warn)(path, msg)

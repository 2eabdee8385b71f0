"""Crash-safe file primitives: write to a temporary file, fsync, rename over the target, fsync the folder.

Every file of a dataset that a reader can see is replaced only by `os.replace` of a finished file, so
a process killed at any instant leaves either the old or the new version, never a torn one. The
temporary files live in the dataset's private work folder (`.jrobot/tmp`), on the same file system as
the targets (so the rename is atomic) and outside the `data/*/*.parquet` and `meta/episodes/*/*.parquet`
globs that LeRobot's loader concatenates. `durable=False` skips the fsyncs: a SIGKILL is still safe
(the page cache survives the process), only a power cut is not.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from jrobot.data.errors import DatasetError
from jrobot.data.format.layout import WORK_DIR

try:  # POSIX advisory lock; on other platforms two writers are not detected.
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]


def fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: Path) -> None:
    """Make a rename/creation in `path` durable (no-op where directories cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class WorkDir:
    """The dataset's private `.jrobot/` folder: an exclusive writer lock and a temp area.

    Opening it removes whatever an earlier, interrupted writer left (half-encoded episodes, temp
    files): those never became part of the dataset, and nothing references them.
    """

    def __init__(self, root: Path, *, durable: bool = True) -> None:
        self.root = root
        self.path = root / WORK_DIR
        self.durable = durable
        self.path.mkdir(parents=True, exist_ok=True)
        self._lock_fd: int | None = None
        if fcntl is not None:
            fd = os.open(self.path / "lock", os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as e:
                os.close(fd)
                raise DatasetError(
                    f"{root}: another process is writing this dataset (lock {self.path / 'lock'})"
                ) from e
            self._lock_fd = fd
        for child in self.path.iterdir():
            if child.name != "lock":
                shutil.rmtree(child) if child.is_dir() else child.unlink()
        self.tmp = self.path / "tmp"
        self.tmp.mkdir()
        self.staging = self.path / "staging"
        self.staging.mkdir()

    def tmp_path(self, suffix: str) -> Path:
        return self.tmp / f"{uuid.uuid4().hex}{suffix}"

    def replace(self, tmp: Path, target: Path) -> None:
        """Atomically move a finished temp file over `target` (durably when `durable`)."""
        target.parent.mkdir(parents=True, exist_ok=True)
        if self.durable:
            fsync_file(tmp)
        os.replace(tmp, target)
        if self.durable:
            fsync_dir(target.parent)

    def write_with(self, target: Path, suffix: str, write: Callable[[Path], None]) -> None:
        """Call `write(tmp)` to produce the new content, then atomically replace `target` with it."""
        tmp = self.tmp_path(suffix)
        try:
            write(tmp)
            self.replace(tmp, target)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()

    def write_json(self, target: Path, data: Any) -> None:
        """JSON exactly as LeRobot writes it (`indent=4, ensure_ascii=False`), atomically."""

        def write(tmp: Path) -> None:
            with open(tmp, "w", encoding="utf-8") as f:
                json.dump(data, f, indent=4, ensure_ascii=False)

        self.write_with(target, ".json", write)

    def remove(self, path: Path) -> None:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        if self.durable:
            fsync_dir(path.parent)

    def close(self) -> None:
        """Release the lock and remove the work folder (the dataset is complete without it)."""
        if self._lock_fd is None and fcntl is not None:
            return
        shutil.rmtree(self.tmp, ignore_errors=True)
        shutil.rmtree(self.staging, ignore_errors=True)
        with contextlib.suppress(FileNotFoundError):
            (self.path / "lock").unlink()
        with contextlib.suppress(OSError):
            self.path.rmdir()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

"""Paths named by files that strangers write (a dataset's templates, a bundle's entries).

A dataset or bundle from the Hub must not make a reader reach files outside its own folder: a name it
gives is followed only if, once `..` and symlinks are resolved, it stays inside that folder.
"""

from __future__ import annotations

from pathlib import Path


def inside(root: Path, relative: str | Path) -> Path | None:
    """`root / relative` if it resolves inside `root` (absolute names, `..` and symlinks out: None)."""
    relative = Path(relative)
    if relative.is_absolute():
        return None
    path = root / relative
    return path if path.resolve().is_relative_to(root.resolve()) else None

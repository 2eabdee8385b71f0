"""Paths named by files that strangers write (a dataset's templates, a bundle's entries).

A dataset or bundle from the Hub must not make a reader reach files outside its own folder: a name it
gives is followed only if it stays inside that folder, both as written (no `..` climbing out) and once
symlinks are resolved. One kind of link out is the rule rather than an attack: huggingface_hub's cache
keeps a snapshot (`<cache>/datasets--owner--name/snapshots/<commit>/`) as links into that repo's
`blobs/`, so inside such a snapshot a link may also end in the same repo's blobs, and nowhere else.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

# huggingface_hub's cache folder names: "<repo type>s--<owner>--<name>" (models, datasets, spaces)
_HUB_REPO_FOLDER = re.compile(r"^(models|datasets|spaces)--.+--.+$")


def hub_blobs_of(folder: Path) -> Path | None:
    """The `blobs/` folder of the Hugging Face cache repo whose snapshot holds `folder`, else None."""
    resolved = folder.resolve()
    for snapshot in (resolved, *resolved.parents):
        snapshots = snapshot.parent
        if snapshots.name == "snapshots" and _HUB_REPO_FOLDER.match(snapshots.parent.name):
            blobs = snapshots.parent / "blobs"
            return blobs if blobs.is_dir() else None
    return None


def inside(root: Path, relative: str | Path) -> Path | None:
    """`root / relative` if it stays inside `root` (absolute names, `..` and symlinks out: None)."""
    relative = Path(relative)
    if relative.is_absolute():
        return None
    path = root / relative
    if not Path(os.path.normpath(path)).is_relative_to(os.path.normpath(root)):
        return None  # climbs out as written, wherever the links lead
    target = path.resolve()
    if target.is_relative_to(root.resolve()):
        return path
    blobs = hub_blobs_of(root)
    return path if blobs is not None and target.is_relative_to(blobs) else None

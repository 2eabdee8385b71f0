"""A Hugging Face cache laid out as huggingface_hub lays it out (blobs named by hash, snapshot folders of
relative symlinks, refs), so that the real `snapshot_download` finds a repo offline without a network."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path


def fill_hub_cache(
    folder: Path, cache: Path, repo_id: str, *, repo_type: str, commit: str, refs=("main",)
) -> Path:
    """Put `folder`'s files in `cache` as the snapshot `commit` of `repo_id`, named by `refs`; returns
    the snapshot folder."""
    repo = cache / f"{repo_type}s--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / commit
    (repo / "blobs").mkdir(parents=True, exist_ok=True)
    (repo / "refs").mkdir(exist_ok=True)
    for ref in refs:
        (repo / "refs" / ref).write_text(commit)
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        blob = repo / "blobs" / hashlib.sha256(path.read_bytes()).hexdigest()
        if not blob.exists():
            shutil.copyfile(path, blob)
        link = snapshot / path.relative_to(folder)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    return snapshot


def offline_cache(monkeypatch, cache: Path) -> Path:
    """Point huggingface_hub at `cache`, offline (the env for subprocesses, the constants for this one)."""
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    return cache

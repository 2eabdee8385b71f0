"""Where things live in a LeRobot dataset folder (v3.0 and the v2.x layouts), and the size constants.

Only path templates and index arithmetic are here, so the writer, reader, rewrite and recovery code
agree on names without importing each other. Values mirror LeRobot 0.4.4 (`lerobot/datasets/utils.py`).
"""

from __future__ import annotations

import re
import string
from pathlib import Path
from typing import Any

from jrobot.data.errors import DatasetError
from jrobot.features import folder_name_problem
from jrobot.paths import inside

CODEBASE_VERSION = "v3.0"

INFO_PATH = "meta/info.json"
STATS_PATH = "meta/stats.json"
TASKS_PATH = "meta/tasks.parquet"
EPISODES_DIR = "meta/episodes"
DATA_DIR = "data"
VIDEO_DIR = "videos"

CHUNK_FILE_PATTERN = "chunk-{chunk_index:03d}/file-{file_index:03d}"
DEFAULT_DATA_PATH = DATA_DIR + "/" + CHUNK_FILE_PATTERN + ".parquet"
DEFAULT_VIDEO_PATH = VIDEO_DIR + "/{video_key}/" + CHUNK_FILE_PATTERN + ".mp4"
DEFAULT_EPISODES_PATH = EPISODES_DIR + "/" + CHUNK_FILE_PATTERN + ".parquet"

DEFAULT_CHUNK_SIZE = 1000  # files per chunk directory (v3); episodes per chunk in v2.x
DEFAULT_DATA_FILE_SIZE_IN_MB = 100
DEFAULT_VIDEO_FILE_SIZE_IN_MB = 200

# v2.x layout
LEGACY_EPISODES_PATH = "meta/episodes.jsonl"
LEGACY_EPISODES_STATS_PATH = "meta/episodes_stats.jsonl"
LEGACY_TASKS_PATH = "meta/tasks.jsonl"
LEGACY_DATA_PATH = "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet"
LEGACY_VIDEO_PATH = "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4"

# jrobot's private working area inside a dataset being written: lock file, the episode being
# recorded, and temporary files that are renamed into place. Removed by `close()`; anything found
# there on open belongs to an interrupted process and is discarded.
WORK_DIR = ".jrobot"


def next_chunk_file(chunk_index: int, file_index: int, chunks_size: int) -> tuple[int, int]:
    """LeRobot's `update_chunk_file_indices`: file indices wrap at `chunks_size` into the next chunk."""
    if file_index >= chunks_size - 1:
        return chunk_index + 1, 0
    return chunk_index, file_index + 1


def data_path(root: Path, chunk_index: int, file_index: int) -> Path:
    return root / DEFAULT_DATA_PATH.format(chunk_index=chunk_index, file_index=file_index)


def episodes_path(root: Path, chunk_index: int, file_index: int) -> Path:
    return root / DEFAULT_EPISODES_PATH.format(chunk_index=chunk_index, file_index=file_index)


def video_path(root: Path, video_key: str, chunk_index: int, file_index: int) -> Path:
    why = folder_name_problem(video_key)
    if why is not None:  # (the readers and the writer refuse such keys before; this is where files go)
        raise DatasetError(f"{root}: camera feature {why} (its key names its video folder)")
    return root / DEFAULT_VIDEO_PATH.format(
        video_key=video_key, chunk_index=chunk_index, file_index=file_index
    )


# `{name}` or `{name:03d}`-style fields only: no attribute or index lookups, no conversions, no widths
# beyond two digits (a template's `{episode_index:999999999}` would build a 1 GB path)
_TEMPLATE_SPEC = re.compile(r"0?[0-9]{0,2}d?")
NAME_MAX = 255  # bytes in one path component (Linux, macOS)


def fill_template(root: Path, key: str, template: Any, **fields: Any) -> str:
    """info.json's path template `key` (`data_path`, `video_path`) with `fields` filled in.

    The template is the dataset's, so a stranger's: anything but a string of `{field}` /
    `{field:0Nd}` format fields naming `fields`, or a result that is no usable relative path, is
    refused with a DatasetError naming the key and the template. (`confined` then checks where the
    path leads.)
    """
    where = f"{root / INFO_PATH}: {key} {repr(template)[:200]}"
    if not isinstance(template, str):
        raise DatasetError(f"{where} must be a string")
    try:
        for _, name, spec, conversion in string.Formatter().parse(template):
            if name is not None and (
                name not in fields or conversion is not None or not _TEMPLATE_SPEC.fullmatch(spec or "")
            ):
                raise DatasetError(
                    f"{where}: only {{field}} or {{field:0Nd}} format fields of {sorted(fields)} are allowed"
                )
        relative = template.format(**fields)
        parts = [part.encode() for part in relative.split("/")]  # (UnicodeEncodeError: a lone surrogate)
    except (ValueError, TypeError) as e:  # unbalanced braces, a 'd' format for a string field
        if isinstance(e, DatasetError):
            raise
        raise DatasetError(f"{where}: not a usable path template ({e})") from e
    if "\x00" in relative or any(len(part) > NAME_MAX for part in parts):
        raise DatasetError(f"{where}: gives the unusable path {relative[:300]!r}")
    return relative


def confined(root: Path, relative: str, what: str) -> Path:
    """`root / relative`, where `relative` is a path template of the dataset's own metadata filled in.

    Refused unless it stays inside `root` once `..` and symlinks are resolved: a dataset from a stranger
    (the Hub) must not make a reader, or a converter that copies what it reads into a new dataset, reach
    files outside its folder. LeRobot follows such templates; jrobot names the key and the path instead.
    """
    try:
        path = inside(root, relative)
    except (ValueError, OSError) as e:  # a NUL byte, a name too long for the file system
        raise DatasetError(f"{root / INFO_PATH}: {what} gives the unusable path {relative!r} ({e})") from e
    if path is None:
        raise DatasetError(
            f"{root / INFO_PATH}: {what} leads to {(root / relative).resolve()}, outside the dataset folder "
            f"{root.resolve()}; refused"
        )
    return path


def glob_inside(directory: Path, pattern: str) -> list[Path]:
    """The files matching `pattern` under `directory`, sorted by path; a match that is (or lies in) a
    symlink leading outside `directory` is refused rather than read."""
    out = []
    for p in sorted(directory.glob(pattern)):
        if inside(directory, p.relative_to(directory)) is None:
            raise DatasetError(f"{p}: a symlink leading outside {directory} (to {p.resolve()}); refused")
        if p.is_file():
            out.append(p)
    return out


def sorted_parquet_files(directory: Path) -> list[Path]:
    """The files LeRobot's `load_nested_dataset` concatenates: `<dir>/*/*.parquet`, sorted by path."""
    return glob_inside(directory, "*/*.parquet")

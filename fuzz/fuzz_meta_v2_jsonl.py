"""The v2.x jsonl metadata: episodes.jsonl, tasks.jsonl or episodes_stats.jsonl, read by `load_meta`.

The first byte of the input picks the file (mod 3, in that order), the rest is its content; the
folder is the v2.1 fixture's metadata.
"""

from __future__ import annotations

from fuzz.harness import dataset_root, expect_own_error, split_jsonl_input
from jrobot.data.errors import DatasetError
from jrobot.data.format.layout import LEGACY_EPISODES_PATH, LEGACY_EPISODES_STATS_PATH, LEGACY_TASKS_PATH
from jrobot.data.format.load import load_meta

ORIGINALS: dict[str, bytes] = {}


def TestOneInput(data: bytes) -> None:
    root = dataset_root("meta_v2_jsonl", "v2.1")
    if not ORIGINALS:
        for name in (LEGACY_EPISODES_PATH, LEGACY_TASKS_PATH, LEGACY_EPISODES_STATS_PATH):
            ORIGINALS[name] = (root / name).read_bytes()
    name, content = split_jsonl_input(data)
    try:
        (root / name).write_bytes(content)
        expect_own_error(lambda: load_meta(root), own=(DatasetError,), names=str(root))
    finally:
        (root / name).write_bytes(ORIGINALS[name])

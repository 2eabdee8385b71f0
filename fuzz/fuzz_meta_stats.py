"""meta/stats.json (v3.0, and v2.0 datasets): the bytes are the fixture dataset's stats.json, read by `load_meta`."""

from __future__ import annotations

from fuzz.harness import dataset_root, expect_own_error
from jrobot.data.errors import DatasetError
from jrobot.data.format.layout import STATS_PATH
from jrobot.data.format.load import load_meta


def TestOneInput(data: bytes) -> None:
    root = dataset_root("meta_stats", "v3.0")
    (root / STATS_PATH).write_bytes(data)
    expect_own_error(lambda: load_meta(root), own=(DatasetError,), names=str(root))

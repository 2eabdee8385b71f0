"""meta/episodes/*.parquet (v3.0): the bytes are the episodes file of the fixture dataset, read by `load_meta`.

Row ranges, lengths, video spans and the `stats/...` columns all come from this file.
"""

from __future__ import annotations

from fuzz.harness import dataset_root, expect_own_error
from jrobot.data.errors import DatasetError
from jrobot.data.format.load import load_meta

EPISODES_FILE = "meta/episodes/chunk-000/file-000.parquet"


def TestOneInput(data: bytes) -> None:
    root = dataset_root("meta_episodes", "v3.0")
    (root / EPISODES_FILE).write_bytes(data)
    expect_own_error(lambda: load_meta(root), own=(DatasetError,), names=str(root))

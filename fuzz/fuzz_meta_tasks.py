"""meta/tasks.parquet (v3.0): the bytes are the tasks file of the fixture dataset, read by `load_meta`."""

from __future__ import annotations

from fuzz.harness import dataset_root, expect_own_error
from jrobot.data.errors import DatasetError
from jrobot.data.format.layout import TASKS_PATH
from jrobot.data.format.load import load_meta


def TestOneInput(data: bytes) -> None:
    root = dataset_root("meta_tasks", "v3.0")
    (root / TASKS_PATH).write_bytes(data)
    expect_own_error(lambda: load_meta(root), own=(DatasetError,), names=str(root))

"""data/*/*.parquet (v3.0): the bytes are the data file of the fixture dataset (both cameras' videos and
its metadata beside it). The reader opens the dataset and walks every episode's per-frame columns
(state, action, timestamps, indices, tasks), as the shard builder does; then the validator
(`data_tools.inspect`) checks the folder, which must report problems, never raise."""

from __future__ import annotations

from fuzz.harness import DATA_FILE, expect_own_error, full_dataset_root
from jrobot.data import open_dataset
from jrobot.data.errors import DatasetError
from jrobot.data.validate.checks import validate_dataset


def _walk(root) -> None:
    with open_dataset(root) as ds:
        lowdim = [k for k, f in ds.meta.features.items() if not f.is_visual]
        for ep in ds.meta.episodes:
            for _ in ds.iter_episode(ep.index, lowdim):
                pass
        if len(ds):
            ds.column(lowdim[0])


def TestOneInput(data: bytes) -> None:
    root = full_dataset_root("data_parquet")
    (root / DATA_FILE).write_bytes(data)
    expect_own_error(lambda: _walk(root), own=(DatasetError,), names=str(root))
    validate_dataset(root)

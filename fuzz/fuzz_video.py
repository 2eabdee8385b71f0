"""A camera's mp4 (v3.0): the bytes are the front camera's video file of the fixture dataset. The reader
decodes every frame of every episode in order (as the shard builder does) and a few frames by random
access (as training samples do); then the validator decodes the whole file, reporting, never raising."""

from __future__ import annotations

from fuzz.harness import FRONT_VIDEO, expect_own_error, full_dataset_root
from jrobot.data import open_dataset
from jrobot.data.errors import DatasetError
from jrobot.data.validate.checks import validate_dataset

CAMERA = "observation.images.front"


def _decode(root) -> None:
    with open_dataset(root) as ds:
        for ep in ds.meta.episodes:
            for _ in ds.iter_camera(ep.index, CAMERA):
                pass
        for i in (len(ds) - 1, 0, len(ds) // 2):
            ds[i]


def TestOneInput(data: bytes) -> None:
    root = full_dataset_root("video")
    (root / FRONT_VIDEO).write_bytes(data)
    expect_own_error(lambda: _decode(root), own=(DatasetError,), names=str(root))
    validate_dataset(root, decode=True)

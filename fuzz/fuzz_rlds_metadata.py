"""An RLDS dataset's metadata: the first byte picks `features.json` or `dataset_info.json`, the rest is
its content (the other file and empty stand-in shards come from the seeds). Read by
`jrobot.data.rlds.source.open_rlds` (tensorflow-datasets' `builder_from_directory`, the shard-path
confinement), then the feature mapping and frame rate `convert_rlds` derives before reading a step."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator

from fuzz.harness import expect_own_error, put, scratch, seed
from jrobot.data.errors import DatasetError
from jrobot.data.rlds.convert import _features, _frame_rate, rlds_mapping
from jrobot.data.rlds.source import FEATURES_JSON, INFO_JSON, open_rlds

FILES = (FEATURES_JSON, INFO_JSON)
SHARDS = ("tiny_open_x-train.array_record-00000-of-00001", "tiny_open_x-train.tfrecord-00000-of-00001")


def split_input(data: bytes) -> tuple[str, bytes]:
    if not data:
        return FILES[0], b""
    return FILES[data[0] % len(FILES)], data[1:]


def _build(root) -> None:
    for shard in SHARDS:
        put(root, shard, b"")
    put(root, "metadata.json", b'{"fps": 10}')  # TFDS keeps DatasetInfo.metadata in its own file


def _open(root) -> None:
    src = open_rlds(root)
    mapping = rlds_mapping(src)
    _frame_rate(src, None)
    _features(src, mapping, {key: (8, 12) for key in mapping.cameras}, video=True)


@contextlib.contextmanager
def _without_tensorflow() -> Iterator[None]:
    """Some metadata makes tensorflow-datasets import TensorFlow; a test process must not load it (its
    LLVM clashes with Mesa's, and a later MuJoCo render there crashes): the import fails instead,
    which the reader reports as its own error."""
    if "tensorflow" in sys.modules:
        yield
        return
    sys.modules["tensorflow"] = None  # type: ignore[assignment]
    try:
        yield
    finally:
        if sys.modules.get("tensorflow", 0) is None:
            del sys.modules["tensorflow"]


def TestOneInput(data: bytes) -> None:
    root = scratch("rlds_metadata", _build)
    name, content = split_input(data)
    for i, file in enumerate(FILES):
        (root / file).write_bytes(split_input(seed("rlds_metadata", f"tiny_open_x_{i}.bin"))[1])
    (root / name).write_bytes(content)
    with _without_tensorflow():
        expect_own_error(lambda: _open(root), own=(DatasetError,), names=str(root))

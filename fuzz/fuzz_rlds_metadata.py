"""An RLDS dataset's metadata: the first byte picks `features.json` or `dataset_info.json`, the rest is
its content (the other file and empty stand-in shards come from the seeds). Read by
`jrobot.data.rlds.source.open_rlds` (tensorflow-datasets' `builder_from_directory`, the shard-path
confinement), then the feature mapping and frame rate `convert_rlds` derives before reading a step."""

from __future__ import annotations

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


def TestOneInput(data: bytes) -> None:
    root = scratch("rlds_metadata", _build)
    name, content = split_input(data)
    for i, file in enumerate(FILES):
        (root / file).write_bytes(split_input(seed("rlds_metadata", f"tiny_open_x_{i}.bin"))[1])
    (root / name).write_bytes(content)
    expect_own_error(lambda: _open(root), own=(DatasetError,), names=str(root))

"""meta/info.json: the bytes are a dataset's info.json, loaded with `load_meta` (v3.0 or v2.x, as it says).

The rest of the folder is the LeRobot fixtures' metadata (v3.0 and v2.1 files side by side), so a
mutated `codebase_version` reaches both loaders, and the path templates (`data_path`, `video_path`),
`chunks_size`, `total_episodes`/`total_frames` and the features are all in the fuzzer's hands.
"""

from __future__ import annotations

from fuzz.harness import dataset_root, expect_own_error
from jrobot.data.errors import DatasetError
from jrobot.data.format.layout import INFO_PATH
from jrobot.data.format.load import load_meta


def TestOneInput(data: bytes) -> None:
    root = dataset_root("meta_info", "v3.0")
    (root / INFO_PATH).write_bytes(data)
    expect_own_error(lambda: load_meta(root), own=(DatasetError,), names=str(root))

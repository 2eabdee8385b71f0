"""The episode store: LeRobot-compatible datasets (v3.0 read/write, v2.0/v2.1 read, upgrade).

Main entry points (imported lazily, so `import jrobot.data` stays cheap)::

    from jrobot.data import DatasetWriter, open_dataset, upgrade_dataset, DatasetError

    with DatasetWriter.create(root, fps=30, features=features, robot_type="so_follower") as w:
        w.add_frame(frame, task="pick the cube"); ...; w.save_episode()

    ds = open_dataset(root_or_hub_id, delta_timestamps={"action": [0, 1 / 30]})
    item = ds[0]                      # numpy arrays, HWC uint8 images, "task"
    for frame in ds.iter_episode(0):  # sequential, each video decoded once
        ...

No module here imports jax (see ../../shared/design.md, layering).
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "DatasetError": "jrobot.data.errors",
    "FrameTimestampError": "jrobot.data.errors",
    "DatasetWriter": "jrobot.data.writer",
    "VideoOptions": "jrobot.data.video_encode",
    "Dataset": "jrobot.data.reader",
    "open_dataset": "jrobot.data.reader",
    "Episode": "jrobot.data.meta",
    "VideoSpan": "jrobot.data.meta",
    "DatasetMeta": "jrobot.data.meta",
    "load_meta": "jrobot.data.meta",
    "upgrade_dataset": "jrobot.data.upgrade",
    "resolve_dataset": "jrobot.data.hub",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'jrobot.data' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))

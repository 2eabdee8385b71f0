"""The episode store: LeRobot-compatible datasets (v3.0 read/write, v2.0/v2.1 read, conversion).

Main entry points (imported lazily, so `import jrobot.data` stays cheap)::

    from jrobot.data import DatasetWriter, open_dataset, upgrade_dataset, DatasetError

    with DatasetWriter.create(root, fps=30, features=features, robot_type="so_follower") as w:
        w.add_frame(frame, task="pick the cube"); ...; w.save_episode()

    ds = open_dataset(root_or_hub_id, delta_timestamps={"action": [0, 1 / 30]})
    item = ds[0]                      # numpy arrays, HWC uint8 images, "task"
    for frame in ds.iter_episode(0):  # sequential, each video decoded once
        ...

One subpackage per job, each importing only the ones above it in this list:

- `format`: the on-disk format (paths, info.json, parquet/arrow types, stats, metadata loading
  for v3.0 and v2.x into one `DatasetMeta`);
- `video`: mp4 encoding, exact frame decoding, stream-copy segments;
- `read`: `open_dataset` / `Dataset` (random access and per-episode iteration), Hub resolution;
- `write`: `DatasetWriter` (recording, crash-safe commits, resume, background video packing);
- `edit`: new datasets from existing ones (convert/upgrade, delete, split, merge, rename) through
  one rewrite engine;
- `validate`: every problem of a dataset, and the summary `data_tools.inspect` prints.

`DatasetError` (in `jrobot.data.errors`) is the one exception type of all of them. Training shards
are a separate package, `jrobot.shards`, built from this store. No module here imports jax (see
../../shared/design.md, layering).
"""

from __future__ import annotations

from jrobot.lazy_exports import lazy_exports

_EXPORTS = {
    "DatasetError": "jrobot.data.errors",
    "FrameTimestampError": "jrobot.data.errors",
    "DatasetWriter": "jrobot.data.write.writer",
    "VideoOptions": "jrobot.data.video.encode",
    "Dataset": "jrobot.data.read.reader",
    "open_dataset": "jrobot.data.read.reader",
    "Episode": "jrobot.data.format.meta",
    "VideoSpan": "jrobot.data.format.meta",
    "DatasetMeta": "jrobot.data.format.meta",
    "load_meta": "jrobot.data.format.load",
    "upgrade_dataset": "jrobot.data.edit.convert",
    "resolve_dataset": "jrobot.data.read.hub",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

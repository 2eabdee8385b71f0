"""Training shards: the read-optimised copy of an episode store that the grain pipeline samples from.

A package of its own because it is a different format with a different reader: the episode store
(`jrobot.data`) keeps LeRobot's files for exchange; shards keep what training reads per step
(ArrayRecord image records at the training resolution, low-dimensional side arrays, stats).
`format` holds the layout and readers, `writer` the resumable per-episode staging and packing,
`builder` the parallel build from any episode store. Main names, imported lazily so the pipeline's
workers import only what they read::

    from jrobot.shards import ShardSet, build_shards

No module here imports jax (see ../../shared/design.md, layering).
"""

from __future__ import annotations

from jrobot.lazy_exports import lazy_exports

_EXPORTS = {
    "ShardError": "jrobot.shards.format",
    "ShardSet": "jrobot.shards.format",
    "Manifest": "jrobot.shards.format",
    "ImageFormat": "jrobot.shards.format",
    "RecordReader": "jrobot.shards.format",
    "decode_record": "jrobot.shards.format",
    "build_shards": "jrobot.shards.builder",
    "parse_resolution": "jrobot.shards.builder",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

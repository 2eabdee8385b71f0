"""`load_meta`: a dataset's metadata whatever its version, dispatching to the v3.0 or the v2.x loader.

It sits above both loaders so neither imports the other.
"""

from __future__ import annotations

from pathlib import Path

from jrobot.data.format.info import load_info
from jrobot.data.format.legacy import load_v2_meta
from jrobot.data.format.meta import DatasetMeta
from jrobot.data.format.v3_meta import load_v3_meta


def load_meta(root: Path) -> DatasetMeta:
    """Load any supported version (v3.0 through `v3_meta`, v2.0/v2.1 through `legacy`)."""
    info = load_info(root)
    if info["codebase_version"] == "v3.0":
        return load_v3_meta(root, info)
    return load_v2_meta(root, info)

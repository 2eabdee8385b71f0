"""Converting any LeRobot dataset (v2.0/v2.1/v3.0) to a clean v3.0 one: the one converter.

`convert_dataset` copies every episode through `rewrite.write_dataset` (the engine behind all edits),
which normalises legacy feature declarations and fixes known-wrong stats, and reports what it found.
`upgrade_dataset` is the same conversion for v2.x sources with the feature declarations left as
LeRobot's own `convert_dataset_v21_to_v30` leaves them (legacy `names` dicts kept, a per-feature `fps`
on every non-video feature), for users who diff the result against LeRobot's converter.
Training shards are a separate step (`jrobot.shards.builder.build_shards`) on the result.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from jrobot.data.edit.rewrite import RewriteReport, write_dataset
from jrobot.data.edit.sources import EpisodeRef
from jrobot.data.errors import DatasetError
from jrobot.data.format.stats_check import corrupt_image_std_keys
from jrobot.data.read.reader import Dataset, open_dataset

PathLike = str | os.PathLike[str]


@dataclasses.dataclass
class ConvertReport:
    """What `convert_dataset` found and did."""

    source: Path
    source_version: str
    rewrite: RewriteReport
    findings: list[str]

    def summary(self) -> str:
        lines = [f"source {self.source} ({self.source_version})"]
        lines += [f"found: {f}" for f in self.findings]
        lines.append(self.rewrite.summary())
        return "\n".join(lines)


def legacy_findings(ds: Dataset) -> list[str]:
    """What in a source dataset the conversion changes (legacy variants, known-wrong stats)."""
    out = []
    if ds.codebase_version != "v3.0":
        out.append(f"format {ds.codebase_version}: one file per episode, upgraded to v3.0")
    for k, f in ds.features.items():
        raw = ds.info["features"].get(k, {})
        if "video_info" in raw:
            out.append(f"{k}: legacy 'video_info' (v1.6 port) -> 'info', probed from the written video")
        if isinstance(f.names, Mapping):
            out.append(f"{k}: legacy names {dict(f.names)!r} -> a list")
        if f.is_visual and f.flat_names and f.flat_names != ["height", "width", "channels"]:
            out.append(
                f"{k}: image names {f.flat_names} -> ['height', 'width', 'channels'] (shape {list(f.hwc_shape)})"
            )
    if not float(ds.fps).is_integer() or isinstance(ds.info.get("fps"), float):
        out.append(f"fps stored as {ds.info.get('fps')!r} -> {int(ds.fps)}")
    bad = corrupt_image_std_keys(ds.stats, ds.camera_keys)
    if bad:
        out.append(
            f"image std of {bad} is corrupt (LeRobot 0.4.0-0.5.1 uint8 overflow, std far below what the quantiles "
            "allow): recomputed from decoded frames"
        )
    if ds.codebase_version == "v2.0":
        out.append("v2.0 has no per-episode stats: computed (image stats from decoded frames)")
    return out


def convert_dataset(
    src: PathLike,
    dst: PathLike,
    *,
    recompute_stats: str = "auto",
    workers: int | None = None,
    **kwargs: Any,
) -> ConvertReport:
    """Any LeRobot dataset (v2.0/v2.1/v3.0, folder or Hub id) -> a clean v3.0 dataset at `dst`.

    `recompute_stats`: "auto" recomputes image stats only where the stored ones are missing or known
    wrong, "always" decodes every episode (and adds quantiles to v2.x image stats), "never" keeps
    what is stored. Other keyword arguments go to `write_dataset` (file size limits, `durable`,
    `keep_feature_declarations`).
    """
    with open_dataset(src) as ds:
        return _convert(ds, dst, recompute_stats=recompute_stats, workers=workers, **kwargs)


def _convert(ds: Dataset, dst: PathLike, *, recompute_stats: str, **kwargs: Any) -> ConvertReport:
    findings = legacy_findings(ds)
    refs = [EpisodeRef(ds, e.index) for e in ds.episodes]
    if not refs:
        raise DatasetError(f"{ds.root}: has no episodes to convert")
    rewrite = write_dataset(
        dst, refs, robot_type=ds.robot_type, recompute_image_stats=recompute_stats, **kwargs
    )
    return ConvertReport(Path(ds.root), ds.codebase_version, rewrite, findings)


def upgrade_dataset(src: PathLike, dst: PathLike, *, recompute_stats: bool = False, **kwargs: Any) -> Path:
    """Write a v3.0 copy of the v2.x dataset `src` (a folder or a Hub id) to `dst`; returns `dst`.

    `convert_dataset` with LeRobot's converter's feature declarations (see the module docstring);
    `recompute_stats=True` decodes every episode for its image stats instead of reusing the stored
    ones where they are trustworthy. `dst` must not exist; source files are only read. Other keyword
    arguments go to `write_dataset`.
    """
    with open_dataset(src) as ds:
        if ds.codebase_version == "v3.0":
            raise DatasetError(f"{ds.root}: already a v3.0 dataset")
        _convert(
            ds,
            dst,
            recompute_stats="always" if recompute_stats else "auto",
            keep_feature_declarations=True,
            **kwargs,
        )
    return Path(dst)

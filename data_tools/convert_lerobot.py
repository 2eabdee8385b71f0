"""`python -m data_tools.convert_lerobot SRC --out DST`: any LeRobot dataset -> a clean v3.0 dataset.

    python -m data_tools.convert_lerobot path/to/v21_dataset --out datasets/mine_v30
    python -m data_tools.convert_lerobot lerobot/svla_so101_pickplace --out datasets/pickplace \
        --shards shards/pickplace --resolution 96x128          # hub id (online), then training shards

SRC is a v2.0, v2.1 or v3.0 dataset folder, or a Hugging Face Hub dataset id (downloaded when online;
offline it fails at once). The output is written by jrobot's episode store rules: rows renumbered,
tasks re-indexed, video stream-copied episode by episode (no re-encode unless an episode does not
start on a keyframe, which the report lists), per-episode and global stats recomputed where the
source's are missing or known wrong. Legacy variants of v1.6 ports (`names: {"motors": [...]}`,
`video_info`, channel-first image names, float fps) are normalised. LeRobot 0.4.0-0.5.1 stored a
corrupt image std (uint8 overflow); it is detected from the stats themselves (a std below what the
stored quantiles allow) and recomputed from the decoded frames, and the report says so.

With --shards the converted dataset is then turned into training shards (`jrobot.shards.build_shards`).
Exit status: 0 on success, 2 on a bad source or argument.

Library calls: `jrobot.data.edit.convert_dataset(src, dst, recompute_stats="auto")`, then
`jrobot.shards.builder.build_shards(dst, shards, resolution=..., image_format=...)`.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from jrobot.cli import Binder, flag, positional, run_tool, usage
from jrobot.data.edit import convert_dataset
from jrobot.shards.builder import build_shards, parse_resolution


@dataclasses.dataclass
class ConvertOptions:
    """`python -m data_tools.convert_lerobot` arguments."""

    source: str = positional(
        help="LeRobot dataset folder (v2.0/v2.1/v3.0) or Hugging Face Hub dataset id", metavar="SRC"
    )
    out: str = flag(help="new v3.0 dataset folder (must not exist)", metavar="DST")
    recompute_stats: Literal["auto", "always", "never"] = flag(
        "auto",
        help="image stats: recompute where missing or known wrong (auto), for every episode (always), or keep",
    )
    shards: str | None = flag(None, help="also build training shards into this folder", metavar="DIR")
    resolution: str = flag("224x224", help="HxW of shard images, or 'source' (with --shards)")
    image_format: str = flag("jpeg:90", help="shard image encoding: jpeg:<quality> or raw")
    workers: int | None = flag(None, help="decode threads / shard worker processes")
    data_file_size_mb: float = flag(100.0, help="data file size limit")
    video_file_size_mb: float = flag(200.0, help="video file size limit")
    quiet: bool = flag(False, help="no progress messages")


USAGE = usage("python -m data_tools.convert_lerobot", ConvertOptions, __doc__ or "")


def main(argv: Sequence[str] | None = None) -> int:
    binder = Binder.from_argv(sys.argv[1:] if argv is None else argv)
    args = binder.build(ConvertOptions)
    binder.finish()
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(message)s")
    resolution = parse_resolution(args.resolution)
    report = convert_dataset(
        args.source,
        args.out,
        recompute_stats=args.recompute_stats,
        workers=args.workers,
        data_files_size_in_mb=args.data_file_size_mb,
        video_files_size_in_mb=args.video_file_size_mb,
    )
    summary = report.summary()
    if args.shards is not None:
        t0 = time.perf_counter()
        build_shards(
            args.out,
            args.shards,
            resolution=resolution,
            image_format=args.image_format,
            workers=args.workers,
            progress=not args.quiet,
        )
        summary += f"\ntraining shards: {Path(args.shards)} ({time.perf_counter() - t0:.1f} s)"
    print(summary)
    return 0


if __name__ == "__main__":
    sys.exit(run_tool(main, usage=USAGE, input_errors=(ValueError,)))

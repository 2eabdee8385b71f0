"""`python -m data_tools.build_shards SRC --out DST`: episode store -> ArrayRecord training shards.

    python -m data_tools.build_shards path/to/dataset --out shards/ --resolution 224x224 --image-format jpeg:90
    python -m data_tools.build_shards lerobot/svla_so101_pickplace --out shards/   # hub id, when online

SRC may be a LeRobot v2.0/v2.1/v3.0 dataset folder (jrobot- or LeRobot-written) or a hub dataset id.
Each video is decoded once; episodes are converted in parallel (--workers); an interrupted build
resumes where it stopped when run again with the same arguments.
"""

from __future__ import annotations

import dataclasses
import logging
import resource
import sys
import time
from collections.abc import Sequence

from jrobot.cli import Binder, flag, positional, run_tool, usage
from jrobot.shards.builder import build_shards, parse_resolution


def parse_episodes(text: str | None) -> list[int] | None:
    """ "0,3,5-9" -> [0, 3, 5, 6, 7, 8, 9]."""
    if not text:
        return None
    out: list[int] = []
    for part in text.split(","):
        part = part.strip()
        if "-" in part:
            a, b = part.split("-", 1)
            out.extend(range(int(a), int(b) + 1))
        elif part:
            out.append(int(part))
    return out


@dataclasses.dataclass
class BuildShardsOptions:
    """`python -m data_tools.build_shards` arguments."""

    source: str = positional(help="dataset folder or hub dataset id", metavar="SRC")
    out: str = flag(help="shard directory to create", metavar="DIR")
    resolution: str = flag("224x224", help="HxW of stored images, or 'source'")
    image_format: str = flag("jpeg:90", help="jpeg:<quality> or raw")
    workers: int | None = flag(None, help="worker processes (default: one per core)")
    episodes: str | None = flag(None, help="episodes to include, e.g. 0-9,12 (default: all)")
    shard_size_mb: float = flag(1024.0, help="target size of each shard file")
    overwrite: bool = flag(False, help="delete an existing shard directory first")
    quiet: bool = flag(False, help="no progress bar")


USAGE = usage("python -m data_tools.build_shards", BuildShardsOptions, __doc__ or "")


def main(argv: Sequence[str] | None = None) -> int:
    binder = Binder.from_argv(sys.argv[1:] if argv is None else argv)
    args = binder.build(BuildShardsOptions)
    binder.finish()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    t0 = time.perf_counter()
    manifest = build_shards(
        args.source,
        args.out,
        resolution=parse_resolution(args.resolution),
        image_format=args.image_format,
        workers=args.workers,
        episodes=parse_episodes(args.episodes),
        shard_size_mb=args.shard_size_mb,
        overwrite=args.overwrite,
        progress=not args.quiet,
    )
    dt = time.perf_counter() - t0
    rss = max(
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,
    )
    print(
        f"wrote {manifest.num_frames} frames of {manifest.num_episodes} episodes to {args.out} "
        f"in {dt:.1f} s ({manifest.num_frames / max(dt, 1e-9):.0f} frames/s, peak RSS {rss / 1024:.0f} MB)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(run_tool(main, usage=USAGE, input_errors=(ValueError,)))

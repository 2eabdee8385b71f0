"""`python -m data_tools.build_shards SRC --out DST`: episode store -> ArrayRecord training shards.

    python -m data_tools.build_shards path/to/dataset --out shards/ --resolution 224x224 --image-format jpeg:90
    python -m data_tools.build_shards lerobot/svla_so101_pickplace --out shards/   # hub id, when online

SRC may be a LeRobot v2.0/v2.1/v3.0 dataset folder (jrobot- or LeRobot-written) or a hub dataset id.
Each video is decoded once; episodes are converted in parallel (--workers); an interrupted build
resumes where it stopped when run again with the same arguments.
"""

from __future__ import annotations

import argparse
import logging
import resource
import sys
import time

from jrobot.data.errors import DatasetError
from jrobot.shards.builder import build_shards, parse_resolution
from jrobot.shards.format import ShardError


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


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m data_tools.build_shards", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("source", help="dataset folder or hub dataset id")
    p.add_argument("--out", required=True, help="shard directory to create")
    p.add_argument(
        "--resolution", default="224x224", help="HxW of stored images, or 'source' (default 224x224)"
    )
    p.add_argument("--image-format", default="jpeg:90", help="jpeg:<quality> or raw (default jpeg:90)")
    p.add_argument("--workers", type=int, default=None, help="worker processes (default: one per core)")
    p.add_argument("--episodes", default=None, help="episodes to include, e.g. 0-9,12 (default: all)")
    p.add_argument("--shard-size-mb", type=float, default=1024.0, help="target size of each shard file")
    p.add_argument("--overwrite", action="store_true", help="delete an existing shard directory first")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    t0 = time.perf_counter()
    try:
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
    except (DatasetError, ShardError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
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
    sys.exit(main())

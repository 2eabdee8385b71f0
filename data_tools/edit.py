"""`python -m data_tools.edit COMMAND ...`: edit LeRobot datasets; every result is a new valid v3.0 dataset.

    python -m data_tools.edit delete  DATASET --episodes 3,7-9 --out DST
    python -m data_tools.edit select  DATASET --episodes 0-19 --out DST
    python -m data_tools.edit split   DATASET --out DIR --fractions train=0.9,val=0.1 [--seed 0]
    python -m data_tools.edit split   DATASET --out DIR --splits train=0-39 val=40-49
    python -m data_tools.edit merge   DATASET DATASET [...] --out DST [--robot-type so_follower]
    python -m data_tools.edit remove-features DATASET --features observation.images.wrist --out DST
    python -m data_tools.edit rename-features DATASET --map observation.images.top=observation.images.front --out DST

DATASET may be a folder (v2.0/v2.1/v3.0) or a Hugging Face Hub dataset id (online only). Sources
are never modified. Outputs keep LeRobot's invariants: contiguous global index, episode ranges,
video from/to timestamps, tasks re-indexed, stats recomputed and aggregated. Video is stream-copied
per episode (bit-exact); only an episode that does not start on a keyframe in its source file is
re-encoded, and the report lists it. `split` writes DIR/<name> per split. `merge` requires equal fps
and features (dtype, shape, names, camera resolution) and says exactly what differs otherwise.
Exit status: 0 on success, 2 on bad input.

Library calls: `jrobot.data.edit.delete_episodes / select_episodes / split_dataset / split_by_fraction /
merge_datasets / remove_features / rename_features`.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from jrobot.data import edit
from jrobot.data.errors import DatasetError
from jrobot.data.read.reader import open_dataset


def parse_episode_list(text: str) -> list[int]:
    """ "0,3,5-9" -> [0, 3, 5, 6, 7, 8, 9]; a clear error for anything else."""
    out: list[int] = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            if "-" in part[1:]:
                a, b = part.split("-", 1)
                lo, hi = int(a), int(b)
                if hi < lo:
                    raise ValueError
                out.extend(range(lo, hi + 1))
            else:
                out.append(int(part))
        except ValueError:
            raise DatasetError(
                f"episode list {text!r}: {part!r} is not an index or a range like 5-9"
            ) from None
    if any(e < 0 for e in out):
        raise DatasetError(f"episode list {text!r}: indices must be >= 0")
    return out


def parse_pairs(items: list[str], what: str, *, commas: bool = True) -> dict[str, str]:
    """["a=b", "c=d"] (or, with `commas`, one "a=b,c=d") -> {"a": "b", "c": "d"}."""
    out: dict[str, str] = {}
    for item in items:
        for part in item.split(",") if commas else [item]:
            if not part.strip():
                continue
            if "=" not in part:
                raise DatasetError(f"{what}: expected NAME=VALUE, got {part!r}")
            k, v = (s.strip() for s in part.split("=", 1))
            if not k or not v:
                raise DatasetError(f"{what}: expected NAME=VALUE, got {part!r}")
            if k in out:
                raise DatasetError(f"{what}: {k!r} given twice")
            out[k] = v
    return out


def _common(sp: argparse.ArgumentParser) -> None:
    sp.add_argument(
        "--recompute-stats",
        choices=("auto", "always", "never"),
        default="auto",
        help="image stats: recompute where missing or known wrong (auto), always, or reuse the stored ones",
    )
    sp.add_argument("--workers", type=int, default=None, help="threads decoding video for image stats")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m data_tools.edit",
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="command", required=True)
    for name, help_ in (("delete", "drop episodes"), ("select", "keep only some episodes")):
        sp = sub.add_parser(name, help=help_)
        sp.add_argument("dataset")
        sp.add_argument("--episodes", required=True, help="e.g. 3,7-9")
        sp.add_argument("--out", required=True)
        _common(sp)
    sp = sub.add_parser("split", help="split by episodes into DIR/<name> datasets")
    sp.add_argument("dataset")
    sp.add_argument("--out", required=True, help="folder that receives one dataset per split")
    g = sp.add_mutually_exclusive_group(required=True)
    g.add_argument("--fractions", help="e.g. train=0.9,val=0.1 (episodes shuffled with --seed)")
    g.add_argument("--splits", nargs="+", help="e.g. train=0-39 val=40-49")
    sp.add_argument("--seed", type=int, default=0, help="shuffle seed for --fractions (-1: keep order)")
    _common(sp)
    sp = sub.add_parser("merge", help="concatenate datasets with the same features and fps")
    sp.add_argument("datasets", nargs="+")
    sp.add_argument("--out", required=True)
    sp.add_argument("--robot-type", default=None, help="robot type of the result (required when they differ)")
    _common(sp)
    sp = sub.add_parser("remove-features", help="drop features (columns / cameras)")
    sp.add_argument("dataset")
    sp.add_argument("--features", required=True, nargs="+", help="feature names (space or comma separated)")
    sp.add_argument("--out", required=True)
    _common(sp)
    sp = sub.add_parser("rename-features", help="rename features")
    sp.add_argument("dataset")
    sp.add_argument("--map", required=True, nargs="+", help="OLD=NEW pairs")
    sp.add_argument("--out", required=True)
    _common(sp)
    return p


def run(args: argparse.Namespace) -> list[str]:
    """Execute a parsed command; returns the report lines."""
    kw = {"recompute_image_stats": args.recompute_stats, "workers": args.workers}
    if args.command == "delete":
        return [
            edit.delete_episodes(args.dataset, args.out, parse_episode_list(args.episodes), **kw).summary()
        ]
    if args.command == "select":
        return [
            edit.select_episodes(args.dataset, args.out, parse_episode_list(args.episodes), **kw).summary()
        ]
    if args.command == "split":
        if args.fractions:
            fractions = {k: _fraction(v) for k, v in parse_pairs([args.fractions], "--fractions").items()}
            with open_dataset(args.dataset) as ds:
                n = ds.num_episodes
            splits = edit.split_by_fraction(n, fractions, seed=None if args.seed < 0 else args.seed)
        else:
            splits = {
                k: parse_episode_list(v)
                for k, v in parse_pairs(args.splits, "--splits", commas=False).items()
            }
        outputs = {name: Path(args.out) / name for name in splits}
        reports = edit.split_dataset(args.dataset, outputs, splits, **kw)
        return [f"{name}: episodes {splits[name]}\n{r.summary()}" for name, r in reports.items()]
    if args.command == "merge":
        return [edit.merge_datasets(args.datasets, args.out, robot_type=args.robot_type, **kw).summary()]
    if args.command == "remove-features":
        names = [n.strip() for item in args.features for n in item.split(",") if n.strip()]
        return [edit.remove_features(args.dataset, args.out, names, **kw).summary()]
    if args.command == "rename-features":
        return [edit.rename_features(args.dataset, args.out, parse_pairs(args.map, "--map"), **kw).summary()]
    raise DatasetError(f"unknown command {args.command!r}")


def _fraction(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise DatasetError(f"--fractions: {text!r} is not a number") from None


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    try:
        lines = run(args)
    except DatasetError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())

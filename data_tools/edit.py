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

import dataclasses
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from jrobot.cli import Binder, commands_usage, exactly_one, flag, positional, run_tool, usage
from jrobot.data import edit
from jrobot.data.errors import DatasetError
from jrobot.data.read.reader import open_dataset
from jrobot.features import folder_name_problem


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


@dataclasses.dataclass(kw_only=True)
class _Common:
    """The flags every edit takes."""

    recompute_stats: Literal["auto", "always", "never"] = flag(
        "auto",
        help="image stats: recompute where missing or known wrong (auto), always, or reuse the stored ones",
    )
    workers: int | None = flag(None, help="threads decoding video for image stats")


@dataclasses.dataclass(kw_only=True)
class DeleteOptions(_Common):
    """drop episodes"""

    dataset: str = positional(help="dataset folder or Hugging Face Hub dataset id")
    episodes: str = flag(help="e.g. 3,7-9")
    out: str = flag(help="new dataset folder", metavar="DST")


@dataclasses.dataclass(kw_only=True)
class SelectOptions(DeleteOptions):
    """keep only some episodes"""


@dataclasses.dataclass(kw_only=True)
class SplitOptions(_Common):
    """split by episodes into DIR/<name> datasets"""

    dataset: str = positional(help="dataset folder or Hugging Face Hub dataset id")
    out: str = flag(help="folder that receives one dataset per split", metavar="DIR")
    fractions: str | None = flag(
        None, help="e.g. train=0.9,val=0.1 (episodes shuffled with --seed); or --splits"
    )
    splits: list[str] | None = flag(None, help="e.g. train=0-39 val=40-49; or --fractions")
    seed: int = flag(0, help="shuffle seed for --fractions (-1: keep order)")


@dataclasses.dataclass(kw_only=True)
class MergeOptions(_Common):
    """concatenate datasets with the same features and fps"""

    datasets: list[str] = positional(help="the datasets to merge, in order", metavar="DATASET")
    out: str = flag(help="new dataset folder", metavar="DST")
    robot_type: str | None = flag(None, help="robot type of the result (required when they differ)")


@dataclasses.dataclass(kw_only=True)
class RemoveFeaturesOptions(_Common):
    """drop features (columns / cameras)"""

    dataset: str = positional(help="dataset folder or Hugging Face Hub dataset id")
    features: list[str] = flag(help="feature names (space or comma separated)")
    out: str = flag(help="new dataset folder", metavar="DST")


@dataclasses.dataclass(kw_only=True)
class RenameFeaturesOptions(_Common):
    """rename features"""

    dataset: str = positional(help="dataset folder or Hugging Face Hub dataset id")
    map: list[str] = flag(help="OLD=NEW pairs (space or comma separated)")
    out: str = flag(help="new dataset folder", metavar="DST")


COMMANDS: dict[str, type[_Common]] = {
    "delete": DeleteOptions,
    "select": SelectOptions,
    "split": SplitOptions,
    "merge": MergeOptions,
    "remove-features": RemoveFeaturesOptions,
    "rename-features": RenameFeaturesOptions,
}
PROG = "python -m data_tools.edit"


def parse_args(argv: Sequence[str]) -> tuple[str, _Common]:
    """(command, its options) from a command line; CliError for anything wrong with it."""
    binder = Binder.from_argv(argv)
    command, cls = binder.subcommand(COMMANDS)
    args = binder.build(cls)
    binder.finish()
    if isinstance(args, SplitOptions):
        exactly_one(args, "fractions", "splits")
    return command, args


def run(command: str, args: _Common) -> list[str]:
    """Execute a parsed command; returns the report lines."""
    kw = {"recompute_image_stats": args.recompute_stats, "workers": args.workers}
    if isinstance(args, DeleteOptions):
        episodes = parse_episode_list(args.episodes)
        fn = edit.select_episodes if command == "select" else edit.delete_episodes
        return [fn(args.dataset, args.out, episodes, **kw).summary()]
    if isinstance(args, SplitOptions):
        if args.fractions:
            fractions = {k: _fraction(v) for k, v in parse_pairs([args.fractions], "--fractions").items()}
            with open_dataset(args.dataset) as ds:
                n = ds.num_episodes
            splits = edit.split_by_fraction(n, fractions, seed=None if args.seed < 0 else args.seed)
        else:
            splits = {
                k: parse_episode_list(v)
                for k, v in parse_pairs(args.splits or [], "--splits", commas=False).items()
            }
        for name in splits:  # each split is a folder of --out, never a path leading elsewhere
            why = folder_name_problem(name)
            if why is not None:
                raise DatasetError(f"--splits: split name {why}")
        outputs = {name: Path(args.out) / name for name in splits}
        reports = edit.split_dataset(args.dataset, outputs, splits, **kw)
        return [f"{name}: episodes {splits[name]}\n{r.summary()}" for name, r in reports.items()]
    if isinstance(args, MergeOptions):
        return [edit.merge_datasets(args.datasets, args.out, robot_type=args.robot_type, **kw).summary()]
    if isinstance(args, RemoveFeaturesOptions):
        names = [n.strip() for item in args.features for n in item.split(",") if n.strip()]
        return [edit.remove_features(args.dataset, args.out, names, **kw).summary()]
    if isinstance(args, RenameFeaturesOptions):
        return [edit.rename_features(args.dataset, args.out, parse_pairs(args.map, "--map"), **kw).summary()]
    raise DatasetError(f"unknown command {command!r}")


def _fraction(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise DatasetError(f"--fractions: {text!r} is not a number") from None


def main(argv: Sequence[str] | None = None) -> int:
    command, args = parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    lines = run(command, args)
    print("\n".join(lines))
    return 0


def help_text(argv: Sequence[str]) -> str:
    """`--help` for the command named first (`edit split --help`), else for all of them."""
    if argv and argv[0] in COMMANDS:
        cls = COMMANDS[argv[0]]
        return usage(f"{PROG} {argv[0]}", cls, (cls.__doc__ or "").strip())
    return commands_usage(PROG, COMMANDS, __doc__ or "")


if __name__ == "__main__":
    sys.exit(run_tool(main, usage=help_text))

"""`python -m data_tools.inspect DATASET`: what is in a LeRobot dataset, and everything wrong with it.

    python -m data_tools.inspect path/to/dataset            # text report
    python -m data_tools.inspect path/to/dataset --json     # the same as JSON
    python -m data_tools.inspect lerobot/svla_so101_pickplace --decode   # hub id (online), decode every frame

Shows the format version, robot type, fps, features (dtype, shape, names), cameras (codec,
resolution, pixel format, keyframe spacing), episodes and their lengths, tasks, and the stats;
then validates the whole dataset and lists every problem with its file. Exit status: 0 for a valid
dataset (warnings allowed, unless --strict), 1 when there are errors, 2 when the dataset cannot be
found (no such folder, or a hub id while offline).

Library call: `jrobot.data.validate.describe.describe_dataset(path)` (dict) and
`jrobot.data.validate.validate_dataset(path)` (list of problems).
"""

from __future__ import annotations

import argparse
import json
import sys

from jrobot.data.errors import DatasetError
from jrobot.data.validate.describe import describe_dataset, format_description


def inspect_dataset(source: str, *, decode: bool = False) -> dict:
    """The inspection report as a dict (same as `describe_dataset`)."""
    return describe_dataset(source, decode=decode)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m data_tools.inspect",
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("dataset", help="dataset folder or Hugging Face Hub dataset id")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--decode", action="store_true", help="also decode every video frame and image")
    p.add_argument("--strict", action="store_true", help="warnings make the exit status non-zero too")
    p.add_argument("--max-episodes", type=int, default=20, help="episodes listed in the text report")
    args = p.parse_args(argv)
    try:
        report = inspect_dataset(args.dataset, decode=args.decode)
    except DatasetError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(format_description(report, max_episodes=args.max_episodes))
    if not report["valid"]:
        return 1
    if args.strict and report["problems"]:
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

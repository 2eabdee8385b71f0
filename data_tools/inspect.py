"""`python -m data_tools.inspect DATASET`: what is in a LeRobot dataset, and everything wrong with it.

    python -m data_tools.inspect path/to/dataset            # text report
    python -m data_tools.inspect path/to/dataset --json     # the same as JSON
    python -m data_tools.inspect lerobot/svla_so101_pickplace --decode   # hub id (online), decode every frame

Shows the format version, robot type, fps, features (dtype, shape, names), cameras (codec,
resolution, pixel format, keyframe spacing), episodes and their lengths, tasks, and the stats;
then validates the whole dataset and lists every problem with its file. Exit status: 0 for a valid
dataset (warnings allowed, unless --strict), 1 when there are errors, 2 when the dataset cannot be
found (no such folder, or a hub id while offline) or a flag is wrong.

Library call: `jrobot.data.validate.describe.describe_dataset(path)` (dict) and
`jrobot.data.validate.validate_dataset(path)` (list of problems).
"""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Sequence

from jrobot.cli import Binder, flag, positional, run_tool, usage
from jrobot.data.validate.describe import describe_dataset, format_description


def inspect_dataset(source: str, *, decode: bool = False) -> dict:
    """The inspection report as a dict (same as `describe_dataset`)."""
    return describe_dataset(source, decode=decode)


@dataclasses.dataclass
class InspectOptions:
    """`python -m data_tools.inspect` arguments."""

    dataset: str = positional(help="dataset folder or Hugging Face Hub dataset id")
    json: bool = flag(False, help="print the report as JSON")
    decode: bool = flag(False, help="also decode every video frame and image")
    strict: bool = flag(False, help="warnings make the exit status non-zero too")
    max_episodes: int = flag(20, help="episodes listed in the text report")


USAGE = usage("python -m data_tools.inspect", InspectOptions, __doc__ or "")


def main(argv: Sequence[str] | None = None) -> int:
    binder = Binder.from_argv(sys.argv[1:] if argv is None else argv)
    args = binder.build(InspectOptions)
    binder.finish()
    report = inspect_dataset(args.dataset, decode=args.decode)
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
    sys.exit(run_tool(main, usage=USAGE))

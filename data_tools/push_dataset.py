"""`python -m data_tools.push_dataset DATASET --repo_id USER/NAME`: upload a dataset to the Hugging Face
Hub as LeRobot does, so that LeRobot and jrobot load it by its id.

    python -m data_tools.push_dataset data/pick_cube --repo_id me/pick_cube
    python -m data_tools.push_dataset data/bridge --repo_id me/bridge --private true --push_videos false

The dataset is checked first (`data_tools.inspect`'s checks; a dataset with errors is not pushed). The
upload leaves out `images/` and jrobot's working folder (and `videos/` with --push_videos false), adds
a dataset card (LeRobot's tags, the parquet `configs` the Hub viewer reads, meta/info.json) and moves
the codebase-version tag (`v3.0`) to the new commit. Log in first (`hf auth login` or HF_TOKEN).
Exit status: 0 pushed, 1 the dataset has errors, 2 a bad argument or the Hub refused.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Sequence

from jrobot.cli import Binder, flag, positional, run_tool, usage
from jrobot.data.validate import validate_dataset
from jrobot.hub import push_dataset


@dataclasses.dataclass
class PushOptions:
    """`python -m data_tools.push_dataset` arguments."""

    dataset: str = positional(help="the dataset folder", metavar="DATASET")
    repo_id: str = flag(help="the Hub dataset repo to push to", metavar="USER/NAME")
    private: bool = flag(False, help="create the repo private")
    push_videos: bool = flag(True, help="upload videos/ too")
    license: str = flag("apache-2.0", help="license in the dataset card")
    tags: list[str] | None = flag(None, help="extra tags for the dataset card")


USAGE = usage("python -m data_tools.push_dataset", PushOptions, __doc__ or "")


def main(argv: Sequence[str] | None = None) -> int:
    binder = Binder.from_argv(sys.argv[1:] if argv is None else argv)
    args = binder.build(PushOptions)
    binder.finish()
    errors = [p for p in validate_dataset(args.dataset) if p.severity == "error"]
    if errors:
        print(f"error: {args.dataset} has {len(errors)} problem(s); not pushed:", file=sys.stderr)
        for p in errors[:20]:
            print(f"  {p}", file=sys.stderr)
        return 1
    url = push_dataset(
        args.dataset, args.repo_id, private=args.private, push_videos=args.push_videos,
        license=args.license, tags=args.tags or (),
    )  # fmt: skip
    print(f"pushed {args.dataset} to {url}")
    return 0


if __name__ == "__main__":
    sys.exit(run_tool(main, usage=USAGE))

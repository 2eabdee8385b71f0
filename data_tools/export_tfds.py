"""`python -m data_tools.export_tfds DATASET --out DIR`: a LeRobot dataset (v2.x or v3.0, a folder or a
Hub id) -> an RLDS dataset in TFDS's ArrayRecord format, for Octo, openpi and Open X-Embodiment tooling.

    python -m data_tools.export_tfds data/pick_cube --out rlds/pick_cube
    python -m data_tools.export_tfds lerobot/some_dataset --out rlds/some --name some --max_episodes 10

DIR becomes the TFDS dataset folder (dataset_info.json, features.json, the shards):
`tfds.builder_from_directory(DIR).as_data_source(split="train")` reads it, without TensorFlow. Each
episode's steps hold every RGB camera as a lossless PNG image under `observation` (named without the
`observation.images.` prefix), observation.state as `observation/state`, `action`, the frame's task as
`language_instruction`, next.reward/next.done as `reward`/`is_terminal` (else 0.0/is_last), `discount`
1.0, `is_first`/`is_last`; the dataset's metadata holds its fps. `data_tools.convert_rlds` reads it back.
The TFDS name defaults to the dataset folder's name in snake_case. Exit status: 0 on success, 2 on a bad
dataset or argument.

Library call: `jrobot.data.rlds.export.export_tfds(dataset, out, ...)`.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
from collections.abc import Sequence

from jrobot.cli import Binder, flag, positional, run_tool, usage
from jrobot.data.rlds.export import export_tfds


@dataclasses.dataclass
class ExportTfdsOptions:
    """`python -m data_tools.export_tfds` arguments."""

    dataset: str = positional(help="LeRobot dataset folder or Hugging Face Hub id", metavar="DATASET")
    out: str = flag(help="new RLDS dataset folder (must not exist)", metavar="DIR")
    name: str | None = flag(
        None, help="TFDS dataset name: lowercase letters, digits, '_' (default: the folder's name)"
    )
    split: str = flag("train", help="the split's name")
    max_episodes: int | None = flag(None, help="export only the first N episodes")
    quiet: bool = flag(False, help="no progress messages")


USAGE = usage("python -m data_tools.export_tfds", ExportTfdsOptions, __doc__ or "")


def main(argv: Sequence[str] | None = None) -> int:
    binder = Binder.from_argv(sys.argv[1:] if argv is None else argv)
    args = binder.build(ExportTfdsOptions)
    binder.finish()
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(message)s")
    _quiet_tfds()
    report = export_tfds(
        args.dataset, args.out, name=args.name, split=args.split, max_episodes=args.max_episodes
    )
    print(report.summary())
    return 0


def _quiet_tfds() -> None:
    """TFDS's progress bars and INFO lines name its build folder inside --out, gone when the export
    ends; the per-episode lines and the summary say what was written."""
    logging.getLogger("absl").setLevel(logging.WARNING)
    try:
        import tensorflow_datasets as tfds
    except ImportError:  # export_tfds says what to install
        return
    tfds.disable_progress_bar()


if __name__ == "__main__":
    sys.exit(run_tool(main, usage=USAGE, input_errors=(ValueError,)))

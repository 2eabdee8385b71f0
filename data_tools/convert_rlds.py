"""`python -m data_tools.convert_rlds RLDS_DIR --out DATASET`: an RLDS dataset (Open X-Embodiment, Octo,
openpi) -> a LeRobot v3.0 dataset that LeRobot and jrobot load.

    python -m data_tools.convert_rlds ~/tensorflow_datasets/bridge/0.1.0 --out datasets/bridge --fps 5
    python -m data_tools.convert_rlds rlds/mine/1.0.0 --out datasets/mine \\
        --image_keys image wrist/image --state_keys state --bgr_keys wrist/image --resolution 96x128

RLDS_DIR is a TFDS builder folder (dataset_info.json, features.json and the shards), read with
tensorflow-datasets: ArrayRecord shards need nothing more, TFRecord shards need TensorFlow
(`pip install 'jrobot[rlds]'`). Each RGB image under `observation` becomes a camera
(observation.images.<path joined by _>), the `state` vector observation.state, `action` (a vector or a
dict of vectors, concatenated) action, `language_instruction` the frame's task, `reward`/`is_terminal`
next.reward/next.done; the keys flags choose others (paths under observation, or under action for
--action_keys, `/` or `.` between levels). The frame rate comes from the dataset's metadata (fps,
control_frequency) or --fps. Cameras go to video (even sizes; --resolution resizes) unless --video false
stores lossless PNGs. Exit status: 0 on success, 2 on a bad source or argument.

Library call: `jrobot.data.rlds.convert.convert_rlds(src, dst, ...)`.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
from collections.abc import Sequence

from jrobot.cli import Binder, flag, positional, run_tool, usage
from jrobot.data.rlds.convert import convert_rlds
from jrobot.shards.builder import parse_resolution


@dataclasses.dataclass
class ConvertRldsOptions:
    """`python -m data_tools.convert_rlds` arguments."""

    source: str = positional(
        help="RLDS dataset folder (the version folder with dataset_info.json)", metavar="RLDS_DIR"
    )
    out: str = flag(help="new v3.0 dataset folder (must not exist)", metavar="DATASET")
    split: str = flag("train", help="which split to convert")
    image_keys: list[str] | None = flag(
        None, help="cameras: paths under observation (default: every RGB image)"
    )
    state_keys: list[str] | None = flag(None, help="observation.state: paths under observation, concatenated")
    action_keys: list[str] | None = flag(None, help="action: paths under action, concatenated (default: all)")
    bgr_keys: list[str] | None = flag(
        None, help="cameras stored BGR (as some Open-X datasets are): turned to RGB"
    )
    fps: float | None = flag(None, help="frame rate, when the dataset's metadata has none")
    resolution: str = flag("source", help="HxW to resize every camera to, or 'source'")
    video: bool = flag(True, help="cameras as video (true) or lossless PNG images in the data files (false)")
    task: str | None = flag(
        None, help="task for steps without a language instruction (default: dataset name)"
    )
    robot_type: str | None = flag(None, help="robot_type for meta/info.json")
    max_episodes: int | None = flag(None, help="convert only the first N episodes")
    quiet: bool = flag(False, help="no progress messages")


USAGE = usage("python -m data_tools.convert_rlds", ConvertRldsOptions, __doc__ or "")


def main(argv: Sequence[str] | None = None) -> int:
    binder = Binder.from_argv(sys.argv[1:] if argv is None else argv)
    args = binder.build(ConvertRldsOptions)
    binder.finish()
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(message)s")
    report = convert_rlds(
        args.source,
        args.out,
        split=args.split,
        image_keys=args.image_keys,
        state_keys=args.state_keys,
        action_keys=args.action_keys,
        bgr_keys=args.bgr_keys or (),
        fps=args.fps,
        resolution=parse_resolution(args.resolution),
        video=args.video,
        task=args.task,
        robot_type=args.robot_type,
        max_episodes=args.max_episodes,
    )
    print(report.summary())
    return 0


if __name__ == "__main__":
    sys.exit(run_tool(main, usage=USAGE, input_errors=(ValueError,)))

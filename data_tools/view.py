"""`python -m data_tools.view DATASET --episode N --out DIR`: look at one episode.

    python -m data_tools.view path/to/dataset --episode 3 --out outputs/view
    python -m data_tools.view lerobot/svla_so101_pickplace --episode 0 --out outputs/view --no-video

Writes into DIR:
- `episode_NNNNNN_<feature>.png`: every dimension of each low-dimensional feature over time (one
  subplot per dimension, labelled with its name), with frames of every camera alongside at a few
  instants that are also marked in the plots. Features with the same dimension names (the SO-101's
  `observation.state` and `action`) share one figure, overlaid, so tracking error is visible.
- `episode_NNNNNN.mp4`: the cameras side by side (scaled to a common height), frame index and time
  burnt in, at the dataset's fps (H.264, yuv420p: plays everywhere).

With `--rerun FILE.rrd` the episode is also written as a rerun recording (cameras, every dimension of
every low-dimensional feature, against `frame` and `time`), opened with `rerun FILE.rrd`; `--rerun_url
rerun+http://HOST:9876/proxy` streams it to a running viewer instead. The same layout as a live
`--display_data` view of `jrobot.record`, so a recording and its playback look alike.

Library calls (`jrobot.data.view`): `render_episode(source, episode, out_dir) -> list[Path]` (also takes an
open Dataset), `episode_to_rerun(source, episode, save=... | url=...) -> int` (frames logged).
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Sequence
from pathlib import Path

from jrobot.cli import Binder, flag, positional, run_tool, usage
from jrobot.data.view import episode_to_rerun, render_episode


@dataclasses.dataclass
class ViewOptions:
    """`python -m data_tools.view` arguments."""

    dataset: str = positional(help="dataset folder or Hugging Face Hub dataset id")
    episode: int = flag(help="episode index")
    out: str = flag(help="output folder for the PNGs and the MP4", metavar="DIR")
    thumbnails: int = flag(5, help="camera frames shown beside the plots")
    no_video: bool = flag(False, help="only the plots")
    video_height: int | None = flag(None, help="height of the mp4 (default >= 240 px)")
    rerun: str | None = flag(None, help="also write the episode as a rerun recording", metavar="FILE.rrd")
    rerun_url: str | None = flag(
        None, help="or stream it to a rerun viewer", metavar="rerun+http://HOST:9876/proxy"
    )


USAGE = usage("python -m data_tools.view", ViewOptions, __doc__ or "")


def main(argv: Sequence[str] | None = None) -> int:
    binder = Binder.from_argv(sys.argv[1:] if argv is None else argv)
    args = binder.build(ViewOptions)
    binder.finish()
    files = render_episode(
        args.dataset,
        args.episode,
        args.out,
        thumbnails=args.thumbnails,
        video=not args.no_video,
        video_height=args.video_height,
    )
    if args.rerun is not None or args.rerun_url is not None:
        n = episode_to_rerun(args.dataset, args.episode, save=args.rerun, url=args.rerun_url)
        files.append(Path(args.rerun) if args.rerun else Path(f"{args.rerun_url} ({n} frames)"))
    for f in files:
        print(f)
    return 0


if __name__ == "__main__":
    sys.exit(run_tool(main, usage=USAGE))

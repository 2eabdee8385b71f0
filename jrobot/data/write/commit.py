"""The closing files of a v3.0 dataset, written in the order that makes meta/info.json the commit point.

Both writers of v3.0 datasets end here: the recorder (`writer.DatasetWriter`, after every saved
episode) and the rewrite engine (`jrobot.data.edit.rewrite`, once, in its build folder). A reader
trusts only the totals in info.json, so tasks and stats go first and info.json, with the new
totals, last; an interrupted write leaves the previous info.json and therefore the previous dataset.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from jrobot.data.format.layout import INFO_PATH, STATS_PATH, TASKS_PATH
from jrobot.data.format.meta_io import write_tasks_file
from jrobot.data.format.stats import Stats, to_jsonable
from jrobot.data.write.fsio import WorkDir


def commit_meta(
    work: WorkDir,
    root: Path,
    info: Mapping[str, Any],
    *,
    num_episodes: int,
    num_frames: int,
    tasks: Sequence[str],
    stats: Mapping[str, Stats],
    tasks_changed: bool = True,
) -> dict[str, Any]:
    """Write tasks.parquet (when `tasks_changed`), stats.json, then info.json with the totals.

    Returns the info dict as written: `info` with `total_episodes/frames/tasks` and LeRobot's
    single `train` split over all episodes.
    """
    if tasks_changed:
        work.write_with(root / TASKS_PATH, ".parquet", lambda tmp: write_tasks_file(tmp, tasks))
    work.write_json(root / STATS_PATH, to_jsonable(stats))
    written = {
        **info,
        "total_episodes": int(num_episodes),
        "total_frames": int(num_frames),
        "total_tasks": len(tasks),
        "splits": {"train": f"0:{int(num_episodes)}"},
    }
    work.write_json(root / INFO_PATH, written)
    return written

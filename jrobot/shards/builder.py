"""Build training shards from any episode store (LeRobot v2.0/v2.1/v3.0 or jrobot-written).

Each episode is converted by one worker process: its videos are decoded once, front to back, every
frame is resized to the training resolution and JPEG-encoded into one ArrayRecord record, and its
low-dimensional columns and statistics are computed in the same pass (statistics on the source frames,
with the episode store's definitions). Workers hold one frame at a time, so memory stays bounded
whatever the dataset size. Finished episodes survive an interruption (see `jrobot.shards.writer`), and a
rebuild with the same settings resumes where it stopped.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import multiprocessing as mp
import os
import queue
import shutil
import time
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Any

import numpy as np

from jrobot.data.errors import DatasetError
from jrobot.data.format.stats import ImageStatsAccumulator, aggregate_stats, numeric_stats, sample_indices
from jrobot.data.read.reader import Dataset, open_dataset
from jrobot.features import Feature
from jrobot.shards.format import MANIFEST, ImageFormat, Manifest, ShardError
from jrobot.shards.writer import STAGING, EpisodeStager, finished_episodes, pack

log = logging.getLogger(__name__)
BUILD_PARAMS = "build.json"
_PROGRESS_EVERY = 16


@dataclasses.dataclass(frozen=True)
class BuildParams:
    """What determines the content of a shard set; a resumed build must use the same."""

    source: str
    resolution: tuple[int, int] | None
    image_format: str
    episodes: tuple[int, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "resolution": list(self.resolution) if self.resolution else None,
            "image_format": self.image_format,
            "episodes": list(self.episodes),
        }


def parse_resolution(text: str | None) -> tuple[int, int] | None:
    """ "224x224" -> (224, 224) as (H, W); "source"/None keeps the dataset's resolution."""
    if text is None or str(text).lower() in ("", "source", "none"):
        return None
    try:
        h, w = (int(v) for v in str(text).lower().split("x"))
    except ValueError:
        raise ValueError(f"resolution {text!r}: expected HxW, e.g. 224x224") from None
    if h <= 0 or w <= 0:
        raise ValueError(f"resolution {text!r} must be positive")
    return h, w


# -- worker side ----------------------------------------------------------------------------------

_worker_ds: Dataset | None = None


def _init_worker(root: str) -> None:
    global _worker_ds
    _worker_ds = open_dataset(root, decoder_threads=1)


def _convert_episode(
    ds: Dataset,
    episode_index: int,
    staging: Path,
    cameras: Sequence[str],
    image_format: ImageFormat,
    resolution: tuple[int, int] | None,
    progress: Any = None,
) -> int:
    ep = ds.episode(episode_index)
    lowdim_keys = [k for k, f in ds.features.items() if not f.is_visual and f.dtype != "string"]
    stager = EpisodeStager(staging, episode_index, cameras, image_format, resolution)
    sampled = set(sample_indices(ep.length))
    image_acc = {c: ImageStatsAccumulator() for c in cameras}
    columns = ds.episode_columns(episode_index, lowdim_keys)
    try:
        pending = 0
        for i, frame in enumerate(ds.iter_episode(episode_index, list(cameras))):
            images = {c: frame[c] for c in cameras}
            if i in sampled:
                for c in cameras:
                    image_acc[c].add(images[c])
            stager.add_frame(int(i), images, {k: columns[k][i] for k in lowdim_keys})
            pending += 1
            if progress is not None and pending >= _PROGRESS_EVERY:
                progress.put(pending)
                pending = 0
        if progress is not None and pending:
            progress.put(pending)
        if stager.num_frames != ep.length:
            raise DatasetError(
                f"{ds.root}: episode {episode_index} yielded {stager.num_frames} frames, expected {ep.length}"
            )
        stats = {k: numeric_stats(np.asarray(v)) for k, v in columns.items()}
        stats.update({c: image_acc[c].stats() for c in cameras})
        task_idx = columns.get("task_index")
        used = sorted({int(t) for t in np.asarray(task_idx).reshape(-1)}) if task_idx is not None else []
        tasks = {t: ds.tasks[t] for t in used}
        stager.finish(tasks=tasks, stats=stats)
    except BaseException:
        stager.abort()
        raise
    return ep.length


def _worker_task(episode_index: int, staging: str, cameras: list[str], fmt: str, res, progress) -> int:
    assert _worker_ds is not None
    return _convert_episode(
        _worker_ds, episode_index, Path(staging), cameras, ImageFormat.parse(fmt), res, progress
    )


# -- driver -----------------------------------------------------------------------------------------


def _check_or_start(out: Path, params: BuildParams, overwrite: bool) -> None:
    staging = out / STAGING
    params_path = staging / BUILD_PARAMS
    if overwrite and out.exists():
        shutil.rmtree(out)
    if (out / MANIFEST).exists():
        raise ShardError(f"{out}: shards already built there; pass overwrite=True (--overwrite) to rebuild")
    if staging.is_dir() and params_path.is_file():
        previous = json.loads(params_path.read_text())
        if previous != params.to_json():
            raise ShardError(
                f"{out}: an interrupted build with different settings is there ({previous}); "
                "pass overwrite=True (--overwrite) to start over"
            )
        return
    if out.exists() and any(out.iterdir()):
        raise ShardError(
            f"{out}: exists and is not a shard directory; choose another --out or pass --overwrite"
        )
    staging.mkdir(parents=True, exist_ok=True)
    tmp = params_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(params.to_json()))
    os.replace(tmp, params_path)


def shard_features(ds: Dataset, resolution: tuple[int, int] | None) -> dict[str, Feature]:
    """The source features with camera shapes set to the stored resolution (HWC)."""
    out = {}
    for k, f in ds.features.items():
        if f.is_visual:
            h, w, c = f.hwc_shape
            if resolution is not None:
                h, w = resolution
            out[k] = Feature(f.dtype, (h, w, c), ["height", "width", "channels"], info=None)
        elif f.dtype != "string":
            out[k] = f
    return out


def build_shards(
    source: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    resolution: tuple[int, int] | str | None = (224, 224),
    image_format: str = "jpeg:90",
    workers: int | None = None,
    episodes: Sequence[int] | None = None,
    shard_size_mb: float = 1024.0,
    overwrite: bool = False,
    progress: bool = True,
) -> Manifest:
    """Convert `source` (path or hub id) into a shard directory at `out`; see the module docstring."""
    if isinstance(resolution, str):
        resolution = parse_resolution(resolution)
    fmt = ImageFormat.parse(image_format)
    out = Path(out)
    ds = open_dataset(source)
    try:
        known = [e.index for e in ds.episodes]
        if episodes is None:
            chosen = known
        else:
            chosen = sorted({int(e) for e in episodes})
            missing = sorted(set(chosen) - set(known))
            if missing:
                raise DatasetError(
                    f"{ds.root}: episodes {missing} do not exist (it has {len(known)} episodes)"
                )
        params = BuildParams(str(ds.root), resolution, str(fmt), tuple(chosen))
        _check_or_start(out, params, overwrite)
        cameras = list(ds.camera_keys)
        staging = out / STAGING
        done = finished_episodes(out)
        todo = [e for e in chosen if e not in done]
        total_frames = sum(ds.episode(e).length for e in chosen)
        done_frames = total_frames - sum(ds.episode(e).length for e in todo)
        if done:
            log.info("resuming: %d of %d episodes already converted", len(chosen) - len(todo), len(chosen))
        workers = _default_workers(len(todo)) if workers is None else max(0, int(workers))
        bar = _progress_bar(total_frames, done_frames, progress)
        try:
            if workers == 0:
                q: Any = _CallbackQueue(bar)
                for e in todo:
                    _convert_episode(ds, e, staging, cameras, fmt, resolution, q)
            else:
                _run_pool(str(ds.root), todo, staging, cameras, str(fmt), resolution, workers, bar)
        finally:
            if bar is not None:
                bar.close()
        done = finished_episodes(out)
        stats = aggregate_stats([_stats_from_json(done[e]["stats"]) for e in chosen])
        return pack(
            out,
            episodes=chosen,
            source={
                "path": str(ds.root),
                "codebase_version": ds.codebase_version,
                "total_episodes": ds.num_episodes,
                "episodes": "all" if episodes is None else list(chosen),
            },
            fps=int(ds.fps),
            robot_type=ds.robot_type,
            resolution=resolution,
            image_format=fmt,
            cameras=cameras,
            features=shard_features(ds, resolution),
            stats=stats,
            shard_size_mb=shard_size_mb,
        )
    finally:
        ds.close()


def _stats_from_json(d: dict[str, dict[str, Any]]) -> dict[str, dict[str, np.ndarray]]:
    return {k: {s: np.asarray(v) for s, v in sd.items()} for k, sd in d.items()}


def _default_workers(n_todo: int) -> int:
    return max(0, min(n_todo, os.cpu_count() or 1))


class _CallbackQueue:
    def __init__(self, bar):
        self.bar = bar

    def put(self, n: int) -> None:
        if self.bar is not None:
            self.bar.update(n)


def _progress_bar(total: int, initial: int, enabled: bool):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, unit="frame", desc="build_shards", smoothing=0.1)


def _run_pool(root, todo, staging, cameras, fmt, resolution, workers, bar) -> None:
    ctx = mp.get_context("spawn")
    with ctx.Manager() as manager:
        progress = manager.Queue()
        with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker, initargs=(root,)) as pool:
            futures = {
                pool.submit(_worker_task, e, str(staging), cameras, fmt, resolution, progress): e
                for e in todo
            }
            pending = set(futures)
            while pending:
                finished, pending = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
                _drain(progress, bar)
                for f in finished:
                    try:
                        f.result()
                    except BaseException as e:
                        for other in pending:
                            other.cancel()
                        raise DatasetError(f"converting episode {futures[f]} failed: {e}") from e
            _drain(progress, bar)


def _drain(progress, bar) -> None:
    deadline = time.monotonic() + 0.05
    while time.monotonic() < deadline:
        try:
            n = progress.get_nowait()
        except queue.Empty:
            return
        if bar is not None:
            bar.update(n)

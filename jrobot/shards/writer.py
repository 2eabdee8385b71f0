"""Writing training shards: per-episode staging files (resumable) packed into large shard files.

Workers convert episodes independently into `<out>/staging/ep-NNNNNN.*`; an episode is finished when its
`.done` marker exists (written last, atomically), so an interrupted build restarts only the episodes
that were not finished. Packing then streams the staged records into a few large ArrayRecord files
(cut at episode boundaries), concatenates the side arrays, writes the episode table, stats and manifest,
and removes the staging directory. Nothing here holds more than one episode's low-dim data in memory.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from array_record.python.array_record_module import ArrayRecordReader, ArrayRecordWriter

from jrobot.features import Feature
from jrobot.image_transforms import resize_frame
from jrobot.shards.format import (
    ARRAY_RECORD_OPTIONS,
    EPISODES,
    LOWDIM_DIR,
    RECORDS_DIR,
    STATS,
    ImageFormat,
    Manifest,
    ShardError,
    ShardFile,
    encode_record,
)

STAGING = "staging"


def _stage_name(episode_index: int) -> str:
    return f"ep-{episode_index:06d}"


class EpisodeStager:
    """Writes one episode's records and side arrays into the staging directory.

    Usage: `add_frame()` for every frame in order, then `finish(...)`. Until `finish` returns, the
    episode does not count as done and a resumed build redoes it.
    """

    def __init__(
        self,
        staging: Path,
        episode_index: int,
        cameras: Sequence[str],
        image_format: ImageFormat,
        resolution: tuple[int, int] | None,
    ):
        self.staging = Path(staging)
        self.staging.mkdir(parents=True, exist_ok=True)
        self.episode_index = int(episode_index)
        self.cameras = list(cameras)
        self.image_format = image_format
        self.resolution = resolution
        base = self.staging / _stage_name(self.episode_index)
        self._records_path = base.with_suffix(".array_record")
        self._tmp_records = base.with_suffix(".array_record.tmp")
        self._writer = ArrayRecordWriter(str(self._tmp_records), ARRAY_RECORD_OPTIONS)
        self._lowdim: dict[str, list[np.ndarray]] = {}
        self.num_frames = 0

    def add_frame(
        self, frame_index: int, images: Mapping[str, np.ndarray], lowdim: Mapping[str, Any]
    ) -> None:
        payloads = []
        for cam in self.cameras:
            if cam not in images:
                raise ShardError(f"episode {self.episode_index} frame {frame_index}: no image for {cam!r}")
            payloads.append(self.image_format.encode(resize_frame(images[cam], self.resolution)))
        self._writer.write(encode_record(self.episode_index, int(frame_index), payloads))
        for k, v in lowdim.items():
            self._lowdim.setdefault(k, []).append(np.asarray(v))
        self.num_frames += 1

    def finish(self, *, tasks: Mapping[int, str], stats: Mapping[str, Mapping[str, Any]]) -> None:
        """`tasks` maps the source dataset's task indices used in this episode to their text."""
        self._writer.close()
        os.replace(self._tmp_records, self._records_path)
        base = self.staging / _stage_name(self.episode_index)
        arrays = {k: np.stack(v) for k, v in self._lowdim.items()}
        tmp = base.with_suffix(".tmp.npz")
        np.savez(tmp, **arrays)
        os.replace(tmp, base.with_suffix(".npz"))
        done = {
            "episode_index": self.episode_index,
            "num_frames": self.num_frames,
            "tasks": {str(int(k)): str(v) for k, v in tasks.items()},
            "stats": _jsonable(stats),
        }
        tmp = base.with_suffix(".done.tmp")
        tmp.write_text(json.dumps(done))
        os.replace(tmp, base.with_suffix(".done"))

    def abort(self) -> None:
        try:
            self._writer.close()
        finally:
            self._tmp_records.unlink(missing_ok=True)


def _jsonable(stats: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    return {k: {s: np.asarray(v).tolist() for s, v in d.items()} for k, d in stats.items()}


def finished_episodes(out: Path) -> dict[int, dict[str, Any]]:
    """Episodes already staged by an earlier (possibly interrupted) build, with their `.done` info."""
    staging = Path(out) / STAGING
    done = {}
    if not staging.is_dir():
        return done
    for p in sorted(staging.glob("ep-*.done")):
        base = p.with_suffix("")
        if base.with_suffix(".array_record").is_file() and base.with_suffix(".npz").is_file():
            info = json.loads(p.read_text())
            done[int(info["episode_index"])] = info
    return done


def pack(
    out: Path,
    *,
    episodes: Sequence[int],
    source: Mapping[str, Any],
    fps: int,
    robot_type: str | None,
    resolution: tuple[int, int] | None,
    image_format: ImageFormat,
    cameras: Sequence[str],
    features: Mapping[str, Feature],
    stats: Mapping[str, Mapping[str, Any]],
    shard_size_mb: float = 1024.0,
    read_chunk: int = 256,
) -> Manifest:
    """Stream staged episodes (in the given order) into the final shard layout."""
    out = Path(out)
    staging = out / STAGING
    done = finished_episodes(out)
    missing = [e for e in episodes if e not in done]
    if missing:
        raise ShardError(f"{out}: cannot pack, episodes {missing[:10]} are not staged")
    records_dir = out / RECORDS_DIR
    lowdim_dir = out / LOWDIM_DIR
    for d in (records_dir, lowdim_dir):
        if d.exists():
            shutil.rmtree(d)
        d.mkdir(parents=True)

    # Tasks: renumbered in first-seen order over the packed episodes (as LeRobot assigns them).
    tasks: list[str] = []
    task_ids: dict[str, int] = {}
    for e in episodes:
        for t in done[e]["tasks"].values():
            if t not in task_ids:
                task_ids[t] = len(tasks)
                tasks.append(t)

    limit = shard_size_mb * 1024 * 1024
    files: list[ShardFile] = []
    writer = None
    written = 0
    file_start = 0
    total = 0
    ep_rows = {"episode_index": [], "start": [], "end": [], "length": [], "task_index": [], "task": []}
    lowdim_parts: dict[str, list[np.ndarray]] = {}

    def close_file():
        nonlocal writer, written
        if writer is not None:
            writer.close()
            files[-1].num_records = total - file_start
            writer = None
            written = 0

    for e in episodes:
        base = staging / _stage_name(e)
        if writer is None or written >= limit:
            close_file()
            file_start = total
            rel = f"{RECORDS_DIR}/shard-{len(files):05d}.array_record"
            writer = ArrayRecordWriter(str(out / rel), ARRAY_RECORD_OPTIONS)
            files.append(ShardFile(path=rel, start=file_start, num_records=0))
        reader = ArrayRecordReader(str(base.with_suffix(".array_record")))
        try:
            n = reader.num_records()
            if n != done[e]["num_frames"]:
                raise ShardError(
                    f"{base}.array_record: {n} records, staged episode says {done[e]['num_frames']}"
                )
            for s in range(0, n, read_chunk):
                for rec in reader.read(s, min(n, s + read_chunk)):
                    writer.write(rec)
                    written += len(rec)
        finally:
            reader.close()
        with np.load(base.with_suffix(".npz")) as z:
            arrays = {k: z[k] for k in z.files}
        local = {int(k): task_ids[t] for k, t in done[e]["tasks"].items()}
        arrays["index"] = np.arange(total, total + n, dtype=np.int64)
        if "task_index" in arrays:
            src_task = arrays["task_index"].reshape(-1)
            unknown = set(np.unique(src_task).tolist()) - set(local)
            if unknown:
                raise ShardError(f"{base}: frames use task indices {sorted(unknown)} with no task text")
            arrays["task_index"] = np.array([local[int(i)] for i in src_task], dtype=np.int64)
        first_task = int(arrays["task_index"][0]) if "task_index" in arrays and n else 0
        for k, v in arrays.items():
            lowdim_parts.setdefault(k, []).append(v)
        ep_rows["episode_index"].append(e)
        ep_rows["start"].append(total)
        ep_rows["end"].append(total + n)
        ep_rows["length"].append(n)
        ep_rows["task_index"].append(first_task)
        ep_rows["task"].append(tasks[first_task] if tasks else "")
        total += n
    close_file()

    for k, parts in lowdim_parts.items():
        arr = np.concatenate(parts, axis=0)
        tmp = lowdim_dir / f"{k}.tmp.npy"
        np.save(tmp, arr)
        os.replace(tmp, lowdim_dir / f"{k}.npy")
    pq.write_table(pa.table(ep_rows), out / EPISODES)
    (out / STATS).write_text(json.dumps(_jsonable(stats), indent=2))
    manifest = Manifest(
        source=dict(source),
        fps=int(fps),
        robot_type=robot_type,
        resolution=tuple(resolution) if resolution else None,
        image_format=image_format,
        cameras=list(cameras),
        features=dict(features),
        num_frames=total,
        num_episodes=len(episodes),
        tasks=tasks,
        files=files,
    )
    manifest.write(out)
    shutil.rmtree(staging, ignore_errors=True)
    return manifest

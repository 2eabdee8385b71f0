"""The grain input pipeline: shards -> shuffled windows -> augmented static-shape batches -> device.

    WindowBatches(                         a grain MapDataset; element i = batch i
      BatchPositions,                      batch i -> its (shard set, window) pairs: global seeded
                                           shuffle per epoch, repeat, weighted mix, process slice
      ReadWindows)                         one vectorized read per batch; images stay uint8
      .random_map(ImageAugment)            optional, per sample, in the reading threads/workers
      .to_iter_dataset(ReadOptions)        reading threads decode the JPEGs, or, with num_workers > 0,
      | SharedMemoryPrefetch               worker processes do (`jrobot.pipeline.workers`)

The sample stream is computed a batch at a time (`jrobot.pipeline.sampling`), and the windows are
read a batch at a time, so the per-sample Python work is a few array lookups and what remains is JPEG
decoding, which releases the GIL.

Because the sharding slices one global shuffled stream, N processes together see every frame exactly
once per epoch. The iterator state is a small JSON dict (grain's own: the next batch index), saved by
the trainer next to the model, so a resumed run continues with exactly the batches it would have
produced.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator, Sequence
from typing import Any

import grain
import numpy as np

from jrobot.pipeline.augment import AugmentConfig, ImageAugment
from jrobot.pipeline.memory import retain_freed_memory
from jrobot.pipeline.sampling import BatchPositions
from jrobot.pipeline.windows import (
    WindowSource,
    WindowSpec,
    oversample_episode_starts,
    select_frames,
    split_episodes,
)
from jrobot.pipeline.workers import SharedMemoryPrefetch
from jrobot.shards.format import ShardSet


@dataclasses.dataclass
class PipelineConfig:
    """What the trainer asks of the input pipeline. Built from a config's `data` section."""

    shards: Sequence[str]
    window: WindowSpec
    batch_size: int  # global batch size, across all processes
    weights: Sequence[float] | None = None  # mixing weights, one per shard set
    seed: int = 0
    episodes: Sequence[int] | None = None  # restrict to these episodes (applies to every shard set)
    tasks: Sequence[str] | None = None  # restrict to these tasks
    val_fraction: float = 0.0
    val_episodes: Sequence[int] | None = None
    augment: AugmentConfig | None = None
    num_workers: int = 0  # worker processes (0 = decode in `read_threads` threads of this process)
    read_threads: int = 2
    prefetch: int = 4  # batches buffered per worker process (2x that many without workers)
    # training frames among their episode's first `episode_start_frames` drawn 1 + `episode_start_repeats`
    # times per epoch (`windows.oversample_episode_starts`); 0 = every frame once
    episode_start_frames: int = 0
    episode_start_repeats: int = 0

    def per_process_batch(self, process_count: int) -> int:
        if self.batch_size % process_count:
            raise ValueError(f"batch_size {self.batch_size} is not divisible by {process_count} processes")
        return self.batch_size // process_count


def make_sources(cfg: PipelineConfig, split: str = "train") -> list[WindowSource]:
    """One WindowSource per shard set, restricted to the split's episodes."""
    if split not in ("train", "val"):
        raise ValueError(f"split must be 'train' or 'val', got {split!r}")
    sources = []
    for k, path in enumerate(cfg.shards):
        shards = ShardSet(path)
        train_eps, val_eps = split_episodes(
            shards, val_fraction=cfg.val_fraction, val_episodes=cfg.val_episodes, seed=cfg.seed + k
        )
        eps = train_eps if split == "train" else val_eps
        if cfg.episodes is not None:
            keep = {int(e) for e in cfg.episodes}
            eps = [e for e in eps if e in keep]
        frames = select_frames(shards, episodes=eps, tasks=cfg.tasks)
        if split == "train":
            frames = oversample_episode_starts(
                shards, frames, cfg.episode_start_frames, cfg.episode_start_repeats
            )
        src = WindowSource(shards, cfg.window, frames, dataset_index=k)
        if split == "train" and len(src) == 0:
            raise ValueError(f"{path}: no training frames left after the episode/task selection")
        sources.append(src)
    return sources


class _Positions:
    """grain source: element i is (k, i), the i-th window of shard set k."""

    def __init__(self, size: int, dataset_index: int):
        self.size, self.dataset_index = int(size), int(dataset_index)

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, i: int) -> np.ndarray:
        return np.array([self.dataset_index, i], dtype=np.int64)


class ReadWindows(grain.transforms.Map):
    """grain transform: a batch of (shard set, position) pairs -> the stacked windows."""

    def __init__(self, sources: Sequence[WindowSource]):
        self.sources = list(sources)

    def map(self, pairs: np.ndarray) -> dict[str, np.ndarray]:
        retain_freed_memory()  # in whichever process (main or worker) assembles the batch
        sets = pairs[:, 0]
        if np.all(sets == sets[0]):
            return self.sources[int(sets[0])].read_batch(pairs[:, 1])
        return self._read_mixed(pairs)

    def map_into(self, pairs: np.ndarray, out: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Like `map`, written into `out` (images decoded straight into it)."""
        sets = pairs[:, 0]
        if np.all(sets == sets[0]):
            return self.sources[int(sets[0])].read_batch(pairs[:, 1], out=out)
        for key, value in self._read_mixed(pairs).items():
            out[key][...] = value
        return out

    def _read_mixed(self, pairs: np.ndarray) -> dict[str, np.ndarray]:
        sets = pairs[:, 0]
        parts, order = {}, []
        for k in np.unique(sets).tolist():
            rows = np.flatnonzero(sets == k)
            parts[k] = self.sources[k].read_batch(pairs[rows, 1])
            order.append(rows)
        inverse = np.argsort(np.concatenate(order))
        k0 = next(iter(parts))
        out = {}
        for key, first in parts[k0].items():
            for k, part in parts.items():
                if key not in part or part[key].shape[1:] != first.shape[1:]:
                    got = part[key].shape[1:] if key in part else "nothing"
                    raise ValueError(
                        f"mixed shard sets disagree on {key!r}: {self.sources[k0].shards.path} gives "
                        f"{first.shape[1:]}, {self.sources[k].shards.path} gives {got}; mix shards built alike"
                    )
            out[key] = np.concatenate([part[key] for part in parts.values()])[inverse]
        return out


class WindowBatches(grain.MapDataset):
    """Batch i of windows: `read` applied to `positions[i]` (an (B, 2) array of (shard set, position)).

    A MapDataset of its own rather than `positions.map(read)`: worker processes ask for a batch to
    be written straight into their shared-memory slot (`read_into`), and a plain random-access
    `positions` (like `BatchPositions`) is indexed directly, without the ~140 us per batch of
    grain's source wrapper (timers and metrics for each element).
    """

    def __init__(self, positions, read: ReadWindows):
        if isinstance(positions, grain.MapDataset):
            super().__init__(positions)
        else:
            super().__init__()
        self._positions = positions
        self._read = read

    def __len__(self) -> int:
        return len(self._positions)

    def __str__(self) -> str:
        return "WindowBatches"

    def __getitem__(self, index):
        if isinstance(index, slice):
            return self.slice(index)
        return self._read.map(self._positions[index])

    def read_into(self, index: int, out: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self._read.map_into(self._positions[index], out)


def _positions(sources: Sequence[WindowSource]) -> list[grain.MapDataset]:
    return [grain.MapDataset.source(_Positions(len(s), k)) for k, s in enumerate(sources)]


def make_train_dataset(
    cfg: PipelineConfig, *, process_index: int = 0, process_count: int = 1
) -> grain.IterDataset:
    """Infinite, shuffled, per-process batches (dicts of numpy arrays)."""
    sources = make_sources(cfg, "train")
    positions = BatchPositions(
        [len(s) for s in sources],
        cfg.per_process_batch(process_count),
        seed=cfg.seed,
        weights=cfg.weights,
        process_index=process_index,
        process_count=process_count,
    )
    ds = WindowBatches(positions, ReadWindows(sources))
    if cfg.augment is not None and cfg.augment.enabled:
        cams = [k for k in cfg.window.deltas if sources[0].shards.features[k].is_visual]
        ds = ds.seed(cfg.seed + 1 + process_index).random_map(ImageAugment(cams, cfg.augment))
    return _to_iter(ds, cfg)


def make_eval_dataset(
    cfg: PipelineConfig, *, split: str = "val", process_index: int = 0, process_count: int = 1
) -> grain.IterDataset:
    """One ordered pass over the split, no augmentation; the last partial batch is dropped."""
    sources = make_sources(cfg, split)
    ds = grain.MapDataset.concatenate(
        [p for p, s in zip(_positions(sources), sources, strict=True) if len(s)]
    )
    ds = ds[process_index::process_count].batch(cfg.per_process_batch(process_count), drop_remainder=True)
    return _to_iter(WindowBatches(ds, ReadWindows(sources)), cfg)


def _to_iter(ds: grain.MapDataset, cfg: PipelineConfig) -> grain.IterDataset:
    if cfg.num_workers > 0:
        return SharedMemoryPrefetch(ds, cfg.num_workers, slots=cfg.prefetch)
    return ds.to_iter_dataset(
        grain.ReadOptions(num_threads=cfg.read_threads, prefetch_buffer_size=2 * cfg.prefetch)
    )


class DataLoader:
    """Iterator of batches with a checkpointable state and a record of the time spent waiting.

    `to_device` (e.g. `jrobot.pipeline.device.GlobalBatcher`) turns each host batch into global
    arrays on the mesh; without it batches stay numpy.
    """

    def __init__(self, dataset: grain.IterDataset, to_device=None):
        self._it = iter(dataset)
        self._to_device = to_device
        self.wait_s = 0.0

    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        t0 = time.perf_counter()
        batch = next(self._it)
        if self._to_device is not None:
            batch = self._to_device(batch)
        self.wait_s += time.perf_counter() - t0
        return batch

    @property
    def iterator(self) -> grain.DatasetIterator:
        """The underlying grain iterator (what `grain.checkpoint.CheckpointSave` saves)."""
        return self._it

    def get_state(self) -> dict[str, Any]:
        return self._it.get_state()

    def set_state(self, state: dict[str, Any]) -> None:
        self._it.set_state(state)

    def close(self) -> None:
        close = getattr(self._it, "close", None)
        if close is not None:
            close()

    def __enter__(self) -> DataLoader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def batch_spec(cfg: PipelineConfig, process_count: int = 1) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Shapes and dtypes of one per-process batch, without reading any data (for jit/eval_shape)."""
    src = make_sources(cfg, "train")[0]
    b = cfg.per_process_batch(process_count)
    feats = src.shards.features
    out: dict[str, tuple[tuple[int, ...], np.dtype]] = {
        "index": ((b,), np.dtype(np.int64)),
        "dataset_index": ((b,), np.dtype(np.int64)),
        "episode_index": ((b,), np.dtype(np.int64)),
        "task_index": ((b,), np.dtype(np.int64)),
    }
    for key, deltas in cfg.window.deltas.items():
        f = feats[key]
        t = len(deltas)
        if f.is_visual:
            out[key] = ((b, t, *src.shards.image_shape(key)), np.dtype(np.uint8))
        else:
            out[key] = ((b, t, *src.shards.lowdim(key).shape[1:]), src.shards.lowdim(key).dtype)
        out[f"{key}_is_pad"] = ((b, t), np.dtype(bool))
    return out

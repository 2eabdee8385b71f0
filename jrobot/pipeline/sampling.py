"""Which windows each training batch reads: the sample stream, computed a whole batch at a time.

The stream is a seeded global shuffle of every shard set's windows, reshuffled every epoch and
repeated forever, interleaved across shard sets by weight, and sliced per JAX process (process p of P
takes samples p, p+P, p+2P, ...). Batch i of a process is then a pure function of i, so grain's
index-based iterator state (the next batch index) checkpoints it exactly.

grain can express the same stream as `shuffle().repeat()`, `mix`, `[p::P]` and `batch`, but those
compute it one element at a time in Python: about 50 us of GIL-held work per sample, which on a
2-core machine is a quarter of what the JPEG-decoding threads have to spare. Here one batch costs a
handful of numpy calls. The shuffle is one permutation per epoch (numpy's, seeded by (seed, epoch)),
kept for the current and the previous epoch: 4 bytes per window.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Sequence

import numpy as np


class EpochShuffle:
    """Item of sample g of an endless stream over `n` items: permutation_e[g mod n], e = g div n.

    Every epoch is a complete, freshly seeded permutation, so each item is seen exactly once per
    epoch. Thread-safe; a copy sent to a grain worker process starts with an empty cache.
    """

    def __init__(self, n: int, seed: int, keep: int = 2):
        if n <= 0:
            raise ValueError(f"cannot shuffle {n} items")
        self.n, self.seed, self.keep = int(n), int(seed), int(keep)
        self._dtype = np.int32 if self.n < 2**31 else np.int64
        self._cache: dict[int, np.ndarray] = {}
        self._lock = threading.Lock()

    def __getstate__(self):
        return {"n": self.n, "seed": self.seed, "keep": self.keep, "_dtype": self._dtype}

    def __setstate__(self, state) -> None:
        self.__dict__.update(state)
        self._cache, self._lock = {}, threading.Lock()

    def permutation(self, epoch: int) -> np.ndarray:
        with self._lock:
            perm = self._cache.get(epoch)
            if perm is None:
                perm = np.random.default_rng([self.seed, epoch]).permutation(self.n).astype(self._dtype)
                self._cache[epoch] = perm
                for old in sorted(self._cache)[: -self.keep]:
                    del self._cache[old]
            return perm

    def __call__(self, g: np.ndarray) -> np.ndarray:
        epoch, r = np.divmod(np.asarray(g, dtype=np.int64), self.n)
        first = int(epoch.min()) if epoch.size else 0
        if epoch.size == 0 or int(epoch.max()) == first:  # the usual case: one epoch per batch
            return self.permutation(first)[r].astype(np.int64)
        out = np.empty(r.shape, dtype=np.int64)
        for e in np.unique(epoch).tolist():
            sel = epoch == e
            out[sel] = self.permutation(e)[r[sel]]
        return out


class WeightedInterleave:
    """Sample g of a mixed stream -> (shard set k, index of that sample within set k's own stream).

    Exact proportions with random access: the stream is cut into blocks of `period` samples, and each
    block holds round(w_k * period) samples of set k (largest remainder, so the counts add up to the
    period), spread evenly over the block in a fixed order.
    """

    def __init__(self, weights: Sequence[float], period: int = 1000):
        w = np.asarray(weights, dtype=np.float64)
        if w.ndim != 1 or w.size == 0 or not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
            raise ValueError(
                f"mixing weights must be non-negative, finite and not all zero, got {list(weights)}"
            )
        share = w / w.sum() * period
        counts = np.floor(share).astype(np.int64)
        counts[np.argsort(-(share - counts), kind="stable")[: period - int(counts.sum())]] += 1
        sets = np.concatenate([np.full(c, k) for k, c in enumerate(counts)])
        ranks = np.concatenate([np.arange(c) for c in counts])
        place = np.concatenate([(np.arange(c) + 0.5) / c for c in counts if c])
        order = np.argsort(place, kind="stable")
        self.period = int(period)
        self.counts = counts
        self.sets, self.ranks = sets[order], ranks[order]

    def __call__(self, g: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        block, r = np.divmod(np.asarray(g, dtype=np.int64), self.period)
        k = self.sets[r]
        return k, block * self.counts[k] + self.ranks[r]


class BatchPositions:
    """grain data source: element i is process `process_index`'s batch i, an int64 array of
    (shard set, window position) rows, `batch_size` of them.

    `sizes` are the shard sets' window counts; set k is shuffled with seed `seed + 7919 * k`. With
    several sets, `weights` (default: the sizes) set the interleaving proportions.
    """

    def __init__(
        self,
        sizes: Sequence[int],
        batch_size: int,
        seed: int,
        weights: Sequence[float] | None = None,
        process_index: int = 0,
        process_count: int = 1,
    ):
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        if not 0 <= process_index < process_count:
            raise ValueError(f"process_index {process_index} is not in [0, {process_count})")
        self.batch_size, self.process_index, self.process_count = (
            int(batch_size),
            process_index,
            process_count,
        )
        self.shuffles = [EpochShuffle(n, seed + 7919 * k) for k, n in enumerate(sizes)]
        if len(sizes) > 1:
            weights = list(weights) if weights is not None else [float(n) for n in sizes]
            if len(weights) != len(sizes):
                raise ValueError(f"{len(weights)} mixing weights for {len(sizes)} shard sets")
            self.interleave: WeightedInterleave | None = WeightedInterleave(weights)
        else:
            self.interleave = None

    def __len__(self) -> int:
        return sys.maxsize  # endless, like grain's repeat()

    def __getitem__(self, i: int) -> np.ndarray:
        local = int(i) * self.batch_size + np.arange(self.batch_size, dtype=np.int64)
        g = local * self.process_count + self.process_index
        out = np.empty((self.batch_size, 2), dtype=np.int64)
        if self.interleave is None:
            out[:, 0] = 0
            out[:, 1] = self.shuffles[0](g)
            return out
        sets, index = self.interleave(g)
        out[:, 0] = sets
        for k in np.unique(sets).tolist():
            sel = sets == k
            out[sel, 1] = self.shuffles[k](index[sel])
        return out

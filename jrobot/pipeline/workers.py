"""Multiprocessing prefetch: worker processes decode batches straight into shared memory.

Reading threads share one GIL. The Python part of a batch is small, but on a 2-core machine the
threads still collide on it often enough to leave ~15-30% of the CPU idle. Worker processes do not
collide. grain's own `mp_prefetch` moves every array of every batch through a fresh shared-memory
segment that both sides create, map, page in and unlink: at ~300 batches/s of 2.4 MB that cost the
main process ~40% of a core in the kernel and gave 1,190 samples/s where threads gave ~3,000.

Here each worker owns a few slots in one shared-memory block, mapped once. It decodes a batch's
images straight into a free slot, and the main process hands the batch out as arrays viewing that
slot, without copying. The slot goes back to its worker when the consumer has dropped the batch
(the arrays, and any view of them, are garbage-collected). A batch whose lending would leave its
worker without a free slot is copied out instead, so a consumer that keeps batches never stalls
the workers.

Batch i of the parent `grain.MapDataset` is computed by worker (i - start) mod W, and the main
process takes the workers' batches round-robin, so the stream is exactly the parent's whatever the
number of workers, and the iterator state is just the next batch index.
"""

from __future__ import annotations

import collections
import contextlib
import ctypes
import multiprocessing as mp
import os
import traceback
import weakref
from multiprocessing import shared_memory
from typing import Any

import grain
import numpy as np

from jrobot.pipeline.memory import retain_freed_memory

_ALIGN = 64


def _layout(example: dict[str, np.ndarray]) -> tuple[list[tuple[str, tuple[int, ...], str, int]], int]:
    """(key, shape, dtype, offset) of each array inside one slot, and the slot size in bytes."""
    fields, offset = [], 0
    for key in sorted(example):
        arr = np.asarray(example[key])
        if arr.dtype.hasobject:
            raise TypeError(f"batch key {key!r} holds Python objects; only numeric arrays can be prefetched")
        fields.append((key, tuple(arr.shape), arr.dtype.str, offset))
        offset += -(-arr.nbytes // _ALIGN) * _ALIGN
    return fields, max(offset, _ALIGN)


def _views(buf, fields, slot_bytes: int, slot: int) -> dict[str, np.ndarray]:
    base = slot * slot_bytes
    return {
        key: np.ndarray(shape, dtype=np.dtype(dtype), buffer=buf, offset=base + off)
        for key, shape, dtype, off in fields
    }


def _check_shared_memory_space(need: int, path: str = "/dev/shm") -> None:
    """Fail clearly now rather than with SIGBUS later: a block larger than the free space of the
    tmpfs (64 MB by default in Docker) is created without complaint and crashes when written."""
    try:
        st = os.statvfs(path)
    except OSError:
        return  # not Linux-like; nothing to check
    free = st.f_bavail * st.f_frsize
    if need > free:
        raise RuntimeError(
            f"the data workers need {need / 2**20:.0f} MB of shared memory but {path} has "
            f"{free / 2**20:.0f} MB free; lower data.num_workers, data.prefetch or the batch size, "
            "or give the container more (docker run --shm-size=2g)"
        )


def _copy_into(batch: dict[str, Any], out: dict[str, np.ndarray], i: int) -> None:
    if set(batch) != set(out):
        raise ValueError(f"batch {i} has keys {sorted(batch)}, the first batch had {sorted(out)}")
    for key, dst in out.items():
        src = np.asarray(batch[key])
        if src.shape != dst.shape or src.dtype != dst.dtype:
            raise ValueError(
                f"batch {i}: {key!r} is {src.dtype}{list(src.shape)}, the first batch had "
                f"{dst.dtype}{list(dst.shape)}; batches must have static shapes"
            )
        dst[...] = src


def _worker(parent, shm_name, fields, slot_bytes, slots, start, step, stop, conn) -> None:
    """Compute batches start, start+step, ... < stop, each into a free slot; the main process hands
    slots back (by number, in any order) once nothing uses them any more."""
    shm = shared_memory.SharedMemory(name=shm_name)
    read_into = getattr(parent, "read_into", None)
    free = collections.deque(range(slots))
    out = None
    try:
        for i in range(start, stop, step):
            if not free:
                slot = conn.recv()
                if slot is None:  # the main process asks us to stop
                    return
                free.append(slot)
            slot = free.popleft()
            try:
                out = _views(shm.buf, fields, slot_bytes, slot)
                if read_into is not None:  # decode straight into the slot, no copy
                    read_into(i, out)
                else:
                    _copy_into(parent[i], out, i)
                out = None
            except Exception:
                conn.send(("error", i, traceback.format_exc()))
                return
            conn.send(("ok", i, slot))
    except (EOFError, BrokenPipeError, KeyboardInterrupt):
        pass  # the main process went away or is shutting down
    finally:
        out = None
        shm.close()


class SharedMemoryPrefetch(grain.IterDataset):
    """`parent` (a MapDataset of batches: dicts of numpy arrays with static shapes) read ahead by
    `num_workers` processes, `slots` batches each."""

    def __init__(self, parent: grain.MapDataset, num_workers: int, slots: int = 2):
        super().__init__()
        if num_workers < 1 or slots < 1:
            raise ValueError(f"need num_workers >= 1 and slots >= 1, got {num_workers} and {slots}")
        self.parent, self.num_workers, self.slots = parent, int(num_workers), int(slots)

    def __iter__(self) -> SharedMemoryIterator:
        return SharedMemoryIterator(self.parent, self.num_workers, self.slots)


class SharedMemoryIterator(grain.DatasetIterator):
    """Iterator of `SharedMemoryPrefetch`; state {"next_index": n}. Workers start on first use."""

    def __init__(self, parent: grain.MapDataset, num_workers: int, slots: int):
        super().__init__()
        self._parent_ds, self._num_workers, self._slots = parent, num_workers, slots
        self._length = len(parent)
        self._next = 0
        self._fields = None
        self._slot_bytes = 0
        self._shm: list[shared_memory.SharedMemory] = []
        self._procs: list[Any] = []
        self._conns: list[Any] = []
        self._start = 0  # batch index the running workers started from
        self._lent = [0] * num_workers  # slots of each worker the consumer still holds batches in
        self._released: collections.deque = collections.deque()  # (generation, worker, slot)
        self._generation = 0  # bumped when workers restart, so late releases of old slots are ignored
        retain_freed_memory()  # the batches copied out of the slots are fresh megabytes each time

    # -- workers -----------------------------------------------------------------------------------

    def _start_workers(self) -> None:
        if self._fields is None:
            self._fields, self._slot_bytes = _layout(self._parent_ds[0])
        _check_shared_memory_space(self._slot_bytes * self._slots * self._num_workers)
        ctx = mp.get_context("spawn")  # never fork a process that may hold JAX/XLA threads
        self._start = self._next
        for w in range(self._num_workers):
            shm = shared_memory.SharedMemory(create=True, size=self._slot_bytes * self._slots)
            ours, theirs = ctx.Pipe()
            p = ctx.Process(
                target=_worker,
                args=(
                    self._parent_ds,
                    shm.name,
                    self._fields,
                    self._slot_bytes,
                    self._slots,
                    self._start + w,
                    self._num_workers,
                    self._length,
                    theirs,
                ),
                daemon=True,
                name=f"jrobot-data-{w}",
            )
            p.start()
            theirs.close()
            self._shm.append(shm)
            self._procs.append(p)
            self._conns.append(ours)

    def _stop_workers(self) -> None:
        for conn in self._conns:
            with contextlib.suppress(OSError):
                conn.send(None)
        for p in self._procs:
            p.join(timeout=5)
            if p.is_alive():
                p.terminate()
                p.join(timeout=5)
        for conn in self._conns:
            conn.close()
        for shm in self._shm:
            with contextlib.suppress(FileNotFoundError):
                shm.unlink()
            try:
                shm.close()
            except BufferError:
                # The consumer still holds batches lent from this block. Drop our references only:
                # the mapping lives on in those arrays and goes away with the last of them.
                shm._buf = shm._mmap = None
                shm.close()
        self._procs, self._conns, self._shm = [], [], []
        self._generation += 1
        self._lent = [0] * self._num_workers
        self._released.clear()

    def _give_back(self, w: int, slot: int) -> None:
        # A worker that has exited (after an error, or killed) is reported by `_receive`, not here.
        with contextlib.suppress(OSError):
            self._conns[w].send(slot)

    def _flush_released(self) -> None:
        """Hand back to their workers the slots whose lent batches the consumer has dropped."""
        while self._released:
            generation, w, slot = self._released.popleft()
            if generation == self._generation:
                self._lent[w] -= 1
                self._give_back(w, slot)

    def _lend(self, w: int, slot: int) -> dict[str, np.ndarray]:
        """The batch in `slot` as arrays viewing the shared memory, no copy. The slot goes back to
        its worker when the last array (or view of one) is garbage-collected."""
        base = slot * self._slot_bytes
        lease = (ctypes.c_char * self._slot_bytes).from_buffer(self._shm[w].buf, base)
        weakref.finalize(lease, self._released.append, (self._generation, w, slot))
        self._lent[w] += 1
        return _views(lease, self._fields, self._slot_bytes, 0)  # arrays based on the lease

    def _receive(self, w: int):
        conn, proc = self._conns[w], self._procs[w]
        waited = 0.0
        while not conn.poll(0.05):
            self._flush_released()  # a batch may have been dropped in another thread meanwhile
            waited += 0.05
            if waited >= 1.0 and not proc.is_alive():
                raise RuntimeError(
                    f"data worker {w} (pid {proc.pid}) died with exit code {proc.exitcode} "
                    f"before producing batch {self._next}"
                )
        try:
            return conn.recv()
        except (EOFError, OSError):  # the worker's end closed: it exited or was killed
            proc.join(timeout=5)
            raise RuntimeError(
                f"data worker {w} (pid {proc.pid}) exited (code {proc.exitcode}) before producing batch {self._next}"
            ) from None

    # -- iterator ----------------------------------------------------------------------------------

    def start_prefetch(self) -> None:
        if not self._procs and not self._closed and self._next < self._length:
            self._start_workers()

    def __next__(self) -> dict[str, np.ndarray]:
        self._assert_not_closed()
        if self._next >= self._length:
            raise StopIteration
        if not self._procs:
            self._start_workers()
        w = (self._next - self._start) % self._num_workers
        self._flush_released()
        try:
            kind, i, payload = self._receive(w)
        except RuntimeError:
            self._stop_workers()
            raise
        if kind == "error":
            self._stop_workers()
            raise RuntimeError(f"data worker {w} failed on batch {i}:\n{payload}")
        if i != self._next:  # cannot happen unless the protocol is broken; never hand out a wrong batch
            self._stop_workers()
            raise RuntimeError(f"data worker {w} sent batch {i}, expected {self._next}")
        if self._lent[w] + 1 < self._slots:
            batch = self._lend(w, payload)
        else:  # lending this one would leave the worker no slot to work in: copy it out instead
            views = _views(self._shm[w].buf, self._fields, self._slot_bytes, payload)
            batch = {k: v.copy() for k, v in views.items()}
            del views
            self._give_back(w, payload)
        self._next += 1
        return batch

    def get_state(self) -> dict[str, Any]:
        return {"next_index": self._next}

    def set_state(self, state: dict[str, Any]) -> None:
        n = int(state["next_index"])
        if not 0 <= n <= self._length:
            raise IndexError(f"iterator state next_index {n} is out of range for {self._length} batches")
        if n != self._next:
            self._stop_workers()
        self._next = n

    def close(self) -> None:
        if not self._closed:
            self._stop_workers()
        super().close()

    def __str__(self) -> str:
        return f"SharedMemoryIterator(num_workers={self._num_workers}, slots={self._slots})"

"""The batch sample stream (shuffle, mix, process slices) and the shared-memory worker processes."""

from __future__ import annotations

import gc
import os
import signal
from pathlib import Path

import grain
import numpy as np
import pytest

from jrobot.pipeline.augment import AugmentConfig
from jrobot.pipeline.loader import DataLoader, PipelineConfig, make_train_dataset
from jrobot.pipeline.sampling import BatchPositions, EpochShuffle, WeightedInterleave
from jrobot.pipeline.windows import WindowSpec
from jrobot.pipeline.workers import SharedMemoryPrefetch

CAMS = ["observation.images.front", "observation.images.wrist"]


def cfg(shards, **kw) -> PipelineConfig:
    spec = WindowSpec.for_policy(observation_deltas=[0], action_deltas=range(10), camera_keys=CAMS)
    base = dict(shards=[shards], window=spec, batch_size=4, seed=0, read_threads=1)
    base.update(kw)
    return PipelineConfig(**base)


def shm_blocks() -> set[str]:
    return {p.name for p in Path("/dev/shm").glob("psm_*")} if Path("/dev/shm").is_dir() else set()


# -- sampling ---------------------------------------------------------------------------------------


def test_epoch_shuffle_is_a_fresh_permutation_every_epoch_and_crosses_epochs():
    s = EpochShuffle(10, seed=3)
    e0, e1 = s(np.arange(10)), s(np.arange(10, 20))
    assert sorted(e0.tolist()) == list(range(10)) and sorted(e1.tolist()) == list(range(10))
    assert e0.tolist() != e1.tolist()
    np.testing.assert_array_equal(s(np.arange(7, 13)), np.concatenate([e0[7:], e1[:3]]))
    np.testing.assert_array_equal(EpochShuffle(10, seed=3)(np.arange(20)), np.concatenate([e0, e1]))
    with pytest.raises(ValueError, match="0 items"):
        EpochShuffle(0, seed=0)


def test_weighted_interleave_has_exact_proportions_and_consecutive_indices():
    mix = WeightedInterleave([3.0, 1.0, 0.0], period=100)
    sets, index = mix(np.arange(1000))
    assert np.bincount(sets, minlength=3).tolist() == [750, 250, 0]
    for k in (0, 1):  # each set's own stream is consumed in order, nothing skipped or repeated
        assert index[sets == k].tolist() == list(range(int(np.sum(sets == k))))
    assert np.all(np.diff(np.flatnonzero(sets == 1)) <= 4)  # spread evenly, not in runs
    with pytest.raises(ValueError, match="mixing weights"):
        WeightedInterleave([0.0, 0.0])
    with pytest.raises(ValueError, match="mixing weights"):
        WeightedInterleave([1.0, float("nan")])


def test_batch_positions_slices_one_global_stream_across_processes():
    one = BatchPositions([30], batch_size=6, seed=1)
    three = [BatchPositions([30], batch_size=2, seed=1, process_index=p, process_count=3) for p in range(3)]
    for i in range(12):  # 12 global batches = 2.4 epochs
        glob = one[i][:, 1]
        for p in range(3):
            np.testing.assert_array_equal(three[p][i][:, 1], glob[p::3])
    with pytest.raises(ValueError, match="process_index 3"):
        BatchPositions([30], batch_size=2, seed=1, process_index=3, process_count=3)
    with pytest.raises(ValueError, match="2 mixing weights for 3"):
        BatchPositions([5, 6, 7], batch_size=2, seed=0, weights=[1.0, 2.0])


# -- worker processes -------------------------------------------------------------------------------


def test_workers_give_exactly_the_thread_batches_even_when_the_consumer_keeps_them(shards):
    """Batches are lent as views of the workers' shared memory: holding 12 of them (more than the
    workers have slots) must neither stall nor let a later batch overwrite a held one."""
    with DataLoader(make_train_dataset(cfg(shards))) as dl:
        expected = [next(dl) for _ in range(12)]
    with DataLoader(make_train_dataset(cfg(shards, num_workers=2, prefetch=2))) as dl:
        held = [next(dl) for _ in range(12)]
        for e, g in zip(expected, held, strict=True):
            assert e.keys() == g.keys()
            for k in e:
                np.testing.assert_array_equal(e[k], g[k], err_msg=k)
        # dropping batches hands their slots back; the stream goes on unchanged
        del held
        gc.collect()
        more = [next(dl)["index"].tolist() for _ in range(20)]
        assert sum(dl.iterator._lent) <= 2  # the dropped batches' slots went back to the workers
        blocks = {shm.name.lstrip("/") for shm in dl.iterator._shm}
    with DataLoader(make_train_dataset(cfg(shards))) as dl:
        ref = [next(dl)["index"].tolist() for _ in range(32)][12:]
    assert more == ref
    assert len(blocks) == 2 and not blocks & shm_blocks()  # every block unlinked on close


def test_restore_with_workers_matches_threads_after_batches_were_dropped(shards):
    c = cfg(shards, num_workers=2, prefetch=3, augment=AugmentConfig.lerobot_default())
    with DataLoader(make_train_dataset(c)) as dl:
        for _ in range(7):
            next(dl)
        state = dl.get_state()
    assert state == {"next_index": 7}
    with DataLoader(make_train_dataset(dict_replace(c, num_workers=0))) as ref:
        ref.set_state(state)
        want = [next(ref) for _ in range(5)]
    with DataLoader(make_train_dataset(c)) as dl:
        dl.set_state(state)
        got = [next(dl) for _ in range(5)]
    for e, g in zip(want, got, strict=True):
        for k in e:
            np.testing.assert_array_equal(e[k], g[k], err_msg=k)


def dict_replace(c: PipelineConfig, **kw) -> PipelineConfig:
    import dataclasses

    return dataclasses.replace(c, **kw)


class _Batches:
    """A picklable MapDataset source of small batches; batch `bad` raises, batch `die` kills the worker."""

    def __init__(self, n: int, bad: int = -1, die: int = -1):
        self.n, self.bad, self.die = n, bad, die

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict[str, np.ndarray]:
        if i == self.bad:
            raise ValueError(f"batch {i} is broken on purpose")
        if i == self.die:
            os.kill(os.getpid(), signal.SIGKILL)
        return {"x": np.full((3, 2), i, dtype=np.float32), "i": np.array([i])}


def test_finite_dataset_ends_and_order_holds_for_any_worker_count():
    for workers in (1, 3):
        it = iter(SharedMemoryPrefetch(grain.MapDataset.source(_Batches(7)), workers, slots=2))
        got = [int(b["i"][0]) for b in it]
        assert got == list(range(7))
        it.close()


@pytest.mark.parametrize(
    ("source", "ok", "message"),
    [
        (_Batches(10, bad=4), 4, r"(?s)data worker 0 failed on batch 4.*broken on purpose"),
        (_Batches(10, die=3), 3, r"data worker 1 .*(died|exited)"),
    ],
    ids=["exception", "killed"],
)
def test_worker_errors_and_deaths_are_reported_not_hung(source, ok, message):
    it = iter(SharedMemoryPrefetch(grain.MapDataset.source(source), 2, slots=2))
    for _ in range(ok):
        next(it)
    with pytest.raises(RuntimeError, match=message):
        next(it)
    it.close()
    with pytest.raises(ValueError, match="closed iterator"):
        next(it)


class _Ragged(_Batches):
    def __getitem__(self, i: int) -> dict[str, np.ndarray]:
        return {"x": np.zeros((1 + i % 2, 2), np.float32), "i": np.array([i])}


def test_batches_must_have_static_shapes():
    it = iter(SharedMemoryPrefetch(grain.MapDataset.source(_Ragged(6)), 1, slots=2))
    next(it)
    with pytest.raises(RuntimeError, match="static shapes"):
        next(it)
    it.close()

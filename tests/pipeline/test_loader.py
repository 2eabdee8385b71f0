"""The grain pipeline: determinism, checkpoint exactness, per-process sharding, mixing, augmentation."""

from __future__ import annotations

import collections
import subprocess
import sys

import jax
import numpy as np
import pytest

from jrobot.pipeline.augment import AugmentConfig, augment_frames
from jrobot.pipeline.device import GlobalBatcher
from jrobot.pipeline.loader import (
    DataLoader,
    PipelineConfig,
    batch_spec,
    make_eval_dataset,
    make_sources,
    make_train_dataset,
)
from jrobot.pipeline.windows import WindowSource, WindowSpec
from jrobot.shards.builder import build_shards

CAMS = ["observation.images.front", "observation.images.wrist"]
N_FRAMES = 126


@pytest.fixture(scope="module")
def shards_v21(tmp_path_factory, shared_dir):
    out = tmp_path_factory.mktemp("loader") / "v21"
    build_shards(
        shared_dir / "fixtures/lerobot/so101_v21", out, resolution=(32, 48), workers=0, progress=False
    )
    return str(out)


def cfg(shards, **kw) -> PipelineConfig:
    spec = WindowSpec.for_policy(observation_deltas=[0], action_deltas=range(10), camera_keys=CAMS)
    base = dict(shards=[shards], window=spec, batch_size=6, seed=0, read_threads=1)
    base.update(kw)
    return PipelineConfig(**base)


def take(loader, n):
    return [next(loader) for _ in range(n)]


def test_batches_have_static_shapes_and_uint8_images(shards):
    c = cfg(shards)
    spec = batch_spec(c)
    with DataLoader(make_train_dataset(c)) as dl:
        for b in take(dl, 3):
            for k, (shape, dtype) in spec.items():
                assert b[k].shape == shape and b[k].dtype == dtype, k
    assert spec[CAMS[0]] == ((6, 1, 32, 48, 3), np.dtype(np.uint8))
    assert spec["action"] == ((6, 10, 6), np.dtype(np.float32))


def test_same_seed_same_batches_other_seed_other_order(shards):
    with DataLoader(make_train_dataset(cfg(shards))) as a, DataLoader(make_train_dataset(cfg(shards))) as b:
        ia = [x["index"].tolist() for x in take(a, 5)]
        ib = [x["index"].tolist() for x in take(b, 5)]
    assert ia == ib
    with DataLoader(make_train_dataset(cfg(shards, seed=1))) as c:
        assert [x["index"].tolist() for x in take(c, 5)] != ia


def test_every_frame_once_per_epoch_then_reshuffled(shards):
    with DataLoader(make_train_dataset(cfg(shards))) as dl:
        epoch1 = np.concatenate([b["index"] for b in take(dl, N_FRAMES // 6)])
        epoch2 = np.concatenate([b["index"] for b in take(dl, N_FRAMES // 6)])
    assert sorted(epoch1.tolist()) == list(range(N_FRAMES))
    assert sorted(epoch2.tolist()) == list(range(N_FRAMES))
    assert epoch1.tolist() != epoch2.tolist()


def test_episode_starts_oversampled_in_training_only(shards):
    """data.episode_start_frames / episode_start_repeats: an epoch draws every frame among its episode's
    first 4 three times, every other frame once; validation windows are not repeated."""
    c = cfg(shards, episode_start_frames=4, episode_start_repeats=2, val_fraction=0.3)
    (train,) = make_sources(c)
    (val,) = make_sources(c, "val")
    plain = make_sources(cfg(shards, val_fraction=0.3))[0]
    frame_index = train.shards.lowdim("frame_index")[:]
    counts = collections.Counter(train.frames.tolist())
    assert set(counts) == set(plain.frames.tolist())
    assert all(counts[f] == (3 if frame_index[f] < 4 else 1) for f in counts)
    n_eps = len(set(train.shards.lowdim("episode_index")[:][plain.frames].tolist()))
    assert len(train) == len(plain) + 2 * 4 * n_eps
    assert sorted(val.frames.tolist()) == sorted(
        make_sources(cfg(shards, val_fraction=0.3), "val")[0].frames.tolist()
    )
    # one epoch of the loader draws them so
    with DataLoader(make_train_dataset(c)) as dl:
        drawn = np.concatenate([b["index"] for b in take(dl, len(train) // 6)])
    per_frame = collections.Counter(drawn.tolist())
    starts = [f for f in per_frame if frame_index[f] < 4]
    assert starts and sum(per_frame[f] for f in starts) / len(starts) > 2.5
    with pytest.raises(ValueError, match="repeats >= 0, got 4, -1"):
        make_sources(cfg(shards, episode_start_frames=4, episode_start_repeats=-1))


@pytest.mark.parametrize("workers", [0, 2])
def test_restored_iterator_yields_exactly_the_uninterrupted_batches(shards, workers):
    c = cfg(shards, num_workers=workers, augment=AugmentConfig.lerobot_default())
    with DataLoader(make_train_dataset(c)) as dl:
        take(dl, 4)
        state = dl.get_state()
        expected = take(dl, 6)
    with DataLoader(make_train_dataset(c)) as dl2:
        dl2.set_state(state)
        got = take(dl2, 6)
    for e, g in zip(expected, got, strict=True):
        assert e.keys() == g.keys()
        for k in e:
            np.testing.assert_array_equal(e[k], g[k], err_msg=k)


def test_processes_see_disjoint_slices_covering_each_epoch_once(shards):
    """Three simulated JAX processes, per-process batch 2: together every frame exactly once per epoch."""
    c = cfg(shards, batch_size=6)
    seen = collections.Counter()
    per_proc = []
    for p in range(3):
        with DataLoader(make_train_dataset(c, process_index=p, process_count=3)) as dl:
            idx = np.concatenate([b["index"] for b in take(dl, N_FRAMES // 6)])
            assert all(b["index"].shape == (2,) for b in take(dl, 1))
        per_proc.append(set(idx.tolist()))
        seen.update(idx.tolist())
    assert set(seen) == set(range(N_FRAMES)) and set(seen.values()) == {1}
    assert not (per_proc[0] & per_proc[1]) and not (per_proc[1] & per_proc[2])


def test_validation_split_is_disjoint_by_episode(shards):
    c = cfg(shards, val_episodes=[1])
    with DataLoader(make_train_dataset(c)) as dl:
        train_eps = {int(e) for b in take(dl, 30) for e in b["episode_index"]}
    val = list(make_eval_dataset(c))
    assert train_eps == {0, 2}
    val_eps = {int(e) for b in val for e in b["episode_index"]}
    assert val_eps == {1} and sum(len(b["index"]) for b in val) == 54  # 55 frames, last partial batch dropped


def test_task_selection(shards):
    with DataLoader(make_train_dataset(cfg(shards, tasks=["place the cube in the bin"]))) as dl:
        assert {int(e) for b in take(dl, 10) for e in b["episode_index"]} == {1}


def test_mixing_follows_weights(shards, shards_v21):
    c = cfg(shards, batch_size=8)
    c.shards = [shards, shards_v21]
    c.weights = [3.0, 1.0]
    with DataLoader(make_train_dataset(c)) as dl:
        batches = take(dl, 25)
    assert all(b["action"].shape == (8, 10, 6) for b in batches)
    which = np.concatenate([b["dataset_index"] for b in batches])
    assert set(which.tolist()) == {0, 1}
    assert abs(np.mean(which == 0) - 0.75) < 0.03  # 3:1, deterministic interleaving by weight
    # a batch drawn from both shard sets is read per set, then put back in stream order: every sample
    # is the window its own set holds for that frame
    sources = [WindowSource(path, c.window) for path in c.shards]
    for b in batches[:5]:
        for j in range(8):
            ref = sources[int(b["dataset_index"][j])][int(b["index"][j])]
            for key in ("action", "observation.state", CAMS[0], CAMS[1], "action_is_pad"):
                np.testing.assert_array_equal(b[key][j], ref[key], err_msg=key)
            assert b["episode_index"][j] == ref["episode_index"]


FAULT_PROBE = """
import resource, sys
import numpy as np
if sys.argv[1] == "retain":
    from jrobot.pipeline.memory import retain_freed_memory
    assert retain_freed_memory() and retain_freed_memory()  # accepted by glibc; then a no-op
def batch():  # the shape of a batch: two camera arrays of a few MB and small side arrays
    return [np.ones(2_400_000, np.uint8), np.ones(2_400_000, np.uint8), np.ones(100_000, np.float32)]
b = batch(); del b
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    b = batch(); del b
pages = 10 * sum(a.nbytes for a in batch()) / 4096
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / pages)
"""


def test_batches_keep_freed_memory_for_reuse():
    """Page faults per page of batch memory, in fresh processes with and without the malloc settings."""

    def faults_per_page(mode: str) -> float:
        out = subprocess.run(
            [sys.executable, "-c", FAULT_PROBE, mode], capture_output=True, text=True, check=True, timeout=120
        )
        return float(out.stdout.strip())

    default, retained = faults_per_page("default"), faults_per_page("retain")
    # glibc returns each freed batch to the kernel, so every new batch faults its pages in again...
    assert default > 0.5, default
    # ...unless the freed blocks stay in the heap: the next batch reuses them without a fault.
    assert retained < 0.05, retained


def test_augmentation_is_seeded_consistent_over_history_and_keeps_dtype():
    rng = np.random.default_rng(0)
    frames = np.repeat((rng.random((1, 24, 32, 3)) * 255).astype(np.uint8), 2, axis=0)
    cfg_ = AugmentConfig.lerobot_default(crop_scale=(0.7, 0.9))
    a = augment_frames(frames, np.random.default_rng(5), cfg_)
    b = augment_frames(frames, np.random.default_rng(5), cfg_)
    c = augment_frames(frames, np.random.default_rng(6), cfg_)
    assert a.dtype == np.uint8 and a.shape == frames.shape
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c) and not np.array_equal(a, frames)
    np.testing.assert_array_equal(a[0], a[1])  # same parameters for every step of the history


def test_global_batcher_builds_sharded_arrays(shards):
    from jrobot.train.sharding import make_mesh

    mesh = make_mesh(data=-1, fsdp=1)
    with DataLoader(
        make_train_dataset(cfg(shards)), to_device=GlobalBatcher(mesh, drop_keys=["index"])
    ) as dl:
        b = next(dl)
    assert "index" not in b
    assert isinstance(b["action"], jax.Array) and b["action"].shape == (6, 10, 6)
    assert b[CAMS[0]].dtype == jax.numpy.uint8
    assert dl.wait_s > 0

"""Writing with jrobot and reading back: exact values and frames, LeRobot's invariants, the on-disk
schema of LeRobot 0.4.4 (compared with the LeRobot-written fixture), stats, resume, discard."""

from __future__ import annotations

import collections
import json
import pickle
import random
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from store_synth import check_invariants, episode_problems, features, frame, record, stripes_image

from jrobot.data import Dataset, DatasetError, DatasetWriter, VideoOptions, load_meta, open_dataset
from jrobot.data.format.stats import numeric_stats, sample_indices
from jrobot.features import Feature

H, W = 32, 48
CAMS = ("front", "wrist")
# (length, tasks of the episode's frames): several tasks, one episode mixing two
EPISODES = [(12, "pick"), (7, "place"), (1, "pick"), (15, ["stack", "pick"]), (9, "wave")]


def write(root: Path, episodes=EPISODES, **kw) -> Path:
    with DatasetWriter.create(
        root, fps=30, features=features(H, W, CAMS), robot_type="so_follower", durable=False, **kw
    ) as w:
        for e, (length, tasks) in enumerate(episodes):
            assert record(w, e, length, tasks, H, W, CAMS) == e
        w.wait_for_packing()
    return root


def test_round_trip_exact(tmp_path, stripes):
    root = write(tmp_path / "ds")
    check_invariants(root)
    ds = open_dataset(root)
    assert ds.num_episodes == len(EPISODES) and len(ds) == sum(n for n, _ in EPISODES)
    assert ds.tasks == ["pick", "place", "stack", "wave"]
    assert [list(e.tasks) for e in ds.episodes] == [
        ["pick"],
        ["place"],
        ["pick"],
        ["stack", "pick"],
        ["wave"],
    ]
    for e in range(ds.num_episodes):
        assert episode_problems(ds, e, stripes) == []
        assert episode_problems(ds, e, stripes, sequential=False) == []
    assert ds[len(ds) - 9]["task"] == "wave"
    assert [ds[r]["task"] for r in (20, 21, 22)] == ["stack", "pick", "stack"]  # episode 3 alternates tasks
    # packing: all episodes of a camera ended up in one file, as LeRobot lays them out
    assert sorted(p.name for p in (root / "videos/observation.images.front/chunk-000").iterdir()) == [
        "file-000.mp4"
    ]
    info = json.loads((root / "meta/info.json").read_text())
    assert info["features"]["observation.images.front"]["info"]["video.codec"] == "av1"


def test_file_rollover_by_size(tmp_path, stripes):
    """Tiny size limits: every episode starts a new data, episodes-metadata and video file."""
    root = tmp_path / "ds"
    episodes = [(10, "a"), (6, "b"), (8, "a"), (5, "c")]
    with DatasetWriter.create(
        root,
        fps=30,
        features=features(H, W, CAMS),
        durable=False,
        chunks_size=2,
        data_files_size_in_mb=1e-6,
        video_files_size_in_mb=1e-6,
    ) as w:
        for e, (n, t) in enumerate(episodes):
            record(w, e, n, t, H, W, CAMS)
    check_invariants(root)
    assert sorted(str(p.relative_to(root / "data")) for p in (root / "data").glob("*/*.parquet")) == [
        "chunk-000/file-000.parquet",
        "chunk-000/file-001.parquet",
        "chunk-001/file-000.parquet",
        "chunk-001/file-001.parquet",
    ]
    assert len(list((root / "videos/observation.images.wrist").glob("*/*.mp4"))) == 4
    ds = open_dataset(root)
    for e in range(4):
        assert episode_problems(ds, e, stripes) == []


def test_packing_copies_each_episode_a_bounded_number_of_times(tmp_path, stripes, monkeypatch):
    """Joining every episode onto the camera's file as it is saved would copy O(n^2) bytes; the
    packer joins the waiting episodes in batches, so the bytes it copies stay a small multiple of
    the final file, and closing still leaves LeRobot's one-file-per-camera layout."""
    import jrobot.data.write.packer as packer

    copied = collections.Counter()
    joins = collections.Counter()
    real = packer.concat_videos

    def counting(inputs, output, **kw):
        key = Path(inputs[0]).parts[-3]
        copied[key] += sum(Path(p).stat().st_size for p in inputs)
        joins[key] += 1
        return real(inputs, output, **kw)

    monkeypatch.setattr(packer, "concat_videos", counting)
    root = tmp_path / "ds"
    episodes = [(6, "pick")] * 40
    with DatasetWriter.create(root, fps=30, features=features(H, W, CAMS), durable=False) as w:
        for e, (n, t) in enumerate(episodes):
            record(w, e, n, t, H, W, CAMS)
            time.sleep(0.01)  # give the packer thread a chance to run between saves
    check_invariants(root)
    for cam in CAMS:
        key = f"observation.images.{cam}"
        files = list((root / "videos" / key).glob("*/*.mp4"))
        assert [f.name for f in files] == ["file-000.mp4"]
        final = files[0].stat().st_size
        # one join per episode copies ~n/2 = 20 times the final file (more with each file's own
        # header): 21 times in 39 joins before batching; batches 6.4-6.7 times in 13 joins
        assert copied[key] <= 9 * final, (key, copied[key], final)
        assert joins[key] <= 16, joins
    ds = open_dataset(root)
    for e in range(ds.num_episodes):
        assert episode_problems(ds, e, stripes) == []


def test_schema_matches_lerobot_fixture(tmp_path, v30_dir):
    """Same features as the LeRobot-written fixture -> same column types, info keys, episode columns."""
    ref_info = json.loads((v30_dir / "meta/info.json").read_text())
    feats = {k: Feature.from_json(v) for k, v in ref_info["features"].items()}
    root = tmp_path / "ds"
    with DatasetWriter.create(root, fps=30, features=feats, robot_type="so101_follower", durable=False) as w:
        for e, n in enumerate([5, 4]):
            for i in range(n):
                w.add_frame(frame(e, i, 96, 128), task=["pick the cube", "place the cube in the bin"][e])
            w.save_episode()
    info = json.loads((root / "meta/info.json").read_text())
    assert list(info) == list(ref_info)
    assert list(info["features"]) == list(ref_info["features"])
    assert info["features"] == ref_info["features"]  # includes the video `info` block
    assert {
        k: v for k, v in info.items() if k not in ("total_episodes", "total_frames", "splits", "features")
    } == {
        k: v for k, v in ref_info.items() if k not in ("total_episodes", "total_frames", "splits", "features")
    }
    for rel in [
        "data/chunk-000/file-000.parquet",
        "meta/episodes/chunk-000/file-000.parquet",
        "meta/tasks.parquet",
    ]:
        mine, ref = pq.read_schema(root / rel), pq.read_schema(v30_dir / rel)
        assert mine.remove_metadata() == ref.remove_metadata(), rel
        assert set(mine.metadata or {}) == set(ref.metadata or {}), rel
    hf_mine = json.loads(pq.read_schema(root / "data/chunk-000/file-000.parquet").metadata[b"huggingface"])
    hf_ref = json.loads(pq.read_schema(v30_dir / "data/chunk-000/file-000.parquet").metadata[b"huggingface"])
    assert hf_mine["info"] == hf_ref["info"]
    pandas_mine = json.loads(pq.read_schema(root / "meta/tasks.parquet").metadata[b"pandas"])
    assert pandas_mine["index_columns"] == ["__index_level_0__"]
    assert list(pd.read_parquet(root / "meta/tasks.parquet").index) == [
        "pick the cube",
        "place the cube in the bin",
    ]
    assert (
        pq.ParquetFile(root / "data/chunk-000/file-000.parquet").metadata.num_row_groups == 2
    )  # one per episode
    stats, ref_stats = (
        json.loads((root / "meta/stats.json").read_text()),
        json.loads((v30_dir / "meta/stats.json").read_text()),
    )
    assert set(stats) == set(ref_stats)
    assert all(list(stats[k]) == list(ref_stats[k]) for k in stats)


def test_episode_stats_follow_lerobot_definitions(tmp_path):
    root = write(tmp_path / "ds", episodes=[(120, "a"), (3, "b")])
    ds = open_dataset(root)
    for e in range(2):
        st = ds.episode_stats(e)
        cols = ds.episode_columns(e)
        for key in ["observation.state", "action", "frame_index", "index", "episode_index", "task_index"]:
            ref = numeric_stats(cols[key])
            for k, v in ref.items():
                assert np.array_equal(np.asarray(st[key][k]), v), (e, key, k)
        # timestamp stats come from frame_index / fps in float64, as LeRobot computes them
        assert np.allclose(st["timestamp"]["mean"], np.arange(ds.episode(e).length).mean() / 30)
        # image stats: the sampled original frames, per channel in [0, 1], correct std (no uint8 overflow)
        n = ds.episode(e).length
        idx = sample_indices(n)
        imgs = np.stack([stripes_image(i, e, 0, H, W) for i in idx]).astype(np.float64) / 255
        img_st = st["observation.images.front"]
        assert img_st["count"].tolist() == [len(idx)] and img_st["mean"].shape == (3, 1, 1)
        assert np.allclose(img_st["mean"].ravel(), imgs.mean(axis=(0, 1, 2)))
        assert np.allclose(img_st["std"].ravel(), imgs.std(axis=(0, 1, 2)))
        assert img_st["std"].ravel()[0] > 0.1
        assert np.allclose(img_st["min"].ravel(), imgs.min(axis=(0, 1, 2)))
    agg = ds.stats
    assert agg["action"]["count"].tolist() == [123]
    allx = ds.column("action").astype(np.float64)
    assert np.allclose(agg["action"]["mean"], allx.mean(0), atol=1e-5)
    assert np.allclose(agg["action"]["std"], allx.std(0), atol=1e-4)
    assert set(agg["action"]) == {"min", "max", "mean", "std", "count", "q01", "q10", "q50", "q90", "q99"}


def test_image_features_round_trip_losslessly(tmp_path, stripes):
    root = tmp_path / "img"
    feats = features(H, W, CAMS, dtype="image")
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 255, (3, 2, H, W, 3), dtype=np.uint8)
    with DatasetWriter.create(root, fps=30, features=feats, durable=False) as w:
        for e in range(2):
            for i in range(3):
                f = frame(e, i, H, W, CAMS)
                f["observation.images.wrist"] = noise[i, e]
                w.add_frame(f, task="t")
            w.save_episode()
    table = pq.read_table(root / "data/chunk-000/file-000.parquet")
    assert str(table.schema.field("observation.images.front").type) == "struct<bytes: binary, path: string>"
    assert table.column("observation.images.front")[0].as_py()["path"] == "frame-000000.png"
    assert json.loads(table.schema.metadata[b"huggingface"])["info"]["features"][
        "observation.images.front"
    ] == {"_type": "Image"}
    info = json.loads((root / "meta/info.json").read_text())
    assert info["video_path"] is None
    ds = open_dataset(root)
    for r in range(len(ds)):
        item = ds[r]
        e, i = int(item["episode_index"]), int(item["frame_index"])
        assert np.array_equal(item["observation.images.wrist"], noise[i, e])
        assert np.array_equal(item["observation.images.front"], stripes_image(i, e, 0, H, W))
    assert [stripes(f) for f in ds.iter_camera(1, "observation.images.front")] == [(0, 1), (1, 1), (2, 1)]
    assert ds.stats["observation.images.wrist"]["std"].ravel()[0] > 0.2


def test_resume_appends_and_discard_drops(tmp_path, stripes):
    root = tmp_path / "ds"
    with DatasetWriter.create(root, fps=30, features=features(H, W, CAMS), durable=False) as w:
        record(w, 0, 8, "a", H, W, CAMS)
        for i in range(5):  # an episode that is thrown away
            w.add_frame(frame(9, i, H, W, CAMS), task="never saved")
        w.discard_episode()
        record(w, 1, 6, "b", H, W, CAMS)
    with DatasetWriter.resume(root, fps=30, features=features(H, W, CAMS)) as w:
        assert w.num_episodes == 2 and w.num_frames == 14
        record(w, 2, 4, "c", H, W, CAMS)
        for i in range(3):  # unsaved at exit: discarded
            w.add_frame(frame(7, i, H, W, CAMS), task="x")
    check_invariants(root)
    ds = open_dataset(root)
    assert ds.num_episodes == 3 and ds.tasks == ["a", "b", "c"]
    for e in range(3):
        assert episode_problems(ds, e, stripes) == []
    with pytest.raises(DatasetError, match="features differ"):
        DatasetWriter.resume(root, features=features(H, W, ("front",)))
    with pytest.raises(DatasetError, match="fps"):
        DatasetWriter.resume(root, fps=15)


def test_context_manager_discards_on_error(tmp_path):
    root = tmp_path / "ds"
    with (
        pytest.raises(RuntimeError, match="boom"),
        DatasetWriter.create(root, fps=30, features=features(H, W, CAMS), durable=False) as w,
    ):
        record(w, 0, 4, "a", H, W, CAMS)
        w.add_frame(frame(1, 0, H, W, CAMS), task="a")
        raise RuntimeError("boom")
    ds = open_dataset(root)
    assert ds.num_episodes == 1 and len(ds) == 4
    assert not (root / ".jrobot").exists()


@pytest.mark.parametrize("codec", ["h264", "hevc"])
def test_other_codecs(tmp_path, stripes, codec):
    root = tmp_path / codec
    with DatasetWriter.create(
        root,
        fps=30,
        features=features(64, 64, CAMS),
        durable=False,
        video_options=VideoOptions(codec=codec, crf=18),
    ) as w:
        for e, n in enumerate([5, 7]):
            record(w, e, n, "t", 64, 64, CAMS)
    ds = open_dataset(root)
    assert ds.info["features"]["observation.images.front"]["info"]["video.codec"] == codec
    for e in range(2):
        assert episode_problems(ds, e, stripes) == []
        assert episode_problems(ds, e, stripes, sequential=False) == []


def test_append_to_a_lerobot_written_dataset(tmp_path, v30_dir, stripes):
    """Resume LeRobot's own v3.0 fixture and add an episode: old episodes intact, new one packed in."""
    root = tmp_path / "lr"
    shutil.copytree(v30_dir, root)
    for p in root.rglob("*"):
        p.chmod(0o755 if p.is_dir() else 0o644)
    with DatasetWriter.resume(root, fps=30) as w:
        assert w.num_episodes == 3 and w.tasks == ["pick the cube", "place the cube in the bin"]
        for i in range(20):
            w.add_frame(frame(3, i, 96, 128), task="place the cube in the bin")
        assert w.save_episode() == 3
    check_invariants(root)
    ds = open_dataset(root)
    assert (
        ds.num_episodes == 4 and len(ds) == 146 and ds.tasks == ["pick the cube", "place the cube in the bin"]
    )
    for e in range(4):
        assert episode_problems(ds, e, stripes) == []
    assert (
        ds.episode(3).videos["observation.images.front"].path
        == ds.episode(0).videos["observation.images.front"].path
    )
    assert pq.ParquetFile(root / "data/chunk-000/file-000.parquet").metadata.num_row_groups == 4


def test_reader_pickles_for_worker_processes(tmp_path, v30_dir, stripes):
    ds = open_dataset(v30_dir, delta_timestamps={"action": [0.0, 1 / 30]})
    ds[10]
    clone = pickle.loads(pickle.dumps(ds))
    assert stripes(clone[50]["observation.images.front"]) == (10, 1)
    assert np.array_equal(clone[50]["action"], ds[50]["action"])
    with pytest.raises(ValueError):
        ds.column("action")[0, 0] = 1.0  # shared columns are read-only


def test_threads_share_a_reader_with_a_small_decoder_pool(tmp_path, stripes):
    """Several threads, more files than open decoders: every item is still its own frame."""
    root = tmp_path / "ds"
    with DatasetWriter.create(
        root, fps=30, features=features(H, W, CAMS), durable=False, video_files_size_in_mb=1e-9
    ) as w:
        for e in range(5):
            record(w, e, 6, "t", H, W, CAMS)
    ds = Dataset(load_meta(root), max_open_videos=2)
    wrong: list[int] = []

    def work(seed: int) -> None:
        rng = random.Random(seed)
        for _ in range(80):
            i = rng.randrange(len(ds))
            item = ds[i]
            for key in ("observation.images.front", "observation.images.wrist"):
                if stripes(item[key]) != (int(item["frame_index"]), int(item["episode_index"])):
                    wrong.append(i)

    threads = [threading.Thread(target=work, args=(s,)) for s in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert wrong == []
    assert len(list((root / "videos/observation.images.front").glob("*/*.mp4"))) == 5
    empty = tmp_path / "empty"
    DatasetWriter.create(empty, fps=30, features=features(H, W, CAMS), durable=False).close()
    assert len(open_dataset(empty)) == 0 and open_dataset(empty).num_episodes == 0

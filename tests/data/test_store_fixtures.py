"""The reader on LeRobot-written fixtures (v3.0 from 0.4.4, v2.1 from 0.3.3): exact frames, values,
delta windows with LeRobot's clamping and pad rules, and metadata."""

from __future__ import annotations

import random

import numpy as np
import pytest
from store_synth import camera_of, episode_problems, state

from jrobot.data import DatasetError, open_dataset

LENGTHS = [40, 55, 31]
TASKS = ["pick the cube", "place the cube in the bin", "pick the cube"]
CAMS = ["observation.images.front", "observation.images.wrist"]


@pytest.fixture(params=["v30", "v21"])
def fixture_dir(request, v30_dir, v21_dir):
    return v30_dir if request.param == "v30" else v21_dir


def test_every_frame_of_every_camera_is_its_own_frame_random_order(fixture_dir, stripes):
    ds = open_dataset(fixture_dir)
    order = list(range(len(ds)))
    random.Random(0).shuffle(order)  # random access: seeks back and forth across episodes
    for i in order:
        item = ds[i]
        e, fi = int(item["episode_index"]), int(item["frame_index"])
        for k, key in enumerate(CAMS):
            assert stripes(item[key]) == (fi, e), (i, key)
            assert camera_of(item[key]) == k, (i, key)
            assert item[key].shape == (96, 128, 3) and item[key].dtype == np.uint8


def test_sequential_iteration_and_formulas(fixture_dir, stripes):
    ds = open_dataset(fixture_dir)
    for e in range(3):
        assert episode_problems(ds, e, stripes) == []
        frames = list(ds.iter_episode(e))
        assert len(frames) == LENGTHS[e]
        for i, f in enumerate(frames):
            assert np.array_equal(f["observation.state"], state(e, i))
            assert np.array_equal(f["action"], state(e, i + 1))
            assert stripes(f["observation.images.wrist"]) == (i, e)
            assert f["task"] == TASKS[e]


def test_item_fields_and_dtypes(fixture_dir):
    ds = open_dataset(fixture_dir)
    item = ds[45]
    assert item["observation.state"].dtype == np.float32 and item["observation.state"].shape == (6,)
    assert item["index"].dtype == np.int64 and int(item["index"]) == 45
    assert item["timestamp"].dtype == np.float32 and item["timestamp"].shape == ()
    assert int(item["frame_index"]) == 5 and int(item["episode_index"]) == 1
    assert item["task"] == "place the cube in the bin"
    assert ds[-1]["frame_index"] == 30
    with pytest.raises(IndexError):
        ds[len(ds)]


def test_metadata(fixture_dir):
    ds = open_dataset(fixture_dir)
    assert ds.fps == 30 and ds.robot_type == "so101_follower"
    assert len(ds) == ds.num_frames == 126 and ds.num_episodes == 3
    assert ds.tasks == ["pick the cube", "place the cube in the bin"]
    assert ds.video_keys == CAMS and ds.camera_keys == CAMS and ds.image_keys == []
    assert [e.length for e in ds.episodes] == LENGTHS
    assert [(e.dataset_from_index, e.dataset_to_index) for e in ds.episodes] == [(0, 40), (40, 95), (95, 126)]
    assert [list(e.tasks) for e in ds.episodes] == [[t] for t in TASKS]
    assert set(ds.stats) >= {"observation.state", "action", *CAMS}
    assert ds.stats["observation.images.front"]["mean"].shape == (3, 1, 1)
    assert ds.features["observation.images.front"].hwc_shape == (96, 128, 3)
    for ep in ds.episodes:
        for key in CAMS:
            span = ep.videos[key]
            assert span.path.is_file()
            assert span.to_timestamp - span.from_timestamp == pytest.approx(ep.length / 30, abs=1e-9)
    assert ds.episode_stats(1)["action"]["count"].tolist() == [55]


def test_v21_and_v30_hold_the_same_data(v30_dir, v21_dir):
    a, b = open_dataset(v30_dir), open_dataset(v21_dir)
    for key in [
        "observation.state",
        "action",
        "timestamp",
        "frame_index",
        "episode_index",
        "index",
        "task_index",
    ]:
        assert np.array_equal(a.column(key), b.column(key)), key


def test_delta_windows_and_pads_follow_lerobot(fixture_dir, stripes):
    deltas = {
        "action": [-2 / 30, 0.0, 1 / 30, 2 / 30],
        "observation.state": [-1 / 30, 0.0],
        "observation.images.front": [-1 / 30, 0.0],
    }
    ds = open_dataset(fixture_dir, delta_timestamps=deltas)
    act = ds.column("action")
    for i in range(len(ds)):
        item = ds[i]
        ep = ds.episode(int(item["episode_index"]))
        lo, hi = ep.dataset_from_index, ep.dataset_to_index
        for key, d in deltas.items():
            raw = [i + round(x * 30) for x in d]
            q = [min(max(r, lo), hi - 1) for r in raw]
            assert item[f"{key}_is_pad"].tolist() == [r < lo or r >= hi for r in raw], (i, key)
            assert item[f"{key}_is_pad"].dtype == np.bool_
            if key == "observation.images.front":
                assert item[key].shape == (2, 96, 128, 3)
                assert [stripes(f) for f in item[key]] == [(r - lo, ep.index) for r in q]
        assert np.array_equal(item["action"], act[[min(max(i + k, lo), hi - 1) for k in (-2, 0, 1, 2)]])
        assert item["observation.state"].shape == (2, 6)
    # LeRobot's documented examples: first and last frame of an episode
    assert ds[0]["action_is_pad"].tolist() == [True, False, False, False]
    assert ds[39]["action_is_pad"].tolist() == [False, False, True, True]
    assert ds[40]["action_is_pad"].tolist() == [True, False, False, False]
    assert ds[41]["action_is_pad"].tolist() == [True, False, False, False]


def test_delta_timestamps_must_be_multiples_of_the_frame_period(v30_dir):
    with pytest.raises(DatasetError, match="multiples of 1/fps"):
        open_dataset(v30_dir, delta_timestamps={"action": [0.0, 0.05]})
    with pytest.raises(DatasetError, match="unknown feature"):
        open_dataset(v30_dir, delta_timestamps={"nope": [0.0]})
    open_dataset(v30_dir, delta_timestamps={"action": [0.0, 1 / 30 + 5e-5]})  # within 1e-4 s: accepted

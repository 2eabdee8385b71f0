"""LeRobot 0.4.x itself reads what jrobot writes, also right after a SIGKILL of the writer.

Runs only where a LeRobot interpreter is found (tests/lerobot_ref.py: importable here,
`JROBOT_LEROBOT_PYTHON`, or the venv built by ../shared/tools/lerobot_reference_env.sh beside the repo). The
probe script (lerobot_probe.py) runs inside that interpreter, offline, and dumps LeRobot's view of
each dataset; the comparison happens here against jrobot's reader.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import random
import shutil
import signal
import time
from pathlib import Path

import numpy as np
import pytest
from lerobot_ref import lerobot_probe, lerobot_python
from store_synth import features, record, record_forever

from jrobot.data import DatasetWriter, open_dataset

LEROBOT_PYTHON = lerobot_python()
pytestmark = pytest.mark.skipif(
    LEROBOT_PYTHON is None, reason="no LeRobot interpreter found (see tests/lerobot_ref.py)"
)


def compare(root: Path, npz: Path, stripes) -> None:
    """LeRobot's items against jrobot's reader, frame by frame."""
    lr = np.load(npz)
    ds = open_dataset(root)
    assert len(lr["index"]) == len(ds)
    assert np.array_equal(lr["index"], np.arange(len(ds)))
    assert np.array_equal(lr["episode_index"], ds.column("episode_index"))
    assert np.array_equal(lr["frame_index"], ds.column("frame_index"))
    assert np.array_equal(lr["state"], ds.column("observation.state"))
    assert np.array_equal(lr["action"], ds.column("action"))
    assert [str(t) for t in lr["tasks"]] == [ds.tasks[t] for t in ds.column("task_index")]
    for key in ds.camera_keys:
        lr_imgs = lr[f"img:{key}"]
        for i in range(len(ds)):
            mine = ds[i][key]
            assert stripes(lr_imgs[i]) == (
                int(lr["frame_index"][i]) % 256,
                int(lr["episode_index"][i]) % 256,
            ), (key, i)
            assert np.abs(lr_imgs[i].astype(int) - mine.astype(int)).max() <= 2, (key, i)
    cam = ds.camera_keys[0]
    deltas = {"action": [-2 / ds.fps, 0.0, 1 / ds.fps, 2 / ds.fps], cam: [-1 / ds.fps, 0.0]}
    dds = open_dataset(root, delta_timestamps=deltas)
    for i in lr["win:pick"]:
        item = dds[int(i)]
        assert np.array_equal(item["action"], lr[f"win:action_{i}"])
        assert np.array_equal(item["action_is_pad"], lr[f"win:action_is_pad_{i}"])
        assert np.array_equal(item[f"{cam}_is_pad"], lr[f"win:cam_is_pad_{i}"])
        assert [stripes(f) for f in item[cam]] == [stripes(f) for f in lr[f"win:cam_{i}"]]


def test_lerobot_reads_jrobot_datasets(tmp_path, stripes):
    h, w = 64, 96
    packed, rolled = tmp_path / "packed", tmp_path / "rolled"
    with DatasetWriter.create(
        packed, fps=30, features=features(h, w), robot_type="so_follower", durable=False
    ) as wr:
        for e, (n, t) in enumerate([(20, "pick"), (1, "place"), (33, ["pick", "place"]), (12, "wave")]):
            record(wr, e, n, t, h, w)
    with DatasetWriter.create(
        rolled,
        fps=30,
        features=features(h, w),
        durable=False,
        data_files_size_in_mb=1e-6,
        video_files_size_in_mb=1e-6,
        chunks_size=2,
    ) as wr:
        for e, n in enumerate([9, 14, 5]):
            record(wr, e, n, f"task {e % 2}", h, w)
    summary = lerobot_probe([packed, rolled], tmp_path / "probe", tmp_path)
    assert [s["episodes"] for s in summary] == [4, 3]
    compare(packed, tmp_path / "probe/0.npz", stripes)
    compare(rolled, tmp_path / "probe/1.npz", stripes)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_lerobot_reads_datasets_left_by_a_killed_writer(tmp_path, stripes):
    """Snapshots of the folder right after SIGKILLs (leftovers included) load in LeRobot as they are."""
    root, progress, log = tmp_path / "ds", tmp_path / "progress", tmp_path / "log"
    ctx = mp.get_context("fork")
    rng = random.Random(7)
    snapshots = []
    for k in range(10):
        p = ctx.Process(target=record_forever, args=(str(root), str(progress), str(log), 100 + k))
        p.start()
        time.sleep(rng.uniform(0.1, 0.8))
        os.kill(p.pid, signal.SIGKILL)
        p.join()
        assert not Path(str(log) + ".error").exists(), Path(str(log) + ".error").read_text()
        if (root / "meta/info.json").exists() and open_dataset(root).num_episodes:
            snap = tmp_path / f"snap{k}"
            shutil.copytree(root, snap)
            snapshots.append(snap)
    assert len(snapshots) >= 5
    summary = lerobot_probe(snapshots, tmp_path / "probe", tmp_path)
    for n, (snap, s) in enumerate(zip(snapshots, summary, strict=True)):
        assert s["episodes"] == open_dataset(snap).num_episodes
        compare(snap, tmp_path / f"probe/{n}.npz", stripes)

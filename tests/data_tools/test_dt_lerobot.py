"""LeRobot 0.4.x itself loads what the data tools write: converted, merged, edited and re-encoded datasets.

Runs where a LeRobot interpreter exists (JROBOT_LEROBOT_PYTHON, an importable lerobot, or the
reference venv beside the repository; see tests/lerobot_ref.py) and is skipped otherwise. One
LeRobot process loads every dataset (tests/data/lerobot_probe.py: every frame, and delta-timestamp
windows); each answer is compared with jrobot's reader and the fixture's stripes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from dt_helpers import make_v20_port, record_synthetic, reencode_in_one_piece
from lerobot_ref import lerobot_probe, lerobot_python

from jrobot.data import edit, open_dataset

pytestmark = pytest.mark.skipif(lerobot_python() is None, reason="no LeRobot interpreter found")


def _compare(root: Path, npz: Path, stripes, episode_of_source) -> None:
    lr = np.load(npz)
    ds = open_dataset(root)
    assert np.array_equal(lr["index"], np.arange(len(ds)))
    assert np.array_equal(lr["episode_index"], ds.column("episode_index"))
    assert np.array_equal(lr["frame_index"], ds.column("frame_index"))
    assert np.array_equal(lr["state"], ds.column("observation.state"))
    assert np.array_equal(lr["action"], ds.column("action"))
    assert [str(t) for t in lr["tasks"]] == [ds.tasks[t] for t in ds.column("task_index")]
    for key in ds.camera_keys:
        imgs = lr[f"img:{key}"]
        for i in range(len(ds)):
            e = int(lr["episode_index"][i])
            assert stripes(imgs[i]) == (int(lr["frame_index"][i]) % 256, episode_of_source(e) % 256), (
                root,
                key,
                i,
            )
        mine = np.stack([f for e in ds.episodes for f in ds.iter_camera(e.index, key)])
        assert np.abs(mine.astype(int) - imgs.astype(int)).max() <= 2, (root, key)
    cam = ds.camera_keys[0]
    deltas = {"action": [-2 / ds.fps, 0.0, 1 / ds.fps, 2 / ds.fps], cam: [-1 / ds.fps, 0.0]}
    dds = open_dataset(root, delta_timestamps=deltas)
    for i in lr["win:pick"]:
        item = dds[int(i)]
        assert np.array_equal(item["action"], lr[f"win:action_{i}"])
        assert np.array_equal(item["action_is_pad"], lr[f"win:action_is_pad_{i}"])
        assert np.array_equal(item[f"{cam}_is_pad"], lr[f"win:cam_is_pad_{i}"])
        assert [stripes(f) for f in item[cam]] == [stripes(f) for f in lr[f"win:cam_{i}"]]


def test_lerobot_loads_what_the_data_tools_write(tmp_path, v30_dir, v21_dir, stripes):
    out = tmp_path / "out"
    edit.convert_dataset(v21_dir, out / "converted_v21")
    edit.convert_dataset(make_v20_port(v21_dir, tmp_path / "v20"), out / "converted_v20_port")
    edit.merge_datasets([v30_dir, v21_dir], out / "merged")
    edit.delete_episodes(v30_dir, out / "deleted", [0])
    edit.remove_features(v30_dir, out / "removed", ["observation.images.wrist"])
    edit.rename_features(
        out / "removed", out / "renamed", {"observation.images.front": "observation.images.top"}
    )
    syn = record_synthetic(tmp_path / "syn", [10, 13, 11], ["a", "b", "a"])
    reencode_in_one_piece(syn, gop=5)
    report = edit.select_episodes(syn, out / "reencoded", [1, 2])
    assert report.reencoded_videos  # one stream-copied and one re-encoded episode per camera
    cases = {
        "converted_v21": lambda e: e,
        "converted_v20_port": lambda e: e,
        "merged": lambda e: e % 3,
        "deleted": lambda e: e + 1,
        "renamed": lambda e: e,
        "reencoded": lambda e: e + 1,
    }
    roots = [out / name for name in cases]
    summary = lerobot_probe(roots, tmp_path / "probe", tmp_path)
    assert [s["episodes"] for s in summary] == [3, 3, 6, 2, 3, 2]
    for n, (root, source_episode) in enumerate(zip(roots, cases.values(), strict=True)):
        _compare(root, tmp_path / f"probe/{n}.npz", stripes, source_episode)

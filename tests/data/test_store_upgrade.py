"""v2.1 -> v3.0 upgrade: same content as LeRobot's own v3.0 fixture, correct file indices at rollovers."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pyarrow.parquet as pq
import pytest
from store_synth import check_invariants, episode_problems

from jrobot.data import DatasetError, open_dataset, upgrade_dataset


def test_upgrade_v21_matches_lerobot_v30(tmp_path, v21_dir, v30_dir, stripes):
    out = upgrade_dataset(v21_dir, tmp_path / "v30")
    check_invariants(out)
    mine, ref = open_dataset(out), open_dataset(v30_dir)
    assert mine.codebase_version == "v3.0" and mine.tasks == ref.tasks and mine.robot_type == ref.robot_type
    for key in [
        "observation.state",
        "action",
        "timestamp",
        "frame_index",
        "episode_index",
        "index",
        "task_index",
    ]:
        assert np.array_equal(mine.column(key), ref.column(key)), key
    for a, b in zip(mine.episodes, ref.episodes, strict=True):
        assert (a.length, a.tasks, a.dataset_from_index, a.dataset_to_index) == (
            b.length,
            b.tasks,
            b.dataset_from_index,
            b.dataset_to_index,
        )
        for key in ref.video_keys:
            assert a.videos[key].from_timestamp == pytest.approx(b.videos[key].from_timestamp, abs=1e-9)
            assert a.videos[key].to_timestamp == pytest.approx(b.videos[key].to_timestamp, abs=1e-9)
    for e in range(3):
        assert episode_problems(mine, e, stripes) == []
        assert episode_problems(mine, e, stripes, sequential=False) == []
    info = json.loads((out / "meta/info.json").read_text())
    assert info["features"]["action"]["fps"] == 30  # as LeRobot's converter leaves it
    assert "fps" not in info["features"]["observation.images.front"]
    assert mine.stats["action"]["count"].tolist() == [126]
    assert set(pq.read_schema(out / "meta/episodes/chunk-000/file-000.parquet").names) >= {
        "stats/action/mean",
        "videos/observation.images.wrist/to_timestamp",
        "meta/episodes/file_index",
    }


def test_upgrade_rollover_points_each_episode_at_its_own_file(tmp_path, v21_dir, stripes):
    """LeRobot 0.4.4 mislabels the episode that triggers a data-file rollover; the upgrade must not."""
    out = upgrade_dataset(
        v21_dir,
        tmp_path / "v30",
        data_files_size_in_mb=0.004,
        video_files_size_in_mb=0.02,
        recompute_stats=True,
    )
    check_invariants(out)  # includes: the data file named by data/chunk_index,file_index holds the episode
    data_files = sorted((out / "data").glob("*/*.parquet"))
    assert len(data_files) >= 2
    ds = open_dataset(out)
    for e in range(3):
        assert episode_problems(ds, e, stripes) == []
    st = ds.episode_stats(1)
    assert "q50" in st["action"] and st["observation.images.front"]["count"].tolist() == [55]
    assert st["observation.images.front"]["std"].ravel()[0] > 0.1  # real std, not LeRobot 0.4.x's ~0


def test_upgrade_cli_and_errors(tmp_path, v21_dir, v30_dir):
    out = tmp_path / "cli"
    proc = subprocess.run(
        [sys.executable, "-m", "data_tools.convert_lerobot", str(v21_dir), "--out", str(out), "--quiet"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert open_dataset(out).num_episodes == 3
    with pytest.raises(DatasetError, match="already exists"):
        upgrade_dataset(v21_dir, out)
    with pytest.raises(DatasetError, match=r"already a v3\.0"):
        upgrade_dataset(v30_dir, tmp_path / "x")
    assert not list(tmp_path.glob(".*partial*"))

"""`data_tools.convert_lerobot`: v2.0/v2.1/v3.0 in, v3.0 out, every frame and value equal, stats fixed."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
from dt_helpers import assert_same_episode, make_v20_port
from store_synth import check_invariants

from jrobot.data import DatasetError, open_dataset
from jrobot.data.edit import convert_dataset
from jrobot.data.format.stats import aggregate_stats
from jrobot.data.format.stats_check import corrupt_image_std_keys
from jrobot.data.validate import validate_dataset
from jrobot.shards.format import ShardSet


@pytest.mark.parametrize("name", ["so101_v21", "so101_v30"])
def test_convert_keeps_every_value_and_frame(tmp_path, shared_dir, stripes, name):
    src_root = shared_dir / "fixtures/lerobot" / name
    report = convert_dataset(src_root, tmp_path / "out")
    check_invariants(tmp_path / "out")
    assert validate_dataset(tmp_path / "out", decode=True) == []
    src, dst = open_dataset(src_root), open_dataset(tmp_path / "out")
    assert (dst.codebase_version, dst.robot_type, dst.fps, dst.tasks) == (
        "v3.0",
        "so101_follower",
        30,
        src.tasks,
    )
    for e in range(3):
        assert_same_episode(src, e, dst, e, stripes)
    assert report.rewrite.copied_videos == 6 and report.rewrite.reencoded_videos == []
    info = json.loads((tmp_path / "out/meta/info.json").read_text())
    assert info["features"]["observation.images.front"]["info"]["video.codec"] == "av1"
    assert list(info["features"]) == list(src.features)


def test_convert_recomputes_lerobot_04_image_std_and_matches_its_numeric_stats(tmp_path, v30_dir, v21_dir):
    src = open_dataset(v30_dir)
    assert corrupt_image_std_keys(src.stats, src.camera_keys) == src.camera_keys  # LeRobot 0.4.4 wrote it
    report = convert_dataset(v30_dir, tmp_path / "out")
    assert any("uint8 overflow" in f for f in report.findings)
    assert any("uint8 overflow" in n for n in report.rewrite.notes)
    dst = open_dataset(tmp_path / "out")
    assert corrupt_image_std_keys(dst.stats, dst.camera_keys) == []
    # LeRobot 0.3.3 computed the image stats of the same images correctly (numpy std): agree with it
    reference = open_dataset(v21_dir).stats
    for key in dst.camera_keys:
        assert np.allclose(dst.stats[key]["std"], reference[key]["std"], atol=0.01), key
        assert np.allclose(dst.stats[key]["mean"], reference[key]["mean"], atol=0.01), key
        assert dst.stats[key]["std"].shape == (3, 1, 1)
        # mean, min, max and quantiles were right in the source; LeRobot computed them on the frames
        # before encoding, the recomputation sees the decoded (lossy AV1) frames: close, not equal
        for stat in ("mean", "q10", "q50", "q90"):
            assert np.allclose(dst.stats[key][stat], src.stats[key][stat], atol=0.02), (key, stat)
    # numeric stats are recomputed with LeRobot's own estimator: identical to what LeRobot stored
    for key in ("observation.state", "action", "timestamp", "frame_index", "index"):
        for stat, value in src.stats[key].items():
            assert np.allclose(dst.stats[key][stat], value, rtol=1e-6, atol=1e-6), (key, stat)
    # stats.json is the aggregate of the per-episode stats
    agg = aggregate_stats([dst.episode_stats(e) for e in range(3)])
    for key in agg:
        for stat in agg[key]:
            assert np.allclose(dst.stats[key][stat], agg[key][stat]), (key, stat)


def test_convert_v21_keeps_its_stats_unless_asked(tmp_path, v21_dir):
    convert_dataset(v21_dir, tmp_path / "auto")
    src, auto = open_dataset(v21_dir), open_dataset(tmp_path / "auto")
    key = "observation.images.front"
    for e in range(3):
        for stat in ("mean", "std", "min", "max", "count"):
            assert np.allclose(auto.episode_stats(e)[key][stat], src.episode_stats(e)[key][stat])
    assert "q01" not in auto.stats[key] and "q01" in auto.stats["action"]
    report = convert_dataset(v21_dir, tmp_path / "always", recompute_stats="always")
    assert len(report.rewrite.recomputed_image_stats) == 6
    always = open_dataset(tmp_path / "always")
    assert "q01" in always.stats[key]
    assert np.allclose(always.stats[key]["std"], src.stats[key]["std"], atol=0.01)


def test_convert_a_v20_port_with_every_legacy_variant(tmp_path, v21_dir, stripes):
    port = make_v20_port(v21_dir, tmp_path / "v20")
    report = convert_dataset(port, tmp_path / "out")
    found = "\n".join(report.findings)
    for what in (
        "format v2.0",
        "legacy names",
        "'video_info'",
        "'channel'",
        "'channels', 'height'",
        "fps stored as 30.0",
    ):
        assert what in found, what
    assert validate_dataset(tmp_path / "out") == []
    info = json.loads((tmp_path / "out/meta/info.json").read_text())
    assert info["fps"] == 30 and info["robot_type"] == "unknown"
    assert info["features"]["action"]["names"][0] == "shoulder_pan.pos"
    front = info["features"]["observation.images.front"]
    assert front["names"] == ["height", "width", "channels"] and "video_info" not in front
    assert front["info"]["video.fps"] == 30
    wrist = info["features"]["observation.images.wrist"]
    assert (wrist["shape"], wrist["names"]) == ([96, 128, 3], ["height", "width", "channels"])
    src, dst = open_dataset(port), open_dataset(tmp_path / "out")
    for e in range(3):
        assert_same_episode(src, e, dst, e, stripes)
    assert dst.episode_stats(0)["observation.images.front"]["count"].tolist() == [40]


def test_convert_cli_straight_to_shards(tmp_path, v21_dir, run_cli):
    t0 = time.perf_counter()
    proc = run_cli(
        "data_tools.convert_lerobot",
        v21_dir,
        "--out", tmp_path / "out",
        "--shards", tmp_path / "shards",
        "--resolution", "48x64",
        "--workers", "0",
        "--quiet",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "6 episode segments stream-copied, 0 re-encoded" in proc.stdout
    assert "training shards:" in proc.stdout
    shards = ShardSet(tmp_path / "shards")
    assert shards.num_frames == 126 and len(shards.episodes["episode_index"]) == 3
    assert shards.manifest.resolution == (48, 64) and shards.image_shape("observation.images.front") == (
        48,
        64,
        3,
    )
    assert np.array_equal(shards.lowdim("action"), open_dataset(v21_dir).column("action"))
    assert time.perf_counter() - t0 < 120


def test_convert_bad_inputs(tmp_path, v21_dir, run_cli):
    proc = run_cli("data_tools.convert_lerobot", tmp_path / "nope", "--out", tmp_path / "out")
    assert proc.returncode == 2 and "no such dataset folder" in proc.stderr
    proc = run_cli("data_tools.convert_lerobot", "someone/not_cached_dataset", "--out", tmp_path / "out")
    assert proc.returncode == 2 and "offline" in proc.stderr
    (tmp_path / "taken").mkdir()
    proc = run_cli("data_tools.convert_lerobot", v21_dir, "--out", tmp_path / "taken")
    assert proc.returncode == 2 and "already exists" in proc.stderr
    with pytest.raises(DatasetError, match="recompute_image_stats must be one of"):
        convert_dataset(v21_dir, tmp_path / "x", recompute_stats="sometimes")
    assert not (tmp_path / "x").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no half-written folder left

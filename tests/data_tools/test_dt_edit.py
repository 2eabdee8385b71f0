"""`data_tools.edit`: delete, select, split, merge, remove and rename features; LeRobot's invariants kept."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from dt_helpers import assert_same_episode, record_synthetic, reencode_in_one_piece
from store_synth import check_invariants

from jrobot.data import DatasetError, edit, open_dataset
from jrobot.data.format.stats import aggregate_stats
from jrobot.data.validate import validate_dataset
from jrobot.data.video.segments import probe_segment


def test_delete_renumbers_and_reindexes_tasks(tmp_path, v30_dir, run_cli, stripes):
    proc = run_cli("data_tools.edit", "delete", v30_dir, "--episodes", "0", "--out", tmp_path / "out")
    assert proc.returncode == 0, proc.stderr
    assert "4 episode segments stream-copied, 0 re-encoded" in proc.stdout
    check_invariants(tmp_path / "out")
    assert validate_dataset(tmp_path / "out", decode=True) == []
    src, dst = open_dataset(v30_dir), open_dataset(tmp_path / "out")
    assert dst.num_episodes == 2 and dst.num_frames == 55 + 31
    assert dst.tasks == ["place the cube in the bin", "pick the cube"]  # first-seen order of what is left
    assert dst.column("task_index").tolist() == [0] * 55 + [1] * 31
    assert_same_episode(src, 1, dst, 0, stripes)
    assert_same_episode(src, 2, dst, 1, stripes)
    front = [dst.episode(e).videos["observation.images.front"] for e in range(2)]
    assert (front[0].from_timestamp, front[1].from_timestamp) == (0.0, pytest.approx(55 / 30, abs=1e-9))


def test_select_and_split(tmp_path, v21_dir, run_cli, stripes):
    edit.select_episodes(v21_dir, tmp_path / "sel", [2, 0])  # the order given is kept
    src, sel = open_dataset(v21_dir), open_dataset(tmp_path / "sel")
    assert_same_episode(src, 2, sel, 0, stripes)
    assert_same_episode(src, 0, sel, 1, stripes)
    assert sel.tasks == ["pick the cube"]
    proc = run_cli(
        "data_tools.edit", "split", v21_dir, "--out", tmp_path / "split", "--splits", "train=0,2", "val=1"
    )
    assert proc.returncode == 0, proc.stderr
    train, val = open_dataset(tmp_path / "split/train"), open_dataset(tmp_path / "split/val")
    assert (train.num_episodes, val.num_episodes) == (2, 1)
    assert_same_episode(src, 1, val, 0, stripes)
    assert_same_episode(src, 2, train, 1, stripes)
    for d in ("train", "val"):
        check_invariants(tmp_path / "split" / d)
    proc = run_cli(
        "data_tools.edit", "split", v21_dir, "--out", tmp_path / "frac", "--fractions", "train=0.67,val=0.33"
    )
    assert proc.returncode == 0, proc.stderr
    sizes = [open_dataset(tmp_path / "frac" / d).num_episodes for d in ("train", "val")]
    assert sizes == [2, 1]


def test_split_by_fraction_partitions_the_episodes():
    splits = edit.split_by_fraction(10, {"train": 0.8, "val": 0.1, "test": 0.1}, seed=3)
    assert [len(v) for v in splits.values()] == [8, 1, 1]
    assert sorted(e for v in splits.values() for e in v) == list(range(10))
    assert edit.split_by_fraction(10, {"train": 0.8, "val": 0.2}, seed=None) == {
        "train": list(range(8)),
        "val": [8, 9],
    }
    assert splits == edit.split_by_fraction(10, {"train": 0.8, "val": 0.1, "test": 0.1}, seed=3)
    with pytest.raises(DatasetError, match="sum to 1"):
        edit.split_by_fraction(10, {"train": 0.8, "val": 0.3})
    with pytest.raises(DatasetError, match="cannot fill"):
        edit.split_by_fraction(1, {"train": 0.5, "val": 0.5})


def test_merge_the_two_fixtures(tmp_path, v30_dir, v21_dir, run_cli, stripes):
    proc = run_cli("data_tools.edit", "merge", v30_dir, v21_dir, "--out", tmp_path / "merged")
    assert proc.returncode == 0, proc.stderr
    check_invariants(tmp_path / "merged")
    assert validate_dataset(tmp_path / "merged", decode=True) == []
    a, b, m = open_dataset(v30_dir), open_dataset(v21_dir), open_dataset(tmp_path / "merged")
    assert (m.num_episodes, m.num_frames, m.tasks) == (6, 252, ["pick the cube", "place the cube in the bin"])
    for e in range(3):
        assert_same_episode(a, e, m, e, stripes)
        assert_same_episode(b, e, m, 3 + e, stripes)
    # same encoder settings on both sides: all six episodes stream-copied into one file per camera
    assert sorted(p.name for p in (tmp_path / "merged/videos/observation.images.front").glob("*/*.mp4")) == [
        "file-000.mp4"
    ]
    # stats.json aggregates the per-episode stats; image std recomputed where LeRobot 0.4.4 broke it,
    # and the v2.1 episodes gained the quantiles the others have
    eps = [m.episode_stats(e) for e in range(6)]
    agg = aggregate_stats(eps)
    for key, s in agg.items():
        for stat, v in s.items():
            assert np.allclose(m.stats[key][stat], v), (key, stat)
    assert m.stats["action"]["count"].tolist() == [252]
    assert "q50" in m.stats["observation.images.front"]
    assert np.allclose(
        m.stats["observation.images.front"]["std"], b.stats["observation.images.front"]["std"], atol=0.01
    )
    assert np.allclose(
        m.stats["action"]["mean"], np.concatenate([a.column("action"), b.column("action")]).mean(0), atol=1e-5
    )


def test_merge_refuses_different_fps_features_or_robots(tmp_path, v30_dir, v21_dir, run_cli):
    edit.remove_features(v30_dir, tmp_path / "nowrist", ["observation.images.wrist"])
    proc = run_cli("data_tools.edit", "merge", v30_dir, tmp_path / "nowrist", "--out", tmp_path / "m1")
    assert proc.returncode == 2
    assert "lacks feature(s) ['observation.images.wrist']" in proc.stderr
    fast = tmp_path / "fast"
    shutil.copytree(v21_dir, fast)
    info = json.loads((fast / "meta/info.json").read_text())
    info["fps"] = 15
    info["robot_type"] = "so_follower"
    info["features"]["action"]["shape"] = [6]
    info["features"]["action"]["names"] = [f"m{j}" for j in range(6)]
    (fast / "meta/info.json").write_text(json.dumps(info))
    with pytest.raises(DatasetError) as err:
        edit.merge_datasets([v30_dir, fast], tmp_path / "m2")
    assert "fps 15 differs" in str(err.value) and "feature 'action'" in str(err.value)
    robot = tmp_path / "robot"
    shutil.copytree(v21_dir, robot)
    info = json.loads((robot / "meta/info.json").read_text())
    info["robot_type"] = "so_follower"
    (robot / "meta/info.json").write_text(json.dumps(info))
    with pytest.raises(DatasetError, match="robot types differ"):
        edit.merge_datasets([v30_dir, robot], tmp_path / "m3")
    edit.merge_datasets([v30_dir, robot], tmp_path / "m3", robot_type="so_follower")
    assert open_dataset(tmp_path / "m3").robot_type == "so_follower"
    with pytest.raises(DatasetError, match="at least two"):
        edit.merge_datasets([v30_dir], tmp_path / "m4")
    assert not any(p.name.startswith(".m") for p in tmp_path.iterdir())  # nothing half-written left


def test_remove_and_rename_features(tmp_path, v30_dir, run_cli, stripes):
    proc = run_cli(
        "data_tools.edit",
        "remove-features",
        v30_dir,
        "--features",
        "observation.images.wrist",
        "--out",
        tmp_path / "rm",
    )
    assert proc.returncode == 0, proc.stderr
    rm = open_dataset(tmp_path / "rm")
    assert rm.camera_keys == ["observation.images.front"]
    assert not (tmp_path / "rm/videos/observation.images.wrist").exists()
    assert not any(
        "wrist" in c for c in json.dumps(json.loads((tmp_path / "rm/meta/stats.json").read_text()))
    )
    check_invariants(tmp_path / "rm")
    proc = run_cli(
        "data_tools.edit", "rename-features", tmp_path / "rm",
        "--map", "observation.images.front=observation.images.top", "observation.state=observation.joints",
        "--out", tmp_path / "ren",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    ren = open_dataset(tmp_path / "ren")
    assert list(ren.features)[:3] == ["observation.joints", "action", "observation.images.top"]
    assert (tmp_path / "ren/videos/observation.images.top/chunk-000/file-000.mp4").is_file()
    assert "stats/observation.images.top/mean" in " ".join(
        __import__("pyarrow.parquet", fromlist=["x"])
        .read_schema(tmp_path / "ren/meta/episodes/chunk-000/file-000.parquet")
        .names
    )
    check_invariants(tmp_path / "ren")
    src = open_dataset(v30_dir)
    rename = {"observation.images.top": "observation.images.front", "observation.joints": "observation.state"}
    for e in range(3):
        assert_same_episode(src, e, ren, e, stripes, rename=rename)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["delete", "{v30}", "--episodes", "3", "--out", "{out}"], "no episode(s) [3]"),
        (["delete", "{v30}", "--episodes", "0-2", "--out", "{out}"], "would leave no episodes"),
        (["delete", "{v30}", "--episodes", "1-x", "--out", "{out}"], "is not an index or a range"),
        (["remove-features", "{v30}", "--features", "index", "--out", "{out}"], "bookkeeping columns"),
        (["remove-features", "{v30}", "--features", "nope", "--out", "{out}"], "no feature(s) ['nope']"),
        (
            ["rename-features", "{v30}", "--map", "action=observation.state", "--out", "{out}"],
            "more than one feature",
        ),
        (["rename-features", "{v30}", "--map", "action=act/ion", "--out", "{out}"], "must not contain '/'"),
        (["rename-features", "{v30}", "--map", "action", "--out", "{out}"], "expected NAME=VALUE"),
        (["split", "{v30}", "--splits", "a=0,1", "b=1,2", "--out", "{out}"], "episode 1 is in both"),
        (["split", "{v30}", "--fractions", "a=0.5,b=0.6", "--out", "{out}"], "sum to 1"),
        (["delete", "{v30}", "--episodes", "0", "--out", "{v30}"], "already exists"),
    ],
)
def test_edit_bad_input_gives_a_clear_error(tmp_path, v30_dir, run_cli, args, message):
    args = [a.format(v30=v30_dir, out=tmp_path / "out") for a in args]
    proc = run_cli("data_tools.edit", *args)
    assert proc.returncode == 2, proc.stdout
    assert message in proc.stderr, proc.stderr
    assert not (tmp_path / "out").exists()


def test_episodes_that_do_not_start_on_a_keyframe_are_reencoded(tmp_path, stripes):
    """A camera file encoded in one piece (keyframe every 5 frames): episode 1 starts on frame 10, a
    keyframe, and is copied; episode 2 starts on frame 23 and must be re-encoded, into its own file."""
    root = record_synthetic(tmp_path / "src", [10, 13, 11], ["a", "b", "a"])
    reencode_in_one_piece(root, gop=5)
    src = open_dataset(root)
    spans = [src.episode(e).videos["observation.images.front"] for e in (1, 2)]
    probes = [
        probe_segment(s.path, s.from_timestamp, s.to_timestamp, 30, n)
        for s, n in zip(spans, (13, 11), strict=True)
    ]
    assert [p.copyable for p in probes] == [True, False]  # the test builds what it claims
    report = edit.select_episodes(root, tmp_path / "out", [1, 2])
    assert report.copied_videos == 2 and len(report.reencoded_videos) == 2
    assert all("does not start on a keyframe" in r for r in report.reencoded_videos)
    check_invariants(tmp_path / "out")
    assert validate_dataset(tmp_path / "out", decode=True) == []
    dst = open_dataset(tmp_path / "out")
    assert_same_episode(src, 1, dst, 0, stripes)  # stream copy: identical pixels
    assert_same_episode(src, 2, dst, 1, stripes, exact_frames=False)  # re-encoded: same frames
    assert dst.episode(1).videos["observation.images.front"].path.name == "file-001.mp4"


def test_image_features_and_file_rollover(tmp_path, stripes):
    """PNG-in-parquet cameras, and outputs split over several data and video files."""
    imgs = record_synthetic(tmp_path / "img", [6, 9, 4], ["a", "b", "c"], dtype="image", cams=("front",))
    edit.delete_episodes(imgs, tmp_path / "img_out", [1])
    src, dst = open_dataset(imgs), open_dataset(tmp_path / "img_out")
    assert_same_episode(src, 0, dst, 0, stripes)
    assert_same_episode(src, 2, dst, 1, stripes)
    assert dst.tasks == ["a", "c"]
    check_invariants(tmp_path / "img_out")
    vids = record_synthetic(tmp_path / "vid", [7, 5, 9, 6], ["a", "b", "a", "b"])
    edit.merge_datasets(
        [vids, vids],
        tmp_path / "rolled",
        data_files_size_in_mb=0.0005,
        video_files_size_in_mb=0.001,
        chunks_size=2,
    )
    check_invariants(tmp_path / "rolled")
    assert validate_dataset(tmp_path / "rolled", decode=True) == []
    rolled = open_dataset(tmp_path / "rolled")
    assert len(rolled.meta.data_files) > 1
    assert len({rolled.episode(e).videos["observation.images.front"].path for e in range(8)}) > 1
    assert any("chunk-001" in str(p) for p in rolled.meta.data_files)  # chunks_size=2 wraps the file index
    src = open_dataset(vids)
    for e in range(8):
        assert_same_episode(src, e % 4, rolled, e, stripes)


def test_h264_with_b_frames_is_stream_copied(tmp_path, stripes):
    """LeRobot's `vcodec="h264"` leaves x264's B-frames on: decode order differs from display order."""
    from store_synth import features, record

    from jrobot.data import DatasetWriter
    from jrobot.data.video.encode import VideoOptions

    root = tmp_path / "src"
    opts = VideoOptions(codec="h264", g=12, extra={"bf": "3"})
    with DatasetWriter.create(
        root, fps=30, features=features(32, 48), video_options=opts, durable=False
    ) as wr:
        for e, n in enumerate([10, 13, 11]):
            record(wr, e, n, "a", 32, 48)
    import av

    with av.open(str(root / "videos/observation.images.front/chunk-000/file-000.mp4")) as c:
        pts = [p.pts for p in c.demux(c.streams.video[0]) if p.pts is not None]
    assert pts != sorted(pts)  # there are B-frames: the test checks what it claims
    report = edit.select_episodes(root, tmp_path / "out", [2, 0])
    assert report.copied_videos == 4 and report.reencoded_videos == []
    assert validate_dataset(tmp_path / "out", decode=True) == []
    src, dst = open_dataset(root), open_dataset(tmp_path / "out")
    assert_same_episode(src, 2, dst, 0, stripes)
    assert_same_episode(src, 0, dst, 1, stripes)

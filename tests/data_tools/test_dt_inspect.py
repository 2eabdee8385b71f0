"""`data_tools.inspect`: the report on both LeRobot fixtures, and every problem of broken datasets."""

from __future__ import annotations

import json
import shutil
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from jrobot.data import DatasetError
from jrobot.data.validate import is_valid, validate_dataset
from jrobot.data.validate.describe import describe_dataset


@pytest.mark.parametrize("name", ["so101_v30", "so101_v21"])
def test_inspect_reports_the_fixtures(run_cli, shared_dir, name):
    root = shared_dir / "fixtures/lerobot" / name
    proc = run_cli("data_tools.inspect", root)
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout
    version = "v3.0" if name.endswith("v30") else "v2.1"
    assert f"format    {version}   robot so101_follower   fps 30   episodes 3   frames 126" in text
    assert "observation.images.front  96x128 video  av1 yuv420p 30 fps" in text
    assert "'place the cube in the bin'  (1 episodes, 55 frames)" in text
    assert "'pick the cube'  (2 episodes, 71 frames)" in text
    for length in ("40 frames", "55 frames", "31 frames"):
        assert length in text
    proc = run_cli("data_tools.inspect", root, "--json")
    assert proc.returncode == 0
    report = json.loads(proc.stdout)
    assert report["valid"] and report["codebase_version"] == version
    assert [e["length"] for e in report["episodes"]] == [40, 55, 31]
    feats = {f["name"]: f for f in report["features"]}
    assert feats["action"]["shape"] == [6] and feats["action"]["names"][0] == "shoulder_pan.pos"
    assert {c["key"]: (c["codec"], c["height"], c["width"]) for c in report["cameras"]} == {
        "observation.images.front": ("av1", 96, 128),
        "observation.images.wrist": ("av1", 96, 128),
    }
    assert report["cameras"][0]["keyframe_interval"] == pytest.approx(2.0, abs=0.1)  # LeRobot's g=2
    assert report["stats"]["action"]["count"] == [126]
    warnings = [p for p in report["problems"] if p["severity"] == "warning"]
    if name == "so101_v30":  # written by LeRobot 0.4.4: the uint8-overflowed image std is flagged
        assert any("uint8 overflow" in p["message"] and p["file"] == "meta/stats.json" for p in warnings)
    else:
        assert report["problems"] == []


def test_every_problem_of_a_broken_v30_dataset_is_listed_with_its_file(tmp_path, v30_dir, run_cli):
    root = tmp_path / "broken"
    shutil.copytree(v30_dir, root)
    # 1. data: two rows out of global index order, one timestamp off the 1/fps grid, one bad task index
    data = root / "data/chunk-000/file-000.parquet"
    t = pq.read_table(data)
    idx = t.column("index").to_numpy().copy()
    idx[[10, 11]] = idx[[11, 10]]
    ts = t.column("timestamp").to_numpy().copy()
    ts[50] += 0.01
    ti = t.column("task_index").to_numpy().copy()
    ti[120] = 7
    t = t.set_column(t.schema.get_field_index("index"), "index", pa.array(idx))
    t = t.set_column(t.schema.get_field_index("timestamp"), "timestamp", pa.array(ts, pa.float32()))
    t = t.set_column(t.schema.get_field_index("task_index"), "task_index", pa.array(ti))
    pq.write_table(t, data)
    # 2. the wrist video loses its last episode's frames (cut after 100 frames)
    from fractions import Fraction

    from jrobot.data.video.encode import concat_videos

    wrist = root / "videos/observation.images.wrist/chunk-000/file-000.mp4"
    cut = tmp_path / "cut.mp4"
    concat_videos([wrist], cut, until=[Fraction(100, 30)])
    shutil.move(cut, wrist)
    # 3. the front video is missing altogether
    (root / "videos/observation.images.front/chunk-000/file-000.mp4").unlink()
    # 4. stats.json is not JSON
    (root / "meta/stats.json").write_text("{not json")
    problems = validate_dataset(root)
    text = "\n".join(map(str, problems))
    expected = [
        ("error", "data/chunk-000/file-000.parquet", "'index' is not the global row number in 2 row(s)"),
        ("error", "data/chunk-000/file-000.parquet", "'timestamp' is not frame_index/fps"),
        ("error", "data/chunk-000/file-000.parquet", "'task_index' outside 0..1 in 1 row(s): row 120: 7"),
        ("error", "videos/observation.images.wrist/chunk-000/file-000.mp4", "episode 2: 5 frames"),
        ("error", "videos/observation.images.front/chunk-000/file-000.mp4", "missing"),
        ("warning", "meta/stats.json", "unreadable"),
    ]
    for severity, file, message in expected:
        assert any(p.severity == severity and p.file == file and message in p.message for p in problems), (
            f"{severity} {file}: {message!r} not in\n{text}"
        )
    assert not is_valid(problems)
    proc = run_cli("data_tools.inspect", root)
    assert proc.returncode == 1
    assert (
        "INVALID" in proc.stdout and "videos/observation.images.front/chunk-000/file-000.mp4" in proc.stdout
    )
    report = describe_dataset(root)
    assert not report["valid"] and "open_error" in report  # the reader refuses it; the report still says why


def test_every_problem_of_a_broken_v21_dataset_is_listed(tmp_path, v21_dir):
    root = tmp_path / "broken"
    shutil.copytree(v21_dir, root)
    (root / "data/chunk-000/episode_000001.parquet").unlink()
    (root / "videos/chunk-000/observation.images.wrist/episode_000002.mp4").write_bytes(b"not a video")
    lines = (root / "meta/tasks.jsonl").read_text().splitlines()
    (root / "meta/tasks.jsonl").write_text(lines[0] + "\n{broken\n")
    problems = validate_dataset(root)
    files = {(p.severity, p.file) for p in problems}
    assert ("error", "meta/tasks.jsonl") in files
    assert ("error", "videos/chunk-000/observation.images.wrist/episode_000002.mp4") in files
    assert ("error", "data/chunk-000/episode_000001.parquet") in files


def test_inspect_v30_checks_episode_metadata(tmp_path, v30_dir):
    root = tmp_path / "meta"
    shutil.copytree(v30_dir, root)
    path = root / "meta/episodes/chunk-000/file-000.parquet"
    t = pq.read_table(path)
    to = t.column("dataset_to_index").to_numpy().copy()
    to[0] -= 1  # episode 0 claims 39 rows, so episode 1 no longer starts where 0 ends
    t = t.set_column(t.schema.get_field_index("dataset_to_index"), "dataset_to_index", pa.array(to))
    pq.write_table(t, path)
    (root / "meta/info.json").write_text(
        (root / "meta/info.json").read_text().replace('"total_frames": 126', '"total_frames": 130')
    )
    problems = [str(p) for p in validate_dataset(root)]
    assert any(
        "meta/episodes/chunk-000/file-000.parquet" in p and "length 40 but rows [0, 39)" in p
        for p in problems
    )
    assert any("dataset_from_index 40, expected 39" in p for p in problems)
    assert any("meta/info.json says total_frames=130" in p for p in problems)


def test_inspect_bad_sources_fail_fast_with_a_clear_message(tmp_path, run_cli, monkeypatch):
    proc = run_cli("data_tools.inspect", tmp_path / "nope")
    assert proc.returncode == 2 and "no such dataset folder" in proc.stderr
    (tmp_path / "empty").mkdir()
    proc = run_cli("data_tools.inspect", tmp_path / "empty")
    assert proc.returncode == 1 and "meta/info.json: missing" in proc.stdout
    t0 = time.perf_counter()
    proc = run_cli("data_tools.inspect", "someone/not_cached_dataset")
    assert proc.returncode == 2 and "offline" in proc.stderr, proc.stderr
    assert time.perf_counter() - t0 < 30
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(DatasetError, match="offline"):
        validate_dataset("someone/not_cached_dataset")


def test_validate_accepts_what_jrobot_writes(tmp_path, stripes):
    from dt_helpers import record_synthetic

    root = record_synthetic(tmp_path / "syn", [5, 1, 8], ["a", "b", "a"], dtype="image")
    problems = validate_dataset(root, decode=True)
    assert problems == [], problems
    report = describe_dataset(root)
    assert report["cameras"][0]["codec"] == "png (in parquet)"
    assert np.isclose(report["stats"]["observation.images.front"]["count"][0], 14)

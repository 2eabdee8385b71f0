"""LeRobot calibration files: folders, environment variables, exact format, validation."""

from __future__ import annotations

import json
import logging
import os
import time

import pytest

from jrobot.hw.calibration import (
    MotorCalibration,
    calibration_root,
    calibration_to_json,
    find_calibration_file,
    load_calibration,
    parse_calibration,
    save_calibration,
)
from jrobot.hw.errors import CalibrationError

# The first entry of the reference's example file, as draccus writes it (json.dump, indent=4).
LEROBOT_TEXT = """{
    "shoulder_pan": {
        "id": 1,
        "drive_mode": 0,
        "homing_offset": -710,
        "range_min": 758,
        "range_max": 3312
    }
}"""


def test_root_precedence(monkeypatch, tmp_path):
    for var in ("HF_LEROBOT_CALIBRATION", "HF_LEROBOT_HOME", "HF_HOME", "XDG_CACHE_HOME"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert calibration_root() == tmp_path / "home/.cache/huggingface/lerobot/calibration"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert calibration_root() == tmp_path / "xdg/huggingface/lerobot/calibration"
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    assert calibration_root() == tmp_path / "hf/lerobot/calibration"
    monkeypatch.setenv("HF_LEROBOT_HOME", str(tmp_path / "lr"))
    assert calibration_root() == tmp_path / "lr/calibration"
    monkeypatch.setenv("HF_LEROBOT_CALIBRATION", "~/cal")
    assert calibration_root() == tmp_path / "home/cal"


def test_exact_lerobot_text_round_trip(tmp_path):
    path = tmp_path / "a.json"
    path.write_text(LEROBOT_TEXT)
    cal = load_calibration(path)
    assert cal == {"shoulder_pan": MotorCalibration(1, 0, -710, 758, 3312)}
    assert calibration_to_json(cal) == LEROBOT_TEXT
    save_calibration(tmp_path / "b" / "c.json", cal)
    assert (tmp_path / "b" / "c.json").read_text() == LEROBOT_TEXT


def test_finds_old_and_new_lerobot_folders(calib_root):
    folders = ["so101_follower", "so_follower", "so100_follower"]
    assert find_calibration_file("robots", folders, "arm") is None
    old = calib_root / "robots" / "so101_follower" / "arm.json"
    old.parent.mkdir(parents=True)
    old.write_text(LEROBOT_TEXT)
    assert find_calibration_file("robots", folders, "arm") == old
    new = calib_root / "robots" / "so_follower" / "None.json"
    new.parent.mkdir(parents=True)
    new.write_text(LEROBOT_TEXT)
    assert find_calibration_file("robots", folders, None) == new  # id None -> None.json
    assert find_calibration_file("teleoperators", ["so_leader"], "arm") is None


def test_newest_wins_when_two_folders_disagree(calib_root, caplog):
    folders = ["so101_follower", "so_follower"]
    a = calib_root / "robots" / "so101_follower" / "x.json"
    b = calib_root / "robots" / "so_follower" / "x.json"
    for p in (a, b):
        p.parent.mkdir(parents=True)
    a.write_text(LEROBOT_TEXT)
    b.write_text(LEROBOT_TEXT.replace("-710", "-711"))
    old = time.time() - 100
    os.utime(a, (old, old))
    with caplog.at_level(logging.WARNING):
        assert find_calibration_file("robots", folders, "x") == b
    assert "differ" in caplog.text


def test_explicit_calibration_dir(tmp_path):
    (tmp_path / "mine.json").write_text(LEROBOT_TEXT)
    assert find_calibration_file("robots", ["so_follower"], "mine", tmp_path) == tmp_path / "mine.json"


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"id": 1, "drive_mode": 0, "homing_offset": 0, "range_min": 10}, "missing keys \\['range_max'\\]"),
        (
            {"id": 1, "drive_mode": 0, "homing_offset": 0, "range_min": 10, "range_max": 20, "x": 1},
            "unknown keys \\['x'\\]",
        ),
        (
            {"id": 1, "drive_mode": 0, "homing_offset": 0.5, "range_min": 10, "range_max": 20},
            "'homing_offset' must be an integer",
        ),
        (
            {"id": 1, "drive_mode": 0, "homing_offset": 2048, "range_min": 10, "range_max": 20},
            "homing_offset=2048",
        ),
        (
            {"id": 1, "drive_mode": 0, "homing_offset": 0, "range_min": 30, "range_max": 20},
            "range_min=30 must be below",
        ),
        ({"id": 1, "drive_mode": 0, "homing_offset": 0, "range_min": 0, "range_max": 5000}, "range_max=5000"),
        ({"id": 1, "drive_mode": 2, "homing_offset": 0, "range_min": 0, "range_max": 50}, "drive_mode=2"),
    ],
)
def test_bad_entries_name_file_motor_and_key(tmp_path, entry, message):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"elbow_flex": entry}))
    with pytest.raises(CalibrationError, match=message) as exc:
        load_calibration(path)
    assert str(path) in str(exc.value) and "'elbow_flex'" in str(exc.value)


def test_not_json_and_wrong_motors(tmp_path):
    path = tmp_path / "x.json"
    path.write_text("{nope")
    with pytest.raises(CalibrationError, match="not valid JSON"):
        load_calibration(path)
    path.write_text(LEROBOT_TEXT)
    with pytest.raises(CalibrationError, match=r"missing \['gripper'\]"):
        load_calibration(path, {"shoulder_pan": 1, "gripper": 6})
    with pytest.raises(CalibrationError, match="has id 1 but the arm uses id 2"):
        load_calibration(path, {"shoulder_pan": 2})
    with pytest.raises(CalibrationError, match="JSON object"):
        parse_calibration([1, 2], source="list.json")

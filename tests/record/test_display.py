"""The live rerun view (`--display_data` / `--display_save`): what a recording, a teleoperation and a
dataset episode log, read back from the .rrd file with rerun's own reader."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from rerun.chunk import RrdReader

from jrobot.display import DisplayOptions, RerunDisplay


def entities(path) -> dict[str, list]:
    """entity path -> the rows' last column values (the logged component), in order."""
    out: dict[str, list] = {}
    for chunk in RrdReader(path).stream():
        batch = chunk.to_record_batch()
        out.setdefault(chunk.entity_path, []).extend(batch.column(batch.num_columns - 1).to_pylist())
    out.pop("/__properties", None)
    return out


def test_a_step_logs_cameras_joints_and_actions(tmp_path):
    path = tmp_path / "v.rrd"
    with RerunDisplay("t", save=path, block=True) as view:
        for i in range(6):
            obs = {
                "shoulder_pan.pos": float(i),
                "gripper.pos": np.float32(2 * i),
                "front": np.full((240, 320, 3), i, np.uint8),  # big: JPEG
                "wrist": np.full((8, 8, 3), i, np.uint8),  # a thumbnail: raw
                "flag": True,  # not a number to plot
            }
            view.log(i, obs, {"shoulder_pan.pos": i + 0.5}, fps=30)
    got = entities(path)
    assert set(got) == {
        "/observation/state/shoulder_pan", "/observation/state/gripper", "/observation/images/front",
        "/observation/images/wrist", "/action/shoulder_pan",
    }  # fmt: skip
    assert [v[0] for v in got["/action/shoulder_pan"]] == [i + 0.5 for i in range(6)]
    assert [v[0] for v in got["/observation/state/gripper"]] == [2.0 * i for i in range(6)]
    assert all(len(v) == 6 for v in got.values())
    with pytest.raises(ValueError, match="needs one of save, url or spawn"):
        RerunDisplay("t")
    with pytest.raises(ValueError, match="display_jpeg_quality"):
        DisplayOptions(display_jpeg_quality=0)
    assert DisplayOptions().open("t") is None  # no flag, no rerun


def test_teleoperating_the_simulated_arm_logs_every_step(tmp_path):
    path = tmp_path / "t.rrd"
    proc = subprocess.run(
        [
            sys.executable, "-m", "jrobot.teleoperate", "--robot.type=sim", "--robot.cameras=[]",
            "--teleop.type=sim_expert", "--duration_s=1", "--fps=30", f"--display_save={path}",
        ],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    steps = int(proc.stdout.split("teleoperated ")[1].split(" steps")[0])
    shown, dropped = (
        int(proc.stdout.split("live view: ")[1].split(" steps shown, ")[i].split(" ")[0]) for i in (0, 1)
    )
    got = entities(path)
    # the loop never waits for the viewer: every step is either shown or counted as dropped (how many
    # the viewer keeps up with depends on the machine's load; blocking playback is tested above)
    assert shown + dropped == steps > 10 and shown >= 1
    assert len(got["/action/shoulder_pan"]) == len(got["/observation/state/elbow_flex"]) == shown


def test_a_dataset_episode_plays_back_with_its_values(tmp_path, v30_dir):
    from jrobot.data import open_dataset
    from jrobot.data.view import episode_to_rerun

    frames = episode_to_rerun(v30_dir, 1, save=tmp_path / "ep.rrd")
    ds = open_dataset(v30_dir)
    rows = [f for f in ds.iter_episode(1)]
    assert frames == len(rows) == ds.episode(1).length
    got = entities(tmp_path / "ep.rrd")
    assert len(got["/observation/images/front"]) == frames
    np.testing.assert_allclose(
        [v[0] for v in got["/action/elbow_flex"]], [r["action"][2] for r in rows], rtol=1e-6
    )
    np.testing.assert_allclose(
        [v[0] for v in got["/observation/state/gripper"]],
        [r["observation.state"][5] for r in rows],
        rtol=1e-6,
    )


def test_a_recording_shows_its_recorded_frames_and_counts_what_it_dropped(tmp_path):
    from jrobot.data import open_dataset
    from jrobot.recording.record import DatasetRecordConfig, RecordOptions, record
    from jrobot.sim.robot import SimExpertTeleop, SimRobot

    robot = SimRobot(image_size=(48, 64))
    cfg = DatasetRecordConfig(root=tmp_path / "ds", num_episodes=2, episode_time_s=0.5)
    summary = record(
        robot,
        SimExpertTeleop(robot),
        RecordOptions(dataset=cfg, status=False, display_save=tmp_path / "r.rrd"),
    )
    got = entities(tmp_path / "r.rrd")
    ds = open_dataset(tmp_path / "ds")
    shown, dropped = summary["display"]["logged"], summary["display"]["dropped"]
    # A live view drops steps rather than stall the loop when its thread falls behind (a loaded
    # machine): all 30 are shown or counted, and those shown are recorded frames, in order.
    assert ds.num_frames == 30 and shown + dropped == 30 and shown >= 1, summary["display"]
    assert len(got["/observation/images/front"]) == len(got["/action/gripper"]) == shown
    recorded = iter(ds.column("action")[:, 5].tolist())
    for v in got["/action/gripper"]:
        assert any(abs(r - v[0]) <= 1e-6 * max(1.0, abs(r)) for r in recorded), v


def test_without_rerun_the_view_is_a_clear_error(monkeypatch, tmp_path):
    from jrobot.display import DisplayError

    monkeypatch.setitem(sys.modules, "rerun", None)  # as if the viz extra were not installed
    with pytest.raises(DisplayError, match=r"the live view needs rerun: pip install 'jrobot\[viz\]'"):
        RerunDisplay("t", save=tmp_path / "x.rrd")
    assert not (tmp_path / "x.rrd").exists()

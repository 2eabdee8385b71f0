"""`jrobot.replay` on real-protocol arms: a recorded episode replayed on the virtual SO-101 (the real
scservo_sdk talking to emulated STS3215 servos), its safety path, and the command line."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import numpy as np
import pytest
from hw_helpers import Tool, eventually, expected_calibration, write_lerobot_calibration

from jrobot.data.write.writer import DatasetWriter
from jrobot.features import SO101_JOINT_KEYS, dataset_features_for_robot
from jrobot.hw.feetech import FeetechBus
from jrobot.recording.devices import VirtualRobot, VirtualRobotConfig
from jrobot.recording.joint_limits import write_limits
from jrobot.recording.replay import (
    ReplayDatasetOptions,
    ReplayError,
    load_episode,
    replay,
    safety_limits,
    tracking_report,
)

FPS = 30
REST = np.array([0.0, 0.0, 0.0, 0.0, 0.0, 9.1])  # where the virtual arm starts (gripper: its zero angle)
AMPLITUDE = np.array([25.0, 20.0, -20.0, 15.0, 30.0, 30.0])


def smooth_trajectory(frames: int = 60) -> np.ndarray:
    """Out from the rest pose and back (sin^2), every joint at once, with a wiggle on top."""
    k = np.arange(frames)[:, None]
    envelope = np.sin(np.pi * k / (frames - 1)) ** 2
    wiggle = 1.0 + 0.2 * np.sin(2 * np.pi * 2 * k / frames + np.arange(6))
    return REST + AMPLITUDE * envelope * wiggle


def write_dataset(root: Path, actions: np.ndarray, names=SO101_JOINT_KEYS, state=None) -> Path:
    feats = dataset_features_for_robot(
        dict.fromkeys(names, float), dict.fromkeys(names, float), use_videos=False
    )
    state = actions if state is None else state
    with DatasetWriter.create(root, fps=FPS, features=feats, robot_type="so101_follower", durable=False) as w:
        for a, s in zip(actions, state, strict=True):
            w.add_frame({"action": a.astype(np.float32), "observation.state": s.astype(np.float32)}, task="t")
        w.save_episode()
    return root


def virtual_robot(tmp_path: Path, **kw) -> VirtualRobot:
    return VirtualRobot(VirtualRobotConfig(calibration_dir=tmp_path / "cal", **kw))


def spy_goal_steps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The largest |goal - last position read| of each Goal_Position write on the real Feetech bus:
    what a robot's max_relative_target holds, seen at the wire calls themselves (a replay's own readings
    come a few ms earlier, and the arm keeps moving in between)."""
    present: dict[str, float] = {}
    steps: list[float] = []
    read, write = FeetechBus.sync_read, FeetechBus.sync_write

    def sync_read(self, data_name, *args, **kwargs):
        values = read(self, data_name, *args, **kwargs)
        if data_name == "Present_Position":
            present.update(values)
        return values

    def sync_write(self, data_name, values, *args, **kwargs):
        if data_name == "Goal_Position" and present:
            steps.append(max(abs(v - present[m]) for m, v in values.items()))
        return write(self, data_name, values, *args, **kwargs)

    monkeypatch.setattr(FeetechBus, "sync_read", sync_read)
    monkeypatch.setattr(FeetechBus, "sync_write", sync_write)
    return steps


def test_replay_on_the_virtual_arm_reproduces_the_recorded_trajectory(tmp_path):
    actions = smooth_trajectory()
    root = write_dataset(tmp_path / "ds", actions)
    episode = load_episode(ReplayDatasetOptions(root=root, episode=0))
    assert episode.names == list(SO101_JOINT_KEYS) and episode.fps == FPS
    np.testing.assert_allclose(episode.actions, actions, atol=1e-4)
    limits = safety_limits(episode)
    result = replay(virtual_robot(tmp_path), episode, limits, approach_s=0.3, settle_s=0.3)

    # in range: nothing clamped, the robot got exactly the recorded actions
    np.testing.assert_allclose(result.safe, actions, atol=1e-4)
    np.testing.assert_allclose(result.sent, actions, atol=1e-3)
    assert len(result.measured) == len(actions) + round(0.3 * FPS)
    report = tracking_report(result, episode.state)
    assert report["frames"] == 60 and report["approach_steps"] == 9
    # the measured joints follow the commands after a short lag, within the servo's tracking error
    assert report["lag_ms"] <= 100
    motion = np.ptp(actions, axis=0)
    for j, name in enumerate(SO101_JOINT_KEYS):
        r = report["joints"][name]
        assert r["clamped_by_limits"] == 0 and r["limited_by_robot"] == 0
        assert r["lag_compensated_mean_abs"] < max(1.5, 0.05 * motion[j]), (name, r)
        assert r["lag_compensated_max_abs"] < 5.0, (name, r)
        assert r["recorded_state_mean_abs"] < 3.0, (name, r)  # vs the recorded state, frame by frame
    # the approach brought the arm to the first action before the replay started: no jump at frame 0
    np.testing.assert_allclose(result.measured[0], actions[0], atol=1.0)
    # after settling the arm is where the episode ended
    np.testing.assert_allclose(result.measured[-1], actions[-1], atol=0.5)
    assert report["loop_period_ms_p50"] == pytest.approx(1e3 / FPS, abs=8)


def test_replay_of_a_sim_recording_reproduces_its_joint_trajectory(tmp_path):
    """Recorded with `jrobot.record` and the scripted expert, replayed on the simulated arm with the
    recording's seed: the same physics, so every joint reading of the recording comes back."""
    from jrobot.recording.record import DatasetRecordConfig, RecordOptions, record
    from jrobot.sim.robot import SimExpertTeleop, SimRobot

    robot = SimRobot(cameras=())
    cfg = DatasetRecordConfig(root=tmp_path / "sim", num_episodes=1, episode_time_s=20, video=False)
    summary = record(robot, SimExpertTeleop(robot), RecordOptions(dataset=cfg, seed=7, status=False))
    assert summary["saved"][0]["success"]
    episode = load_episode(ReplayDatasetOptions(root=cfg.root))
    result = replay(
        SimRobot(cameras=()), episode, safety_limits(episode), realtime=False, approach_s=0, seed=7
    )
    np.testing.assert_allclose(result.sent, episode.actions, atol=1e-4)
    # to float32 rounding (the recording stored its actions as float32), which the gripper's contact
    # with the cube amplifies a little
    tolerance = np.array([0.01] * 5 + [0.5])
    measured = result.measured[: len(episode.state)]
    assert np.all(np.abs(measured - episode.state).max(axis=0) < tolerance)
    report = tracking_report(result, episode.state)
    assert report["loop_period_ms_p50"] is None  # unpaced: no control period to measure


def test_replays_an_episode_lerobot_wrote(v21_dir, tmp_path):
    """LeRobot 0.3.3's v2.1 fixture: action(i) = state(i + 1), 10-degree sine waves, the gripper's dipping
    below its closed end (0), where the robot's calibrated range stops it."""
    episode = load_episode(ReplayDatasetOptions(root=v21_dir, episode=0))
    assert len(episode.actions) == 40 and episode.robot_type == "so101_follower"
    result = replay(virtual_robot(tmp_path), episode, safety_limits(episode), approach_s=0.3, settle_s=0.2)
    report = tracking_report(result, episode.state)
    below = episode.actions[:, 5] < 0
    assert below.any() and np.all(result.sent[:, 5] >= 0)
    assert report["joints"]["gripper.pos"]["limited_by_robot"] == int(below.sum())
    for name, r in report["joints"].items():
        assert r["clamped_by_limits"] == 0
        assert r["lag_compensated_mean_abs"] < 1.0, (name, r)
        if name != "gripper.pos":  # the arm joints go where the recording's did, frame by frame
            assert r["recorded_state_mean_abs"] < 1.5, (name, r)


def test_out_of_range_actions_are_clamped_before_the_robot(tmp_path, monkeypatch):
    actions = smooth_trajectory()
    spike = actions.copy()
    spike[30, 0] = 80.0  # shoulder_pan: far beyond what the stats say the actions span
    root = write_dataset(tmp_path / "ds", spike)
    # the stats say the actions span the smooth trajectory (as if this frame had been corrupted later)
    stats_path = root / "meta" / "stats.json"
    stats = json.loads(stats_path.read_text())
    stats["action"]["min"] = actions.min(axis=0).tolist()
    stats["action"]["max"] = actions.max(axis=0).tolist()
    stats_path.write_text(json.dumps(stats))
    episode = load_episode(ReplayDatasetOptions(root=root))
    # a joint limits file narrows elbow_flex to [-10, 10]
    limits_file = tmp_path / "limits.json"
    write_limits(
        limits_file,
        {"joints": {n: {"min": -120.0, "max": 120.0} for n in SO101_JOINT_KEYS}
         | {"elbow_flex.pos": {"min": -10.0, "max": 10.0}}},
    )  # fmt: skip
    limits = safety_limits(episode, margin=0.1, limits_file=limits_file)
    lo, hi = actions.min(axis=0), actions.max(axis=0)
    pan_hi = hi[0] + 0.1 * (hi[0] - lo[0])
    assert limits.upper[0] == pytest.approx(pan_hi) and limits.lower[2] == -10.0

    cap = 4.0  # the robot's own max_relative_target, degrees per step
    robot = virtual_robot(tmp_path, max_relative_target=cap)
    steps = spy_goal_steps(monkeypatch)
    result = replay(robot, episode, limits, approach_s=0.3, settle_s=0.1)
    assert result.safe[30, 0] == pytest.approx(pan_hi)  # clamped to the stats' range + margin
    assert result.sent[30, 0] <= pan_hi + 1e-6
    assert np.all(result.sent[:, 2] >= -10.0 - 1e-6)  # the limits file
    assert np.all(result.safe[:, 2] >= -10.0 - 1e-9) and np.min(actions[:, 2]) < -15
    # every goal the robot wrote was within `cap` of the position it had just read off the bus
    assert len(steps) >= len(result.sent) and max(steps) <= cap + 1e-6
    assert np.any(np.abs(result.sent - result.safe) > 1.0)  # and the cap did bite
    report = tracking_report(result)
    assert report["joints"]["shoulder_pan.pos"]["clamped_by_limits"] == 1
    assert report["joints"]["elbow_flex.pos"]["clamped_by_limits"] > 5
    assert report["joints"]["shoulder_lift.pos"]["clamped_by_limits"] == 0
    assert report["joints"]["shoulder_pan.pos"]["limited_by_robot"] >= 1  # the step up to the clamp


def test_non_finite_actions_are_refused_before_anything_moves(tmp_path):
    actions = smooth_trajectory(20)
    actions[5, 1] = np.nan
    episode = load_episode(ReplayDatasetOptions(root=write_dataset(tmp_path / "ds", actions)))
    robot = virtual_robot(tmp_path)
    with pytest.raises(ReplayError, match=r"non-finite actions for \['shoulder_lift.pos'\] at frames 5"):
        replay(robot, episode, safety_limits(episode))
    assert not robot.is_connected


def test_cli_action_names_that_do_not_match_the_robot_are_one_line(tmp_path):
    names = [*SO101_JOINT_KEYS[:2], "elbow.pos", *SO101_JOINT_KEYS[3:]]
    root = write_dataset(tmp_path / "ds", smooth_trajectory(10), names=names)
    tool = Tool("jrobot.replay", "--robot.type=virtual", f"--dataset.root={root}", "--dataset.episode=0")
    assert tool.finish(timeout=60) == 2, tool.text  # the dataset does not fit this robot: the user's to fix
    assert "Traceback" not in tool.text
    errors = [line for line in tool.text.splitlines() if line.startswith("error")]
    assert len(errors) == 1, tool.text
    assert "['elbow_flex.pos'] are missing from the dataset's actions" in errors[0]
    assert "['elbow.pos'] are not joints of this robot" in errors[0]
    assert "connected" not in tool.text  # nothing was connected, nothing moved

    tool = Tool("jrobot.replay", "--robot.type=virtual", f"--dataset.root={root}", "--dataset.episode=3")
    assert tool.finish(timeout=60) == 2 and "no episode 3 (episodes: 0..0)" in tool.text, tool.text


@pytest.fixture
def follower_args(arm, calib_root, tmp_path):
    write_lerobot_calibration(calib_root / "robots" / "so_follower" / "f.json", expected_calibration())
    return ["--robot.type=so101_follower", f"--robot.port={arm.port}", "--robot.id=f"]


def test_cli_replays_on_a_follower_reports_and_leaves_torque_off(arm, calib_root, follower_args, tmp_path):
    actions = smooth_trajectory(45)
    root = write_dataset(tmp_path / "ds", actions)
    report_path = tmp_path / "out" / "replay.json"
    env = {"HF_LEROBOT_CALIBRATION": str(calib_root)}
    args = [*follower_args, f"--dataset.root={root}", "--approach_s=0.3", "--settle_s=0.3"]
    tool = Tool("jrobot.replay", *args, f"--report={report_path}", env=env)
    tool.send()  # ENTER: use the calibration file
    assert tool.finish(timeout=60) == 0, tool.text
    assert "replayed 45 frames at 30 fps" in tool.text and "shoulder_pan.pos" in tool.text
    report = json.loads(report_path.read_text())
    assert (
        report["frames"] == 45 and report["episode"] == 0 and set(report["joints"]) == set(SO101_JOINT_KEYS)
    )
    assert all(r["lag_compensated_mean_abs"] < 2.0 for r in report["joints"].values()), report["joints"]
    assert set(arm.registers("Torque_Enable").values()) == {0}

    # Ctrl-C in the middle of a long episode: the replay stops between ticks, torque off
    long_root = write_dataset(tmp_path / "long", smooth_trajectory(600))
    tool = Tool("jrobot.replay", *follower_args, f"--dataset.root={long_root}", env=env)
    tool.send()
    assert eventually(lambda: set(arm.registers("Torque_Enable").values()) == {1}, timeout=30)
    tool.wait_for("replaying episode 0", timeout=30)
    tool.proc.send_signal(signal.SIGINT)
    assert tool.finish(timeout=30) == 130, tool.text
    assert "Traceback" not in tool.text
    assert set(arm.registers("Torque_Enable").values()) == {0}

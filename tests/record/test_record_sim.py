"""`jrobot.record` with the MuJoCo robot and the scripted expert: data, controls, interruption."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from jrobot.data.read.reader import open_dataset
from jrobot.features import SO101_JOINT_KEYS
from jrobot.recording.keyboard import RecordEvents, parse_keys
from jrobot.recording.record import DatasetRecordConfig, RecordOptions, record
from jrobot.sim.robot import SimExpertTeleop, SimRobot, SimRobotConfig

REPO = Path(__file__).resolve().parents[2]


class LoggingRobot(SimRobot):
    """A SimRobot that remembers every action it actually sent."""

    def __init__(self, config):
        super().__init__(config)
        self.sent: list[dict[str, float]] = []
        self.asked: list[dict[str, float]] = []

    def send_action(self, action):
        self.asked.append(dict(action))
        out = super().send_action(action)
        self.sent.append(out)
        return out


def test_records_the_action_actually_sent_and_episodes_end_after_success(tmp_path):
    robot = LoggingRobot(SimRobotConfig(image_size=(48, 64), max_relative_target=3.0))
    teleop = SimExpertTeleop(robot)
    cfg = DatasetRecordConfig(root=tmp_path / "ds", num_episodes=2, episode_time_s=12.0, vcodec="libsvtav1")
    summary = record(robot, teleop, RecordOptions(dataset=cfg, status=False, seed=5))
    assert [e["episode_index"] for e in summary["saved"]] == [0, 1]
    assert all(e["success"] for e in summary["saved"])
    assert not robot.is_connected  # disconnected at the end
    ds = open_dataset(tmp_path / "ds")
    assert ds.num_episodes == 2 and ds.robot_type == "so101_sim"
    assert ds.features["action"].flat_names == list(SO101_JOINT_KEYS)
    assert ds.tasks == [robot.task]
    sent = np.asarray([[a[k] for k in SO101_JOINT_KEYS] for a in robot.sent], np.float32)
    asked = np.asarray([[a[k] for k in SO101_JOINT_KEYS] for a in robot.asked], np.float32)
    np.testing.assert_array_equal(ds.column("action"), sent)
    assert np.abs(sent - asked).max() > 1.0  # clamping happened, and the dataset holds the clamped values
    lengths = [ep.length for ep in ds.episodes]
    assert all(length < 12 * 30 for length in lengths)  # ended shortly after success, not at the time limit
    frame = ds[lengths[0] - 1]
    assert frame["observation.images.front"].shape == (48, 64, 3)
    ds.close()


def test_resume_appends_and_refuses_a_mismatched_robot(tmp_path):
    root = tmp_path / "ds"
    cfg = DatasetRecordConfig(root=root, num_episodes=1, episode_time_s=2.0)
    robot = SimRobot(image_size=(48, 64))
    record(robot, SimExpertTeleop(robot), RecordOptions(dataset=cfg, status=False))
    robot = SimRobot(image_size=(48, 64))
    record(robot, SimExpertTeleop(robot), RecordOptions(dataset=cfg, status=False, resume=True, seed=10))
    ds = open_dataset(root)
    assert ds.num_episodes == 2
    ds.close()
    other = SimRobot(image_size=(32, 32))
    with pytest.raises(Exception, match=r"feature|shape|match"):
        record(other, SimExpertTeleop(other), RecordOptions(dataset=cfg, status=False, resume=True))
    assert open_dataset(root).num_episodes == 2  # nothing lost


def test_parse_keys():
    assert parse_keys(b"\x1b[C\x1b[D\x1bx\x1bOC") == ["right", "left", "escape", "right"]
    ev = RecordEvents()
    ev.press("left")
    assert ev.rerecord_episode and ev.take_exit_early() and not ev.exit_early


def _record_cmd(root: Path, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "jrobot.record", "--robot.type=sim", "--robot.image_size=[48, 64]",
        "--teleop.type=sim_expert", f"--dataset.root={root}", *extra,
    ]  # fmt: skip


class Reader:
    def __init__(self, fd: int):
        self.fd = fd
        self.buf = b""
        self.lock = threading.Lock()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self):
        while True:
            try:
                chunk = os.read(self.fd, 4096)
            except OSError:
                return
            if not chunk:
                return
            with self.lock:
                self.buf += chunk

    def count(self, needle: bytes) -> int:
        with self.lock:
            return self.buf.count(needle)

    def wait_for(self, needle: bytes, n: int = 1, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while self.count(needle) < n:
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"never saw {needle!r} x{n}; output:\n{self.buf.decode(errors='replace')}"
                )
            time.sleep(0.02)


def test_keys_in_a_terminal_end_rerecord_and_stop(tmp_path):
    """Arrow keys and Esc typed into the record process's terminal (a pty), as over SSH."""
    root = tmp_path / "ds"
    master, slave = os.openpty()
    proc = subprocess.Popen(
        _record_cmd(
            root,
            "--dataset.num_episodes=5",
            "--dataset.episode_time_s=30",
            "--realtime=true",
            "--dataset.reset_time_s=0",
        ),
        stdin=slave,
        stdout=slave,
        stderr=slave,
        cwd=REPO,
        start_new_session=True,
    )
    os.close(slave)
    out = Reader(master)
    try:
        out.wait_for(b"| recording", timeout=120)
        os.write(master, b"\x1b[D")  # <- : re-record episode 1
        out.wait_for(b"discarded, re-recording")
        out.wait_for(b"| recording", n=2)
        time.sleep(0.5)
        os.write(master, b"\x1b[C")  # -> : end episode 1 early, save it
        out.wait_for(b"saved (#0")
        out.wait_for(b"episode 2/5 (#1) | recording")
        time.sleep(0.5)
        os.write(master, b"\x1b")  # Esc: stop (the partial episode is saved, as LeRobot does)
        assert proc.wait(timeout=60) == 0, out.buf.decode(errors="replace")
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)
    ds = open_dataset(root)
    assert ds.num_episodes == 2
    lengths = [ep.length for ep in ds.episodes]
    assert all(5 <= n < 30 * 5 for n in lengths), lengths  # both ended by a key, long before 30 s
    ds.close()


def test_ctrl_c_keeps_saved_episodes(tmp_path):
    root = tmp_path / "ds"
    proc = subprocess.Popen(
        _record_cmd(root, "--dataset.num_episodes=20", "--realtime=true"),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        cwd=REPO,
    )
    out = Reader(proc.stdout.fileno())
    try:
        out.wait_for(b"saved (#0", timeout=120)
        out.wait_for(b"(#1) | recording")
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 130, out.buf.decode(errors="replace")
    finally:
        if proc.poll() is None:
            proc.kill()
    ds = open_dataset(root)
    assert ds.num_episodes == 1
    assert ds[0]["episode_index"] == 0
    ds.close()


def test_regrasp_demonstrations_record_the_miss_and_the_recovery(tmp_path):
    from jrobot.recording.devices import SimExpertConfig, make_teleoperator

    robot = SimRobot(SimRobotConfig(task="pick_color", image_size=(48, 64), environment_state=True))
    teleop = make_teleoperator(SimExpertConfig(regrasp_rate=1.0), robot)  # --teleop.regrasp_rate=1
    cfg = DatasetRecordConfig(root=tmp_path / "ds", num_episodes=2, episode_time_s=14.0)
    summary = record(robot, teleop, RecordOptions(dataset=cfg, status=False, seed=3))
    assert all(e["success"] for e in summary["saved"])
    ds = open_dataset(tmp_path / "ds")
    for ep in ds.episodes:
        # the plain expert succeeds after ~5.5 s; the missed grasp and the second one take ~3 s more
        assert 8 * 30 <= ep.length < 10 * 30
        env = np.stack([f["observation.environment_state"] for f in ds.iter_episode(ep.index)])
        target = int(np.argmax(env[0, -3:]))  # the one-hot target colour closes the vector
        xy = env[:, 5 * target : 5 * target + 2]
        jumps = np.linalg.norm(np.diff(xy, axis=0), axis=1)
        assert ((jumps > 0.025) & (jumps < 0.05)).sum() == 1  # slid once across the jaws, then carried
    ds.close()

"""Recording with real-protocol arms: leader and follower on virtual servo buses (real scservo_sdk over
ptys), an OpenCV camera playing simulator renders, `python -m jrobot.record` as a subprocess."""

from __future__ import annotations

import re
import signal
import threading
import time

import cv2
import numpy as np
import pytest
from hw_helpers import (
    CpuLoad,
    Tool,
    eventually,
    expected_calibration,
    sweep_ranges,
    write_lerobot_calibration,
)

from jrobot.data.read.reader import open_dataset
from jrobot.sim.robot import SimExpertTeleop, SimRobot
from jrobot.sim.virtual_arm import SO101_MECHANICS


@pytest.fixture(scope="module")
def sim_video(tmp_path_factory):
    """40 frames of the simulated scene as an mp4 that an OpenCV camera plays back at 30 fps."""
    path = tmp_path_factory.mktemp("cam") / "front.mp4"
    robot = SimRobot(image_size=(48, 64))
    teleop = SimExpertTeleop(robot)
    robot.connect()
    teleop.connect()
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30, (64, 48))
    for _ in range(40):
        writer.write(cv2.cvtColor(robot.get_observation()["front"], cv2.COLOR_RGB2BGR))
        robot.send_action(teleop.get_action())
    writer.release()
    robot.disconnect()
    return path


class Hand(threading.Thread):
    """A person moving the leader's shoulder and gripper back and forth."""

    def __init__(self, arm):
        super().__init__(daemon=True)
        self.arm = arm
        self.stop = threading.Event()

    def run(self):
        k = 0
        while not self.stop.is_set():
            m1, m6 = SO101_MECHANICS[0], SO101_MECHANICS[5]
            s = 0.5 + 0.4 * np.sin(k / 3)
            self.arm.move_by_hand(
                {1: m1.zero + 300 * np.sin(k / 4), 6: m6.lower + s * (m6.upper - m6.lower)},
                duration_s=0.1,
                frame="actual",
            )
            k += 1
            time.sleep(0.1)


def record_args(follower, leader, root, video, *extra):
    return [
        "--robot.type=so101_follower", f"--robot.port={follower.port}", "--robot.id=f",
        f"--robot.cameras={{front: {{type: opencv, index_or_path: {video}, width: 64, height: 48, fps: 30}}}}",
        "--teleop.type=so101_leader", f"--teleop.port={leader.port}", "--teleop.id=l",
        f"--dataset.root={root}", "--dataset.single_task=pick the cube", "--dataset.fps=30",
        "--dataset.episode_time_s=1", "--dataset.reset_time_s=0.3", *extra,
    ]  # fmt: skip


def test_calibrate_then_record_three_episodes(arm, leader_arm, calib_root, tmp_path, sim_video):
    env = {"HF_LEROBOT_CALIBRATION": str(calib_root)}
    # 1. calibrate the follower interactively through the real SDK (scripted ENTER presses + joint sweep)
    cal = Tool(
        "jrobot.calibrate", "--robot.type=so101_follower", f"--robot.port={arm.port}", "--robot.id=f", env=env
    )
    cal.wait_for("middle of its range of motion and press ENTER")
    cal.send()
    cal.wait_for("Recording positions. Press ENTER to stop...")
    sweep_ranges(arm)
    cal.send()
    assert cal.finish() == 0, cal.text
    write_lerobot_calibration(calib_root / "teleoperators" / "so_leader" / "l.json", expected_calibration())
    # 2. record three episodes while a "person" moves the leader
    hand = Hand(leader_arm)
    hand.start()
    root = tmp_path / "ds"
    rec = Tool(
        "jrobot.record", *record_args(arm, leader_arm, root, sim_video, "--dataset.num_episodes=3"), env=env
    )
    rec.send()  # ENTER: use the follower's calibration file
    rec.send()  # ENTER: use the leader's calibration file
    try:
        assert rec.finish(timeout=120) == 0, rec.text
    finally:
        hand.stop.set()
    assert "recorded 3 episode(s)" in rec.text
    assert set(arm.registers("Torque_Enable").values()) == {0}  # torque off after recording
    # 3. the dataset loads, with LeRobot's layout and the camera frames
    ds = open_dataset(root)
    assert ds.num_episodes == 3 and ds.robot_type == "so101_follower" and ds.fps == 30
    # 1 s at 30 fps: up to 31 frames (a loaded machine drops some, and the status line counts them)
    assert all(5 <= ep.length <= 31 for ep in ds.episodes), [ep.length for ep in ds.episodes]
    img = ds[5]["observation.images.front"]
    assert img.shape == (48, 64, 3) and img.std() > 5
    action = ds.column("action")
    state = ds.column("observation.state")
    assert np.ptp(action[:, 0]) > 5  # the leader's shoulder moved, and the follower was told to follow
    # the follower tracks the recorded (sent) goals: next state close to the previous action
    assert np.median(np.abs(state[1:, 0] - action[:-1, 0])) < 5.0
    ds.close()


def _start_recording(arm, leader_arm, calib_root, root, sim_video) -> Tool:
    """`jrobot.record` on the virtual follower and leader (calibrated), past its two start prompts."""
    write_lerobot_calibration(calib_root / "robots" / "so_follower" / "f.json", expected_calibration())
    write_lerobot_calibration(calib_root / "teleoperators" / "so_leader" / "l.json", expected_calibration())
    rec = Tool(
        "jrobot.record",
        *record_args(arm, leader_arm, root, sim_video, "--dataset.num_episodes=50"),
        env={"HF_LEROBOT_CALIBRATION": str(calib_root)},
    )
    rec.send()
    rec.send()
    return rec


def test_ctrl_c_and_bus_faults_keep_saved_episodes_and_torque_off(
    arm, leader_arm, calib_root, tmp_path, sim_video
):
    root = tmp_path / "ds"
    rec = _start_recording(arm, leader_arm, calib_root, root, sim_video)
    rec.wait_for("saved (#0", timeout=120)
    # dropped replies are retried: the recording carries on
    arm.faults.drop_next(2, ids=[3])
    rec.wait_for("saved (#1", timeout=60)
    assert rec.proc.poll() is None
    time.sleep(0.3)
    rec.proc.send_signal(signal.SIGINT)
    assert rec.finish() == 130, rec.text
    assert eventually(lambda: set(arm.registers("Torque_Enable").values()) == {0})
    ds = open_dataset(root)
    assert ds.num_episodes >= 2
    ds.close()

    # a motor that stops answering is reported clearly; saved episodes stay; torque off on the others
    root2 = tmp_path / "ds2"
    rec = _start_recording(arm, leader_arm, calib_root, root2, sim_video)
    rec.wait_for("saved (#0", timeout=120)
    arm.unplug(4)
    assert rec.finish(timeout=60) == 1, rec.text
    assert "wrist_flex" in rec.text or "id 4" in rec.text or "motor 4" in rec.text, rec.text
    others = {k: v for k, v in arm.registers("Torque_Enable").items() if k != 4}
    assert set(others.values()) == {0}
    ds = open_dataset(root2)
    assert ds.num_episodes >= 1
    ds.close()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_stop_signal_under_cpu_load_is_quick_keeps_episodes_and_torque_off(
    arm, leader_arm, calib_root, tmp_path, sim_video, sig
):
    """Under load, a signal once landed inside the camera encoder's queue hand-off and Ctrl-C then
    waited forever; now the loop stops at its next tick and the process is gone within seconds."""
    root = tmp_path / "ds"
    rec = _start_recording(arm, leader_arm, calib_root, root, sim_video)
    try:
        rec.wait_for("saved (#0", timeout=120)
        with CpuLoad():  # busy loops on every CPU from here on: encoding falls behind, queues fill
            rec.wait_for("saved (#1", timeout=120)
            time.sleep(0.5)  # into episode #2, frames queued for the encoder
            t0 = time.monotonic()
            rec.proc.send_signal(sig)
            rc = rec.proc.wait(timeout=60)
            shutdown_s = time.monotonic() - t0
    finally:
        if rec.proc.poll() is None:
            rec.proc.kill()
    assert rc == 128 + sig, rec.text
    assert shutdown_s < 5.0, (shutdown_s, rec.text)
    assert "shutdown took longer" not in rec.text  # it stopped by itself, not by the deadline
    assert eventually(lambda: set(arm.registers("Torque_Enable").values()) == {0})
    saved = set(re.findall(r"saved \(#(\d+)", rec.text))
    ds = open_dataset(root)
    assert ds.num_episodes == len(saved) >= 2  # every episode reported saved is in the dataset
    ds.close()

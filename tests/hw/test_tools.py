"""The command-line tools end to end, as subprocesses talking to virtual arms through ptys."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from hw_helpers import Tool, eventually, expected_calibration, sweep_ranges, write_lerobot_calibration

from jrobot.sim.sts3215 import Sts3215
from jrobot.sim.virtual_arm import VirtualArm


@pytest.fixture
def cal_env(calib_root) -> dict[str, str]:
    return {"HF_LEROBOT_CALIBRATION": str(calib_root)}


def test_calibrate_follower_scripted(arm, calib_root, cal_env):
    tool = Tool(
        "jrobot.calibrate",
        "--robot.type=so101_follower",
        f"--robot.port={arm.port}",
        "--robot.id=black",
        env=cal_env,
    )
    tool.wait_for("middle of its range of motion and press ENTER")
    tool.send()
    tool.wait_for("Recording positions. Press ENTER to stop...")
    sweep_ranges(arm)
    tool.send()
    assert tool.finish() == 0, tool.text
    path = calib_root / "robots" / "so_follower" / "black.json"
    assert f"Calibration saved to {path}" in tool.text
    assert json.loads(path.read_text()) == expected_calibration()
    assert set(arm.registers("Torque_Enable").values()) == {0}
    assert arm.registers("Homing_Offset")[6] == expected_calibration()["gripper"]["homing_offset"]


def test_calibrate_leader_reuses_file_on_enter(leader_arm, calib_root, cal_env):
    path = calib_root / "teleoperators" / "so101_leader" / "blue.json"
    text = write_lerobot_calibration(path, expected_calibration())
    tool = Tool(
        "jrobot.calibrate",
        "--teleop.type=so101_leader",
        f"--teleop.port={leader_arm.port}",
        "--teleop.id=blue",
        env=cal_env,
    )
    tool.wait_for("Press ENTER to use provided calibration file associated with the id blue")
    tool.send()
    assert tool.finish() == 0, tool.text
    assert path.read_bytes() == text
    assert (
        leader_arm.registers("Max_Position_Limit")[2] == expected_calibration()["shoulder_lift"]["range_max"]
    )


def test_setup_motors_one_motor_at_a_time():
    servos = [Sts3215(1) for _ in range(6)]  # factory-fresh: all id 1
    with VirtualArm(servos, wire_timing=False) as bench:
        for s in servos:
            bench.unplug(s)
        tool = Tool("jrobot.setup_motors", "--robot.type=so101_follower", f"--robot.port={bench.port}")
        for slot, name in reversed(
            list(
                enumerate(
                    ["shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll", "gripper"]
                )
            )
        ):
            tool.wait_for(f"Connect the controller board to the '{name}' motor only and press enter.")
            for s in servos:
                bench.unplug(s)
            bench.plug(servos[slot])
            tool.send()
            tool.wait_for(f"'{name}' motor id set to {slot + 1}")
        assert tool.finish() == 0, tool.text
        assert [s.id for s in servos] == [1, 2, 3, 4, 5, 6]
        assert {s.baudrate for s in servos} == {1_000_000}


def teleop_args(follower: VirtualArm, leader: VirtualArm, calib_root: Path, *extra: str) -> list[str]:
    write_lerobot_calibration(calib_root / "robots" / "so_follower" / "f.json", expected_calibration())
    write_lerobot_calibration(calib_root / "teleoperators" / "so_leader" / "l.json", expected_calibration())
    return [
        "--robot.type=so101_follower", f"--robot.port={follower.port}", "--robot.id=f",
        "--teleop.type=so101_leader", f"--teleop.port={leader.port}", "--teleop.id=l", *extra,
    ]  # fmt: skip


def test_teleoperate_follows_the_leader(arm, leader_arm, calib_root, cal_env):
    tool = Tool(
        "jrobot.teleoperate",
        *teleop_args(arm, leader_arm, calib_root, "--fps=30", "--duration_s=2.5"),
        env=cal_env,
    )
    tool.send()  # ENTER: leader calibration file
    tool.send()  # ENTER: follower calibration file
    tool.wait_for("SO101Follower connected", timeout=30)
    assert eventually(lambda: set(arm.registers("Torque_Enable").values()) == {1}, timeout=30)
    leader_arm.move_by_hand({1: 2047 + 300, 3: 2047 - 200, 6: 2500}, duration_s=0.5)
    assert tool.finish() == 0, tool.text
    assert "teleoperated" in tool.text and "rejected actions 0" in tool.text
    follower_pos = arm.present_positions()
    leader_pos = leader_arm.present_positions()
    for id_ in (1, 3, 6):
        assert abs(follower_pos[id_] - leader_pos[id_]) <= 2, (id_, follower_pos, leader_pos)
    assert set(arm.registers("Torque_Enable").values()) == {0}


def test_teleoperate_ctrl_c_leaves_torque_off(arm, leader_arm, calib_root, cal_env):
    tool = Tool("jrobot.teleoperate", *teleop_args(arm, leader_arm, calib_root, "--fps=30"), env=cal_env)
    tool.send()
    tool.send()
    assert eventually(lambda: set(arm.registers("Torque_Enable").values()) == {1}, timeout=30)
    time.sleep(0.3)
    tool.proc.send_signal(signal.SIGINT)
    assert tool.finish() == 130, tool.text
    assert set(arm.registers("Torque_Enable").values()) == {0}


def test_find_port_names_the_unplugged_port(arm, tmp_path):
    (tmp_path / "ttyUSB0").symlink_to(arm.port)
    (tmp_path / "ttyS0").symlink_to("/dev/null")
    tool = Tool("jrobot.find_port", f"--dev_dir={tmp_path}", "--settle_s=0")
    tool.wait_for("Remove the USB cable")
    (tmp_path / "ttyUSB0").unlink()
    tool.send()
    assert tool.finish() == 0, tool.text
    assert f"The port of this MotorsBus is '{tmp_path / 'ttyUSB0'}'" in tool.text


def test_find_port_when_nothing_was_unplugged(tmp_path):
    (tmp_path / "ttyS0").symlink_to("/dev/null")
    tool = Tool("jrobot.find_port", f"--dev_dir={tmp_path}", "--settle_s=0")
    tool.send()
    assert tool.finish() == 1
    assert "no port disappeared" in tool.text


def test_find_cameras_lists_and_saves(tmp_path):
    video = tmp_path / "cam.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 30.0, (32, 24))
    for _ in range(3):
        writer.write(np.full((24, 32, 3), 128, np.uint8))
    writer.release()
    tool = Tool("jrobot.find_cameras", f"--targets=[{video}]", f"--save_dir={tmp_path / 'shots'}")
    assert tool.finish() == 0, tool.text
    assert "Camera #0" in tool.text and "Width: 32" in tool.text
    assert len(list((tmp_path / "shots").glob("*.png"))) == 1


def test_bad_flags_and_missing_port(tmp_path):
    tool = Tool("jrobot.calibrate", "--robot.type=so101_follower", "--robot.prot=/dev/x")
    assert tool.finish() == 2
    assert "missing required flag --robot.port" in tool.text
    tool = Tool(
        "jrobot.calibrate",
        "--robot.type=so101_follower",
        "--robot.port=/dev/x",
        "--teleop.type=so101_leader",
        "--teleop.port=y",
    )
    assert tool.finish() == 2 and "either a robot" in tool.text
    tool = Tool(
        "jrobot.calibrate",
        "--robot.type=so101_follower",
        f"--robot.port={tmp_path / 'ttyACM7'}",
        "--robot.id=z",
    )
    assert tool.finish() == 2  # a missing port is the user's to fix: exit 2, as a bad flag
    assert "does not exist" in tool.text and "jrobot.find_port" in tool.text
    tool = Tool("jrobot.teleoperate", "--help")
    assert tool.finish() == 0 and "--teleop.type=so101_leader" in tool.text

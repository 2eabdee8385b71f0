"""SO-101 follower and leader against virtual arms: calibration, configure(), actions, torque."""

from __future__ import annotations

import json
import math

import pytest
from hw_helpers import (
    ScriptedPrompter,
    calibrating_prompter,
    eventually,
    expected_calibration,
    write_lerobot_calibration,
)

from jrobot.hw.errors import CalibrationError
from jrobot.hw.so101 import SO101Follower, SO101FollowerConfig, SO101Leader, SO101LeaderConfig
from jrobot.robot import Robot, Teleoperator
from jrobot.sim.sts3215 import Sts3215
from jrobot.sim.virtual_arm import VirtualArm


def calibrated_follower(arm, calib_root, **cfg) -> SO101Follower:
    """A follower whose LeRobot calibration file matches the virtual arm (written in the new folder)."""
    write_lerobot_calibration(calib_root / "robots" / "so_follower" / "f.json", expected_calibration())
    return SO101Follower(SO101FollowerConfig(port=arm.port, id="f", **cfg), prompter=ScriptedPrompter())


def test_classes_satisfy_the_protocols(arm, calib_root):
    follower = calibrated_follower(arm, calib_root)
    leader = SO101Leader(SO101LeaderConfig(port=arm.port, id="l"))
    assert isinstance(follower, Robot) and isinstance(leader, Teleoperator)
    assert follower.name == "so101_follower" and leader.name == "so101_leader"
    assert list(follower.action_features) == [
        "shoulder_pan.pos", "shoulder_lift.pos", "elbow_flex.pos", "wrist_flex.pos", "wrist_roll.pos", "gripper.pos",
    ]  # fmt: skip


def test_first_connect_calibrates_and_saves_lerobot_file(arm, calib_root):
    prompter = calibrating_prompter(arm)
    follower = SO101Follower(SO101FollowerConfig(port=arm.port, id="black"), prompter=prompter)
    follower.connect()
    path = calib_root / "robots" / "so_follower" / "black.json"
    assert follower.calibration_fpath == path
    assert json.loads(path.read_text()) == expected_calibration()
    assert path.read_text().startswith('{\n    "shoulder_pan": {\n        "id": 1,')
    assert any("middle of its range" in m for m in prompter.messages)
    assert follower.is_calibrated
    # the middle pose now reads 2047 raw, 0 degrees (wrist_roll: -0.044 as in the reference)
    obs = follower.get_observation()
    assert obs["shoulder_pan.pos"] == pytest.approx(0.0, abs=1e-9)
    assert obs["wrist_roll.pos"] == pytest.approx(-0.044, abs=0.0005)
    grip = expected_calibration()["gripper"]
    assert obs["gripper.pos"] == pytest.approx(
        (2047 - grip["range_min"]) / (grip["range_max"] - grip["range_min"]) * 100
    )
    follower.disconnect()
    # a second connection finds the motors calibrated: no prompt at all
    again = SO101Follower(SO101FollowerConfig(port=arm.port, id="black"), prompter=ScriptedPrompter())
    again.connect()
    assert again.prompter.messages == []
    again.disconnect()


def test_existing_lerobot_file_is_used_unchanged(arm, calib_root):
    path = calib_root / "robots" / "so101_follower" / "old.json"  # LeRobot <= 0.4.2 folder
    text = write_lerobot_calibration(path, expected_calibration())
    prompter = ScriptedPrompter([""])  # ENTER: use the file
    follower = SO101Follower(SO101FollowerConfig(port=arm.port, id="old"), prompter=prompter)
    follower.connect()
    assert "Press ENTER to use provided calibration file associated with the id old" in prompter.messages[0]
    assert arm.registers("Homing_Offset") == {
        i + 1: c["homing_offset"] for i, c in enumerate(expected_calibration().values())
    }
    assert arm.registers("Min_Position_Limit")[1] == expected_calibration()["shoulder_pan"]["range_min"]
    follower.disconnect()
    assert path.read_bytes() == text
    assert not (calib_root / "robots" / "so_follower").exists()
    arm.power_cycle()  # written unlocked, so the values were saved in the servos
    assert arm.register(3, "Homing_Offset") == expected_calibration()["elbow_flex"]["homing_offset"]


def test_calibration_folders_per_type(arm, calib_root):
    write_lerobot_calibration(calib_root / "robots" / "so100_follower" / "x.json", expected_calibration())
    so101 = SO101Follower(SO101FollowerConfig(port=arm.port, id="x"))
    assert so101.calibration == {}  # an SO-100's file is another arm's
    assert so101.calibration_fpath == calib_root / "robots" / "so_follower" / "x.json"
    for kind in ("so100_follower", "so_follower"):
        robot = SO101Follower(SO101FollowerConfig(port=arm.port, id="x", type=kind))
        assert robot.calibration_fpath == calib_root / "robots" / "so100_follower" / "x.json"
        assert robot.calibration["gripper"].id == 6


def test_recalibrate_with_c_overwrites_the_file(arm, calib_root):
    path = calib_root / "robots" / "so_follower" / "f.json"
    wrong = expected_calibration()
    wrong["elbow_flex"]["range_max"] -= 100
    write_lerobot_calibration(path, wrong)
    prompter = calibrating_prompter(arm, answers=["c"])
    follower = SO101Follower(SO101FollowerConfig(port=arm.port, id="f"), prompter=prompter)
    follower.connect()
    follower.disconnect()
    assert json.loads(path.read_text()) == expected_calibration()


def test_bad_calibration_file_is_reported_before_connecting(arm, calib_root):
    cal = expected_calibration()
    del cal["gripper"]
    write_lerobot_calibration(calib_root / "robots" / "so_follower" / "f.json", cal)
    with pytest.raises(CalibrationError, match=r"missing \['gripper'\]"):
        SO101Follower(SO101FollowerConfig(port=arm.port, id="f"))


def test_configure_writes_lerobot_registers(arm, calib_root):
    follower = calibrated_follower(arm, calib_root)
    arm.move_by_hand({2: 1900})
    follower.connect()
    for name, value in [
        ("Return_Delay_Time", 0), ("Maximum_Acceleration", 254), ("Acceleration", 254), ("Operating_Mode", 0),
        ("P_Coefficient", 16), ("I_Coefficient", 0), ("D_Coefficient", 32), ("Torque_Enable", 1), ("Lock", 1),
    ]:  # fmt: skip
        assert set(arm.registers(name).values()) == {value}, name
    gripper_only = {
        "Max_Torque_Limit": (1000, 500),
        "Protection_Current": (500, 250),
        "Overload_Torque": (80, 25),
    }
    for name, (others, gripper) in gripper_only.items():
        values = arm.registers(name)
        assert values[6] == gripper and {values[i] for i in range(1, 6)} == {others}, name
    # torque came on holding the present pose: no jump
    assert arm.register(2, "Goal_Position") == arm.register(2, "Present_Position")
    follower.disconnect()
    assert set(arm.registers("Torque_Enable").values()) == {0}


def test_send_action_moves_and_returns_what_was_sent(arm, calib_root):
    follower = calibrated_follower(arm, calib_root)
    follower.connect()
    sent = follower.send_action({"shoulder_pan.pos": 20.0, "gripper.pos": 80.0})
    assert sent == {"shoulder_pan.pos": 20.0, "gripper.pos": 80.0}

    def arrived() -> bool:
        obs = follower.get_observation()
        return abs(obs["shoulder_pan.pos"] - 20.0) < 0.2 and abs(obs["gripper.pos"] - 80) < 0.2

    assert eventually(arrived)
    obs = follower.get_observation()
    assert obs["shoulder_pan.pos"] == pytest.approx(20.0, abs=0.2)
    assert obs["gripper.pos"] == pytest.approx(80.0, abs=0.2)
    follower.disconnect()


def test_goals_are_clipped_to_the_calibrated_range(arm, calib_root):
    follower = calibrated_follower(arm, calib_root)
    follower.connect()
    sent = follower.send_action({"elbow_flex.pos": 170.0, "gripper.pos": 130.0})
    half = (
        expected_calibration()["elbow_flex"]["range_max"] - expected_calibration()["elbow_flex"]["range_min"]
    ) / 2
    assert sent["elbow_flex.pos"] == pytest.approx(half * 360 / 4095)
    assert sent["gripper.pos"] == 100.0
    assert eventually(
        lambda: arm.register(3, "Goal_Position") == expected_calibration()["elbow_flex"]["range_max"]
    )
    follower.disconnect()


def test_max_relative_target_float(arm, calib_root):
    follower = calibrated_follower(arm, calib_root, max_relative_target=5.0)
    follower.connect()
    sent = follower.send_action({"shoulder_lift.pos": 30.0, "wrist_flex.pos": -2.0})
    assert sent["shoulder_lift.pos"] == pytest.approx(5.0, abs=1e-9)  # present 0 + cap
    assert sent["wrist_flex.pos"] == pytest.approx(-2.0)
    follower.disconnect()


def test_max_relative_target_per_motor(arm, calib_root):
    caps = {
        "shoulder_pan": 1.0,
        "shoulder_lift": 2.0,
        "elbow_flex": 3.0,
        "wrist_flex": 4.0,
        "wrist_roll": 5.0,
        "gripper": 6.0,
    }
    follower = calibrated_follower(arm, calib_root, max_relative_target=caps)
    follower.connect()
    gripper = follower.get_observation()["gripper.pos"]
    sent = follower.send_action({f"{m}.pos": -50.0 for m in caps})
    assert sent["elbow_flex.pos"] == pytest.approx(-3.0)
    assert sent["gripper.pos"] == pytest.approx(max(0.0, gripper - 6.0))  # capped, then kept in 0..100
    follower.disconnect()


@pytest.mark.parametrize(
    ("value", "error", "match"),
    [
        (10, TypeError, "must be a float \\(e.g. 10.0\\)"),
        ({"shoulder_pan.pos": 1.0}, ValueError, "exactly the motor names"),
        ({"shoulder_pan": 1.0}, ValueError, "missing \\['elbow_flex'"),
        (-1.0, ValueError, "positive"),
    ],
)
def test_max_relative_target_validation(value, error, match):
    with pytest.raises(error, match=match):
        SO101FollowerConfig(port="/dev/null", max_relative_target=value)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_action_is_never_written(arm, calib_root, bad):
    follower = calibrated_follower(arm, calib_root)
    follower.connect()
    follower.send_action({"shoulder_pan.pos": 10.0})
    follower.get_observation()  # a round trip: the arm has processed everything sent before it
    goals = arm.registers("Goal_Position")
    arm.trace = []
    held = follower.send_action({"shoulder_pan.pos": 12.0, "elbow_flex.pos": bad})
    follower.get_observation()
    assert held["shoulder_pan.pos"] == pytest.approx(10.0)  # the last goal, held
    assert all(math.isfinite(v) for v in held.values())
    assert follower.rejected_actions == 1
    assert not [p for d, p in arm.trace if d == "rx" and p[4] in (3, 0x83)]  # no write of any kind
    assert arm.registers("Goal_Position") == goals
    follower.disconnect()


def test_bad_action_keys_and_values(arm, calib_root):
    follower = calibrated_follower(arm, calib_root)
    follower.connect()
    with pytest.raises(ValueError, match=r"'elbow.pos' does not name a motor"):
        follower.send_action({"elbow.pos": 1.0})
    with pytest.raises(TypeError, match="must be a number"):
        follower.send_action({"elbow_flex.pos": "up"})
    follower.disconnect()


def test_leader_reads_hand_motion_with_torque_off(leader_arm, calib_root):
    write_lerobot_calibration(calib_root / "teleoperators" / "so_leader" / "l.json", expected_calibration())
    leader = SO101Leader(SO101LeaderConfig(port=leader_arm.port, id="l"), prompter=ScriptedPrompter())
    leader_arm.set_register(1, "Torque_Enable", 1)
    leader.connect()
    assert set(leader_arm.registers("Torque_Enable").values()) == {0}
    assert set(leader_arm.registers("Return_Delay_Time").values()) == {0}
    leader_arm.move_by_hand({1: 2047 + 512, 6: 2047})  # +45 deg (homed frame), gripper closed a bit
    action = leader.get_action()
    assert action["shoulder_pan.pos"] == pytest.approx(512 * 360 / 4095, abs=0.1)
    leader.disconnect()


def test_disable_torque_on_disconnect_false_keeps_torque(arm, calib_root):
    follower = calibrated_follower(arm, calib_root, disable_torque_on_disconnect=False)
    follower.connect()
    follower.disconnect()
    assert set(arm.registers("Torque_Enable").values()) == {1}


def test_setup_motors_one_at_a_time(calib_root):
    servos = [Sts3215(1, baudrate=b) for b in (1_000_000, 500_000, 1_000_000, 115_200, 1_000_000, 1_000_000)]
    with VirtualArm(servos, wire_timing=False) as bench:
        for s in servos:
            bench.unplug(s)
        order = iter(reversed(servos))  # gripper first, as the tool asks

        def plug_next(text: str) -> None:
            if text.startswith("Connect the controller board"):
                for s in servos:
                    bench.unplug(s)
                bench.plug(next(order))

        follower = SO101Follower(
            SO101FollowerConfig(port=bench.port, id="new"), prompter=ScriptedPrompter(on_message=plug_next)
        )
        follower.bus.broadcast_timeout_ms = 150
        follower.setup_motors()
        assert [s.id for s in servos] == [1, 2, 3, 4, 5, 6]
        assert {s.baudrate for s in servos} == {1_000_000}
        for s in servos:
            bench.plug(s)
        follower.connect(calibrate=False)  # all six answer on one bus now
        follower.disconnect()

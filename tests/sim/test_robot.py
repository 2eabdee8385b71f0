"""SimRobot / SimExpertTeleop behave like LeRobot's SO-101 follower / leader."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from jrobot.features import SO101_JOINT_KEYS, dataset_features_for_robot
from jrobot.robot import (
    DeviceAlreadyConnectedError,
    DeviceNotConnectedError,
    EpisodicRobot,
    Robot,
    Teleoperator,
)
from jrobot.sim.robot import SimExpertTeleop, SimRobot, SimRobotConfig


@pytest.fixture
def robot():
    r = SimRobot(image_size=(48, 64), seed=0)
    r.connect()
    yield r
    if r.is_connected:
        r.disconnect()


def test_protocols_and_features(robot):
    assert isinstance(robot, Robot) and isinstance(robot, EpisodicRobot)
    teleop = SimExpertTeleop(robot)
    assert isinstance(teleop, Teleoperator)
    assert robot.action_features == dict.fromkeys(SO101_JOINT_KEYS, float)
    assert teleop.action_features == robot.action_features
    assert robot.observation_features == {
        **dict.fromkeys(SO101_JOINT_KEYS, float),
        "front": (48, 64, 3),
        "wrist": (48, 64, 3),
    }
    feats = dataset_features_for_robot(robot.observation_features, robot.action_features)
    assert set(feats) == {
        "action",
        "observation.state",
        "observation.images.front",
        "observation.images.wrist",
    }
    obs = robot.get_observation()
    assert set(obs) == set(robot.observation_features)
    assert all(isinstance(obs[k], float) for k in SO101_JOINT_KEYS)
    assert obs["front"].shape == (48, 64, 3) and obs["front"].dtype == np.uint8
    assert obs["shoulder_lift.pos"] == pytest.approx(-20.0, abs=0.5)  # home pose, degrees
    assert "cube" in robot.task


def test_connect_disconnect_lifecycle():
    r = SimRobot(cameras=())
    with pytest.raises(DeviceNotConnectedError):
        r.get_observation()
    r.connect()
    with pytest.raises(DeviceAlreadyConnectedError):
        r.connect()
    r.disconnect()
    assert not r.is_connected
    with pytest.raises(DeviceNotConnectedError):
        r.send_action(dict.fromkeys(SO101_JOINT_KEYS, 0.0))


def test_send_action_moves_the_arm_and_returns_what_was_sent(robot):
    goal = {**{k: v for k, v in robot.get_observation().items() if k in SO101_JOINT_KEYS}}
    goal["shoulder_pan.pos"] = 10.0
    for _ in range(20):
        sent = robot.send_action(goal)
    assert sent == goal
    assert robot.get_observation()["shoulder_pan.pos"] == pytest.approx(10.0, abs=0.5)
    assert robot.sim.time == pytest.approx(20 / 30)


def test_max_relative_target_clamps_like_lerobot(caplog):
    r = SimRobot(cameras=(), max_relative_target=5.0, seed=0)
    r.connect()
    present = r.get_observation()
    goal = dict(present)
    goal["elbow_flex.pos"] = present["elbow_flex.pos"] + 30.0
    goal["wrist_roll.pos"] = present["wrist_roll.pos"] - 2.0
    with caplog.at_level(logging.WARNING, logger="jrobot.sim.robot"):
        sent = r.send_action(goal)
    assert sent["elbow_flex.pos"] == pytest.approx(present["elbow_flex.pos"] + 5.0)
    assert sent["wrist_roll.pos"] == pytest.approx(present["wrist_roll.pos"] - 2.0)
    assert "clamped" in caplog.text
    r.disconnect()

    per_motor = dict.fromkeys(
        ["shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll"], 1.0
    )
    r = SimRobot(cameras=(), max_relative_target={**per_motor, "gripper": 20.0})
    r.connect()
    present = r.get_observation()
    sent = r.send_action({**present, "gripper.pos": present["gripper.pos"] + 50, "shoulder_pan.pos": 40.0})
    assert sent["gripper.pos"] == pytest.approx(present["gripper.pos"] + 20)
    assert sent["shoulder_pan.pos"] == pytest.approx(present["shoulder_pan.pos"] + 1.0)
    r.disconnect()


def test_bad_config_and_actions_are_rejected(robot):
    with pytest.raises(ValueError, match="exactly the motor names"):
        SimRobot(max_relative_target={"shoulder_pan": 1.0})
    with pytest.raises(TypeError, match="max_relative_target"):
        SimRobot(max_relative_target="5")
    with pytest.raises(ValueError, match="positive"):
        SimRobot(max_relative_target=-1.0)
    good = dict.fromkeys(SO101_JOINT_KEYS, 0.0)
    for bad in (float("nan"), float("inf")):
        with pytest.raises(ValueError, match="finite"):
            robot.send_action({**good, "elbow_flex.pos": bad})
    with pytest.raises(ValueError, match="missing"):
        robot.send_action({"shoulder_pan.pos": 0.0})
    assert robot.sim.frame_index == 0  # nothing was executed


def test_reset_is_seeded_and_config_object_works():
    r = SimRobot(SimRobotConfig(cameras=("front",), image_size=(32, 32)))
    r.connect()
    r.reset(seed=4)
    a = r.get_observation()["front"]
    cube_a = r.sim.task_state()["cube_pos"]
    r.reset(seed=5)
    assert not np.allclose(r.sim.task_state()["cube_pos"], cube_a)
    r.reset(seed=4)
    np.testing.assert_array_equal(r.get_observation()["front"], a)
    assert r.episode_index == 3
    r.disconnect()


def test_expert_teleop_records_successful_episodes():
    robot = SimRobot(cameras=(), seed=1)
    teleop = SimExpertTeleop(robot)
    with pytest.raises(DeviceNotConnectedError):
        teleop.get_action()
    robot.connect()
    teleop.connect()
    for episode_seed in (21, 22):
        robot.reset(episode_seed)
        success_at = None
        for frame in range(300):
            robot.get_observation()
            action = teleop.get_action()
            assert set(action) == set(SO101_JOINT_KEYS)
            sent = robot.send_action(action)
            assert sent == action
            if robot.is_success():
                success_at = frame
                break
        assert success_at is not None, f"episode seed {episode_seed} failed"
        assert not teleop.is_done  # the script would still retreat and go home
    teleop.disconnect()
    robot.disconnect()


def test_actuation_noise_moves_the_arm_off_its_commands_and_returns_the_commands():
    def run(noise: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
        r = SimRobot(cameras=(), actuation_noise=noise)
        r.connect()
        r.reset(seed)
        home = {k: v for k, v in r.get_observation().items() if k in SO101_JOINT_KEYS}
        sent, measured = [], []
        for _ in range(90):  # hold the home pose for 3 s
            sent.append(list(r.send_action(home).values()))
            measured.append([r.get_observation()[k] for k in SO101_JOINT_KEYS])
        r.disconnect()
        return np.array(sent), np.array(measured) - np.array(sent)

    sent, clean_error = run(0.0, 3)
    sent_noisy, error = run(3.0, 3)
    np.testing.assert_array_equal(sent_noisy, sent)  # the commands are what send_action returns
    late = slice(45, None)  # after the servos settled
    assert np.abs(clean_error[late, :5]).max() < 0.5
    # the arm joints wander by the offset (std 3 degrees, 0.5 s time constant); the gripper does not
    assert 1.0 < np.abs(error[late, :5]).max() < 15.0
    assert np.abs(error[late, 5]).max() < 0.5
    np.testing.assert_array_equal(run(3.0, 3)[1], error)  # the same episode seed, the same offsets
    assert not np.array_equal(run(3.0, 4)[1], error)
    with pytest.raises(ValueError, match="actuation_noise"):
        SimRobot(actuation_noise=-1.0)

"""End-effector space on the MuJoCo SO-101: observe and drive by the gripper's pose, record a dataset in
it with the scripted expert, replay it, and train, export and run a policy that acts in it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest

from jrobot.data.read.reader import open_dataset
from jrobot.data.validate import validate_dataset
from jrobot.features import SO101_JOINT_KEYS
from jrobot.kinematics.ee_space import (
    EE_KEYS,
    EESpaceConfig,
    EESpaceRobot,
    JointsToEETeleop,
    matrix_from_rotvec,
    rotvec_from_matrix,
    unwrap_rotvec,
)
from jrobot.kinematics.so101 import SO101Kinematics
from jrobot.recording.record import DatasetRecordConfig, RecordOptions, record
from jrobot.sim.robot import SimExpertTeleop, SimRobot, SimRobotConfig

REPO = Path(__file__).resolve().parents[2]
KIN = SO101Kinematics()


class LoggingRobot(SimRobot):
    """A SimRobot that remembers the joint actions it actually sent."""

    def __init__(self, config):
        super().__init__(config)
        self.sent: list[dict[str, float]] = []

    def send_action(self, action):
        out = super().send_action(action)
        self.sent.append(out)
        return out


def _arm(obs) -> np.ndarray:
    return np.array([obs[k] for k in SO101_JOINT_KEYS[:5]])


def test_rotation_vectors_round_trip_and_unwrap_continuously():
    rng = np.random.default_rng(0)
    for _ in range(50):
        v = rng.normal(size=3)
        v *= rng.uniform(0.01, np.pi - 1e-3) / np.linalg.norm(v)
        np.testing.assert_allclose(rotvec_from_matrix(matrix_from_rotvec(v)), v, atol=1e-9)
    # a downward gripper tilting through vertical: the canonical vector jumps by 2 pi, unwrapped it does not
    below, above = (matrix_from_rotvec([0.0, a, 0.0]) for a in (np.pi - 0.01, np.pi + 0.01))
    r_below, r_above = rotvec_from_matrix(below), rotvec_from_matrix(above)
    assert np.linalg.norm(r_above - r_below) > 6.0
    unwrapped = unwrap_rotvec(r_above, r_below)
    np.testing.assert_allclose(unwrapped, [0.0, np.pi + 0.01, 0.0], atol=1e-9)
    np.testing.assert_allclose(matrix_from_rotvec(unwrapped), above, atol=1e-12)  # the same rotation


@pytest.fixture
def ee_robot():
    robot = EESpaceRobot(LoggingRobot(SimRobotConfig(cameras=(), seed=0)))
    robot.connect()
    yield robot
    robot.disconnect()


def test_observes_forward_kinematics_and_reaches_a_target(ee_robot):
    obs = ee_robot.get_observation()
    assert list(ee_robot.observation_features) == list(EE_KEYS) and list(ee_robot.action_features) == list(
        EE_KEYS
    )
    inner = ee_robot.robot.get_observation()
    pose = KIN.forward(_arm(inner))
    np.testing.assert_allclose([obs[k] for k in EE_KEYS[:3]], pose[:3, 3], atol=1e-12)
    np.testing.assert_allclose(matrix_from_rotvec([obs[k] for k in EE_KEYS[3:6]]), pose[:3, :3], atol=1e-9)
    assert obs["ee.gripper_pos"] == inner["gripper.pos"]
    target = {**obs, "ee.x": obs["ee.x"] + 0.02, "ee.z": obs["ee.z"] + 0.03, "ee.gripper_pos": 40.0}
    for _ in range(60):
        sent = ee_robot.send_action(target)
    reached = ee_robot.get_observation()
    for k in ("ee.x", "ee.y", "ee.z"):
        assert abs(reached[k] - target[k]) < 2e-3, (k, reached[k], target[k])
    assert abs(reached["ee.gripper_pos"] - 40.0) < 2.0
    # what it returns (and a recording keeps) is the pose of the joints actually sent
    last = ee_robot.robot.sent[-1]
    np.testing.assert_allclose([sent[k] for k in EE_KEYS[:3]], KIN.forward(_arm(last))[:3, 3], atol=1e-12)


def test_bounds_step_limit_and_non_finite_actions(ee_robot):
    ee_robot.config = EESpaceConfig(space="ee", max_ee_step_m=0.01)
    obs = ee_robot.get_observation()
    start = np.array([obs[k] for k in EE_KEYS[:3]])
    far = {**obs, "ee.z": obs["ee.z"] + 0.3}  # far above, and above the box's top (0.40 m)
    ee_robot.send_action(far)
    commanded = KIN.forward(_arm(ee_robot.robot.sent[-1]))[:3, 3]
    assert np.linalg.norm(commanded - start) <= 0.01 + 1e-3  # may not lead the arm by more than the step
    for _ in range(200):
        ee_robot.send_action(far)
    top = ee_robot.get_observation()["ee.z"]
    assert top <= ee_robot.upper[2] + 2e-3  # clipped to the workspace box
    before = dict(ee_robot.robot.sent[-1])
    nan = {**obs, "ee.x": float("nan")}
    out = ee_robot.send_action(nan)
    assert all(np.isfinite(v) for v in out.values()) and ee_robot.held_actions == 1
    held = ee_robot.robot.sent[-1]
    assert all(np.isfinite(v) for v in held.values())
    np.testing.assert_allclose(_arm(held), _arm(before), atol=1e-9)  # held where it was sent last
    with pytest.raises(KeyError, match=r"ee\.wz"):
        ee_robot.send_action({k: obs[k] for k in EE_KEYS if k != "ee.wz"})


def test_a_robot_without_so101_joints_is_refused():
    class Other:
        name = "other"
        action_features: ClassVar = {"a.pos": float}

    with pytest.raises(ValueError, match="SO-101's joints"):
        EESpaceRobot(Other())


@pytest.fixture(scope="module")
def ee_dataset(tmp_path_factory) -> tuple[Path, list[dict]]:
    inner = LoggingRobot(SimRobotConfig(image_size=(32, 32), cameras=("front",)))
    robot = EESpaceRobot(inner)
    teleop = JointsToEETeleop(SimExpertTeleop(inner), robot.kin)
    root = tmp_path_factory.mktemp("ee") / "ds"
    cfg = DatasetRecordConfig(root=root, num_episodes=4, episode_time_s=12.0, vcodec="libsvtav1")
    summary = record(robot, teleop, RecordOptions(dataset=cfg, status=False, seed=11))
    return root, summary["saved"], inner.sent


def test_the_expert_records_a_lerobot_dataset_in_end_effector_space(ee_dataset):
    root, saved, sent = ee_dataset
    assert sum(e["success"] for e in saved) >= 3, saved  # the expert's joints, through FK and back by IK
    ds = open_dataset(root)
    assert ds.features["action"].flat_names == list(EE_KEYS)
    assert ds.features["observation.state"].flat_names == list(EE_KEYS)
    assert "observation.images.front" in ds.features
    assert not [p for p in validate_dataset(root) if p.severity == "error"]
    actions = ds.column("action")
    # every recorded action is the pose of the joints the robot actually sent
    poses = np.array([KIN.forward(_arm(s))[:3, 3] for s in sent])
    np.testing.assert_allclose(actions[:, :3], poses, atol=1e-5)
    np.testing.assert_allclose(actions[:, 6], [s["gripper.pos"] for s in sent], atol=1e-4)
    # the orientation is continuous within each episode (no 2 pi jumps at the downward grasp)
    state = ds.column("observation.state")
    for ep in ds.episodes:
        rot = state[ep.dataset_from_index : ep.dataset_to_index, 3:6]
        assert np.abs(np.diff(rot, axis=0)).max() < 0.5, ep.index
    ds.close()


def _tool(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=REPO, capture_output=True, text=True, timeout=timeout
    )


def test_replay_in_end_effector_space_and_a_joint_robot_refuses_it(ee_dataset, tmp_path):
    root = ee_dataset[0]
    report = tmp_path / "replay.json"
    proc = _tool(
        "jrobot.replay", "--robot.type=sim", "--robot.space=ee", "--robot.cameras=[front]",
        "--robot.image_size=[32,32]", f"--dataset.root={root}", "--dataset.episode=1", f"--report={report}",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    rep = json.loads(report.read_text())
    assert set(rep["joints"]) == set(EE_KEYS)
    assert rep["joints"]["ee.z"]["lag_compensated_mean_abs"] < 0.01  # metres: the arm follows the poses
    proc = _tool("jrobot.replay", "--robot.type=sim", f"--dataset.root={root}", "--dataset.episode=0")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "ee.x" in proc.stderr

"""A policy trained, exported and run in end-effector space: the state and action are the gripper's pose
(`--robot.space=ee`), recorded by the scripted expert in the simulator."""

from __future__ import annotations

import json
import subprocess
import sys

from conftest import REPO, run, train_cmd

from jrobot.kinematics.ee_space import EE_KEYS, EESpaceRobot, JointsToEETeleop
from jrobot.recording.record import DatasetRecordConfig, RecordOptions, record
from jrobot.shards.builder import build_shards
from jrobot.sim.robot import SimExpertTeleop, SimRobot, SimRobotConfig


def _tool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=REPO, capture_output=True, text=True, timeout=300
    )


def test_train_export_and_run_a_policy_in_end_effector_space(tmp_path):
    inner = SimRobot(SimRobotConfig(image_size=(32, 32), cameras=("front",)))
    robot = EESpaceRobot(inner)
    cfg = DatasetRecordConfig(root=tmp_path / "ds", num_episodes=2, episode_time_s=12.0, vcodec="libsvtav1")
    record(
        robot, JointsToEETeleop(SimExpertTeleop(inner), robot.kin), RecordOptions(dataset=cfg, status=False)
    )
    shards, work, bundle = tmp_path / "shards", tmp_path / "run", tmp_path / "bundle"
    build_shards(cfg.root, shards, resolution=(32, 32), workers=0, progress=False)
    features = '("observation.state","observation.images.front")'
    run(train_cmd(work, shards, num_steps=2, **{"policy.input_features": features}))
    run([sys.executable, "-m", "jrobot.export", "--workdir", str(work), "--out", str(bundle)])
    info = json.loads((bundle / "policy.json").read_text())
    assert info["features"]["action"]["names"] == list(EE_KEYS)
    assert info["features"]["observation.state"]["names"] == list(EE_KEYS)

    report = tmp_path / "run.json"
    sim = ["--robot.type=sim", "--robot.cameras=[front]", "--robot.image_size=[32,32]"]
    proc = _tool(
        "jrobot.run", f"--policy={bundle}", *sim, "--robot.space=ee", "--episodes=1", "--max_steps=20",
        f"--report={report}",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(report.read_text())["steps"] == 20
    # the same bundle on the arm in joint space, or in the joint-space sim evaluation: one line saying why
    proc = _tool("jrobot.run", f"--policy={bundle}", *sim, "--episodes=1", "--max_steps=5")
    assert proc.returncode == 2 and "add --robot.space=ee" in proc.stderr, proc.stderr[-2000:]
    proc = _tool("jrobot.eval", f"--policy={bundle}", f"--out={tmp_path / 'eval'}", "--episodes=1")
    assert proc.returncode == 2 and "--robot.space=ee" in proc.stderr, proc.stderr[-2000:]

"""SO-101 kinematics in LeRobot's conventions: forward kinematics equals LeRobot's own numbers (placo on
the same URDF, tests/fixtures/kinematics), inverse kinematics finds joints that reach a pose."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from jrobot.kinematics.so101 import IKError, SO101Kinematics

REFERENCE = Path(__file__).resolve().parent / "fixtures" / "kinematics" / "so101_lerobot_fk.json"


@pytest.fixture(scope="module")
def kin() -> SO101Kinematics:
    return SO101Kinematics()


@pytest.fixture(scope="module")
def cases() -> list[dict]:
    ref = json.loads(REFERENCE.read_text())
    assert ref["frame"] == "gripper_frame_link" and len(ref["cases"]) >= 20
    return ref["cases"]


def test_forward_kinematics_equals_lerobots_to_a_micrometre(kin, cases):
    for case in cases:
        want = np.asarray(case["T_world_gripper_frame"])
        got = kin.forward(case["joints_deg"])
        assert np.linalg.norm(got[:3, 3] - want[:3, 3]) < 1e-6, case["joints_deg"]
        np.testing.assert_allclose(got[:3, :3], want[:3, :3], atol=1e-6)
        np.testing.assert_allclose(kin.position(case["joints_deg"]), want[:3, 3], atol=1e-6)
    spread = np.ptp([c["T_world_gripper_frame"][0][3] for c in cases])
    assert spread > 0.2  # the cases cover the workspace, not one pose


def test_inverse_kinematics_reaches_poses_from_a_nearby_seed(kin, cases):
    rng = np.random.default_rng(3)
    for case in cases:
        q = np.asarray(case["joints_deg"])
        pose = kin.forward(q)
        seed = np.clip(q + rng.normal(0, 8, 5), kin.lower_deg, kin.upper_deg)
        solved = kin.inverse(pose, seed)
        assert np.all(solved >= kin.lower_deg - 1e-9) and np.all(solved <= kin.upper_deg + 1e-9)
        reached = kin.forward(solved)
        assert np.linalg.norm(reached[:3, 3] - pose[:3, 3]) < 1e-4
        # position alone: the orientation stays near the seed's
        solved = kin.inverse(pose[:3, 3], seed)
        assert np.linalg.norm(kin.position(solved) - pose[:3, 3]) < 1e-3


def test_out_of_reach_and_bad_input(kin):
    with pytest.raises(IKError, match=r"is out of reach; the arm stays 1[0-9]{3}\.[0-9] mm away") as e:
        kin.inverse(np.array([2.0, 0.0, 0.0]), [0.0] * 5)
    assert e.value.best_deg.shape == (5,)
    with pytest.raises(ValueError, match="expected 5 finite angles"):
        kin.forward([0.0, 0.0, np.nan, 0.0, 0.0])
    with pytest.raises(ValueError, match="expected 5 finite angles"):
        kin.forward([0.0] * 6)
    with pytest.raises(ValueError, match=r"a finite 4x4 pose or \(x, y, z\)"):
        kin.inverse(np.zeros(2), [0.0] * 5)

"""`jrobot.find_joint_limits`: a scripted hand sweeps the joints of the virtual SO-101 (real scservo_sdk,
emulated STS3215 servos) and the tool finds the swept ranges; its file round-trips through the loaders
`jrobot.run` and `jrobot.replay` use; the command line on the simulated arm with its scripted expert."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from jrobot.features import SO101_JOINT_KEYS
from jrobot.hw import safety
from jrobot.recording.devices import VirtualRobot, VirtualRobotConfig
from jrobot.recording.joint_limits import (
    EndEffectorFK,
    default_limits_path,
    find_joint_limits,
    format_table,
    load_ee_bounds,
    load_joint_limits,
    narrow_to_joint_limits,
    write_limits,
)

FPS = 30
REST = np.array([0.0, 0.0, 0.0, 0.0, 0.0, 9.1])  # the virtual arm's start pose
LOW = np.array([-40.0, -30.0, -25.0, -35.0, -50.0, 5.0])
HIGH = np.array([35.0, 10.0, 10.0, 20.0, 45.0, 60.0])  # clear of the table the arm stands on


def sweep_script() -> np.ndarray:
    """Every joint at once: rest -> its low end -> its high end -> back, holding at each end."""

    def ramp(a, b, n):  # eased in and out, as a hand moves: the servo does not overshoot the ends
        s = np.arange(1, n + 1)[:, None] / n
        return a + (b - a) * (1 - np.cos(np.pi * s)) / 2

    hold = 10  # a third of a second at each end: the servo settles there
    return np.vstack(
        [
            ramp(REST, LOW, 15),
            np.repeat(LOW[None], hold, 0),
            ramp(LOW, HIGH, 36),
            np.repeat(HIGH[None], hold, 0),
            ramp(HIGH, REST, 15),
        ]
    )


class ScriptedHand:
    """A `jrobot.robot.Teleoperator` whose joint targets follow a script, one row per step (then the
    last row); `stop_after` sends this process SIGINT at that step, as a user pressing Ctrl-C."""

    name = "scripted_hand"

    def __init__(self, script: np.ndarray, stop_after: int | None = None) -> None:
        self.script = script
        self.stop_after = stop_after
        self.steps = 0
        self.sent: list[np.ndarray] = []
        self._connected = False

    @property
    def action_features(self) -> dict:
        return dict.fromkeys(SO101_JOINT_KEYS, float)

    @property
    def is_connected(self) -> bool:
        return self._connected

    def connect(self, calibrate: bool = True) -> None:
        self._connected = True

    def get_action(self) -> dict[str, float]:
        row = self.script[min(self.steps, len(self.script) - 1)]
        self.steps += 1
        if self.stop_after is not None and self.steps == self.stop_after:
            os.kill(os.getpid(), signal.SIGINT)  # deferred by graceful_stop to the loop's next tick
        self.sent.append(row)
        return dict(zip(SO101_JOINT_KEYS, map(float, row), strict=True))

    def disconnect(self) -> None:
        self._connected = False


def test_scripted_sweep_on_the_virtual_arm_finds_the_swept_ranges(tmp_path):
    robot = VirtualRobot(VirtualRobotConfig(id="black", calibration_dir=tmp_path / "cal"))
    hand = ScriptedHand(sweep_script())
    found = find_joint_limits(robot, hand, fps=FPS, teleop_time_s=3.6)
    limits = found.limits
    assert found.stop is None and found.loop.steps == hand.steps
    assert not robot.is_connected and not hand.is_connected  # torque off, bus closed
    assert hand.steps >= len(sweep_script()), "the loop ran too slowly to finish the sweep"
    found_lo = np.array([limits["joints"][n]["min"] for n in SO101_JOINT_KEYS])
    found_hi = np.array([limits["joints"][n]["max"] for n in SO101_JOINT_KEYS])
    np.testing.assert_allclose(found_lo, LOW, atol=3.0)  # ~0.2 deg; a loaded machine overshoots more
    np.testing.assert_allclose(found_hi, HIGH, atol=3.0)
    assert limits["samples"] == hand.steps and limits["recorded_s"] > 3.0
    assert limits["robot"] == {"type": "so101_follower", "name": "so101_follower", "id": "black"}
    assert not limits["stopped_early"]

    # the end-effector range is that of the swept path (forward kinematics of the commanded joints)
    fk = EndEffectorFK()
    path = np.array([fk(dict(zip(SO101_JOINT_KEYS, row, strict=True))) for row in [REST, *hand.sent]])
    ee = limits["ee_position_m"]
    assert ee["link"] == "gripper_frame_link" and ee["frame"] == "base_link"
    # (~1 mm; a loaded machine's overshoot of a few degrees moves the tcp up to ~1 cm)
    np.testing.assert_allclose(ee["min"], path.min(axis=0), atol=0.015)
    np.testing.assert_allclose(ee["max"], path.max(axis=0), atol=0.015)
    assert np.all(np.ptp(path, axis=0) > 0.05)  # a real sweep of the workspace, not a point

    # written next to the robot's calibration file, and read back by the safety clamps' loaders
    out = default_limits_path(robot)
    assert out == tmp_path / "cal" / "black_limits.json"
    write_limits(out, limits)
    assert json.loads(out.read_text()) == limits
    names, lower, upper = load_joint_limits(out)
    assert names == list(SO101_JOINT_KEYS)
    np.testing.assert_array_equal(lower, found_lo)
    np.testing.assert_array_equal(upper, found_hi)
    subset = ["gripper.pos", "shoulder_pan.pos"]
    names, lower, upper = load_joint_limits(out, subset)
    assert names == subset and list(lower) == [found_lo[5], found_lo[0]]
    ee_lo, ee_hi = load_ee_bounds(out)
    assert list(ee_lo) == ee["min"] and list(ee_hi) == ee["max"]
    table = format_table(limits)
    assert "shoulder_pan.pos" in table and "ee z (m)" in table


def test_ctrl_c_ends_the_sweep_early_and_keeps_what_was_found(tmp_path, monkeypatch):
    monkeypatch.setattr(safety, "_stop", safety._StopState())  # this process's stop state, put back after
    robot = VirtualRobot(VirtualRobotConfig(calibration_dir=tmp_path / "cal"))
    hand = ScriptedHand(sweep_script(), stop_after=23)  # during the hold at the low end
    found = find_joint_limits(robot, hand, fps=FPS, teleop_time_s=30.0)
    limits = found.limits
    assert not robot.is_connected
    assert limits["stopped_early"] and isinstance(found.stop, KeyboardInterrupt)
    assert hand.steps <= 25 and limits["recorded_s"] < 5
    found_lo = np.array([limits["joints"][n]["min"] for n in SO101_JOINT_KEYS])
    np.testing.assert_allclose(found_lo[:5], LOW[:5], atol=3.0)
    write_limits(tmp_path / "l.json", limits)
    assert json.loads((tmp_path / "l.json").read_text())["stopped_early"] is True


def test_forward_kinematics_is_lerobots_frame_on_the_simulated_arms_chain():
    """The simulated arm's MJCF and LeRobot's URDF describe one chain: the sim's gripper body is LeRobot's
    `gripper_frame_link` up to one fixed transform, whatever the joints (the model sent the arm there)."""
    import mujoco

    from jrobot.sim.robot import SimRobot

    def pose(data, body: int) -> np.ndarray:
        out = np.eye(4)
        out[:3, :3], out[:3, 3] = data.xmat[body].reshape(3, 3), data.xpos[body]
        return out

    robot = SimRobot(cameras=())
    robot.connect()
    try:
        fk = EndEffectorFK()
        model, data = robot.sim.model, robot.sim.data
        base, gripper = model.body("base").id, model.body("gripper").id
        offsets = []
        for target in (REST, LOW, HIGH, (LOW + HIGH) / 2):
            for _ in range(3):
                robot.send_action(dict(zip(SO101_JOINT_KEYS, map(float, target), strict=True)))
            obs = robot.get_observation()
            mujoco.mj_kinematics(model, data)  # (mj_step leaves poses at the substep before the last)
            sim = np.linalg.inv(pose(data, base)) @ pose(data, gripper)
            joints = [obs[k] for k in SO101_JOINT_KEYS[:5]]
            lerobot = fk._kin.forward(joints)
            np.testing.assert_allclose(fk(obs), lerobot[:3, 3], atol=1e-12)
            offsets.append(np.linalg.inv(lerobot) @ sim)
        for offset in offsets[1:]:
            np.testing.assert_allclose(offset, offsets[0], atol=1e-5)
    finally:
        robot.disconnect()
    # use_degrees=false: the same pose in -100..100 units
    from jrobot.sim.units import lerobot_to_rad, rad_to_lerobot

    q = lerobot_to_rad(HIGH)
    ranged = dict(zip(SO101_JOINT_KEYS, rad_to_lerobot(q, use_degrees=False), strict=True))
    np.testing.assert_allclose(
        EndEffectorFK(use_degrees=False)(ranged),
        fk(dict(zip(SO101_JOINT_KEYS, HIGH, strict=True))),
        atol=1e-9,
    )


def test_default_path_of_a_robot_without_calibration_file(tmp_path, monkeypatch):
    from jrobot.sim.robot import SimRobot

    monkeypatch.setenv("HF_LEROBOT_CALIBRATION", str(tmp_path))
    assert default_limits_path(SimRobot(id="s1")) == tmp_path / "robots" / "so101_sim" / "s1_limits.json"
    assert default_limits_path(SimRobot()) == tmp_path / "robots" / "so101_sim" / "so101_sim_limits.json"


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ("{", "invalid JSON"),
        ('{"joints": {}}', 'no "joints" object'),
        ('{"joints": {"a.pos": {"min": 1, "max": 0}}}', r"min > max for \['a.pos'\]"),
        ('{"joints": {"a.pos": {"min": null, "max": 0}}}', "a.pos.min must be a finite number"),
        ('{"format": "other", "joints": {"a.pos": {"min": 0, "max": 1}}}', "is not 'jrobot.joint_limits'"),
    ],
)
def test_bad_limit_files_are_named_errors(tmp_path, doc, message):
    path = tmp_path / "l.json"
    path.write_text(doc)
    with pytest.raises(ValueError, match=message):
        load_joint_limits(path)


def test_missing_joints_and_ee_range_are_named(tmp_path):
    path = tmp_path / "l.json"
    write_limits(path, {"joints": {"a.pos": {"min": 0, "max": 1}}, "ee_position_m": None})
    with pytest.raises(ValueError, match=r"no limits for \['b.pos'\]"):
        load_joint_limits(path, ["a.pos", "b.pos"])
    with pytest.raises(ValueError, match="no end-effector range"):
        load_ee_bounds(path)
    with pytest.raises(FileNotFoundError, match="no joint limits file there"):
        load_joint_limits(tmp_path / "none.json")


def test_a_limits_file_narrows_a_safety_clamp(tmp_path):
    path = tmp_path / "l.json"
    write_limits(path, {"joints": {"a.pos": {"min": -10, "max": 10}, "b.pos": {"min": 0, "max": 50}}})
    lo, hi = narrow_to_joint_limits(path, ["b.pos", "a.pos"])  # no clamp yet: the file's ranges
    assert list(lo) == [0, -10] and list(hi) == [50, 10]
    lo, hi = narrow_to_joint_limits(path, ["a.pos", "b.pos"], np.array([-20.0, 5.0]), np.array([5.0, 80.0]))
    assert list(lo) == [-10, 5] and list(hi) == [5, 50]
    with pytest.raises(ValueError, match=r"ranges of \['b.pos'\] do not overlap"):
        narrow_to_joint_limits(path, ["a.pos", "b.pos"], np.array([-20.0, 60.0]), np.array([5.0, 80.0]))


def test_cli_on_the_simulated_arm_with_its_expert(tmp_path):
    out = tmp_path / "sim_limits.json"
    proc = subprocess.run(
        [
            sys.executable, "-m", "jrobot.find_joint_limits", "--robot.type=sim", "--robot.cameras=[]",
            "--teleop.type=sim_expert", "--teleop_time_s=1.5", f"--out={out}",
        ],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"limits written to {out}" in proc.stdout
    assert "shoulder_pan.pos" in proc.stdout and "ee x (m)" in proc.stdout
    names, lower, upper = load_joint_limits(out)
    assert names == list(SO101_JOINT_KEYS)
    assert np.all(upper >= lower) and np.ptp(np.r_[lower, upper]) > 1
    # The expert moved the arm: how far depends on the cube's position and on how many ticks a loaded
    # machine ran (>= 20), so ask for motion, not for a particular joint's amplitude.
    assert np.sum((upper - lower)[:5] > 1.0) >= 2, upper - lower
    doc = json.loads(out.read_text())
    assert doc["robot"]["name"] == "so101_sim" and doc["samples"] >= 20
    ee_lo, ee_hi = load_ee_bounds(out)
    assert np.all(ee_hi - ee_lo > 0) and ee_lo[2] > 0  # above the table


def test_replay_and_find_joint_limits_never_import_jax():
    """The rule of tests/test_layering.py for hardware and recording code (static and dynamic checks)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "layering_rules", Path(__file__).resolve().parents[1] / "test_layering.py"
    )
    rules = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(rules)
    rules._check(["jrobot.recording.replay", "jrobot.recording.joint_limits"], [], rules.JAX_STACK)


class _NoObservations:
    task = None

    def reset(self):
        pass

    def push(self, robot_obs):
        return {}


class _ConstantPolicy:
    """A policy (the controller's protocol) asking every joint for 100, trained on actions 0..200."""

    temporal_ensemble_coeff = None
    n_action_steps = chunk_size = 5
    fps = FPS
    needs_task = False

    def __init__(self) -> None:
        self.action_names = list(SO101_JOINT_KEYS)
        self.action_stats = {"min": np.zeros(6), "max": np.full(6, 200.0)}

    def observation_builder(self, task=None):
        return _NoObservations()

    def predict(self, obs):
        return np.full((1, 5, 6), 100.0)

    def seed(self, seed):
        pass


def test_run_clamps_to_a_limits_file(tmp_path):
    """`jrobot.run --safety_limits FILE`: the policy's clamp narrowed to the file's joint ranges."""
    import dataclasses

    from jrobot import run
    from jrobot.sim.robot import SimRobot

    if "safety_limits" not in {f.name for f in dataclasses.fields(run.RunOptions)}:
        pytest.skip("jrobot.run has no --safety_limits yet")
    path = tmp_path / "limits.json"
    write_limits(
        path, {"joints": {n: {"min": -30.0, "max": 30.0 + i} for i, n in enumerate(SO101_JOINT_KEYS)}}
    )
    robot = SimRobot(cameras=())
    sent = []
    send = robot.send_action
    robot.send_action = lambda action: sent.append(dict(action)) or send(action)
    opts = run.RunOptions(policy="stub", safety_limits=path, max_steps=5, mode="sync")
    assert run.run_robot(robot, _ConstantPolicy(), opts)["steps"] == 5
    assert sent[-1] == {n: 30.0 + i for i, n in enumerate(SO101_JOINT_KEYS)}

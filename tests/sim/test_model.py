"""The SO-101 MJCF: primitive geometry, LeRobot's joint names, and the upstream kinematic chain."""

from __future__ import annotations

import mujoco
import numpy as np
import pytest

from jrobot.features import SO101_MOTORS
from jrobot.sim.model import ASSETS_DIR, SCENES, fit_timestep, load_model
from jrobot.sim.units import JOINT_RANGES_RAD


def test_assets_are_small_mesh_free_and_credited():
    arm_xml = (ASSETS_DIR / "so101.xml").read_text()
    assert "Apache License, Version 2.0" in arm_xml and "SO-ARM100" in arm_xml
    assert "Modifications" in arm_xml
    for name in SCENES.values():
        text = (ASSETS_DIR / name).read_text()
        assert "<mesh" not in text and ".stl" not in text.lower()
    total = sum(p.stat().st_size for p in ASSETS_DIR.glob("*.xml"))
    assert total < 20_000, f"MJCF assets should stay a few KB, got {total} bytes"


@pytest.mark.parametrize("scene", sorted(SCENES))
def test_scenes_compile_with_lerobot_joints_and_actuators(scene):
    model = load_model(scene)
    assert model.nmesh == 0
    for i, name in enumerate(SO101_MOTORS):
        j = model.joint(name)
        assert model.actuator(i).name == name
        np.testing.assert_allclose(model.jnt_range[j.id], JOINT_RANGES_RAD[i])
        # position servos: ctrl range = joint range, STS3215 gains
        np.testing.assert_allclose(model.actuator_ctrlrange[i], JOINT_RANGES_RAD[i])
        assert model.actuator_gainprm[i, 0] == pytest.approx(998.22)
    assert model.actuator_forcerange[SO101_MOTORS.index("gripper")][1] < model.actuator_forcerange[0][1]


# Body poses of the upstream SO-ARM100 so101_new_calib.xml (computed with MuJoCo from that file).
UPSTREAM = {
    (0.0, 0.0, 0.0, 0.0, 0.0, 0.0): {
        "wrist": ([0.23213, -0.01828, 0.23437], [-0.5, 0.5, -0.5, -0.5]),
        "gripper": ([0.29323, -0.00018, 0.23437], [0.7069, 0.01721, -0.7069, -0.01721]),
        "moving_jaw": ([0.31663, 0.01762, 0.25546], [0.48768, 0.51202, -0.51202, 0.48768]),
    },
    (0.3, -0.5, 0.7, 0.4, -0.6, 0.2): {
        "wrist": ([0.16168, -0.05713, 0.20711], [-0.41967, 0.23274, -0.66771, -0.5691]),
        "gripper": ([0.21521, -0.05474, 0.17261], [0.78684, 0.08093, -0.45949, -0.40399]),
        "moving_jaw": ([0.24929, -0.06238, 0.18206], [0.49274, 0.54958, -0.66878, 0.08888]),
    },
}


@pytest.mark.parametrize("q", list(UPSTREAM))
def test_kinematic_chain_matches_upstream(q):
    model = load_model("arm")
    data = mujoco.MjData(model)
    data.qpos[[model.joint(n).qposadr[0] for n in SO101_MOTORS]] = q
    mujoco.mj_kinematics(model, data)
    for body, (pos, quat) in UPSTREAM[q].items():
        np.testing.assert_allclose(data.xpos[model.body(body).id], pos, atol=2e-5)
        xq = data.xquat[model.body(body).id]
        assert min(np.abs(xq - quat).max(), np.abs(xq + quat).max()) < 2e-4


def test_arm_mass_matches_upstream_inertials():
    model = load_model("arm")
    assert model.body_subtreemass[model.body("base").id] == pytest.approx(0.632006, abs=1e-5)


@pytest.mark.parametrize("fps", [30, 15, 50, 10])
def test_fit_timestep_divides_the_control_period(fps):
    model = load_model("arm")
    n = fit_timestep(model, 1.0 / fps)
    assert n * model.opt.timestep == pytest.approx(1.0 / fps)
    assert model.opt.timestep <= 0.005 + 1e-12


def test_unknown_scene_is_named():
    with pytest.raises(ValueError, match="unknown scene 'kitchen'"):
        load_model("kitchen")


def test_simulation_layer_does_not_import_jax():
    import subprocess
    import sys

    code = (
        "import sys, jrobot.sim, jrobot.sim.robot, jrobot.sim.env, jrobot.sim.arm, jrobot.sim.expert; "
        "print(sorted(m for m in ('jax', 'flax', 'optax', 'grain') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"

"""Loading the MJCF scenes shipped in `jrobot/sim/assets/` and fitting the physics step to a control rate."""

from __future__ import annotations

import math
from pathlib import Path

import mujoco
import numpy as np

from jrobot.features import SO101_MOTORS
from jrobot.sim.units import JOINT_RANGES_RAD

ASSETS_DIR = Path(__file__).resolve().parent / "assets"
SCENES: dict[str, str] = {
    "arm": "arm.xml",  # the SO-101 on the table (virtual arm, joint-space use)
    "pick_place": "pick_place.xml",  # + a cube and a bin
    "pick_color": "pick_color.xml",  # + red, green and blue cubes and a (grey) bin
    "reach": "reach.xml",  # + a target marker
}
# Largest physics step the scenes are stable at (the STS3215 position loop has kp ~ 1e3 N m/rad on a
# small armature; implicitfast integrates its damping).
MAX_TIMESTEP = 0.005


def scene_path(scene: str) -> Path:
    if scene not in SCENES:
        raise ValueError(f"unknown scene {scene!r}; choose one of {sorted(SCENES)}")
    return ASSETS_DIR / SCENES[scene]


def load_model(scene: str) -> mujoco.MjModel:
    """Compile a shipped scene. Each call returns a new model (callers may change its options)."""
    model = mujoco.MjModel.from_xml_path(str(scene_path(scene)))
    check_arm(model)
    return model


def check_arm(model: mujoco.MjModel) -> None:
    """The model must have LeRobot's six motors as joints and position actuators, in bus order."""
    for i, name in enumerate(SO101_MOTORS):
        j = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, name)
        a = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_ACTUATOR, name)
        if j < 0 or a < 0 or a != i:
            raise ValueError(f"model must have joint and actuator {name!r} (actuator index {i})")
        if not np.allclose(model.jnt_range[j], JOINT_RANGES_RAD[i], atol=1e-5):
            raise ValueError(
                f"joint {name!r} range {model.jnt_range[j]} differs from jrobot.sim.units ({JOINT_RANGES_RAD[i]})"
            )


def arm_qpos_adr(model: mujoco.MjModel) -> np.ndarray:
    """qpos addresses of the six motor joints in bus order."""
    return np.array([model.joint(name).qposadr[0] for name in SO101_MOTORS])


def arm_dof_adr(model: mujoco.MjModel) -> np.ndarray:
    return np.array([model.joint(name).dofadr[0] for name in SO101_MOTORS])


def fit_timestep(model: mujoco.MjModel, control_dt: float, max_timestep: float = MAX_TIMESTEP) -> int:
    """Set the physics step so that a whole number of steps makes one control period; return that number."""
    if not control_dt > 0:
        raise ValueError(f"control period must be positive, got {control_dt}")
    n = max(1, math.ceil(control_dt / max_timestep - 1e-9))
    model.opt.timestep = control_dt / n
    return n

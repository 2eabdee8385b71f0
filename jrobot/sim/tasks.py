"""What the simulated arm is asked to do: per-episode randomization, success test and reward.

A task owns the objects of its scene (not the arm): it places them at reset from the episode's random
generator and judges success from the MuJoCo state. The environments, the sim robot and the scripted
experts all go through this interface, so they agree on what "success" means.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar, Protocol

import mujoco
import numpy as np

ARM_BODIES = ("base", "shoulder", "upper_arm", "lower_arm", "wrist", "gripper", "moving_jaw")


class Task(Protocol):
    name: str
    scene: str  # key of jrobot.sim.model.SCENES
    description: str  # the language instruction recorded with the episodes

    def bind(self, model: mujoco.MjModel) -> None:
        """Look up the ids the task needs in `model` (called once after loading)."""
        ...

    def reset(self, model: mujoco.MjModel, data: mujoco.MjData, rng: np.random.Generator) -> None:
        """Place the task's objects for a new episode (before mj_forward)."""
        ...

    def is_success(self, model: mujoco.MjModel, data: mujoco.MjData) -> bool: ...

    def reward(self, model: mujoco.MjModel, data: mujoco.MjData) -> float: ...

    def state(self, model: mujoco.MjModel, data: mujoco.MjData) -> dict[str, np.ndarray]:
        """Privileged object state (positions, orientations) for scripted experts and diagnostics."""
        ...

    environment_state_names: ClassVar[tuple[str, ...]]

    def environment_state(self, model: mujoco.MjModel, data: mujoco.MjData) -> np.ndarray:
        """A small float vector of the task's object state (LeRobot's `observation.environment_state`)."""
        ...


def _yaw_quat(yaw: float) -> np.ndarray:
    return np.array([math.cos(yaw / 2), 0.0, 0.0, math.sin(yaw / 2)])


def quat_yaw(quat: np.ndarray) -> float:
    """Yaw (rotation about world z) of a unit quaternion (w, x, y, z)."""
    w, x, y, z = quat
    return math.atan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z))


@dataclasses.dataclass
class PickPlaceTask:
    """Pick the 3 cm cube up and put it in the bin.

    The cube starts on the table at a uniformly random position in `cube_x` x `cube_y` (metres, robot
    base frame) with a yaw uniform in `cube_yaw_deg`; the ranges are modest on purpose so that a
    policy trained on a few dozen scripted demonstrations can cover them. Success: the cube's centre
    is over the bin's inner floor, it is below the rim, nothing of the arm touches it and it is
    nearly still; i.e. it was released and rests in the bin.
    """

    cube_x: tuple[float, float] = (0.17, 0.23)
    cube_y: tuple[float, float] = (0.03, 0.11)
    cube_yaw_deg: tuple[float, float] = (-30.0, 30.0)
    max_resting_speed: float = 0.05  # m/s

    name: ClassVar[str] = "pick_place"
    scene: ClassVar[str] = "pick_place"
    description: ClassVar[str] = "Pick up the red cube and place it in the blue bin."

    def bind(self, model: mujoco.MjModel) -> None:
        self._cube_body = model.body("cube").id
        self._cube_geom = model.geom("cube").id
        self._cube_qpos = model.joint("cube").qposadr[0]
        self._cube_qvel = model.joint("cube").dofadr[0]
        self.cube_half = float(model.geom_size[self._cube_geom][0])
        self._bin_body = model.body("bin").id
        wall = model.geom("bin_wall_px")
        self.bin_inner_half = float(wall.pos[0] - wall.size[0])
        floor = model.geom("bin_floor")
        self.bin_floor_top = float(floor.pos[2] + floor.size[2])
        self.bin_rim = float(wall.pos[2] + wall.size[2])
        arm_bodies = {model.body(b).id for b in ARM_BODIES}
        self._arm_geoms = frozenset(g for g in range(model.ngeom) if model.geom_bodyid[g] in arm_bodies)
        self.bin_pos = model.body_pos[self._bin_body].copy()

    def reset(self, model: mujoco.MjModel, data: mujoco.MjData, rng: np.random.Generator) -> None:
        x = rng.uniform(*self.cube_x)
        y = rng.uniform(*self.cube_y)
        yaw = math.radians(rng.uniform(*self.cube_yaw_deg))
        a = self._cube_qpos
        data.qpos[a : a + 3] = (x, y, self.cube_half)
        data.qpos[a + 3 : a + 7] = _yaw_quat(yaw)
        data.qvel[self._cube_qvel : self._cube_qvel + 6] = 0.0

    def cube_in_bin(self, data: mujoco.MjData) -> bool:
        p = data.xpos[self._cube_body]
        d = p[:2] - data.xpos[self._bin_body][:2]
        return bool(np.all(np.abs(d) <= self.bin_inner_half) and p[2] < self.bin_rim)

    def cube_touches_arm(self, data: mujoco.MjData) -> bool:
        cube = self._cube_geom
        for c in data.contact[: data.ncon]:
            if (c.geom1 == cube and c.geom2 in self._arm_geoms) or (
                c.geom2 == cube and c.geom1 in self._arm_geoms
            ):
                return True
        return False

    def is_success(self, model: mujoco.MjModel, data: mujoco.MjData) -> bool:
        speed = float(np.linalg.norm(data.qvel[self._cube_qvel : self._cube_qvel + 3]))
        return self.cube_in_bin(data) and speed < self.max_resting_speed and not self.cube_touches_arm(data)

    def reward(self, model: mujoco.MjModel, data: mujoco.MjData) -> float:
        return 1.0 if self.is_success(model, data) else 0.0

    def state(self, model: mujoco.MjModel, data: mujoco.MjData) -> dict[str, Any]:
        return {
            "cube_pos": data.xpos[self._cube_body].copy(),
            "cube_quat": data.xquat[self._cube_body].copy(),
            "cube_yaw": quat_yaw(data.xquat[self._cube_body]),
            "cube_half": self.cube_half,
            "bin_pos": data.xpos[self._bin_body].copy(),
            "bin_floor_top": self.bin_floor_top,
        }

    environment_state_names: ClassVar[tuple[str, ...]] = (
        "cube_x",
        "cube_y",
        "cube_z",
        "cube_cos4yaw",
        "cube_sin4yaw",
    )

    def environment_state(self, model: mujoco.MjModel, data: mujoco.MjData) -> np.ndarray:
        """Cube position (m) and yaw as (cos 4*yaw, sin 4*yaw), which is continuous under the cube's
        90-degree symmetry: 5 values."""
        yaw = quat_yaw(data.xquat[self._cube_body])
        return np.concatenate([data.xpos[self._cube_body], [math.cos(4 * yaw), math.sin(4 * yaw)]])


@dataclasses.dataclass
class ReachTask:
    """Bring the grasp centre (the `tcp` site) within `tolerance` of a random target point."""

    target_x: tuple[float, float] = (0.16, 0.26)
    target_y: tuple[float, float] = (-0.10, 0.10)
    target_z: tuple[float, float] = (0.03, 0.12)
    tolerance: float = 0.02

    name: ClassVar[str] = "reach"
    scene: ClassVar[str] = "reach"
    description: ClassVar[str] = "Move the gripper to the green target."

    def bind(self, model: mujoco.MjModel) -> None:
        self._mocap = int(model.body_mocapid[model.body("target").id])
        self._tcp = model.site("tcp").id

    def reset(self, model: mujoco.MjModel, data: mujoco.MjData, rng: np.random.Generator) -> None:
        data.mocap_pos[self._mocap] = (
            rng.uniform(*self.target_x),
            rng.uniform(*self.target_y),
            rng.uniform(*self.target_z),
        )

    def distance(self, data: mujoco.MjData) -> float:
        return float(np.linalg.norm(data.site_xpos[self._tcp] - data.mocap_pos[self._mocap]))

    def is_success(self, model: mujoco.MjModel, data: mujoco.MjData) -> bool:
        return self.distance(data) <= self.tolerance

    def reward(self, model: mujoco.MjModel, data: mujoco.MjData) -> float:
        return -self.distance(data)

    def state(self, model: mujoco.MjModel, data: mujoco.MjData) -> dict[str, Any]:
        return {"target_pos": data.mocap_pos[self._mocap].copy(), "tcp_pos": data.site_xpos[self._tcp].copy()}

    environment_state_names: ClassVar[tuple[str, ...]] = ("target_x", "target_y", "target_z")

    def environment_state(self, model: mujoco.MjModel, data: mujoco.MjData) -> np.ndarray:
        """Target position (m): 3 values."""
        return data.mocap_pos[self._mocap].copy()


TASKS: dict[str, type] = {"pick_place": PickPlaceTask, "reach": ReachTask}


def make_task(task: str | Task) -> Task:
    if isinstance(task, str):
        if task not in TASKS:
            raise ValueError(f"unknown task {task!r}; choose one of {sorted(TASKS)}")
        return TASKS[task]()
    return task

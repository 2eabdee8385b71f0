"""The SO-101 task simulation that the gymnasium environments and the sim robot share.

`SO101Sim` owns one MuJoCo model and data for a task scene, advances physics one control period at a
time (the dataset's fps, 30 Hz by default, with a whole number of physics steps per period), reads
joints in LeRobot's calibrated units and renders the cameras. It knows nothing about gymnasium or the
Robot protocol; those are thin layers on top (`jrobot.sim.env`, `jrobot.sim.robot`).

Sim time advances only when `step()` is called, so a control loop that runs slower than real time
(rendering at 480x640 on a CPU, a slow policy) still sees the same physics as one that keeps up.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import mujoco
import numpy as np

from jrobot.features import SO101_MOTORS
from jrobot.sim.model import arm_dof_adr, arm_qpos_adr, fit_timestep, load_model
from jrobot.sim.render import OffscreenRenderer
from jrobot.sim.tasks import Task, make_task
from jrobot.sim.units import joint_limits, lerobot_to_rad, rad_to_lerobot

DEFAULT_CAMERAS: tuple[str, ...] = ("front", "wrist")
DEFAULT_IMAGE_SIZE: tuple[int, int] = (96, 128)  # (height, width): small enough to train on a CPU
# Start pose in LeRobot degrees (gripper percent): the tcp ~9 cm above the table in front of the base,
# fingers down, jaws slightly open, so the wrist camera sees the workspace from the first frame.
HOME_POSITION: tuple[float, ...] = (0.0, -20.0, 20.0, 90.0, 0.0, 10.0)


class SO101Sim:
    """One simulated SO-101 work cell: physics, joint I/O in LeRobot units, cameras, task.

    Args:
      task: a task name ("pick_place", "pick_color", "reach"), its env id, or a `jrobot.sim.tasks.Task`.
      fps: control rate; `step()` advances 1/fps seconds of physics.
      cameras: names of the scene cameras `images()` renders ("front", "wrist").
      image_size: (height, width) of rendered images.
      use_degrees: arm joints in degrees (LeRobot >= 0.4.4 default) or in -100..100 range units.
      home: start pose in LeRobot units (6 values, bus order); defaults to `HOME_POSITION` (degrees).
      init_noise: uniform noise (+-, LeRobot units) added to the 5 arm joints of the start pose.
    """

    def __init__(
        self,
        task: str | Task = "pick_place",
        *,
        fps: int = 30,
        cameras: Sequence[str] = DEFAULT_CAMERAS,
        image_size: tuple[int, int] = DEFAULT_IMAGE_SIZE,
        use_degrees: bool = True,
        home: Sequence[float] | None = None,
        init_noise: float = 0.0,
    ) -> None:
        if fps <= 0:
            raise ValueError(f"fps must be positive, got {fps}")
        self.task = make_task(task)
        self.model = load_model(self.task.scene)
        self.data = mujoco.MjData(self.model)
        self.task.bind(self.model)
        self.fps = int(fps)
        self.control_dt = 1.0 / self.fps
        self.n_substeps = fit_timestep(self.model, self.control_dt)
        self.use_degrees = bool(use_degrees)
        self.cameras = tuple(cameras)
        for cam in self.cameras:
            if mujoco.mj_name2id(self.model, mujoco.mjtObj.mjOBJ_CAMERA, cam) < 0:
                names = [self.model.camera(i).name for i in range(self.model.ncam)]
                raise ValueError(f"unknown camera {cam!r}; the scene has {names}")
        self.image_size = (int(image_size[0]), int(image_size[1]))
        if home is None:
            home_rad = lerobot_to_rad(np.asarray(HOME_POSITION), use_degrees=True)
            self.home = rad_to_lerobot(home_rad, use_degrees=self.use_degrees)
        else:
            self.home = np.asarray(home, dtype=np.float64).reshape(-1)
            if self.home.shape != (len(SO101_MOTORS),):
                raise ValueError(f"home must have {len(SO101_MOTORS)} values, got {self.home.shape}")
        self.init_noise = float(init_noise)
        self.lower, self.upper = joint_limits(self.use_degrees)
        self._qadr = arm_qpos_adr(self.model)
        self._vadr = arm_dof_adr(self.model)
        self._renderer: OffscreenRenderer | None = None
        self.rng = np.random.default_rng()
        self.frame_index = 0
        self.reset()

    # -- episode -------------------------------------------------------------------------------
    def reset(self, seed: int | None = None, options: Mapping[str, Any] | None = None) -> None:
        """Start a new episode; with `seed`, the episode (and the ones after it) are reproducible.

        `options` go to the task's `reset` for this episode only (for `PickColorTask`: `target`,
        `instruction`); names the task does not take raise ValueError before anything changes.
        """
        opts = {k: v for k, v in (options or {}).items() if v is not None}
        unknown = sorted(set(opts) - set(self.task.reset_options))
        if unknown:
            raise ValueError(
                f"task {self.task.name!r} takes no reset option(s) {unknown}; "
                f"it takes {list(self.task.reset_options)}"
            )
        if seed is not None:
            self.rng = np.random.default_rng(seed)
        mujoco.mj_resetData(self.model, self.data)
        q0 = self.home.copy()
        if self.init_noise > 0:
            q0[:5] += self.rng.uniform(-self.init_noise, self.init_noise, size=5)
        q0 = np.clip(q0, self.lower, self.upper)
        q0_rad = lerobot_to_rad(q0, use_degrees=self.use_degrees)
        self.data.qpos[self._qadr] = q0_rad
        self.data.ctrl[: len(SO101_MOTORS)] = q0_rad
        self.task.reset(self.model, self.data, self.rng, **opts)
        mujoco.mj_forward(self.model, self.data)
        self.frame_index = 0

    def step(self) -> None:
        """Advance the physics by one control period with the current joint targets."""
        mujoco.mj_step(self.model, self.data, nstep=self.n_substeps)
        self.frame_index += 1

    @property
    def time(self) -> float:
        return float(self.data.time)

    # -- joints --------------------------------------------------------------------------------
    def joint_positions(self) -> np.ndarray:
        """Present positions (6, bus order) in LeRobot units."""
        return rad_to_lerobot(self.data.qpos[self._qadr], use_degrees=self.use_degrees)

    def joint_velocities_rad(self) -> np.ndarray:
        return self.data.qvel[self._vadr].copy()

    def joint_targets(self) -> np.ndarray:
        """Goal positions (6, bus order) in LeRobot units, as last set."""
        return rad_to_lerobot(self.data.ctrl[: len(SO101_MOTORS)], use_degrees=self.use_degrees)

    def set_joint_targets(self, values: np.ndarray) -> np.ndarray:
        """Set goal positions (6, LeRobot units); clipped to the joint limits as the servos' position
        limits do. Returns the goals in effect. Non-finite values raise ValueError."""
        v = np.asarray(values, dtype=np.float64).reshape(-1)
        if v.shape != (len(SO101_MOTORS),):
            raise ValueError(
                f"expected {len(SO101_MOTORS)} joint targets {SO101_MOTORS}, got shape {v.shape}"
            )
        if not np.all(np.isfinite(v)):
            bad = {SO101_MOTORS[i]: float(v[i]) for i in np.flatnonzero(~np.isfinite(v))}
            raise ValueError(f"joint targets must be finite, got {bad}")
        v = np.clip(v, self.lower, self.upper)
        self.data.ctrl[: len(SO101_MOTORS)] = lerobot_to_rad(v, use_degrees=self.use_degrees)
        return v

    # -- cameras -------------------------------------------------------------------------------
    @property
    def renderer(self) -> OffscreenRenderer:
        if self._renderer is None:
            self._renderer = OffscreenRenderer(self.model, *self.image_size)
        return self._renderer

    def render(self, camera: str) -> np.ndarray:
        """(H, W, 3) uint8 RGB image of `camera` at `image_size`."""
        return self.renderer.render(self.data, camera)

    def images(self) -> dict[str, np.ndarray]:
        return {cam: self.render(cam) for cam in self.cameras}

    # -- task ----------------------------------------------------------------------------------
    def is_success(self) -> bool:
        return bool(self.task.is_success(self.model, self.data))

    def reward(self) -> float:
        return float(self.task.reward(self.model, self.data))

    def environment_state(self) -> np.ndarray:
        """The task's object-state vector (`observation.environment_state`), float64."""
        return np.asarray(self.task.environment_state(self.model, self.data), dtype=np.float64)

    def task_state(self) -> dict[str, Any]:
        """Privileged object state (e.g. the cube pose) for scripted experts and diagnostics."""
        return self.task.state(self.model, self.data)

    def move_target(self, xy: Sequence[float]) -> bool:
        """Slide the object the task moves to `xy` (m, on the table) if the spot is free; False, and
        nothing changes, if the object would touch another one or the arm there."""
        move = getattr(self.task, "move_target", None)
        if move is None:
            raise TypeError(f"task {self.task.name!r} has no object to move")
        return bool(move(self.model, self.data, np.asarray(xy, dtype=np.float64)))

    def task_info(self) -> dict[str, Any]:
        """The task's own per-step facts for the env's `info` (e.g. `wrong_object` for pick_color)."""
        return self.task.info(self.model, self.data)

    @property
    def instruction(self) -> str:
        """The current episode's language instruction (the task's `description`, set at reset)."""
        return self.task.description

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None

"""Gymnasium environments for the simulated SO-101.

- `jrobot/SO101PickPlace-v0`: put the randomly placed cube into the bin;
- `jrobot/SO101PickColor-v0`: three cubes (red, green, blue); put the one the episode's instruction
  names into the bin (a new target colour and instruction wording each episode);
- `jrobot/SO101Reach-v0`: bring the gripper to a random target point.

Observations use the dataset's keys, so a policy trained on recorded (or LeRobot) datasets can be
evaluated on the env without renaming anything:

- `"observation.state"`: float32 (6,), present joint positions in bus order (`SO101_JOINT_KEYS`), in
  LeRobot's calibrated units (degrees for the five arm joints with zero at mid-range, or -100..100
  with `use_degrees=False`; gripper 0 = closed .. 100 = open);
- `"observation.images.<camera>"`: uint8 (H, W, 3) RGB for each camera in `cameras`
  ("front", "wrist"); `cameras=()` gives a state-only env that needs no OpenGL;
- `"observation.environment_state"` (only with `environment_state=True`, the default for reach):
  float32 privileged object state, the cube pose for pick-and-place (x, y, z, cos 4yaw, sin 4yaw),
  the three cube poses and a one-hot of the target colour for pick-color (18 values), the target
  position for reach; for state-only policies and debugging.

Actions are float32 (6,) joint-position targets in the same units and order (what a leader arm
sends); values outside the joint limits are clipped, as the servos' position limits do, and NaN/inf
raise ValueError. One step is one control period (1/fps s). `info["is_success"]` reports the task's
success test every step; `terminate_on_success` ends the episode when it first holds, and the time
limit comes from the registration (`max_episode_steps`).

`info["task"]` is the episode's language instruction (what the sim robot records with it), read from
the task after every reset, so it changes per episode for pick-color; that env also reports
`info["target_color"]` and `info["wrong_object"]` (a cube other than the named one is in the bin).
`reset(options={"target": "green"})` or `options={"instruction": "Move the green cube to the bin."}`
asks for another cube on the layout the seed gives (evaluating instruction following); the options
of each task are its `reset_options`, others raise ValueError.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from jrobot.features import IMAGE_PREFIX, STATE_KEY
from jrobot.sim.render import OffscreenRenderer
from jrobot.sim.simulator import DEFAULT_CAMERAS, DEFAULT_IMAGE_SIZE, SO101Sim
from jrobot.sim.tasks import Task

# How far (LeRobot units) a present position may read outside the joint limits (contacts and the soft
# joint limits let the joints overshoot slightly), for the observation space bounds.
STATE_MARGIN = 10.0
ENV_STATE_KEY = "observation.environment_state"


class SO101Env(gym.Env):
    """The SO-101 in a MuJoCo work cell, driven by joint-position targets. See the module docstring."""

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["rgb_array"], "render_fps": 30}

    def __init__(
        self,
        task: str | Task = "pick_place",
        *,
        cameras: Sequence[str] = DEFAULT_CAMERAS,
        image_size: tuple[int, int] = DEFAULT_IMAGE_SIZE,
        fps: int = 30,
        use_degrees: bool = True,
        terminate_on_success: bool = True,
        init_noise: float = 0.0,
        environment_state: bool = False,
        render_mode: str | None = None,
        render_size: tuple[int, int] = (480, 640),
        render_camera: str = "front",
    ) -> None:
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(
                f"render_mode must be one of {self.metadata['render_modes']} or None, got {render_mode!r}"
            )
        self.sim = SO101Sim(
            task,
            fps=fps,
            cameras=cameras,
            image_size=image_size,
            use_degrees=use_degrees,
            init_noise=init_noise,
        )
        self.metadata = {**self.metadata, "render_fps": self.sim.fps}
        self.terminate_on_success = bool(terminate_on_success)
        self.render_mode = render_mode
        self.render_size = (int(render_size[0]), int(render_size[1]))
        self.render_camera = render_camera
        self._render_renderer: OffscreenRenderer | None = None
        self.include_environment_state = bool(environment_state)

        lo, hi = self.sim.lower.astype(np.float32), self.sim.upper.astype(np.float32)
        self.action_space = spaces.Box(lo, hi, dtype=np.float32)
        obs = {STATE_KEY: spaces.Box(lo - STATE_MARGIN, hi + STATE_MARGIN, dtype=np.float32)}
        if self.include_environment_state:
            n = self.sim.environment_state().shape[0]
            obs[ENV_STATE_KEY] = spaces.Box(-2.0, 2.0, (n,), dtype=np.float32)  # metres, cos/sin
        h, w = self.sim.image_size
        for cam in self.sim.cameras:
            obs[IMAGE_PREFIX + cam] = spaces.Box(0, 255, (h, w, 3), dtype=np.uint8)
        self.observation_space = spaces.Dict(obs)

    @property
    def task_description(self) -> str:
        """The current episode's instruction (LeRobot's envs expose the same attribute)."""
        return self.sim.instruction

    def _obs(self) -> dict[str, np.ndarray]:
        obs = {STATE_KEY: self.sim.joint_positions().astype(np.float32)}
        if self.include_environment_state:
            obs[ENV_STATE_KEY] = self.sim.environment_state().astype(np.float32)
        for cam, img in self.sim.images().items():
            obs[IMAGE_PREFIX + cam] = img
        return obs

    def _info(self, success: bool) -> dict[str, Any]:
        return {
            "is_success": success,
            "task": self.task_description,
            "time": self.sim.time,
            **self.sim.task_info(),
        }

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        # The episode's randomness comes from gymnasium's np_random, which `seed` (re)seeds.
        self.sim.rng = self.np_random
        self.sim.reset(options=options)
        return self._obs(), self._info(self.sim.is_success())

    def step(self, action: np.ndarray):
        a = np.asarray(action, dtype=np.float64)
        if a.shape != self.action_space.shape:
            raise ValueError(f"action must have shape {self.action_space.shape}, got {a.shape}")
        self.sim.set_joint_targets(a)
        self.sim.step()
        success = self.sim.is_success()
        terminated = success and self.terminate_on_success
        return self._obs(), self.sim.reward(), terminated, False, self._info(success)

    def render(self) -> np.ndarray | None:
        if self.render_mode != "rgb_array":
            return None
        if self._render_renderer is None:
            self._render_renderer = OffscreenRenderer(self.sim.model, *self.render_size)
        return self._render_renderer.render(self.sim.data, self.render_camera)

    def close(self) -> None:
        if self._render_renderer is not None:
            self._render_renderer.close()
            self._render_renderer = None
        self.sim.close()


class SO101PickPlaceEnv(SO101Env):
    """`jrobot/SO101PickPlace-v0`: put the randomly placed cube into the bin."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__("pick_place", **kwargs)


class SO101PickColorEnv(SO101Env):
    """`jrobot/SO101PickColor-v0`: put the cube the episode's instruction names into the bin."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__("pick_color", **kwargs)


class SO101ReachEnv(SO101Env):
    """`jrobot/SO101Reach-v0`: bring the gripper to a random target point (dense reward -distance)."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("terminate_on_success", False)
        kwargs.setdefault("environment_state", True)
        super().__init__("reach", **kwargs)

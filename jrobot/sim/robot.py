"""The simulated SO-101 as a `jrobot.robot.Robot`, and its scripted expert as a `Teleoperator`.

Recording, running a policy and evaluation talk to these exactly as to the real follower and leader:
`get_observation()` returns `{"shoulder_pan.pos": float, ..., "gripper.pos": float, "<camera>":
HxWx3 uint8}` in LeRobot's calibrated units, `send_action()` takes the six `"<motor>.pos"` targets,
applies `max_relative_target` like LeRobot's follower and returns what was actually sent.

What the sim adds for episodes (real arms have no equivalent, so callers check for them, e.g. with
`isinstance(robot, jrobot.robot.EpisodicRobot)`):

- `reset(seed=None)`: start a new episode (re-randomize the cubes, arm back home);
- `is_success()`: the task's success test on the current state;
- `task`: the language instruction to record with the current episode. It is read from the task
  after each reset, so for the instruction-conditioned `pick_color` task (a new target colour and
  wording every episode) a recorder that reads it per episode records each episode's own instruction.

Time: each `send_action()` advances the simulation by exactly one control period (1/fps s), however
long the caller takes, so a recording or evaluation loop that runs slower than real time gets the same
physics as one that keeps up, and need not sleep.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from typing import Any

import numpy as np

from jrobot.features import SO101_JOINT_KEYS, SO101_MOTORS
from jrobot.robot import DeviceAlreadyConnectedError, DeviceNotConnectedError
from jrobot.sim.expert import Expert, make_expert
from jrobot.sim.simulator import DEFAULT_CAMERAS, DEFAULT_IMAGE_SIZE, SO101Sim
from jrobot.sim.tasks import make_task
from jrobot.sim.units import from_joint_dict, to_joint_dict

logger = logging.getLogger(__name__)


ACTUATION_NOISE_TAU_S = 0.5  # time constant of `SimRobotConfig.actuation_noise`'s offset
ACTUATION_NOISE_STREAM = 0xDA27  # keeps the offsets' random stream apart from the scene's for one seed


@dataclasses.dataclass
class SimRobotConfig:
    """Settings of a `SimRobot` (the same role as LeRobot's SOFollowerConfig for the real arm).

    `max_relative_target`: None, one positive number for every motor, or a dict with exactly the
    motor names (no ".pos" suffix), in LeRobot units, as in LeRobot's follower config.
    `seed`: the episode seed used at `connect()`; later episodes are seeded by `reset(seed)`.
    `environment_state`: also observe the task's privileged object state (the cube pose) as the vector
    "environment_state", recorded as `observation.environment_state` (a real arm has no such sensor;
    state-based policies and quick CPU experiments use it).
    `task`: "pick_place", "pick_color" or "reach" (`--robot.task=pick_color`), or the env id of one
    ("jrobot/SO101PickColor-v0").
    `actuation_noise`: the standard deviation (action units: degrees by default) of a smooth random
    offset, one per arm joint (not the gripper), that the simulated servos add to each command they
    execute; `send_action` still returns (and a recording stores) the command. Recording a scripted
    expert with it gives demonstrations that start off the expert's path and show the way back to it
    (DART, Laskey et al. 2017): the expert's commands follow its plan, the arm does not quite. The
    offset is an Ornstein-Uhlenbeck process with a `ACTUATION_NOISE_TAU_S` time constant, drawn anew
    each episode from its seed.
    """

    task: str = "pick_place"
    fps: int = 30
    cameras: tuple[str, ...] = DEFAULT_CAMERAS
    image_size: tuple[int, int] = DEFAULT_IMAGE_SIZE
    use_degrees: bool = True
    max_relative_target: float | dict[str, float] | None = None
    init_noise: float = 0.0
    seed: int | None = None
    id: str | None = None
    environment_state: bool = False
    actuation_noise: float = 0.0
    type: str = "sim"  # the `--robot.type` that selects this robot on the command line


def check_actuation_noise(noise: Any) -> None:
    if not (isinstance(noise, int | float) and not isinstance(noise, bool) and 0 <= noise < float("inf")):
        raise ValueError(f"actuation_noise must be a finite number >= 0, got {noise!r}")


def _check_max_relative_target(cap: Any) -> None:
    if cap is None:
        return
    if isinstance(cap, Mapping):
        if set(cap) != set(SO101_MOTORS):
            raise ValueError(
                f"max_relative_target dict must have exactly the motor names {list(SO101_MOTORS)}, got {sorted(cap)}"
            )
        values = list(cap.values())
    elif isinstance(cap, int | float) and not isinstance(cap, bool):
        values = [cap]
    else:
        raise TypeError(
            f"max_relative_target must be None, a number or a dict per motor, got {type(cap).__name__}"
        )
    for v in values:
        if isinstance(v, bool) or not isinstance(v, int | float) or not np.isfinite(v) or v <= 0:
            raise ValueError(f"max_relative_target values must be positive finite numbers, got {v!r}")


def clamp_relative(
    goal: np.ndarray, present: np.ndarray, cap: float | Mapping[str, float] | None
) -> np.ndarray:
    """LeRobot's `ensure_safe_goal_position`: limit each motor's step from `present` to +-cap."""
    if cap is None:
        return goal
    caps = (
        np.array([cap[m] for m in SO101_MOTORS])
        if isinstance(cap, Mapping)
        else np.full(len(goal), float(cap))
    )
    safe = present + np.clip(goal - present, -caps, caps)
    if np.any(np.abs(safe - goal) > 1e-4):
        logger.warning(
            "relative goal clamped by max_relative_target: %s",
            {
                k: (round(float(g), 3), round(float(s), 3))
                for k, g, s in zip(SO101_JOINT_KEYS, goal, safe)
                if g != s
            },
        )
    return safe


class SimRobot:
    """A simulated SO-101 follower (MuJoCo) implementing `jrobot.robot.Robot` and `EpisodicRobot`."""

    name = "so101_sim"

    def __init__(self, config: SimRobotConfig | None = None, **overrides: Any) -> None:
        self.config = dataclasses.replace(config or SimRobotConfig(), **overrides)
        _check_max_relative_target(self.config.max_relative_target)
        check_actuation_noise(self.config.actuation_noise)
        self._offset = np.zeros(len(SO101_MOTORS))
        self._offset_rng = np.random.default_rng()  # reseeded by each seeded reset()
        self.id = self.config.id
        self._sim: SO101Sim | None = None
        self.episode_index = -1  # incremented by each reset(); the teleop re-plans when it changes

    # -- Robot protocol ------------------------------------------------------------------------
    @property
    def observation_features(self) -> dict[str, Any]:
        h, w = self.config.image_size
        feats: dict[str, Any] = {
            **dict.fromkeys(SO101_JOINT_KEYS, float),
            **{cam: (h, w, 3) for cam in self.config.cameras},
        }
        if self.config.environment_state:
            feats["environment_state"] = (len(make_task(self.config.task).environment_state_names),)
        return feats

    @property
    def action_features(self) -> dict[str, Any]:
        return dict.fromkeys(SO101_JOINT_KEYS, float)

    @property
    def is_connected(self) -> bool:
        return self._sim is not None

    def connect(self, calibrate: bool = True) -> None:
        """Build the simulation and start the first episode (`calibrate` is accepted and ignored:
        the simulated servos are calibrated by construction)."""
        if self._sim is not None:
            raise DeviceAlreadyConnectedError(f"{self.name} is already connected")
        c = self.config
        self._sim = SO101Sim(
            c.task,
            fps=c.fps,
            cameras=c.cameras,
            image_size=c.image_size,
            use_degrees=c.use_degrees,
            init_noise=c.init_noise,
        )
        self.reset(c.seed)

    def get_observation(self) -> dict[str, Any]:
        sim = self.sim
        obs: dict[str, Any] = to_joint_dict(sim.joint_positions())
        obs.update(sim.images())
        if self.config.environment_state:
            obs["environment_state"] = sim.environment_state().astype(np.float32)
        return obs

    def send_action(self, action: dict[str, float]) -> dict[str, float]:
        """Clamp `action` by `max_relative_target` against the present positions, command it, advance
        one control period, and return the goals sent (before the servos' own position limits, as
        LeRobot's follower returns them)."""
        sim = self.sim
        goal = from_joint_dict(action, what="action")
        goal = clamp_relative(goal, sim.joint_positions(), self.config.max_relative_target)
        sim.set_joint_targets(goal + self._next_offset() if self.config.actuation_noise else goal)
        sim.step()
        return to_joint_dict(goal)

    def _next_offset(self) -> np.ndarray:
        """One control period of the actuation offset (zero on the gripper)."""
        decay = np.exp(-1.0 / (self.config.fps * ACTUATION_NOISE_TAU_S))
        step = self.config.actuation_noise * np.sqrt(1.0 - decay**2)
        self._offset[:-1] = decay * self._offset[:-1] + step * self._offset_rng.standard_normal(
            len(self._offset) - 1
        )
        return self._offset

    def disconnect(self) -> None:
        if self._sim is None:
            raise DeviceNotConnectedError(f"{self.name} is not connected")
        self._sim.close()
        self._sim = None

    # -- episodes ------------------------------------------------------------------------------
    @property
    def sim(self) -> SO101Sim:
        if self._sim is None:
            raise DeviceNotConnectedError(f"{self.name} is not connected; call connect() first")
        return self._sim

    @property
    def task(self) -> str:
        """The current episode's instruction (before `connect()`: the task's default one)."""
        return self.sim.instruction if self._sim is not None else make_task(self.config.task).description

    @property
    def fps(self) -> int:
        return self.config.fps

    def reset(self, seed: int | None = None, options: Mapping[str, Any] | None = None) -> None:
        """Start a new episode: the arm goes back home and the objects are re-randomized (from `seed`
        when given, else from the robot's running random generator). `options` are the task's reset
        options for this episode (pick_color: `target`, `instruction`)."""
        self.sim.reset(seed, options)
        self.episode_index += 1
        self._offset = np.zeros(len(SO101_MOTORS))
        if seed is not None:  # the same episode seed gives the same disturbance
            self._offset_rng = np.random.default_rng([seed, ACTUATION_NOISE_STREAM])

    def is_success(self) -> bool:
        return self.sim.is_success()


class SimExpertTeleop:
    """The scripted expert of a `SimRobot`'s task as a `jrobot.robot.Teleoperator`.

    It reads the simulation it is attached to (privileged state: the pose of the cube to move) and
    re-plans whenever the robot starts a new episode. `is_done` tells when the script has finished
    (the arm is back home), which a recording loop may use to end the episode early. `expert_options`
    replace fields of the expert's config (`make_expert`), e.g. `{"regrasp_rate": 0.3}`.
    """

    name = "so101_sim_expert"

    def __init__(self, robot: SimRobot, expert_options: Mapping[str, Any] | None = None) -> None:
        if not isinstance(robot, SimRobot):
            raise TypeError(f"SimExpertTeleop drives a SimRobot, got {type(robot).__name__}")
        self.robot = robot
        self.expert_options = dict(expert_options or {})
        self._connected = False
        self._expert: Expert | None = None
        self._planned_episode = -1

    @property
    def action_features(self) -> dict[str, Any]:
        return self.robot.action_features

    @property
    def is_connected(self) -> bool:
        return self._connected

    def connect(self, calibrate: bool = True) -> None:
        if self._connected:
            raise DeviceAlreadyConnectedError(f"{self.name} is already connected")
        self._connected = True

    def _current_expert(self) -> Expert:
        if not self._connected:
            raise DeviceNotConnectedError(f"{self.name} is not connected")
        sim = self.robot.sim  # raises if the robot is not connected
        if self._expert is None or self._expert.sim is not sim:
            self._expert = make_expert(sim, **self.expert_options)
            self._planned_episode = self.robot.episode_index
        elif self._planned_episode != self.robot.episode_index:
            self._expert.reset()
            self._planned_episode = self.robot.episode_index
        return self._expert

    def get_action(self) -> dict[str, float]:
        """The expert's joint targets for the robot's next control step."""
        return to_joint_dict(self._current_expert().next_action())

    @property
    def is_done(self) -> bool:
        return self._current_expert().done

    def disconnect(self) -> None:
        if not self._connected:
            raise DeviceNotConnectedError(f"{self.name} is not connected")
        self._connected = False
        self._expert = None

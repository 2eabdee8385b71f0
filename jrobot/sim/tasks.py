"""What the simulated arm is asked to do: per-episode randomization, success test and reward.

A task owns the objects of its scene (not the arm): it places them at reset from the episode's random
generator and judges success from the MuJoCo state. The environments, the sim robot and the scripted
experts all go through this interface, so they agree on what "success" means.

`description` is the language instruction recorded with an episode and reported as the env's
`info["task"]`. For the single-instruction tasks it is a constant; an instruction-conditioned task
(`PickColorTask`) sets it at every `reset`, so everything that reads `task.description` after a reset
(the sim robot's `task`, the env's info, the recorder) sees the episode's own instruction.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Sequence
from typing import Any, ClassVar, Protocol

import mujoco
import numpy as np

ARM_BODIES = ("base", "shoulder", "upper_arm", "lower_arm", "wrist", "gripper", "moving_jaw")


class Task(Protocol):
    name: str
    scene: str  # key of jrobot.sim.model.SCENES
    description: str  # the episode's language instruction (may change at each reset)
    # Keyword options `reset` accepts beyond the three arguments (SO101Sim.reset(options=...) checks
    # them against this, so a typo fails loudly instead of being ignored).
    reset_options: ClassVar[tuple[str, ...]]

    def bind(self, model: mujoco.MjModel) -> None:
        """Look up the ids the task needs in `model` (called once after loading)."""
        ...

    def reset(self, model: mujoco.MjModel, data: mujoco.MjData, rng: np.random.Generator) -> None:
        """Place the task's objects for a new episode (before mj_forward). A task with
        `reset_options` also takes those as keyword arguments (all optional)."""
        ...

    def is_success(self, model: mujoco.MjModel, data: mujoco.MjData) -> bool: ...

    def reward(self, model: mujoco.MjModel, data: mujoco.MjData) -> float: ...

    def info(self, model: mujoco.MjModel, data: mujoco.MjData) -> dict[str, Any]:
        """Task-specific facts the env adds to its `info` every step (empty for most tasks)."""
        ...

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


def arm_geom_ids(model: mujoco.MjModel) -> frozenset[int]:
    """Geoms of the arm's bodies: a cube touching any of them is still held or pushed."""
    arm_bodies = {model.body(b).id for b in ARM_BODIES}
    return frozenset(g for g in range(model.ngeom) if model.geom_bodyid[g] in arm_bodies)


def geom_touches(data: mujoco.MjData, geom: int, others: frozenset[int]) -> bool:
    """Whether `geom` is in contact with any geom of `others`."""
    for c in data.contact[: data.ncon]:
        if (c.geom1 == geom and c.geom2 in others) or (c.geom2 == geom and c.geom1 in others):
            return True
    return False


def slide_free_body(
    model: mujoco.MjModel, data: mujoco.MjData, qpos_adr: int, qvel_adr: int, geom: int, xy: np.ndarray
) -> bool:
    """Move a free body to `xy` (same height and orientation, at rest) unless its `geom` would then
    touch anything but the world's own geoms (the table): False, and the state is as it was."""
    saved = data.qpos[qpos_adr : qpos_adr + 7].copy(), data.qvel[qvel_adr : qvel_adr + 6].copy()
    data.qpos[qpos_adr : qpos_adr + 2] = xy
    data.qvel[qvel_adr : qvel_adr + 6] = 0.0
    mujoco.mj_forward(model, data)
    for c in data.contact[: data.ncon]:
        if geom in (c.geom1, c.geom2):
            other = c.geom2 if c.geom1 == geom else c.geom1
            if model.geom_bodyid[other] != 0:
                data.qpos[qpos_adr : qpos_adr + 7], data.qvel[qvel_adr : qvel_adr + 6] = saved
                mujoco.mj_forward(model, data)
                return False
    return True


@dataclasses.dataclass(frozen=True)
class BinGeometry:
    """The open bin of the pick scenes (`bin` body, `bin_floor` and `bin_wall_*` geoms)."""

    body: int
    inner_half: float  # half the inner floor's side (m)
    floor_top: float  # height of the inner floor above the bin's origin (m)
    rim: float  # height of the walls' top (m)
    pos: np.ndarray  # the bin's origin (world frame; the bin is fixed)

    @classmethod
    def bind(cls, model: mujoco.MjModel) -> BinGeometry:
        wall = model.geom("bin_wall_px")
        floor = model.geom("bin_floor")
        body = model.body("bin").id
        return cls(
            body=body,
            inner_half=float(wall.pos[0] - wall.size[0]),
            floor_top=float(floor.pos[2] + floor.size[2]),
            rim=float(wall.pos[2] + wall.size[2]),
            pos=model.body_pos[body].copy(),
        )

    def contains(self, data: mujoco.MjData, body: int) -> bool:
        """The body's centre is over the inner floor and below the rim."""
        p = data.xpos[body]
        d = p[:2] - data.xpos[self.body][:2]
        return bool(np.all(np.abs(d) <= self.inner_half) and p[2] < self.rim)


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
    reset_options: ClassVar[tuple[str, ...]] = ()

    def bind(self, model: mujoco.MjModel) -> None:
        self._cube_body = model.body("cube").id
        self._cube_geom = model.geom("cube").id
        self._cube_qpos = model.joint("cube").qposadr[0]
        self._cube_qvel = model.joint("cube").dofadr[0]
        self.cube_half = float(model.geom_size[self._cube_geom][0])
        self._bin = BinGeometry.bind(model)
        self._bin_body = self._bin.body
        self.bin_inner_half = self._bin.inner_half
        self.bin_floor_top = self._bin.floor_top
        self.bin_rim = self._bin.rim
        self._arm_geoms = arm_geom_ids(model)
        self.bin_pos = self._bin.pos

    def reset(self, model: mujoco.MjModel, data: mujoco.MjData, rng: np.random.Generator) -> None:
        x = rng.uniform(*self.cube_x)
        y = rng.uniform(*self.cube_y)
        yaw = math.radians(rng.uniform(*self.cube_yaw_deg))
        a = self._cube_qpos
        data.qpos[a : a + 3] = (x, y, self.cube_half)
        data.qpos[a + 3 : a + 7] = _yaw_quat(yaw)
        data.qvel[self._cube_qvel : self._cube_qvel + 6] = 0.0

    def cube_in_bin(self, data: mujoco.MjData) -> bool:
        return self._bin.contains(data, self._cube_body)

    def move_target(self, model: mujoco.MjModel, data: mujoco.MjData, xy: np.ndarray) -> bool:
        """Slide the cube to `xy` on the table if that spot is free (`slide_free_body`): a scripted
        disturbance, e.g. the expert's regrasp demonstrations."""
        geom = self._cube_geom
        return slide_free_body(model, data, self._cube_qpos, self._cube_qvel, geom, np.asarray(xy))

    def cube_touches_arm(self, data: mujoco.MjData) -> bool:
        return geom_touches(data, self._cube_geom, self._arm_geoms)

    def is_success(self, model: mujoco.MjModel, data: mujoco.MjData) -> bool:
        speed = float(np.linalg.norm(data.qvel[self._cube_qvel : self._cube_qvel + 3]))
        return self.cube_in_bin(data) and speed < self.max_resting_speed and not self.cube_touches_arm(data)

    def reward(self, model: mujoco.MjModel, data: mujoco.MjData) -> float:
        return 1.0 if self.is_success(model, data) else 0.0

    def info(self, model: mujoco.MjModel, data: mujoco.MjData) -> dict[str, Any]:
        return {}

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


PICK_COLORS: tuple[str, ...] = ("red", "green", "blue")
PICK_COLOR_TEMPLATES: tuple[str, ...] = (
    "Put the {color} cube in the bin.",
    "Pick up the {color} block and drop it in the box.",
    "Place the {color} cube into the bin.",
    "Move the {color} cube to the bin.",
    "Grab the {color} cube and put it in the bin.",
)


def colors_named(text: str, colors: Sequence[str] = PICK_COLORS) -> list[str]:
    """The colour words of `colors` that occur in `text` as whole words (case-insensitive), in the
    order of `colors`."""
    words = set(re.findall(r"[a-z]+", text.lower()))
    return [c for c in colors if c in words]


@dataclasses.dataclass
class PickColorTask:
    """Put the cube the instruction names (red, green or blue) in the bin; the other two stay out.

    At reset the three 3 cm cubes land at uniformly random positions in `cube_x` x `cube_y`, within
    `reach_radius` of the shoulder-pan axis, with centres at least `min_separation` apart (joint
    rejection sampling, so the layout is uniform over the allowed ones), each with a yaw uniform in
    `cube_yaw_deg`. The separation leaves room for the opened jaws beside the target (the fingers'
    outer faces ~3.4 and ~4.1 cm from the grasp centre at the expert's opening) plus a neighbour's
    half-diagonal, whatever the yaws. The workspace is PickPlaceTask's widened to fit three cubes
    apart, clipped to the arm's reach, and it stays on the +y side of the bin (>= 4.5 cm from its
    wall).

    Then the target colour is drawn uniformly and the instruction from `templates` (each has a
    `{color}` slot). The random numbers are drawn in the same order whatever is overridden, so an
    episode's layout depends only on the seed: `target` / `instruction` (fields: every episode;
    `reset(..., target=, instruction=)` or the env's `reset(options=...)`: one episode) replace the
    drawn ones on the same layout, e.g. to evaluate a policy on "the green cube" where the recorded
    episode asked for the red one. An instruction names its target (exactly one of the colours)
    unless `target` is given with it.

    `description` (the recorded task string, the env's `info["task"]`) and `target_color` are the
    current episode's. Success is PickPlaceTask's test on the named cube: over the bin's inner floor,
    below the rim, nearly still and not touched by the arm; `wrong_object` (in `info`) says another
    cube lies in the bin (success does not look at the others, so an evaluation can tell "did what it
    was told" from "did it cleanly").
    """

    cube_x: tuple[float, float] = (0.14, 0.26)
    cube_y: tuple[float, float] = (0.0, 0.16)
    # m from the shoulder-pan axis: where the fingers-down arm reaches the cube and lifts it to the
    # expert's 9 cm carry height (that height bounds the reach to ~0.12-0.225 m)
    reach_radius: tuple[float, float] = (0.13, 0.215)
    cube_yaw_deg: tuple[float, float] = (-30.0, 30.0)
    min_separation: float = 0.07  # m between cube centres
    max_resting_speed: float = 0.05  # m/s
    templates: tuple[str, ...] = PICK_COLOR_TEMPLATES
    target: str | None = None  # the colour to ask for in every episode; None: drawn per episode
    instruction: str | None = None  # the instruction of every episode; None: drawn from templates
    max_layout_tries: int = 10_000

    name: ClassVar[str] = "pick_color"
    scene: ClassVar[str] = "pick_color"
    colors: ClassVar[tuple[str, ...]] = PICK_COLORS
    reset_options: ClassVar[tuple[str, ...]] = ("target", "instruction")
    environment_state_names: ClassVar[tuple[str, ...]] = tuple(
        f"cube_{c}_{f}" for c in PICK_COLORS for f in ("x", "y", "z", "cos4yaw", "sin4yaw")
    ) + tuple(f"target_{c}" for c in PICK_COLORS)

    description: str = dataclasses.field(init=False)
    target_color: str = dataclasses.field(init=False)

    def __post_init__(self) -> None:
        self.templates = tuple(self.templates)
        if not self.templates:
            raise ValueError("templates must not be empty")
        for t in self.templates:
            if "{color}" not in t:
                raise ValueError(f"template {t!r} has no {{color}} slot")
        if self.min_separation < 0:
            raise ValueError(f"min_separation must be >= 0, got {self.min_separation}")
        # Before the first reset (e.g. a SimRobot's features before connect) the task reads as the
        # first template with the fixed target, else the first colour.
        target = self._resolve(self.target, self.instruction, self.colors[0])
        self._set_episode(target, self.instruction or self.templates[0].format(color=target))

    def _resolve(self, target: str | None, instruction: str | None, drawn: str) -> str:
        """The episode's target colour from the overrides (checked) or the drawn one."""
        if target is not None and target not in self.colors:
            raise ValueError(f"unknown target colour {target!r}; choose one of {list(self.colors)}")
        if instruction is None:
            return target or drawn
        named = colors_named(instruction, self.colors)
        if target is not None:
            if named and target not in named:
                raise ValueError(f"instruction {instruction!r} names {named}, not the target {target!r}")
            return target
        if len(named) != 1:
            raise ValueError(
                f"instruction {instruction!r} must name exactly one of {list(self.colors)} "
                f"(it names {named}); give the target colour with it"
            )
        return named[0]

    def _set_episode(self, target: str, instruction: str) -> None:
        self.target_color = target
        self.description = instruction

    def bind(self, model: mujoco.MjModel) -> None:
        self._cube_body = {c: model.body(f"cube_{c}").id for c in self.colors}
        self._cube_geom = {c: model.geom(f"cube_{c}").id for c in self.colors}
        self._cube_qpos = {c: int(model.joint(f"cube_{c}").qposadr[0]) for c in self.colors}
        self._cube_qvel = {c: int(model.joint(f"cube_{c}").dofadr[0]) for c in self.colors}
        self.cube_half = float(model.geom_size[self._cube_geom[self.colors[0]]][0])
        self._bin = BinGeometry.bind(model)
        self.bin_pos = self._bin.pos
        self._arm_geoms = arm_geom_ids(model)
        d = mujoco.MjData(model)
        mujoco.mj_kinematics(model, d)  # the pan axis does not move with the joints
        self.pan_axis_xy = d.xpos[model.body("shoulder").id][:2].copy()

    def sample_layout(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """(3, 2) cube centres (x, y) in reach, at least `min_separation` apart, and (3,) yaws (rad)."""
        n = len(self.colors)
        pairs = [(i, j) for i in range(n) for j in range(i + 1, n)]
        r_lo, r_hi = self.reach_radius
        for _ in range(self.max_layout_tries):
            xy = np.stack([rng.uniform(*self.cube_x, size=n), rng.uniform(*self.cube_y, size=n)], axis=1)
            r = np.linalg.norm(xy - self.pan_axis_xy, axis=1)
            if not np.all((r >= r_lo) & (r <= r_hi)):
                continue
            if all(np.linalg.norm(xy[i] - xy[j]) >= self.min_separation for i, j in pairs):
                yaw = np.radians(rng.uniform(*self.cube_yaw_deg, size=n))
                return xy, yaw
        raise ValueError(
            f"found no layout of {n} cubes {self.min_separation} m apart in x {self.cube_x}, "
            f"y {self.cube_y}, radius {self.reach_radius} in {self.max_layout_tries} tries: widen the "
            "workspace or lower min_separation"
        )

    def reset(
        self,
        model: mujoco.MjModel,
        data: mujoco.MjData,
        rng: np.random.Generator,
        *,
        target: str | None = None,
        instruction: str | None = None,
    ) -> None:
        """Place the cubes, then set the episode's target and instruction: the per-call `target` /
        `instruction` if given, else the task's fields, else drawn."""
        xy, yaw = self.sample_layout(rng)
        drawn = self.colors[int(rng.integers(len(self.colors)))]
        template = self.templates[int(rng.integers(len(self.templates)))]
        for c, p, a in zip(self.colors, xy, yaw, strict=True):
            q, v = self._cube_qpos[c], self._cube_qvel[c]
            data.qpos[q : q + 3] = (p[0], p[1], self.cube_half)
            data.qpos[q + 3 : q + 7] = _yaw_quat(float(a))
            data.qvel[v : v + 6] = 0.0
        if target is None and instruction is None:
            target, instruction = self.target, self.instruction
        colour = self._resolve(target, instruction, drawn)
        self._set_episode(colour, instruction or template.format(color=colour))

    def cube_in_bin(self, data: mujoco.MjData, color: str) -> bool:
        return self._bin.contains(data, self._cube_body[color])

    def move_target(self, model: mujoco.MjModel, data: mujoco.MjData, xy: np.ndarray) -> bool:
        """Slide the named cube to `xy` on the table if that spot is free (`slide_free_body`: not on
        another cube, the bin or the arm): a scripted disturbance, e.g. the expert's regrasp
        demonstrations."""
        c = self.target_color
        return slide_free_body(
            model, data, self._cube_qpos[c], self._cube_qvel[c], self._cube_geom[c], np.asarray(xy)
        )

    def cube_touches_arm(self, data: mujoco.MjData, color: str) -> bool:
        return geom_touches(data, self._cube_geom[color], self._arm_geoms)

    def is_success(self, model: mujoco.MjModel, data: mujoco.MjData) -> bool:
        c = self.target_color
        v = self._cube_qvel[c]
        speed = float(np.linalg.norm(data.qvel[v : v + 3]))
        return (
            self.cube_in_bin(data, c)
            and speed < self.max_resting_speed
            and not self.cube_touches_arm(data, c)
        )

    def wrong_object(self, data: mujoco.MjData) -> bool:
        """Some cube other than the named one lies in the bin."""
        return any(self.cube_in_bin(data, c) for c in self.colors if c != self.target_color)

    def reward(self, model: mujoco.MjModel, data: mujoco.MjData) -> float:
        return 1.0 if self.is_success(model, data) else 0.0

    def info(self, model: mujoco.MjModel, data: mujoco.MjData) -> dict[str, Any]:
        return {"target_color": self.target_color, "wrong_object": self.wrong_object(data)}

    def state(self, model: mujoco.MjModel, data: mujoco.MjData) -> dict[str, Any]:
        """The target cube under PickPlaceTask's keys (so the pick-and-place expert reads it as is),
        every cube by colour under "cubes", and the target colour."""
        b = self._cube_body[self.target_color]
        return {
            "cube_pos": data.xpos[b].copy(),
            "cube_quat": data.xquat[b].copy(),
            "cube_yaw": quat_yaw(data.xquat[b]),
            "cube_half": self.cube_half,
            "bin_pos": data.xpos[self._bin.body].copy(),
            "bin_floor_top": self._bin.floor_top,
            "target_color": self.target_color,
            "cubes": {
                c: {"pos": data.xpos[i].copy(), "yaw": quat_yaw(data.xquat[i])}
                for c, i in self._cube_body.items()
            },
        }

    def environment_state(self, model: mujoco.MjModel, data: mujoco.MjData) -> np.ndarray:
        """Each cube's position (m) and (cos 4*yaw, sin 4*yaw) in `colors` order, then the one-hot
        target colour: 18 values (names in `environment_state_names`)."""
        parts = []
        for c in self.colors:
            b = self._cube_body[c]
            yaw = quat_yaw(data.xquat[b])
            parts.append(np.concatenate([data.xpos[b], [math.cos(4 * yaw), math.sin(4 * yaw)]]))
        parts.append(np.array([1.0 if c == self.target_color else 0.0 for c in self.colors]))
        return np.concatenate(parts)


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
    reset_options: ClassVar[tuple[str, ...]] = ()

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

    def info(self, model: mujoco.MjModel, data: mujoco.MjData) -> dict[str, Any]:
        return {}

    def state(self, model: mujoco.MjModel, data: mujoco.MjData) -> dict[str, Any]:
        return {"target_pos": data.mocap_pos[self._mocap].copy(), "tcp_pos": data.site_xpos[self._tcp].copy()}

    environment_state_names: ClassVar[tuple[str, ...]] = ("target_x", "target_y", "target_z")

    def environment_state(self, model: mujoco.MjModel, data: mujoco.MjData) -> np.ndarray:
        """Target position (m): 3 values."""
        return data.mocap_pos[self._mocap].copy()


TASKS: dict[str, type] = {"pick_place": PickPlaceTask, "pick_color": PickColorTask, "reach": ReachTask}
# The gymnasium env of each task (jrobot.sim.ENV_IDS), so a task can be named by either.
ENV_TASKS: dict[str, str] = {
    "jrobot/SO101PickPlace-v0": "pick_place",
    "jrobot/SO101PickColor-v0": "pick_color",
    "jrobot/SO101Reach-v0": "reach",
}


def make_task(task: str | Task) -> Task:
    """A fresh task from its name ("pick_color") or its env id ("jrobot/SO101PickColor-v0"), or
    `task` itself when it is already a task object."""
    if isinstance(task, str):
        name = ENV_TASKS.get(task, task)
        if name not in TASKS:
            raise ValueError(f"unknown task {task!r}; choose one of {sorted(TASKS)} or {sorted(ENV_TASKS)}")
        return TASKS[name]()
    return task

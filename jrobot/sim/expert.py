"""Scripted experts: IK-planned, minimum-jerk demonstrations for the simulated SO-101 tasks.

The pick-and-place expert reads the cube pose once per episode (privileged state; for pick-color, the
pose of the cube the episode's instruction names) and plays a fixed sequence of smooth segments:
swing above the cube opening the jaws, descend, close, lift, carry to the bin, lower, open, retreat
and return home. Free-space swings are interpolated in joint space; moves near objects follow
Cartesian paths (straight down/up, arcs around the base) solved by damped least-squares IK every
control step. Actions are joint-position targets in LeRobot units, exactly what a leader arm would
send, so demonstrations recorded from the expert look like teleoperation.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence

import numpy as np

from jrobot.kinematics.arm import ArmKinematics, top_down_rotation
from jrobot.sim.simulator import SO101Sim
from jrobot.sim.tasks import PickColorTask, PickPlaceTask, ReachTask
from jrobot.sim.trajectory import min_jerk, wrap_angle
from jrobot.sim.units import GRIPPER_INDEX, gripper_percent_to_rad, lerobot_to_rad, rad_to_lerobot


@dataclasses.dataclass(frozen=True)
class CylPose:
    """A fingers-down tcp pose around the shoulder-pan axis: radius, azimuth, height, and the jaw yaw
    relative to the azimuth (0 = jaws closing along the radial direction, the wrist-roll neutral)."""

    radius: float
    azimuth: float
    z: float
    rel_yaw: float

    def interpolate(self, other: CylPose, s: float) -> CylPose:
        return CylPose(
            self.radius + s * (other.radius - self.radius),
            self.azimuth + s * float(wrap_angle(other.azimuth - self.azimuth)),
            self.z + s * (other.z - self.z),
            self.rel_yaw + s * float(wrap_angle(other.rel_yaw - self.rel_yaw)),
        )


@dataclasses.dataclass(frozen=True)
class Segment:
    """`duration` seconds of motion. Either joint space (`q_end`, 5 arm joints in radians, from
    `q_start` or, when None, from wherever the previous segment ended) or Cartesian
    (`pose_start`/`pose_end`); the gripper goes from `g_start` to `g_end` percent."""

    name: str
    duration: float
    g_start: float
    g_end: float
    q_start: np.ndarray | None = None
    q_end: np.ndarray | None = None
    pose_start: CylPose | None = None
    pose_end: CylPose | None = None


@dataclasses.dataclass(frozen=True)
class PickPlaceExpertConfig:
    """Heights are of the tcp (the grasp centre) above the table, in metres; durations in seconds."""

    approach_height: float = 0.07
    grasp_offset: float = 0.010  # tcp above the cube centre: keeps the closing jaw's arc off the table
    carry_height: float = 0.09
    release_height: float = 0.045  # the cube's bottom ~3 cm above the bin floor when it is let go
    reference_yaw: float = 0.0  # radians; jaw closing direction preferred among the cube's faces
    gripper_open: float = 45.0  # percent; wide enough for the 3 cm cube with ~1 cm to spare
    gripper_closed: float = 0.0  # commanded; the jaw stalls on the cube (force-limited servo)
    swing: float = 1.3
    descend: float = 0.7
    close: float = 0.5
    settle: float = 0.2
    lift: float = 0.7
    carry: float = 1.3
    lower: float = 0.5
    release: float = 0.4
    retreat: float = 0.5
    home: float = 1.0


# Among other cubes the jaws open less: at 45 % the moving finger's outer face swings ~6.2 cm out from
# the grasp centre (and brushes a neighbour PickColorTask may place 7 cm away), at 30 % ~4.1 cm, while
# its pad still clears the cube's face by ~8 mm.
PICK_COLOR_EXPERT_CONFIG = PickPlaceExpertConfig(gripper_open=30.0)


class _Planner:
    """Shared machinery: pan-axis geometry, IK, and playing a list of segments step by step."""

    def __init__(self, sim: SO101Sim) -> None:
        self.sim = sim
        self.kin = ArmKinematics(sim.model)
        self.pivot = sim.data.xpos[sim.model.body("shoulder").id][:2].copy()
        self.dt = sim.control_dt
        self.segments: list[Segment] = []
        self._t = 0
        self._q_prev: np.ndarray | None = None
        self._starts: dict[str, np.ndarray] = {}

    def to_world(self, pose: CylPose) -> tuple[np.ndarray, np.ndarray]:
        xy = self.pivot + pose.radius * np.array([math.cos(pose.azimuth), math.sin(pose.azimuth)])
        return np.array([xy[0], xy[1], pose.z]), top_down_rotation(pose.azimuth + pose.rel_yaw)

    def cyl(self, xyz: np.ndarray, yaw: float) -> CylPose:
        d = np.asarray(xyz[:2]) - self.pivot
        az = math.atan2(d[1], d[0])
        return CylPose(float(np.hypot(*d)), az, float(xyz[2]), float(wrap_angle(yaw - az)))

    def solve(self, pose: CylPose, q_init: np.ndarray) -> np.ndarray:
        pos, rot = self.to_world(pose)
        return self.kin.solve(pos, rot, q_init).qpos

    def arm_rad(self) -> np.ndarray:
        return lerobot_to_rad(self.sim.joint_targets(), use_degrees=self.sim.use_degrees)[:GRIPPER_INDEX]

    @property
    def total_duration(self) -> float:
        return sum(s.duration for s in self.segments)

    @property
    def done(self) -> bool:
        return self._t * self.dt >= self.total_duration

    def phase(self) -> str:
        """Name of the segment the next action belongs to ("done" after the last)."""
        seg, _ = self._locate(self._t * self.dt)
        return "done" if seg is None else seg.name

    def _locate(self, t: float) -> tuple[Segment | None, float]:
        for seg in self.segments:
            if t < seg.duration:
                return seg, t / seg.duration
            t -= seg.duration
        return None, 1.0

    def next_action(self) -> np.ndarray:
        """Joint targets (6, LeRobot units) for the next control step; holds the final pose when done."""
        self._t += 1
        seg, tau = self._locate(self._t * self.dt)
        if seg is None:
            seg, tau = self.segments[-1], 1.0
        s = float(min_jerk(tau))
        if seg.q_end is not None:
            if seg.name not in self._starts:  # a joint move starts where the previous segment ended
                self._starts[seg.name] = seg.q_start if seg.q_start is not None else self._last_q()
            q0 = self._starts[seg.name]
            q = q0 + s * (seg.q_end - q0)
        else:
            assert seg.pose_start is not None and seg.pose_end is not None
            q = self.solve(seg.pose_start.interpolate(seg.pose_end, s), self._last_q())
        self._q_prev = q
        g = seg.g_start + s * (seg.g_end - seg.g_start)
        full = np.concatenate([q, [gripper_percent_to_rad(g)]])
        return rad_to_lerobot(full, use_degrees=self.sim.use_degrees)

    def _last_q(self) -> np.ndarray:
        return self._q_prev if self._q_prev is not None else self.arm_rad()

    def restart(self, segments: Sequence[Segment]) -> None:
        names = [s.name for s in segments]
        if len(set(names)) != len(names):
            raise ValueError(f"segment names must be unique, got {names}")
        self.segments = list(segments)
        self._t = 0
        self._q_prev = None
        self._starts: dict[str, np.ndarray] = {}


class PickPlaceExpert(_Planner):
    """Scripted pick-and-place for `PickPlaceTask` and `PickColorTask`. Call `reset()` after each
    `sim.reset()`.

    Both tasks report the cube to move under the same `state()` keys (for pick-color, the target
    cube), so one plan serves both: the other cubes are left alone because the task keeps them
    `min_separation` away from the target, which the jaws clear when opened to
    `PICK_COLOR_EXPERT_CONFIG.gripper_open` (the default config for that task), and the carry
    passes over them at `carry_height`.
    """

    def __init__(self, sim: SO101Sim, config: PickPlaceExpertConfig | None = None) -> None:
        if not isinstance(sim.task, PickPlaceTask | PickColorTask):
            raise TypeError(
                f"PickPlaceExpert needs a PickPlaceTask or PickColorTask sim, got {type(sim.task).__name__}"
            )
        super().__init__(sim)
        if config is None:
            config = (
                PICK_COLOR_EXPERT_CONFIG if isinstance(sim.task, PickColorTask) else PickPlaceExpertConfig()
            )
        self.config = config
        self.reset()

    def grasp_yaw(self, cube_yaw: float) -> float:
        """Jaw yaw that closes on two opposite cube faces: of the cube's four face directions, the one
        nearest `config.reference_yaw`. With the task's cube yaw range inside +-45 degrees of that
        reference, the choice (and so the wrist roll) varies continuously with the cube pose, which
        keeps the demonstrations unimodal and easy to imitate."""
        ref = self.config.reference_yaw
        return ref + float(wrap_angle(4.0 * (cube_yaw - ref))) / 4.0

    def reset(self) -> None:
        """Plan the episode from the current (target) cube pose and arm targets."""
        c = self.config
        st = self.sim.task_state()
        cube, half = st["cube_pos"], st["cube_half"]
        yaw = self.grasp_yaw(st["cube_yaw"])
        grasp = self.cyl(np.array([cube[0], cube[1], half + c.grasp_offset]), yaw)
        above = dataclasses.replace(grasp, z=c.approach_height)
        lifted = dataclasses.replace(grasp, z=c.carry_height)
        bin_c = self.cyl(st["bin_pos"], 0.0)
        over_bin = dataclasses.replace(bin_c, z=c.carry_height, rel_yaw=grasp.rel_yaw)
        in_bin = dataclasses.replace(over_bin, z=c.release_height)

        q_home = self.arm_rad()
        g_home = float(self.sim.joint_targets()[GRIPPER_INDEX])
        q_above = self.solve(above, q_home)
        go, gc = c.gripper_open, c.gripper_closed
        self.restart(
            [
                Segment("swing", c.swing, g_home, go, q_start=q_home, q_end=q_above),
                Segment("descend", c.descend, go, go, pose_start=above, pose_end=grasp),
                Segment("close", c.close, go, gc, pose_start=grasp, pose_end=grasp),
                Segment("settle", c.settle, gc, gc, pose_start=grasp, pose_end=grasp),
                Segment("lift", c.lift, gc, gc, pose_start=grasp, pose_end=lifted),
                Segment("carry", c.carry, gc, gc, pose_start=lifted, pose_end=over_bin),
                Segment("lower", c.lower, gc, gc, pose_start=over_bin, pose_end=in_bin),
                Segment("release", c.release, gc, go, pose_start=in_bin, pose_end=in_bin),
                Segment("retreat", c.retreat, go, go, pose_start=in_bin, pose_end=over_bin),
                Segment("home", c.home, go, g_home, q_end=q_home),
            ]
        )


class ReachExpert(_Planner):
    """Scripted reach for `ReachTask`: one joint-space minimum-jerk move onto the target, then hold."""

    def __init__(self, sim: SO101Sim, duration: float = 1.5) -> None:
        if not isinstance(sim.task, ReachTask):
            raise TypeError(f"ReachExpert needs a ReachTask sim, got {type(sim.task).__name__}")
        super().__init__(sim)
        self.duration = float(duration)
        self.reset()

    def reset(self) -> None:
        target = self.sim.task_state()["target_pos"]
        q_home = self.arm_rad()
        g = float(self.sim.joint_targets()[GRIPPER_INDEX])
        # Position-only IK: the reach targets include heights where fingers-down is out of reach.
        res = self.kin.solve(target, np.eye(3), q_home, rot_weight=1e-3)
        self.restart([Segment("reach", self.duration, g, g, q_start=q_home, q_end=res.qpos)])


Expert = PickPlaceExpert | ReachExpert
EXPERTS: dict[str, Callable[[SO101Sim], Expert]] = {
    "pick_place": PickPlaceExpert,
    "pick_color": PickPlaceExpert,
    "reach": ReachExpert,
}


def make_expert(sim: SO101Sim) -> Expert:
    """The scripted expert for `sim`'s task."""
    if sim.task.name not in EXPERTS:
        raise ValueError(f"no scripted expert for task {sim.task.name!r}")
    return EXPERTS[sim.task.name](sim)

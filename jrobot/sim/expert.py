"""Scripted experts: IK-planned, minimum-jerk demonstrations for the simulated SO-101 tasks.

The pick-and-place expert reads the cube pose at the start of the episode (privileged state; for
pick-color, the pose of the cube the episode's instruction names) and plays a sequence of smooth
segments: swing above the cube opening the jaws, descend, close, lift, carry to the bin, lower, open,
retreat and return home. A grasp that missed (the cube beside the closed jaws, or not lifted) is
re-planned from where the cube lies; `regrasp_rate` makes a share of the first grasps miss on purpose,
so that demonstrations also show that recovery. Free-space swings are interpolated in joint space; moves near objects follow
Cartesian paths (straight down/up, arcs around the base) solved by damped least-squares IK every
control step. Actions are joint-position targets in LeRobot units, exactly what a leader arm would
send, so demonstrations recorded from the expert look like teleoperation.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import Any

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
    # Regrasp demonstrations. A grasp that did not lift the cube is tried again from where the cube
    # now lies, up to `max_grasps` times. In a `regrasp_rate` share of the episodes the first grasp is
    # made to miss: as the jaws start closing, the cube is slid `regrasp_shift` metres across them
    # (wherever that spot is free), so the recording shows the miss and the recovery (open, swing over
    # the cube, grasp again) that a policy needs after its own near misses, while every recorded
    # action still aims at the cube where it is. Which episodes are disturbed is drawn from the
    # episode's layout, so it is reproducible and leaves the simulator's random stream alone.
    max_grasps: int = 3
    regrasp_rate: float = 0.0
    regrasp_shift: tuple[float, float] = (0.03, 0.045)

    def __post_init__(self) -> None:
        if not 0.0 <= self.regrasp_rate <= 1.0:
            raise ValueError(f"regrasp_rate must be in [0, 1], got {self.regrasp_rate}")
        if self.max_grasps < 1:
            raise ValueError(f"max_grasps must be >= 1, got {self.max_grasps}")
        lo, hi = self.regrasp_shift
        if not 0.0 < lo <= hi:
            raise ValueError(
                f"regrasp_shift must be (min, max) metres with 0 < min <= max, got {self.regrasp_shift}"
            )


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
        """Name of the segment of the action `next_action` returned last ("done" once the plan has
        run out; before the first action, the first segment's)."""
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

    def __init__(self, sim: SO101Sim, config: PickPlaceExpertConfig | None = None, **options: Any) -> None:
        """`options` replace fields of `config` (default: the task's own, `PICK_COLOR_EXPERT_CONFIG`
        for pick-color), e.g. `regrasp_rate=0.3`."""
        if not isinstance(sim.task, PickPlaceTask | PickColorTask):
            raise TypeError(
                f"PickPlaceExpert needs a PickPlaceTask or PickColorTask sim, got {type(sim.task).__name__}"
            )
        super().__init__(sim)
        if config is None:
            config = (
                PICK_COLOR_EXPERT_CONFIG if isinstance(sim.task, PickColorTask) else PickPlaceExpertConfig()
            )
        fields = {f.name for f in dataclasses.fields(PickPlaceExpertConfig)}
        unknown = sorted(set(options) - fields)
        if unknown:
            raise ValueError(f"unknown pick-and-place expert option(s) {unknown}; it takes {sorted(fields)}")
        self.config = dataclasses.replace(config, **options)
        self._segment_seen: str | None = None
        self.reset()

    def grasp_yaw(self, cube_yaw: float) -> float:
        """Jaw yaw that closes on two opposite cube faces: of the cube's four face directions, the one
        nearest `config.reference_yaw`. With the task's cube yaw range inside +-45 degrees of that
        reference, the choice (and so the wrist roll) varies continuously with the cube pose, which
        keeps the demonstrations unimodal and easy to imitate."""
        ref = self.config.reference_yaw
        return ref + float(wrap_angle(4.0 * (cube_yaw - ref))) / 4.0

    # the cube counts as held when its centre is this far above its resting height as the carry begins
    HELD_RISE = 0.03
    # a closed grasp whose centre is this far (horizontally) from the cube's has missed it
    MISSED_BY = 0.012
    # where the fingers-down arm grasps and still lifts to the carry height (m from the pan axis)
    REACH = (0.125, 0.215)

    def reset(self) -> None:
        """Plan the episode from the current (target) cube pose and arm targets."""
        self._q_home = self.arm_rad()
        self._g_home = float(self.sim.joint_targets()[GRIPPER_INDEX])
        self._attempt = 1
        self._segment_seen = None
        st = self.sim.task_state()
        layout = np.concatenate(
            [np.ravel(v["pos"]) for v in st.get("cubes", {}).values()] or [st["cube_pos"]]
        )
        rng = np.random.default_rng(np.frombuffer(np.asarray(layout, np.float64).tobytes(), np.uint32))
        self._push: float | None = None  # signed shift across the jaws for the first grasp, or none
        if rng.random() < self.config.regrasp_rate:
            self._push = float(rng.uniform(*self.config.regrasp_shift)) * float(rng.choice([-1.0, 1.0]))
        self.restart(self._plan(self._q_home, self._g_home))

    def _plan(self, q_start: np.ndarray, g_start: float, rise_from: CylPose | None = None) -> list[Segment]:
        """Segments from `q_start` (arm joints, rad) and gripper `g_start` (%): over the cube as it
        lies now, down, grasp, lift, carry, release in the bin, back home; from a missed grasp at
        `rise_from`, straight up to the approach height first (a joint-space swing from the table
        would sweep the jaws through the cube)."""
        c = self.config
        n = "" if self._attempt == 1 else f"#{self._attempt}"
        rise: list[Segment] = []
        if rise_from is not None:
            up = dataclasses.replace(rise_from, z=c.approach_height)
            rise = [Segment("rise" + n, c.retreat, g_start, g_start, pose_start=rise_from, pose_end=up)]
            q_start = self.solve(up, q_start)
        st = self.sim.task_state()
        cube, half = st["cube_pos"], st["cube_half"]
        yaw = self.grasp_yaw(st["cube_yaw"])
        grasp = self.cyl(np.array([cube[0], cube[1], half + c.grasp_offset]), yaw)
        above = dataclasses.replace(grasp, z=c.approach_height)
        lifted = dataclasses.replace(grasp, z=c.carry_height)
        bin_c = self.cyl(st["bin_pos"], 0.0)
        over_bin = dataclasses.replace(bin_c, z=c.carry_height, rel_yaw=grasp.rel_yaw)
        in_bin = dataclasses.replace(over_bin, z=c.release_height)
        self._grasp = grasp
        q_above = self.solve(above, q_start)
        go, gc = c.gripper_open, c.gripper_closed
        return [
            *rise,
            Segment("swing" + n, c.swing, g_start, go, q_start=q_start, q_end=q_above),
            Segment("descend" + n, c.descend, go, go, pose_start=above, pose_end=grasp),
            Segment("close" + n, c.close, go, gc, pose_start=grasp, pose_end=grasp),
            Segment("settle" + n, c.settle, gc, gc, pose_start=grasp, pose_end=grasp),
            Segment("lift" + n, c.lift, gc, gc, pose_start=grasp, pose_end=lifted),
            Segment("carry" + n, c.carry, gc, gc, pose_start=lifted, pose_end=over_bin),
            Segment("lower" + n, c.lower, gc, gc, pose_start=over_bin, pose_end=in_bin),
            Segment("release" + n, c.release, gc, go, pose_start=in_bin, pose_end=in_bin),
            Segment("retreat" + n, c.retreat, go, go, pose_start=in_bin, pose_end=over_bin),
            Segment("home" + n, c.home, go, self._g_home, q_end=self._q_home),
        ]

    @property
    def grasps(self) -> int:
        """Grasps tried so far this episode (1 until a missed one is tried again)."""
        return self._attempt

    def next_action(self) -> np.ndarray:
        seg, _ = self._locate((self._t + 1) * self.dt)
        if seg is None or seg.name == self._segment_seen:  # the checks below run as a segment begins
            return super().next_action()
        self._segment_seen = seg.name
        name = seg.name.split("#")[0]
        if name == "close" and self._push is not None and self._attempt == 1:
            self._slide_cube_across_the_jaws(self._push)
            self._push = None
        elif self._attempt < self.config.max_grasps and (
            (name == "lift" and self._missed()) or (name == "carry" and not self._holding())
        ):
            grasp = self._grasp
            self._attempt += 1
            self.restart(self._plan(self._last_q(), float(seg.g_start), grasp if name == "lift" else None))
        return super().next_action()

    def _missed(self) -> bool:
        """The closed jaws are not around the cube (it lies beside them)."""
        cube = self.sim.task_state()["cube_pos"]
        grasp_xyz, _ = self.to_world(self._grasp)
        return float(np.hypot(*(cube[:2] - grasp_xyz[:2]))) > self.MISSED_BY

    def _holding(self) -> bool:
        st = self.sim.task_state()
        return float(st["cube_pos"][2]) > float(st["cube_half"]) + self.HELD_RISE

    def _slide_cube_across_the_jaws(self, shift: float) -> bool:
        """Move the cube `|shift|` m across the jaws (either side, the given one first) to a free spot
        the arm still reaches; False (the episode stays undisturbed) if there is none."""
        g = self._grasp
        across = g.azimuth + g.rel_yaw + math.pi / 2  # the jaws close along azimuth + rel_yaw
        cube = self.sim.task_state()["cube_pos"][:2]
        for sign in (1.0, -1.0):
            xy = cube + sign * shift * np.array([math.cos(across), math.sin(across)])
            if self.REACH[0] <= float(np.hypot(*(xy - self.pivot))) <= self.REACH[1] and self.sim.move_target(
                xy
            ):
                return True
        return False


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


def make_expert(sim: SO101Sim, **options: Any) -> Expert:
    """The scripted expert for `sim`'s task; `options` replace fields of its config (pick-and-place:
    `PickPlaceExpertConfig`, e.g. `regrasp_rate`)."""
    if sim.task.name not in EXPERTS:
        raise ValueError(f"no scripted expert for task {sim.task.name!r}")
    make = EXPERTS[sim.task.name]
    if options and make is not PickPlaceExpert:
        raise ValueError(f"the {sim.task.name!r} expert takes no options, got {sorted(options)}")
    return make(sim, **options)

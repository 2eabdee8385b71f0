"""Joint and end-effector limits found by moving the leader, and their file (`jrobot.joint_limits`, v1).

`find_joint_limits` runs the teleoperation loop and records each joint's range and the end-effector
position's box (LeRobot's `gripper_frame_link` in `base_link`, metres); `write_limits` saves them next
to the robot's calibration. `load_joint_limits(path, names)` reads the joint ranges back as arrays;
`narrow_to_joint_limits` narrows a safety clamp's range to them (`jrobot.replay --safety_limits`,
`jrobot.run --safety_limits`); `load_ee_bounds(path)` reads the end-effector box. Nothing here imports
jax.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from jrobot.errors import InputError
from jrobot.hw import safety
from jrobot.hw.safety import torque_safety
from jrobot.kinematics.ee_control import EEControlConfig

log = logging.getLogger("jrobot.find_joint_limits")

FORMAT = "jrobot.joint_limits"
VERSION = 1
EE_LINK = "gripper_frame_link"  # LeRobot's end-effector frame (jrobot.kinematics.so101)


class JointLimitsError(ValueError, InputError):
    """A joint limits file that cannot be used (not JSON, another format, missing or inconsistent ranges),
    or a robot whose joints cannot be recorded."""


@dataclasses.dataclass
class FindJointLimitsOptions:
    teleop_time_s: float = 30.0  # how long to record (LeRobot's name)
    fps: float | None = None  # default: the robot's own rate (sim), else 60 as teleoperate
    out: Path | None = None  # default: <calibration folder>/<robot id>_limits.json
    display_data: bool = False  # live line of the joint values sent (a terminal only)

    def __post_init__(self) -> None:
        if not self.teleop_time_s > 0:
            raise ValueError(f"teleop_time_s must be positive, got {self.teleop_time_s}")
        if self.fps is not None and not self.fps > 0:
            raise ValueError(f"fps must be positive, got {self.fps}")


class EndEffectorFK:
    """Position (metres, base_link frame) of the SO-101's `gripper_frame_link` from measured joints.

    The joint values are the robot's (`"<motor>.pos"`, degrees or -100..100, gripper 0..100); the
    -100..100 convention is turned into degrees as the simulated arm does (`jrobot.sim.units`).
    """

    def __init__(self, use_degrees: bool = True) -> None:
        from jrobot.kinematics.so101 import SO101Kinematics

        self.use_degrees = use_degrees
        self._kin = SO101Kinematics()

    @staticmethod
    def supports(joint_names: Sequence[str]) -> bool:
        from jrobot.features import SO101_JOINT_KEYS

        return set(SO101_JOINT_KEYS) <= set(joint_names)

    def __call__(self, joints: Mapping[str, float]) -> np.ndarray:
        from jrobot.features import SO101_JOINT_KEYS
        from jrobot.kinematics.arm import ARM_JOINTS

        values = np.array([float(joints[k]) for k in SO101_JOINT_KEYS])
        if not self.use_degrees:
            from jrobot.sim.units import lerobot_to_rad

            values = np.rad2deg(lerobot_to_rad(values, use_degrees=False))
        return self._kin.position(values[: len(ARM_JOINTS)])


class RangeRecorder:
    """Running min/max of each joint (and of the end-effector position) over observations."""

    def __init__(self, names: Sequence[str], fk: EndEffectorFK | None = None) -> None:
        self.names = list(names)
        self.fk = fk
        self.lower = np.full(len(self.names), np.inf)
        self.upper = np.full(len(self.names), -np.inf)
        self.ee_lower = np.full(3, np.inf)
        self.ee_upper = np.full(3, -np.inf)
        self.samples = 0
        self.skipped = 0  # observations with a non-finite joint value (never recorded)
        self._t_first: float | None = None
        self._t_last: float | None = None

    def update(self, observation: Mapping[str, Any], *_: Any) -> None:
        values = np.array([float(observation[n]) for n in self.names])
        if not np.all(np.isfinite(values)):
            self.skipped += 1
            return
        now = time.monotonic()
        self._t_first = now if self._t_first is None else self._t_first
        self._t_last = now
        self.samples += 1
        np.minimum(self.lower, values, out=self.lower)
        np.maximum(self.upper, values, out=self.upper)
        if self.fk is not None:
            ee = self.fk(observation)
            np.minimum(self.ee_lower, ee, out=self.ee_lower)
            np.maximum(self.ee_upper, ee, out=self.ee_upper)

    @property
    def recorded_s(self) -> float:
        if self._t_first is None or self._t_last is None:
            return 0.0
        return self._t_last - self._t_first

    def result(self, robot: Mapping[str, Any], *, units: str, stopped_early: bool = False) -> dict[str, Any]:
        """The JSON document of the module docstring (joint values rounded to 1e-4, positions to 1e-5 m)."""
        if self.samples == 0:
            raise RuntimeError("no joint positions were recorded: nothing to write")
        joints = {
            n: {"min": round(float(lo), 4), "max": round(float(hi), 4)}
            for n, lo, hi in zip(self.names, self.lower, self.upper, strict=True)
        }
        ee = None
        if self.fk is not None:
            ee = {
                "min": [round(float(v), 5) for v in self.ee_lower],
                "max": [round(float(v), 5) for v in self.ee_upper],
                "link": EE_LINK,
                "frame": "base_link",
            }
        return {
            "format": FORMAT,
            "version": VERSION,
            "robot": dict(robot),
            "joints": joints,
            "joint_units": units,
            "ee_position_m": ee,
            "recorded_s": round(self.recorded_s, 3),
            "samples": self.samples,
            "stopped_early": stopped_early,
        }


def _use_degrees(robot: Any) -> bool:
    return bool(getattr(getattr(robot, "config", None), "use_degrees", True))


def robot_info(robot: Any) -> dict[str, Any]:
    config = getattr(robot, "config", None)
    return {
        "type": getattr(config, "type", None),
        "name": getattr(robot, "name", type(robot).__name__),
        "id": getattr(robot, "id", None),
    }


def default_limits_path(robot: Any) -> Path:
    """`<calibration folder>/<robot id>_limits.json`, next to the robot's calibration file; a robot
    without one (the simulated arm) uses `<calibration root>/robots/<robot name>/`."""
    device_id = getattr(robot, "id", None)
    cal = getattr(robot, "calibration_fpath", None)
    if cal is not None:
        return Path(cal).parent / f"{device_id}_limits.json"
    from jrobot.hw.calibration import ROBOTS, calibration_root

    name = getattr(robot, "name", type(robot).__name__)
    return calibration_root() / ROBOTS / name / f"{device_id or name}_limits.json"


@dataclasses.dataclass
class LimitsFound:
    """What `find_joint_limits` found: the limits document, the loop's timing (None when a stop signal
    ended it early) and that signal's exception (for the command to exit with once the file is saved)."""

    limits: dict[str, Any]
    loop: Any = None  # jrobot.recording.teleoperate.TeleopStats
    stop: BaseException | None = None


def find_joint_limits(
    robot: Any, teleop: Any, *, fps: float, teleop_time_s: float, display: bool = False
) -> LimitsFound:
    """Connect, teleoperate `robot` from `teleop` for `teleop_time_s` recording the ranges, disconnect
    (torque off); see the module docstring for the document. A stop signal (Ctrl-C, SIGTERM) ends the
    recording early: what was found so far comes back with `stopped_early` and the signal in `stop`.
    """
    from jrobot.recording.teleoperate import teleop_loop

    names = list(robot.action_features)
    if names and all(n.startswith("ee.") for n in names):
        raise JointLimitsError(
            "find_joint_limits records the joints' ranges (and the end-effector box from them): "
            "drop --robot.space=ee"
        )
    fk = EndEffectorFK(_use_degrees(robot)) if EndEffectorFK.supports(names) else None
    if fk is None:
        log.warning("%s has no SO-101 joints: only the joint ranges are recorded", robot_info(robot)["name"])
    recorder = RangeRecorder(names, fk)
    found = LimitsFound({})
    with torque_safety(teleop, robot):
        teleop.connect()
        robot.connect()
        print(
            f"Move every joint of the leader through the range the arm may use ({teleop_time_s:g} s; "
            "Ctrl-C ends early)",
            flush=True,
        )
        try:
            found.loop = teleop_loop(teleop, robot, fps, teleop_time_s, display, on_step=recorder.update)
        except (KeyboardInterrupt, SystemExit) as e:
            if safety.stop_requested() is None or recorder.samples == 0:
                raise
            found.stop = e  # keep what was found; torque goes off on leaving the block
    units = "degrees (gripper: 0..100)" if _use_degrees(robot) else "-100..100 (gripper: 0..100)"
    found.limits = recorder.result(robot_info(robot), units=units, stopped_early=found.stop is not None)
    return found


def format_table(limits: Mapping[str, Any]) -> str:
    """The ranges as a text table: one row per joint, then the end-effector position (metres)."""
    rows = [("joint", "min", "max")]
    rows += [(n, f"{r['min']:.2f}", f"{r['max']:.2f}") for n, r in limits["joints"].items()]
    ee = limits.get("ee_position_m")
    if ee is not None:
        for i, axis in enumerate("xyz"):
            rows.append((f"ee {axis} (m)", f"{ee['min'][i]:.4f}", f"{ee['max'][i]:.4f}"))
    width = max(len(r[0]) for r in rows) + 2
    return "\n".join(f"{a.ljust(width)}{b:>10}{c:>10}" for a, b, c in rows)


def write_limits(path: Path, limits: Mapping[str, Any]) -> None:
    """Write the document atomically (a crash never leaves half a file where a safety clamp reads)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(limits, indent=2) + "\n")
    os.replace(tmp, path)


def _read(path: str | os.PathLike[str]) -> dict[str, Any]:
    path = Path(path)
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(
            f"{path}: no joint limits file there (python -m jrobot.find_joint_limits writes one)"
        ) from None
    except json.JSONDecodeError as e:
        raise JointLimitsError(f"{path}: not a joint limits file (invalid JSON: {e})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("joints"), dict) or not doc["joints"]:
        raise JointLimitsError(
            f'{path}: not a joint limits file (no "joints" object; see jrobot.find_joint_limits)'
        )
    if doc.get("format", FORMAT) != FORMAT or int(doc.get("version", VERSION)) > VERSION:
        raise JointLimitsError(
            f"{path}: format {doc.get('format')!r} version {doc.get('version')!r} is not "
            f"{FORMAT!r} <= {VERSION}"
        )
    return doc


def _bound(path: Path, what: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise JointLimitsError(f"{path}: {what} must be a finite number, got {value!r}")
    return float(value)


def load_joint_limits(
    path: str | os.PathLike[str], names: Sequence[str] | None = None
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(names, lower, upper) of a joint limits file, as float64 arrays in the order of `names` (default:
    the file's). A joint of `names` the file lacks, a non-finite bound or min > max is a ValueError
    naming the file and the joints."""
    path = Path(path)
    joints = _read(path)["joints"]
    if names is None:
        names = list(joints)
    missing = [n for n in names if n not in joints]
    if missing:
        raise JointLimitsError(f"{path}: no limits for {missing} (the file has {list(joints)})")
    lower, upper = [], []
    for n in names:
        entry = joints[n]
        if not isinstance(entry, dict):
            raise JointLimitsError(
                f'{path}: joint {n!r} must map to {{"min": ..., "max": ...}}, got {entry!r}'
            )
        lower.append(_bound(path, f"{n}.min", entry.get("min")))
        upper.append(_bound(path, f"{n}.max", entry.get("max")))
    lo, hi = np.asarray(lower), np.asarray(upper)
    bad = [n for n, a, b in zip(names, lo, hi, strict=True) if a > b]
    if bad:
        raise JointLimitsError(f"{path}: min > max for {bad}")
    return list(names), lo, hi


def narrow_to_joint_limits(
    path: str | os.PathLike[str],
    names: Sequence[str],
    lower: np.ndarray | None = None,
    upper: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """A safety clamp's per-joint range (`lower`/`upper` in `names` order, e.g. a policy's or a
    dataset's action range) narrowed to a joint limits file's ranges; without one, the file's ranges.
    A joint whose two ranges do not overlap is a ValueError naming it."""
    _, lo, hi = load_joint_limits(path, names)
    if lower is not None:
        lo = np.maximum(np.asarray(lower, np.float64), lo)
    if upper is not None:
        hi = np.minimum(np.asarray(upper, np.float64), hi)
    empty = [n for n, a, b in zip(names, lo, hi, strict=True) if a > b]
    if empty:
        raise JointLimitsError(
            f"{path}: the joint ranges of {empty} do not overlap the action range to clamp to"
        )
    return lo, hi


def load_ee_bounds(path: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray]:
    """(lower, upper) of the end-effector position (metres, LeRobot's `gripper_frame_link` in the
    base_link frame), each (3,)."""
    path = Path(path)
    ee = _read(path).get("ee_position_m")
    if not isinstance(ee, dict):
        raise JointLimitsError(f"{path}: no end-effector range (ee_position_m) in this file")
    frame = ee.get("link") or ee.get("site")
    if frame is not None and frame != EE_LINK:
        raise JointLimitsError(
            f"{path}: its end-effector range is of {frame!r}, not LeRobot's "
            f"{EE_LINK} frame; run `python -m jrobot.find_joint_limits` again"
        )
    out = []
    for key in ("min", "max"):
        v = ee.get(key)
        if not isinstance(v, list) or len(v) != 3:
            raise JointLimitsError(f"{path}: ee_position_m.{key} must be [x, y, z], got {v!r}")
        out.append(np.array([_bound(path, f"ee_position_m.{key}", x) for x in v]))
    if np.any(out[0] > out[1]):
        raise JointLimitsError(f"{path}: ee_position_m min > max")
    return out[0], out[1]


def ee_box(path: str | os.PathLike[str]) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """`load_ee_bounds` as the (min corner, max corner) of an end-effector config's `bounds_m`."""
    lo, hi = load_ee_bounds(path)
    return tuple(map(float, lo)), tuple(map(float, hi))


@dataclasses.dataclass
class EETeleopConfig(EEControlConfig):
    """End-effector control whose box may come from a find_joint_limits file (`ee_bounds`), as the
    keyboard and gamepad teleoperators take it."""

    ee_bounds: Path | None = None

    def __post_init__(self) -> None:
        if self.ee_bounds is not None:
            self.bounds_m = ee_box(self.ee_bounds)
        super().__post_init__()

"""Joint units: MuJoCo joint angles (radians) <-> LeRobot's calibrated SO-101 units.

The simulated arm must read and accept exactly what the real follower does, so that datasets,
policies and evaluation do not care which arm produced them. LeRobot's calibration puts each arm
joint's zero at the middle of its range, which is also the zero of the SO-ARM100 "new calibration"
model our MJCF follows, so an arm joint's value is simply its angle:

- arm joints (`shoulder_pan` ... `wrist_roll`): degrees (`use_degrees=True`, LeRobot >= 0.4.4's
  default), or, with `use_degrees=False`, the older RANGE_M100_100 mode: the joint range mapped
  linearly onto -100..100;
- `gripper`: always RANGE_0_100, 0 = closed (the jaw against the fixed finger, the joint's lower
  limit) and 100 = fully open (its upper limit), linear in the hinge angle.

This module is numpy-only so that the virtual servo bus and the recording code can use it without
MuJoCo.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from jrobot.features import SO101_JOINT_KEYS, SO101_MOTORS

# Joint ranges of the SO-101 model in radians, bus order (from SO-ARM100 so101_new_calib.xml; they
# must match jrobot/sim/assets/so101.xml, which a test checks).
JOINT_RANGES_RAD: np.ndarray = np.array(
    [
        [-1.91986, 1.91986],  # shoulder_pan
        [-1.74533, 1.74533],  # shoulder_lift
        [-1.69, 1.69],  # elbow_flex
        [-1.65806, 1.65806],  # wrist_flex
        [-2.74385, 2.84121],  # wrist_roll
        [-0.174533, 1.74533],  # gripper: lower limit closed, upper limit open
    ]
)
GRIPPER_INDEX = SO101_MOTORS.index("gripper")
N_JOINTS = len(SO101_MOTORS)


def joint_limits(use_degrees: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper limits of each joint in LeRobot units (what the action space is bounded by)."""
    lo = rad_to_lerobot(JOINT_RANGES_RAD[:, 0], use_degrees=use_degrees)
    hi = rad_to_lerobot(JOINT_RANGES_RAD[:, 1], use_degrees=use_degrees)
    return np.minimum(lo, hi), np.maximum(lo, hi)


def rad_to_lerobot(q: np.ndarray, *, use_degrees: bool = True) -> np.ndarray:
    """Joint angles (6, radians, bus order) -> LeRobot units (degrees or +-100, gripper 0..100)."""
    q = np.asarray(q, dtype=np.float64)
    if q.shape[-1] != N_JOINTS:
        raise ValueError(f"expected {N_JOINTS} joint values (bus order {SO101_MOTORS}), got shape {q.shape}")
    out = np.empty_like(q)
    lo, hi = JOINT_RANGES_RAD[:, 0], JOINT_RANGES_RAD[:, 1]
    arm = slice(0, GRIPPER_INDEX)
    if use_degrees:
        out[..., arm] = np.degrees(q[..., arm])
    else:
        out[..., arm] = (q[..., arm] - lo[arm]) / (hi[arm] - lo[arm]) * 200.0 - 100.0
    g = GRIPPER_INDEX
    out[..., g] = (q[..., g] - lo[g]) / (hi[g] - lo[g]) * 100.0
    return out


def lerobot_to_rad(values: np.ndarray, *, use_degrees: bool = True) -> np.ndarray:
    """Inverse of `rad_to_lerobot` (no clamping: the servo's position limits do that)."""
    v = np.asarray(values, dtype=np.float64)
    if v.shape[-1] != N_JOINTS:
        raise ValueError(f"expected {N_JOINTS} joint values (bus order {SO101_MOTORS}), got shape {v.shape}")
    out = np.empty_like(v)
    lo, hi = JOINT_RANGES_RAD[:, 0], JOINT_RANGES_RAD[:, 1]
    arm = slice(0, GRIPPER_INDEX)
    if use_degrees:
        out[..., arm] = np.radians(v[..., arm])
    else:
        out[..., arm] = (v[..., arm] + 100.0) / 200.0 * (hi[arm] - lo[arm]) + lo[arm]
    g = GRIPPER_INDEX
    out[..., g] = v[..., g] / 100.0 * (hi[g] - lo[g]) + lo[g]
    return out


def gripper_percent_to_rad(percent: float) -> float:
    """Gripper opening 0 (closed) .. 100 (open) -> hinge angle in radians."""
    lo, hi = JOINT_RANGES_RAD[GRIPPER_INDEX]
    return float(lo + percent / 100.0 * (hi - lo))


def to_joint_dict(values: np.ndarray) -> dict[str, float]:
    """Vector in bus order -> LeRobot's `{"shoulder_pan.pos": ..., "gripper.pos": ...}`."""
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    if v.shape[0] != N_JOINTS:
        raise ValueError(f"expected {N_JOINTS} joint values, got {v.shape[0]}")
    return {k: float(x) for k, x in zip(SO101_JOINT_KEYS, v, strict=True)}


def from_joint_dict(action: Mapping[str, float], *, what: str = "action") -> np.ndarray:
    """LeRobot's per-motor dict -> vector in bus order; missing, unknown or non-finite values raise.

    The keys are `"<motor>.pos"` as the real follower's `send_action` takes them.
    """
    missing = [k for k in SO101_JOINT_KEYS if k not in action]
    unknown = [k for k in action if k not in SO101_JOINT_KEYS]
    if missing or unknown:
        raise ValueError(
            f"{what} must have exactly the keys {list(SO101_JOINT_KEYS)}; missing {missing}, unknown {unknown}"
        )
    out = np.empty(N_JOINTS, dtype=np.float64)
    for i, k in enumerate(SO101_JOINT_KEYS):
        try:
            x = float(action[k])
        except (TypeError, ValueError) as e:
            raise ValueError(f"{what}[{k!r}] must be a number, got {action[k]!r}") from e
        if not math.isfinite(x):
            raise ValueError(f"{what}[{k!r}] must be finite, got {x}")
        out[i] = x
    return out

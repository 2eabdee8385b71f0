"""Minimum-jerk time scaling: smooth, human-like point-to-point motion for the scripted experts.

A minimum-jerk segment starts and ends at rest with zero acceleration, which is what makes the scripted
demonstrations look natural and keeps the commanded joint targets free of steps a policy would have
to imitate.
"""

from __future__ import annotations

import numpy as np


def min_jerk(tau: float | np.ndarray) -> float | np.ndarray:
    """Progress s(tau) = 10 tau^3 - 15 tau^4 + 6 tau^5 for tau in [0, 1] (clipped outside)."""
    t = np.clip(tau, 0.0, 1.0)
    return t * t * t * (10.0 + t * (-15.0 + 6.0 * t))


def min_jerk_velocity(tau: float | np.ndarray) -> float | np.ndarray:
    """ds/dtau; its peak is 1.875 at tau = 0.5 (peak speed = 1.875 x distance / duration)."""
    t = np.clip(tau, 0.0, 1.0)
    return 30.0 * t * t * (1.0 - t) ** 2


def wrap_angle(a: float | np.ndarray) -> float | np.ndarray:
    """Angle wrapped into [-pi, pi)."""
    return (np.asarray(a) + np.pi) % (2.0 * np.pi) - np.pi

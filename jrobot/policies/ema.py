"""Exponential moving average of parameters, for the train state (Diffusion Policy's `EMAModel`).

LeRobot 0.4.4 trains Diffusion Policy without an EMA; the original Diffusion Policy code (Chi et al.)
evaluates an EMA copy of the weights whose decay warms up as
    decay(n) = 0                                         if n - update_after_step - 1 <= 0
               clip(1 - (1 + m / inv_gamma) ** -power, min_decay, max_decay),   m = n - update_after_step - 1
where n counts the EMA updates already made (0 for the first one), with power 0.75, inv_gamma 1 and
max_decay 0.9999 (diffusers' / diffusion_policy's `EMAModel` defaults). The first update therefore
copies the parameters, and the average only becomes long once training is well under way.

The trainer keeps `ema_params` (same tree as the trainable parameters) in its train state and calls
`ema_update(ema_params, params, step, cfg)` after every optimizer step with `step` = number of updates
made before this one. Export then takes `ema_params` instead of the raw parameters.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp


@dataclasses.dataclass(frozen=True)
class EMAConfig:
    """The warm-up EMA schedule of diffusion_policy's `EMAModel` (defaults are its defaults)."""

    power: float = 0.75
    inv_gamma: float = 1.0
    min_decay: float = 0.0
    max_decay: float = 0.9999
    update_after_step: int = 0

    def __post_init__(self) -> None:
        if not 0.0 <= self.min_decay <= self.max_decay < 1.0:
            raise ValueError(
                f"EMA decays must satisfy 0 <= min_decay ({self.min_decay}) <= max_decay ({self.max_decay}) < 1"
            )
        if self.power <= 0 or self.inv_gamma <= 0:
            raise ValueError(f"EMA power ({self.power}) and inv_gamma ({self.inv_gamma}) must be positive")
        if self.update_after_step < 0:
            raise ValueError(f"EMA update_after_step must be >= 0, got {self.update_after_step}")

    def decay(self, step: jax.Array | int) -> jax.Array:
        """Decay used by the update that follows `step` earlier updates (traceable)."""
        m = jnp.maximum(jnp.asarray(step, jnp.float32) - self.update_after_step - 1, 0.0)
        value = 1.0 - (1.0 + m / self.inv_gamma) ** (-self.power)
        value = jnp.clip(value, self.min_decay, self.max_decay)
        return jnp.where(m <= 0, 0.0, value).astype(jnp.float32)


def ema_init(params: Any) -> Any:
    """A copy of the parameter tree to start the average from."""
    return jax.tree.map(lambda p: jnp.array(p, copy=True), params)


def ema_update(ema_params: Any, params: Any, step: jax.Array | int, cfg: EMAConfig) -> Any:
    """`ema <- decay * ema + (1 - decay) * params` with the scheduled decay; the trees must match."""
    d = cfg.decay(step)
    return jax.tree.map(lambda e, p: (d * e + (1.0 - d) * p).astype(e.dtype), ema_params, params)

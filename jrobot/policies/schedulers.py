"""DDPM / DDIM noise schedulers computed exactly as diffusers 0.35 does for LeRobot's Diffusion Policy.

LeRobot builds `diffusers.DDPMScheduler` or `DDIMScheduler` with its config's `num_train_timesteps`,
`beta_schedule`, `beta_start`, `beta_end`, `clip_sample`, `clip_sample_range` and `prediction_type`,
and leaves everything else at diffusers' defaults (timestep spacing "leading", steps offset 0,
`variance_type="fixed_small"`, no thresholding; DDIM: `eta=0`, `set_alpha_to_one=True`). This module
reproduces that arithmetic:

- The tables are built on the host in numpy so they are bit-identical to torch's: betas in Python
  float64 (squaredcos_cap_v2) or with torch's float32 `linspace` formula, stored as float32;
  `alphas_cumprod` as torch's CPU `cumprod` computes it, i.e. accumulated in float64 (torch's CPU
  accumulate type for float32) and rounded to float32 per element. A float32 running product differs
  from torch's table by 1 ulp at most entries.
- Each reverse step is written with float32 scalars in diffusers' order of operations.
- The whole reverse process is one `jax.lax.scan`, with the initial noise and (for DDPM) the per-step
  variance noise injectable, so a run can reproduce LeRobot's output for the same noise.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np

SchedulerType = Literal["DDPM", "DDIM"]
BETA_SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2", "sigmoid")
PREDICTION_TYPES = ("epsilon", "sample")
SCHEDULER_TYPES = ("DDPM", "DDIM")

# (x_t (B, T, A), t (B,) int32) -> model output (B, T, A)
DenoiseFn = Callable[[jax.Array, jax.Array], jax.Array]


def _torch_linspace_f32(start: float, end: float, steps: int) -> np.ndarray:
    """torch.linspace(start, end, steps, dtype=float32) on CPU (scalar formula, symmetric halves)."""
    if steps == 1:
        return np.asarray([start], dtype=np.float32)
    s, e = np.float32(start), np.float32(end)
    step = np.float32((e - s) / np.float32(steps - 1))
    halfway = steps // 2
    out = np.empty(steps, dtype=np.float32)
    for i in range(steps):
        out[i] = s + step * np.float32(i) if i < halfway else e - step * np.float32(steps - i - 1)
    return out


def _squaredcos_cap_v2_betas(n: int, max_beta: float = 0.999) -> np.ndarray:
    """diffusers' `betas_for_alpha_bar` (cosine): Python floats, then float32."""

    def alpha_bar(t: float) -> float:
        return math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2

    betas = [min(1 - alpha_bar((i + 1) / n) / alpha_bar(i / n), max_beta) for i in range(n)]
    return np.asarray(betas, dtype=np.float32)


def make_betas(
    num_train_timesteps: int, beta_schedule: str, beta_start: float, beta_end: float
) -> np.ndarray:
    """The float32 beta table diffusers builds for `beta_schedule` (beta_start/end unused by the cosine)."""
    n = int(num_train_timesteps)
    if n < 1:
        raise ValueError(f"num_train_timesteps must be >= 1, got {num_train_timesteps}")
    if beta_schedule == "linear":
        return _torch_linspace_f32(beta_start, beta_end, n)
    if beta_schedule == "scaled_linear":
        root = _torch_linspace_f32(beta_start**0.5, beta_end**0.5, n)
        return (root * root).astype(np.float32)
    if beta_schedule == "squaredcos_cap_v2":
        return _squaredcos_cap_v2_betas(n)
    if beta_schedule == "sigmoid":
        x = _torch_linspace_f32(-6.0, 6.0, n)
        sig = (np.float32(1) / (np.float32(1) + np.exp(-x))).astype(np.float32)
        return (sig * np.float32(beta_end - beta_start) + np.float32(beta_start)).astype(np.float32)
    raise ValueError(f"beta_schedule must be one of {BETA_SCHEDULES}, got {beta_schedule!r}")


def make_alphas_cumprod(betas: np.ndarray) -> np.ndarray:
    """`torch.cumprod(1 - betas)` on CPU: float32 factors, float64 running product, float32 outputs."""
    alphas = (np.float32(1.0) - np.asarray(betas, dtype=np.float32)).astype(np.float32)
    return np.cumprod(alphas.astype(np.float64)).astype(np.float32)


def inference_timesteps(num_train_timesteps: int, num_inference_steps: int) -> np.ndarray:
    """diffusers' "leading" spacing with steps_offset 0: `arange(n) * (N // n)`, reversed (int32)."""
    if not 1 <= num_inference_steps <= num_train_timesteps:
        raise ValueError(
            f"num_inference_steps ({num_inference_steps}) must be in [1, num_train_timesteps="
            f"{num_train_timesteps}] (diffusers refuses more inference steps than training steps)"
        )
    ratio = num_train_timesteps // num_inference_steps
    return (np.arange(num_inference_steps) * ratio).round()[::-1].astype(np.int32)


@dataclasses.dataclass(frozen=True)
class NoiseScheduler:
    """One diffusers scheduler as LeRobot configures it; hashable, so it can be a static jit argument.

    `kind` is "DDPM" (ancestral sampling, fixed_small variance) or "DDIM" (eta 0: deterministic).
    `num_inference_steps=None` means `num_train_timesteps`, as in LeRobot.
    """

    kind: SchedulerType = "DDPM"
    num_train_timesteps: int = 100
    beta_schedule: str = "squaredcos_cap_v2"
    beta_start: float = 1e-4
    beta_end: float = 0.02
    prediction_type: str = "epsilon"
    clip_sample: bool = True
    clip_sample_range: float = 1.0
    num_inference_steps: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in SCHEDULER_TYPES:
            raise ValueError(f"noise scheduler type must be one of {SCHEDULER_TYPES}, got {self.kind!r}")
        if self.prediction_type not in PREDICTION_TYPES:
            raise ValueError(
                f"prediction_type must be one of {PREDICTION_TYPES}, got {self.prediction_type!r}"
            )
        if self.beta_schedule not in BETA_SCHEDULES or (
            self.kind == "DDIM" and self.beta_schedule == "sigmoid"
        ):
            allowed = BETA_SCHEDULES if self.kind == "DDPM" else BETA_SCHEDULES[:3]
            raise ValueError(
                f"beta_schedule for {self.kind} must be one of {allowed}, got {self.beta_schedule!r}"
            )
        inference_timesteps(self.num_train_timesteps, self.n_inference_steps)  # validates the count

    @property
    def n_inference_steps(self) -> int:
        return self.num_train_timesteps if self.num_inference_steps is None else int(self.num_inference_steps)

    @functools.cached_property
    def betas(self) -> np.ndarray:
        return make_betas(self.num_train_timesteps, self.beta_schedule, self.beta_start, self.beta_end)

    @functools.cached_property
    def alphas_cumprod(self) -> np.ndarray:
        return make_alphas_cumprod(self.betas)

    @functools.cached_property
    def timesteps(self) -> np.ndarray:
        """The reverse-process timesteps, first to last (e.g. [99, 98, ..., 0])."""
        return inference_timesteps(self.num_train_timesteps, self.n_inference_steps)

    @property
    def step_ratio(self) -> int:
        return self.num_train_timesteps // self.n_inference_steps

    # ----- training -------------------------------------------------------------------------------
    def add_noise(self, x0: jax.Array, eps: jax.Array, t: jax.Array) -> jax.Array:
        """Forward process `sqrt(ac[t]) x0 + sqrt(1 - ac[t]) eps` for a (B,) integer timestep."""
        ac = jnp.asarray(self.alphas_cumprod)[t].astype(x0.dtype)
        ac = ac.reshape(ac.shape + (1,) * (x0.ndim - ac.ndim))
        return jnp.sqrt(ac) * x0 + jnp.sqrt(1 - ac) * eps

    def training_target(self, x0: jax.Array, eps: jax.Array) -> jax.Array:
        """What the denoiser is trained to output: the noise ("epsilon") or the clean sample."""
        return eps if self.prediction_type == "epsilon" else x0

    # ----- one reverse step -----------------------------------------------------------------------
    def _alpha_prods(self, t: jax.Array) -> tuple[jax.Array, jax.Array]:
        ac = jnp.asarray(self.alphas_cumprod)
        prev = t - self.step_ratio
        final = jnp.float32(1.0)  # DDPM's `one`; DDIM's final_alpha_cumprod with set_alpha_to_one=True
        ap = ac[t]
        ap_prev = jnp.where(prev >= 0, ac[jnp.maximum(prev, 0)], final)
        return ap, ap_prev

    def _pred_original(
        self, model_output: jax.Array, t: jax.Array, sample: jax.Array
    ) -> tuple[jax.Array, jax.Array]:
        ap, _ = self._alpha_prods(t)
        bp = 1 - ap
        if self.prediction_type == "epsilon":
            x0 = (sample - bp**0.5 * model_output) / ap**0.5
            eps = model_output
        else:
            x0 = model_output
            eps = (sample - ap**0.5 * x0) / bp**0.5
        if self.clip_sample:
            r = jnp.float32(self.clip_sample_range)
            x0 = jnp.clip(x0, -r, r)
        return x0, eps

    def ddpm_step(
        self, model_output: jax.Array, t: jax.Array, sample: jax.Array, noise: jax.Array
    ) -> jax.Array:
        """`DDPMScheduler.step` (fixed_small variance); `noise` is the variance noise, unused at t == 0."""
        ap, ap_prev = self._alpha_prods(t)
        bp, bp_prev = 1 - ap, 1 - ap_prev
        cur_a = ap / ap_prev
        cur_b = 1 - cur_a
        x0, _ = self._pred_original(model_output, t, sample)
        x0_coeff = (ap_prev**0.5 * cur_b) / bp
        x_coeff = cur_a**0.5 * bp_prev / bp
        prev = x0_coeff * x0 + x_coeff * sample
        variance = jnp.maximum((1 - ap_prev) / (1 - ap) * cur_b, jnp.float32(1e-20))
        return jnp.where(t > 0, prev + variance**0.5 * noise, prev)

    def ddim_step(self, model_output: jax.Array, t: jax.Array, sample: jax.Array) -> jax.Array:
        """`DDIMScheduler.step` with eta 0 (deterministic; the unclipped epsilon sets the direction)."""
        _, ap_prev = self._alpha_prods(t)
        x0, eps = self._pred_original(model_output, t, sample)
        direction = (1 - ap_prev) ** 0.5 * eps
        return ap_prev**0.5 * x0 + direction

    # ----- full reverse process -------------------------------------------------------------------
    def sample(
        self,
        denoise: DenoiseFn,
        noise: jax.Array,
        *,
        rng: jax.Array | None = None,
        step_noise: jax.Array | None = None,
    ) -> jax.Array:
        """Run the reverse process from `noise` (B, T, A) with a `lax.scan` over `self.timesteps`.

        DDPM draws its per-step variance noise from `rng` (split once per step), unless `step_noise`
        (n_steps, B, T, A) is given, in which case step i uses `step_noise[i]` (diffusers draws one
        tensor per step, including the last whose noise is discarded at t == 0). DDIM uses neither.
        """
        ts = jnp.asarray(self.timesteps, dtype=jnp.int32)
        n = ts.shape[0]
        if self.kind == "DDPM":
            if step_noise is None:
                if rng is None:
                    raise ValueError(
                        "DDPM sampling needs `rng` or `step_noise` for its per-step variance noise"
                    )
                step_noise = jax.random.normal(rng, (n, *noise.shape), noise.dtype)
            elif tuple(step_noise.shape) != (n, *noise.shape):
                raise ValueError(
                    f"step_noise must have shape {(n, *noise.shape)}, got {tuple(step_noise.shape)}"
                )
        else:
            step_noise = jnp.zeros((n, 0), noise.dtype)  # empty per-step input: DDIM draws no noise

        batch = noise.shape[0]

        def body(x: jax.Array, inputs: tuple[jax.Array, jax.Array]) -> tuple[jax.Array, None]:
            t, z = inputs
            out = denoise(x, jnp.full((batch,), t, dtype=jnp.int32))
            if self.kind == "DDPM":
                x = self.ddpm_step(out, t, x, z)
            else:
                x = self.ddim_step(out, t, x)
            return x, None

        x, _ = jax.lax.scan(body, noise, (ts, step_noise))
        return x

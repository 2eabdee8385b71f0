"""optax optimizers from a policy's LeRobot preset (plus config overrides), matching torch numerics.

- Gradient clipping is torch's `clip_grad_norm_`: scale by min(1, max_norm / (norm + 1e-6)) over all
  parameters, applied before the optimizer (so before Adam's coupled weight decay, as in torch).
- "adamw": decoupled weight decay (torch AdamW); "adam": torch Adam's L2, i.e. `add_decayed_weights`
  before `scale_by_adam`.
- Parameter groups (`param_group` of the policy, e.g. ACT's backbone) get their own learning rate with
  the same schedule shape.
- Schedules: constant; "cosine" (diffusers' cosine with linear warmup over the total steps);
  "cosine_decay_with_warmup" (LeRobot's `CosineDecayWithWarmupSchedulerConfig`, absolute-step cosine).
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import optax

from jrobot.policies.base import OptimizerPreset, param_labels

log = logging.getLogger(__name__)


def torch_clip_by_global_norm(max_norm: float) -> optax.GradientTransformation:
    def update(updates, state, params=None):
        del params
        norm = optax.global_norm(updates)
        scale = jnp.minimum(1.0, max_norm / (norm + 1e-6))
        return jax.tree.map(lambda g: g * scale.astype(g.dtype), updates), state

    return optax.GradientTransformation(lambda _: optax.EmptyState(), update)


def schedule_factor(
    scheduler: Mapping[str, Any] | None, total_steps: int
) -> Callable[[jax.Array], jax.Array]:
    """Multiplier of the peak learning rate at optimizer step `count` (0-based, as torch's LambdaLR)."""
    if not scheduler:
        return lambda count: jnp.ones((), jnp.float32)
    name = scheduler.get("name")
    if name == "cosine":
        warmup = int(scheduler.get("num_warmup_steps", 0))

        def diffusers_cosine(count):
            count = jnp.asarray(count, jnp.float32)
            warm = count / max(1, warmup)
            progress = (count - warmup) / max(1, total_steps - warmup)
            cos = jnp.maximum(0.0, 0.5 * (1.0 + jnp.cos(math.pi * 2.0 * 0.5 * progress)))
            return jnp.where(count < warmup, warm, cos)

        return diffusers_cosine
    if name == "cosine_decay_with_warmup":
        peak = float(scheduler["peak_lr"])
        decay_lr = float(scheduler["decay_lr"])
        warmup = int(scheduler["num_warmup_steps"])
        decay = int(scheduler["num_decay_steps"])
        if total_steps < decay:  # LeRobot rescales both phases to the run length
            warmup = int(warmup * total_steps / decay)
            decay = total_steps
        alpha = decay_lr / peak

        def lerobot_cosine(count):
            count = jnp.asarray(count, jnp.float32)
            if warmup > 0:
                warm = (1.0 / (warmup + 1) - 1.0) * (1.0 - count / warmup) + 1.0
            else:
                warm = jnp.ones((), jnp.float32)
            cos = (1.0 - alpha) * 0.5 * (1.0 + jnp.cos(math.pi * jnp.minimum(count, decay) / decay)) + alpha
            return jnp.where(count < warmup, warm, cos)

        return lerobot_cosine
    raise ValueError(f"unknown scheduler {name!r}; use None, 'cosine' or 'cosine_decay_with_warmup'")


def apply_overrides(preset: OptimizerPreset, overrides: Mapping[str, Any] | None) -> OptimizerPreset:
    """Config overrides on top of the preset: lr, betas, eps, weight_decay, grad_clip_norm, group_lr, scheduler.

    `scheduler.name`: "cosine" (+ num_warmup_steps), "cosine_decay_with_warmup" (+ peak_lr, decay_lr,
    num_warmup_steps, num_decay_steps), "constant", or unset to keep the policy preset's schedule.
    """
    if not overrides:
        return preset
    fields = {f.name for f in dataclasses.fields(OptimizerPreset)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise ValueError(f"optimizer overrides: unknown keys {unknown}; known: {sorted(fields)}")
    kw = {}
    for k, v in overrides.items():
        if v is None:
            continue  # unset placeholder: keep the preset's value
        if k == "betas":
            v = tuple(v)
        elif k == "group_lr":
            v = dict(v)
        elif k == "scheduler":
            v = {a: b for a, b in dict(v).items() if b is not None}
            if not v.get("name"):
                continue  # no scheduler named: keep the preset's
            if v["name"] == "constant":
                v = None
        kw[k] = v
    return dataclasses.replace(preset, **kw)


def make_optimizer(
    preset: OptimizerPreset,
    params: Any,
    group_fn: Callable[[tuple], str],
    total_steps: int,
) -> tuple[optax.GradientTransformation, Callable[[jax.Array], jax.Array]]:
    """(optax transform, lr schedule of the default group) for `params` (an nnx.State of nnx.Param)."""
    if preset.name not in ("adam", "adamw"):
        raise ValueError(f"optimizer {preset.name!r} is not supported; use 'adam' or 'adamw'")
    factor = schedule_factor(preset.scheduler, total_steps)
    labels = param_labels(params, group_fn)
    groups = sorted(set(jax.tree.leaves(labels)))
    unknown = sorted(set(preset.group_lr) - set(groups) - {"default"})
    if unknown:  # e.g. a backbone learning rate for a policy built without cameras
        log.info("optimizer group_lr: no parameter belongs to %s (groups: %s); ignored", unknown, groups)

    def group_tx(group: str) -> optax.GradientTransformation:
        lr = preset.group_lr.get(group, preset.lr)
        sched = lambda count: -lr * factor(count)  # noqa: E731
        b1, b2 = preset.betas
        adam = optax.scale_by_adam(b1=b1, b2=b2, eps=preset.eps)
        if preset.name == "adam":
            parts = [optax.add_decayed_weights(preset.weight_decay), adam] if preset.weight_decay else [adam]
        else:
            parts = [adam, optax.add_decayed_weights(preset.weight_decay)] if preset.weight_decay else [adam]
        return optax.chain(*parts, optax.scale_by_schedule(sched))

    inner = optax.multi_transform({g: group_tx(g) for g in groups}, labels)
    chain = [torch_clip_by_global_norm(preset.grad_clip_norm)] if preset.grad_clip_norm else []
    tx = optax.chain(*chain, inner)
    return tx, (lambda count: preset.lr * factor(count))

"""Executing an exported policy bundle on the CPU with JAX, without flax or the training stack.

`BundlePolicy.predict(observation)` takes a batch of raw observations keyed by feature name with the
history axis (B, n_obs, ...) — images uint8 HxWx3 as cameras give them, or float in [0, 1] (HWC or
LeRobot's CHW) — and returns action chunks in dataset units. `ObservationBuilder` turns a robot's
`get_observation()` dict (joint floats + camera images) into one such observation.

A language-conditioned policy (a VLA; its bundle has a tokenizer) also needs the task instruction. It
comes, in this order, from pre-tokenized `observation.language.tokens` / `attention_mask` (B, L) in the
observation, from `observation["task"]` (one string for the whole batch, or B strings), or from
`predict(..., task=...)`; it is tokenized with the bundle's tokenizer padded to the exported length L.
In the control loop, `ObservationBuilder.task` puts the current instruction into every observation, so
the instruction travels with the observation it belongs to (also to the background inference thread).
A task given to a policy without language is ignored (with one warning).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np

from jrobot.bundle import (
    INFERENCE_DIR,
    BundleError,
    BundleInfo,
    member,
    read_info,
    read_params,
    read_tokenizer,
    variant_name,
)
from jrobot.compile_cache import enable_compile_cache
from jrobot.language import TokenizerError, is_language_mask, language_dtype, language_inputs
from jrobot.policies.spec import FeatureType
from jrobot.runtime.observations import (  # noqa: F401  (re-exported: where callers have found them)
    NEEDS_TASK,
    TASK_KEY,
    DescribedByBundle,
    ObservationBuilder,
)

log = logging.getLogger("jrobot.run")

# At import, before this process compiles anything: a bundle compiles once per machine, later runs load it.
enable_compile_cache()


def _to_hwc(x: np.ndarray, key: str) -> np.ndarray:
    """Images (..., H, W, 3) or LeRobot's (..., 3, H, W) -> channel-last."""
    if x.shape[-1] == 3:
        return x
    if x.ndim >= 3 and x.shape[-3] == 3:
        return np.moveaxis(x, -3, -1)
    raise BundleError(f"{key}: images must be (..., H, W, 3) or (..., 3, H, W), got shape {x.shape}")


def read_exported(bundle: str | Path, variant: str):
    """Deserialize one inference variant (jax.export.Exported)."""
    p = member(bundle, Path(INFERENCE_DIR) / f"{variant}.jaxexport", f"inference variant {variant!r}")
    if not p.is_file():
        raise BundleError(f"{p}: this bundle has no {variant!r} inference function")
    try:
        return jax.export.deserialize(bytearray(p.read_bytes()))
    except Exception as e:  # deserialization raises assorted errors on corrupt bytes
        raise BundleError(f"{p}: cannot deserialize the exported function ({e})") from e


class BundlePolicy(DescribedByBundle):
    """A loaded bundle: parameters on the CPU device plus its compiled inference functions."""

    def __init__(self, path: str | Path, *, device: jax.Device | None = None):
        self.path = Path(path)
        self.info: BundleInfo = read_info(self.path)
        self.device = device or jax.devices("cpu")[0]
        params = read_params(self.path)
        self.params = {k: jax.device_put(v, self.device) for k, v in params.items()}
        self._exported: dict[str, Any] = {}
        self._key = jax.random.PRNGKey(0)
        self.latencies_s: list[float] = []
        self.tokenizer = read_tokenizer(self.path, self.info)
        if self.tokenizer is not None:
            want = {k: (self.tokenizer.max_length,) for k in self.spec.language_keys}
            got = {k: self.spec.input_features[k].shape for k in self.spec.language_keys}
            if not want or got != want:
                raise BundleError(
                    f"{self.path}: the tokenizer makes {self.tokenizer.max_length} tokens, but the policy's "
                    f"language inputs are {got or 'absent'}"
                )
        elif self.spec.language_keys:
            raise BundleError(
                f"{self.path}: the policy reads language inputs {list(self.spec.language_keys)} but the "
                "bundle has no tokenizer; re-export it with this jrobot's `python -m jrobot.export`"
            )
        self._warned_task_ignored = False

    def seed(self, seed: int) -> None:
        self._key = jax.random.PRNGKey(seed)

    def _function(self, variant: str):
        if variant not in self._exported:
            if variant not in self.info.variants:
                raise BundleError(
                    f"{self.path}: no inference variant {variant!r} (has {self.info.variants})"
                    + ("; this policy is deterministic and takes no noise" if "noise" in variant else "")
                )
            # jit the exported call once: its compiled executable is cached per input shape.
            self._exported[variant] = jax.jit(read_exported(self.path, variant).call)
        return self._exported[variant]

    def prepare(
        self, observation: Mapping[str, Any], *, task: str | Sequence[str] | None = None
    ) -> tuple[dict[str, np.ndarray], str]:
        """Check and convert a raw observation batch to the exported function's inputs.

        `task` is the instruction when the observation carries none (see the module docstring).
        """
        spec = self.spec
        obs: dict[str, np.ndarray] = {}
        image_dtype = None
        for key, feat in spec.input_features.items():
            if feat.type not in (FeatureType.VISUAL, FeatureType.STATE, FeatureType.ENV):
                continue
            if key not in observation:
                raise BundleError(f"observation lacks {key!r}; this policy reads {list(spec.input_features)}")
            x = np.asarray(observation[key])
            if feat.type is FeatureType.VISUAL:
                x = _to_hwc(x, key)
                h, w, _ = self.info.image_shapes[key]
                if x.ndim == 4:  # (B, H, W, 3): no history axis
                    x = x[:, None]
                if x.shape[-3:-1] != (h, w):
                    raise BundleError(
                        f"{key}: the policy expects {h}x{w} images, got {x.shape[-3]}x{x.shape[-2]}"
                    )
                dt = "uint8" if x.dtype == np.uint8 else "float32"
                if image_dtype not in (None, dt):
                    raise BundleError("all cameras must have the same dtype (uint8 or float in [0, 1])")
                image_dtype = dt
                x = x.astype(np.uint8 if dt == "uint8" else np.float32)
            else:
                x = x.astype(np.float32)
                if x.ndim == 1 + len(feat.shape):
                    x = x[:, None]
                if x.shape[-len(feat.shape) :] != feat.shape:
                    raise BundleError(f"{key}: expected feature shape {feat.shape}, got {x.shape}")
            if x.shape[1] == 1 and spec.n_obs_steps > 1:
                x = np.repeat(x, spec.n_obs_steps, axis=1)  # LeRobot fills the history with the first frame
            if x.shape[1] != spec.n_obs_steps:
                raise BundleError(
                    f"{key}: history axis has {x.shape[1]} steps, the policy reads {spec.n_obs_steps}"
                )
            if not np.all(np.isfinite(x)) if x.dtype != np.uint8 else False:
                raise BundleError(f"{key}: observation contains NaN or infinite values")
            obs[key] = x
        if spec.language_keys:
            batch = next(iter(obs.values())).shape[0] if obs else None
            obs.update(self._language_inputs(observation, task, batch))
        elif not self._warned_task_ignored and (task is not None or TASK_KEY in observation):
            self._warned_task_ignored = True
            log.warning("%s: this policy takes no task instruction; the task given is ignored", self.path)
        return obs, image_dtype or "uint8"

    def _language_inputs(
        self, observation: Mapping[str, Any], task: str | Sequence[str] | None, batch: int | None
    ) -> dict[str, np.ndarray]:
        """The LANGUAGE inputs (B, L): pre-tokenized ones as they are, else the tokenized task."""
        keys = self.spec.language_keys
        length = self.tokenizer.max_length
        given = [k for k in keys if k in observation]
        if given:
            if len(given) != len(keys):
                raise BundleError(f"pre-tokenized language inputs need all of {list(keys)}, got only {given}")
            out = {}
            for k in keys:
                x = np.asarray(observation[k])
                if x.ndim != 2 or x.shape[1] != length or (batch is not None and x.shape[0] != batch):
                    raise BundleError(
                        f"{k}: expected shape ({batch if batch is not None else 'B'}, {length}), got {x.shape}"
                    )
                if not is_language_mask(k) and not np.issubdtype(x.dtype, np.integer):
                    raise BundleError(f"{k}: token ids must be integers, got {x.dtype}")
                out[k] = x.astype(language_dtype(k))
            return out
        tasks = observation.get(TASK_KEY)
        if tasks is None:
            tasks = task
        if tasks is None:
            raise BundleError(NEEDS_TASK)
        try:
            return language_inputs(self.tokenizer, keys, tasks, batch=batch)
        except TokenizerError as e:
            raise BundleError(f"task instruction: {e}") from e

    def predict(
        self,
        observation: Mapping[str, Any],
        *,
        task: str | Sequence[str] | None = None,
        noise: np.ndarray | None = None,
        key: jax.Array | None = None,
    ) -> np.ndarray:
        """(B, n, A) actions in dataset units. `noise` (B, *spec.noise_shape) makes stochastic policies exact;
        `task` is the instruction of a language policy when `observation["task"]` is absent."""
        obs, image_dtype = self.prepare(observation, task=task)
        return self.run_prepared(obs, image_dtype, noise=noise, key=key)

    def run_prepared(
        self,
        obs: dict[str, np.ndarray],
        image_dtype: str,
        *,
        noise: np.ndarray | None = None,
        key: jax.Array | None = None,
    ) -> np.ndarray:
        """`predict` after `prepare`: a server prepares requests apart and runs several as one batch."""
        if noise is not None:
            noise = np.asarray(noise, np.float32)
            want = self.spec.noise_shape
            if want is not None and tuple(noise.shape[1:]) != want:
                raise BundleError(f"noise must have shape (B, {want[0]}, {want[1]}), got {noise.shape}")
            obs = {**obs, "noise": noise}
        variant = variant_name(image_dtype, noise is not None)
        fn = self._function(variant)
        if key is None:
            self._key, key = jax.random.split(self._key)
        t0 = time.perf_counter()
        out = np.asarray(fn(self.params, obs, key))
        self.latencies_s.append(time.perf_counter() - t0)
        return out

    def warmup(self, batch: int = 1) -> None:
        """Compile the common path once so the first control step is not slow."""
        dummy = {}
        for key, feat in self.spec.input_features.items():
            if feat.type is FeatureType.VISUAL:
                dummy[key] = np.zeros((batch, self.spec.n_obs_steps, *self.info.image_shapes[key]), np.uint8)
            elif feat.type in (FeatureType.STATE, FeatureType.ENV):
                dummy[key] = np.zeros((batch, self.spec.n_obs_steps, *feat.shape), np.float32)
            elif feat.type is FeatureType.LANGUAGE:  # pre-tokenized: warming up needs no instruction
                dummy[key] = np.ones((batch, *feat.shape), language_dtype(key))
        self.predict(dummy)
        self.latencies_s.clear()

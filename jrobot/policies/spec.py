"""What a policy reads and writes, in a JSON form that travels with checkpoints and exported bundles.

numpy only: the runtime reads a bundle's `policy.json` through this module without importing jax.

Conventions (the same as LeRobot's `config.json`, so a LeRobot config converts one to one):
- A `PolicyFeature` has a `type` (STATE, VISUAL, ENV, ACTION, ...) and a `shape`. Visual shapes are
  channel-first (3, H, W) as LeRobot writes them, but jrobot batches carry images channel-last:
  `observation.images.<cam>` is (B, n_obs, H, W, 3) uint8, or float in [0, 1] (`images_chw_to_hwc`
  converts LeRobot-style CHW floats).
- The order of `input_features` fixes the camera order everywhere (ACT token order, Diffusion feature
  concatenation), as in LeRobot.
"""

from __future__ import annotations

import dataclasses
import enum
import json
from collections.abc import Mapping
from typing import Any

import numpy as np

STATE_KEY = "observation.state"
ENV_STATE_KEY = "observation.environment_state"
ACTION_KEY = "action"
IMAGE_PREFIX = "observation.images."


class HyperparameterDict:
    """Dict round trip for a policy's hyperparameter dataclass, strict on the way in.

    Unknown keys are an error, not a silent default: a typo in a config must not pass unnoticed.
    """

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Any:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"{cls.__name__}: unknown keys {unknown}; known: {sorted(names)}")
        return cls(**dict(d))


class FeatureType(enum.StrEnum):
    """LeRobot's `FeatureType`; the string value is what config.json stores."""

    STATE = "STATE"
    VISUAL = "VISUAL"
    ENV = "ENV"
    ACTION = "ACTION"
    REWARD = "REWARD"
    LANGUAGE = "LANGUAGE"


class NormMode(enum.StrEnum):
    """LeRobot's `NormalizationMode`; see `jrobot.policies.normalize` for the formulas."""

    MEAN_STD = "MEAN_STD"
    MIN_MAX = "MIN_MAX"
    QUANTILES = "QUANTILES"
    QUANTILE10 = "QUANTILE10"
    IDENTITY = "IDENTITY"


# The statistics each mode reads, by their LeRobot names.
STATS_FOR_MODE: dict[NormMode, tuple[str, ...]] = {
    NormMode.MEAN_STD: ("mean", "std"),
    NormMode.MIN_MAX: ("min", "max"),
    NormMode.QUANTILES: ("q01", "q99"),
    NormMode.QUANTILE10: ("q10", "q90"),
    NormMode.IDENTITY: (),
}


@dataclasses.dataclass(frozen=True)
class PolicyFeature:
    """One policy input or output: LeRobot's `PolicyFeature` (visual shapes are (C, H, W))."""

    type: FeatureType
    shape: tuple[int, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "type", FeatureType(self.type))
        object.__setattr__(self, "shape", tuple(int(s) for s in self.shape))

    def to_json(self) -> dict[str, Any]:
        return {"type": self.type.value, "shape": list(self.shape)}

    @classmethod
    def from_json(cls, d: Mapping[str, Any], *, key: str = "?") -> PolicyFeature:
        try:
            return cls(FeatureType(d["type"]), tuple(d["shape"]))
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(
                f"policy feature {key!r}: expected {{'type': one of {[t.value for t in FeatureType]}, "
                f"'shape': [ints]}}, got {dict(d)!r}"
            ) from e


def features_from_json(d: Mapping[str, Any], *, where: str = "features") -> dict[str, PolicyFeature]:
    if not isinstance(d, Mapping):
        raise ValueError(
            f"{where}: expected a mapping of feature name -> {{type, shape}}, got {type(d).__name__}"
        )
    return {k: PolicyFeature.from_json(v, key=f"{where}.{k}") for k, v in d.items()}


def features_to_json(features: Mapping[str, PolicyFeature]) -> dict[str, dict[str, Any]]:
    return {k: f.to_json() for k, f in features.items()}


def policy_features_from_dataset(features: Mapping[str, Any]) -> dict[str, PolicyFeature]:
    """Dataset features (jrobot `Feature` objects or info.json dicts) -> policy features, as LeRobot does.

    Mirrors LeRobot's `dataset_to_policy_features`: image/video columns become VISUAL with a (C, H, W)
    shape, `observation.environment_state` ENV, other `observation.*` columns STATE, `action` ACTION;
    bookkeeping columns (timestamp, index, ...) and strings are dropped. Dict order is kept, so the camera
    order is the dataset's.
    """
    from jrobot.features import Feature  # numpy-only, bottom of the import graph

    out: dict[str, PolicyFeature] = {}
    for key, ft in features.items():
        feat = ft if isinstance(ft, Feature) else Feature.from_json(ft, key=key)
        if feat.is_visual:
            h, w, c = feat.hwc_shape
            out[key] = PolicyFeature(FeatureType.VISUAL, (c, h, w))
        elif feat.dtype == "string":
            continue
        elif key == ENV_STATE_KEY:
            out[key] = PolicyFeature(FeatureType.ENV, feat.shape)
        elif key.startswith("observation"):
            out[key] = PolicyFeature(FeatureType.STATE, feat.shape)
        elif key == ACTION_KEY:
            out[key] = PolicyFeature(FeatureType.ACTION, feat.shape)
    return out


def split_features(
    features: Mapping[str, PolicyFeature],
) -> tuple[dict[str, PolicyFeature], dict[str, PolicyFeature]]:
    """(inputs, outputs) the way LeRobot's `make_policy` splits them: ACTION features are outputs."""
    outputs = {k: f for k, f in features.items() if f.type is FeatureType.ACTION}
    inputs = {k: f for k, f in features.items() if k not in outputs}
    return inputs, outputs


def parse_normalization_mapping(
    d: Mapping[str, Any], *, where: str = "normalization_mapping"
) -> dict[str, NormMode]:
    out: dict[str, NormMode] = {}
    for k, v in d.items():
        try:
            out[FeatureType(k).value] = NormMode(str(v).upper())
        except ValueError as e:
            raise ValueError(
                f"{where}: {k!r} -> {v!r} is not a feature type -> normalization mode "
                f"(types {[t.value for t in FeatureType]}, modes {[m.value for m in NormMode]})"
            ) from e
    return out


def images_chw_to_hwc(x: Any) -> Any:
    """(..., C, H, W) -> (..., H, W, C) for numpy or jax arrays: LeRobot layout -> jrobot batch layout."""
    if x.ndim < 3 or x.shape[-3] not in (1, 3):
        raise ValueError(f"expected a channel-first image (..., 3, H, W), got shape {tuple(x.shape)}")
    return x.swapaxes(-3, -2).swapaxes(-2, -1)


@dataclasses.dataclass(frozen=True)
class PolicySpec:
    """The small, JSON-serializable description of a policy (it goes into a bundle's policy.json).

    Everything a consumer outside the policy's own package needs (the data pipeline, the trainer, the
    exporter, the runtime) is a typed field here, so no consumer reads policy-specific config keys:
    - `n_obs_steps`: frames of observation history one call reads (the history axis of every input).
    - `chunk_size`: number of actions one `sample_actions` call returns (ACT: its chunk_size;
      Diffusion: n_action_steps, the executed slice of its trajectory).
    - `n_action_steps`: how many of the returned actions a runtime executes before asking again
      (`sample_actions(...)[:, :n_action_steps]`).
    - `observation_delta_indices` / `action_delta_indices`: frame offsets the data pipeline gathers,
      as LeRobot's config properties (None means only the current frame).
    - `horizon`: length of the action trajectory the model predicts per call (ACT: chunk_size;
      Diffusion: horizon, of which `chunk_size` actions are returned).
    - `noise_shape`: for samplers that start from noise (diffusion, flow matching), the per-example
      shape of the initial noise `sample_actions` accepts as `observation["noise"]`, (B, *noise_shape);
      it can differ from (horizon, action_dim), e.g. a VLA that pads actions to a fixed width. None for
      deterministic policies (ACT), which take no noise.
    - `drop_n_last_frames`: the pipeline samples no window starting in an episode's last n frames
      (LeRobot's `drop_n_last_frames`; 0 keeps every frame).
    - `temporal_ensemble_coeff`: ACT's ensembling coefficient (None: action queue).
    - `config`: the policy's own hyperparameters (`<Config>.to_dict()`), a record for people and for
      the policy's own code (`Config.from_dict(spec.config)`); other consumers use the fields above.
    Language-conditioned policies declare their tokenized instruction as LANGUAGE input features
    (`language_keys`). The spec is hashable (by its JSON form) so it can sit on an NNX module as static
    metadata.
    """

    type: str
    input_features: dict[str, PolicyFeature]
    output_features: dict[str, PolicyFeature]
    normalization_mapping: dict[str, NormMode]
    n_obs_steps: int
    chunk_size: int
    n_action_steps: int
    observation_delta_indices: tuple[int, ...] | None
    action_delta_indices: tuple[int, ...]
    horizon: int
    noise_shape: tuple[int, int] | None = None
    drop_n_last_frames: int = 0
    temporal_ensemble_coeff: float | None = None
    config: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        if ACTION_KEY not in self.output_features:
            raise ValueError(f"policy spec ({self.type}): output_features must contain {ACTION_KEY!r}")
        odi = self.observation_delta_indices
        object.__setattr__(
            self, "observation_delta_indices", None if odi is None else tuple(int(i) for i in odi)
        )
        object.__setattr__(self, "action_delta_indices", tuple(int(i) for i in self.action_delta_indices))
        object.__setattr__(self, "horizon", int(self.horizon))
        object.__setattr__(self, "drop_n_last_frames", int(self.drop_n_last_frames))
        if self.horizon < self.chunk_size:
            raise ValueError(
                f"policy spec ({self.type}): horizon ({self.horizon}) must be >= chunk_size ({self.chunk_size})"
            )
        if self.drop_n_last_frames < 0:
            raise ValueError(
                f"policy spec ({self.type}): drop_n_last_frames must be >= 0, got {self.drop_n_last_frames}"
            )
        if self.noise_shape is not None:
            shape = tuple(int(n) for n in self.noise_shape)
            if len(shape) != 2 or min(shape) < 1:
                raise ValueError(
                    f"policy spec ({self.type}): noise_shape must be (steps, width) of positive ints or None, "
                    f"got {self.noise_shape!r}"
                )
            object.__setattr__(self, "noise_shape", shape)
        object.__setattr__(
            self, "normalization_mapping", parse_normalization_mapping(self.normalization_mapping)
        )
        # held in its JSON form (tuples as lists), so a spec equals itself after a policy.json round trip
        object.__setattr__(self, "config", json.loads(json.dumps(self.config)))

    def __hash__(self) -> int:
        return hash(json.dumps(self.to_json(), sort_keys=True))

    # -- derived views ---------------------------------------------------------------------------
    @property
    def image_keys(self) -> tuple[str, ...]:
        return tuple(k for k, f in self.input_features.items() if f.type is FeatureType.VISUAL)

    @property
    def language_keys(self) -> tuple[str, ...]:
        """LANGUAGE inputs (a VLA's tokenized instruction); empty for policies without language."""
        return tuple(k for k, f in self.input_features.items() if f.type is FeatureType.LANGUAGE)

    @property
    def stochastic(self) -> bool:
        """Whether `sample_actions` draws noise (and so accepts `observation["noise"]`)."""
        return self.noise_shape is not None

    @property
    def state_key(self) -> str | None:
        f = self.input_features.get(STATE_KEY)
        return STATE_KEY if f is not None and f.type is FeatureType.STATE else None

    @property
    def env_state_key(self) -> str | None:
        return next((k for k, f in self.input_features.items() if f.type is FeatureType.ENV), None)

    @property
    def action_dim(self) -> int:
        return int(self.output_features[ACTION_KEY].shape[0])

    def norm_mode(self, key: str) -> NormMode:
        feat = self.input_features.get(key) or self.output_features.get(key)
        if feat is None:
            raise KeyError(f"{key!r} is not a feature of this {self.type} policy")
        return self.normalization_mapping.get(feat.type.value, NormMode.IDENTITY)

    # -- JSON --------------------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "input_features": features_to_json(self.input_features),
            "output_features": features_to_json(self.output_features),
            "normalization_mapping": {k: v.value for k, v in self.normalization_mapping.items()},
            "n_obs_steps": self.n_obs_steps,
            "chunk_size": self.chunk_size,
            "n_action_steps": self.n_action_steps,
            "observation_delta_indices": None
            if self.observation_delta_indices is None
            else list(self.observation_delta_indices),
            "action_delta_indices": list(self.action_delta_indices),
            "horizon": self.horizon,
            "noise_shape": None if self.noise_shape is None else list(self.noise_shape),
            "drop_n_last_frames": self.drop_n_last_frames,
            "temporal_ensemble_coeff": self.temporal_ensemble_coeff,
            "config": self.config,
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> PolicySpec:
        required = (
            "type",
            "input_features",
            "output_features",
            "normalization_mapping",
            "n_obs_steps",
            "chunk_size",
            "n_action_steps",
            "action_delta_indices",
            "horizon",
            "noise_shape",
            "drop_n_last_frames",
        )
        missing = [k for k in required if k not in d]
        if missing:
            raise ValueError(f"policy spec: missing keys {missing} (got {sorted(d)})")
        return cls(
            type=str(d["type"]),
            input_features=features_from_json(d["input_features"], where="input_features"),
            output_features=features_from_json(d["output_features"], where="output_features"),
            normalization_mapping=d["normalization_mapping"],
            n_obs_steps=int(d["n_obs_steps"]),
            chunk_size=int(d["chunk_size"]),
            n_action_steps=int(d["n_action_steps"]),
            observation_delta_indices=d.get("observation_delta_indices"),
            action_delta_indices=d["action_delta_indices"],
            horizon=int(d["horizon"]),
            noise_shape=None if d["noise_shape"] is None else tuple(d["noise_shape"]),
            drop_n_last_frames=int(d["drop_n_last_frames"]),
            temporal_ensemble_coeff=d.get("temporal_ensemble_coeff"),
            config=dict(d.get("config", {})),
        )


def stats_to_json(stats: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, list]]:
    """Stats dict (feature -> stat -> array) as nested lists, for policy.json / meta-like files."""
    return {k: {s: np.asarray(v).tolist() for s, v in d.items()} for k, d in stats.items()}


def stats_from_json(d: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, np.ndarray]]:
    return {k: {s: np.asarray(v, dtype=np.float32) for s, v in sd.items()} for k, sd in d.items()}

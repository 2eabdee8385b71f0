"""The interface every jrobot policy module implements, and the helpers the trainer/exporter share.

A policy of type `<t>` is the module `jrobot.policies.<t>` (no central registry: adding a policy means
adding a module). It exposes:

    POLICY_TYPE: str
    Config                                   dataclass; .to_dict(), .from_dict(d), .from_lerobot(d)
    make_spec(config, input_features, output_features) -> PolicySpec
    build(config, features, stats, *, seed=0, load_pretrained_backbone=True) -> nnx.Module
    loss(model, batch, rng) -> (scalar loss, dict of scalar metrics)        train mode
    sample_actions(model, observation, rng) -> (B, chunk, A) actions in dataset units   eval mode
    from_lerobot(path) -> ImportedPolicy
    param_group(path: tuple) -> str          optimizer group of a parameter ("default", "backbone", ...)
    optimizer_preset(config) -> OptimizerPreset

The model is an `nnx.Module` carrying `.config` and `.spec`; normalization statistics live inside it
(`NormStat` variables), so `sample_actions` takes raw observations and returns dataset units.

Batches (design.md): `observation.state` (B, n_obs, S) float32, `observation.images.<cam>`
(B, n_obs, H, W, 3) uint8 (or float in [0, 1]), `action` (B, horizon, A) float32, `action_is_pad`
(B, horizon) bool.

Parameter partition: `nnx.Param` is trainable; `Buffer` (frozen BN statistics, fixed sinusoid tables),
`NormStat` and `nnx.BatchStat` are not. `param_labels` labels trainable leaves with the policy's
`param_group` (e.g. ACT's `model.backbone.*` -> "backbone" for its own learning rate). BatchStat
variables (trainable batch norm, e.g. Diffusion at LeRobot HEAD) change during train-mode forwards.

Also here: `import_lerobot(path)` (type read from config.json), and `flat_arrays(model)` /
`pure_merge_fn(model)` to turn a model into plain `{"a/b/kernel": array}` dicts and back, which is
what safetensors files and `jax.export` need.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable, Mapping
from types import ModuleType
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jrobot.policies.layers import Buffer, NormStat
from jrobot.policies.spec import FeatureType, PolicyFeature, PolicySpec, policy_features_from_dataset
from jrobot.policies.statedict import LoadReport

REQUIRED_ATTRS = (
    "POLICY_TYPE",
    "Config",
    "make_spec",
    "build",
    "loss",
    "sample_actions",
    "from_lerobot",
    "param_group",
    "optimizer_preset",
)

# Filters for nnx.state / nnx.split / nnx.Optimizer(wrt=...).
TRAINABLE = nnx.Param
FROZEN = nnx.Not(nnx.Param)


def load_policy_module(policy_type: str) -> ModuleType:
    """`jrobot.policies.<policy_type>`, checked to implement the interface above."""
    if not policy_type.isidentifier():
        raise ValueError(f"policy type {policy_type!r} is not a valid module name")
    try:
        mod = importlib.import_module(f"jrobot.policies.{policy_type}")
    except ModuleNotFoundError as e:
        if e.name == f"jrobot.policies.{policy_type}":
            raise ValueError(
                f"unknown policy type {policy_type!r}: no module jrobot.policies.{policy_type}"
            ) from e
        raise
    missing = [a for a in REQUIRED_ATTRS if not hasattr(mod, a)]
    if missing:
        raise TypeError(
            f"jrobot.policies.{policy_type} does not implement the policy interface: lacks {missing}"
        )
    return mod


def import_lerobot(path: Any) -> ImportedPolicy:
    """Import any supported LeRobot policy folder: the type comes from its config.json."""
    from jrobot.policies.lerobot_checkpoint import read_config, resolve_checkpoint_dir

    folder = resolve_checkpoint_dir(path)
    policy_type = read_config(folder)[0]
    return load_policy_module(policy_type).from_lerobot(folder)


@dataclasses.dataclass
class ImportedPolicy:
    """Result of importing a LeRobot checkpoint: the model (weights + stats), its spec, and provenance."""

    model: nnx.Module
    spec: PolicySpec
    stats: dict[str, dict[str, np.ndarray]]
    report: LoadReport
    notes: list[str]


@dataclasses.dataclass(frozen=True)
class OptimizerPreset:
    """A policy's LeRobot optimizer preset, in a form the trainer turns into optax.

    name "adamw": decoupled weight decay; "adam": torch Adam's coupled L2 (add_decayed_weights before
    scale_by_adam). `group_lr` overrides the learning rate of a `param_group` (e.g. {"backbone": 1e-5}).
    `scheduler` None means constant; otherwise a dict such as {"name": "cosine", "num_warmup_steps": 500}.
    """

    name: str
    lr: float
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    weight_decay: float = 0.0
    grad_clip_norm: float = 10.0
    group_lr: dict[str, float] = dataclasses.field(default_factory=dict)
    scheduler: dict[str, Any] | None = None


def as_policy_features(features: Mapping[str, Any]) -> dict[str, PolicyFeature]:
    """Accept policy features (objects or {type, shape} dicts) or dataset features (jrobot `Feature`s or
    info.json entries with a `dtype`), and return policy features."""
    if all(isinstance(f, PolicyFeature) for f in features.values()):
        return dict(features)
    if all(isinstance(f, Mapping) and "type" in f for f in features.values()):
        return {k: PolicyFeature.from_json(f, key=k) for k, f in features.items()}
    return policy_features_from_dataset(features)


def path_names(path: tuple) -> tuple[str | int, ...]:
    """A jax tree path over an nnx.State (or nested dicts) as plain names, without Variable internals."""
    out: list[str | int] = []
    for k in path:
        if isinstance(k, jax.tree_util.DictKey):
            out.append(k.key)
        elif isinstance(k, jax.tree_util.SequenceKey):
            out.append(k.idx)
        elif isinstance(k, jax.tree_util.GetAttrKey):
            if k.name in ("value", "raw_value"):
                continue
            out.append(k.name)
        else:
            out.append(str(k))
    return tuple(out)


def param_labels(params: Any, group_fn: Callable[[tuple], str]) -> Any:
    """Same-structure tree of group names for `optax.multi_transform` (params from `nnx.state(model, nnx.Param)`)."""
    return jax.tree_util.tree_map_with_path(lambda p, _: group_fn(path_names(p)), params)


def count_params(model: nnx.Module, kind: Any = nnx.Param) -> int:
    """Number of scalars in the variables selected by `kind` (default: trainable parameters)."""
    return int(sum(int(np.prod(x.shape)) for x in jax.tree.leaves(nnx.state(model, kind))))


def flat_key(path: tuple) -> str:
    """A variable's path as one string, "/"-joined (feature names keep their dots)."""
    return "/".join(map(str, path))


def flat_arrays(model: nnx.Module, kind: Any = ...) -> dict[str, jax.Array]:
    """Every variable (or those selected by `kind`) as {"model/backbone/conv1/kernel": array, ...}.

    Plain dicts of arrays are what safetensors files and `jax.export` argument trees can hold.
    """
    state = nnx.state(model) if kind is ... else nnx.state(model, kind)
    out = {flat_key(path): var.get_value() for path, var in nnx.to_flat_state(state)}
    return out


def pure_merge_fn(model: nnx.Module) -> Callable[[Mapping[str, jax.Array]], nnx.Module]:
    """`merge(flat_arrays)` -> a module with this model's structure and the given values.

    With it an inference function becomes pure in plain arrays, e.g. for `jax.export`:
        merge = pure_merge_fn(model)
        fn = lambda params, obs: act.sample_actions(merge(params), obs)
        jax.export.export(jax.jit(fn))(flat_arrays(model), example_obs)
    """
    graphdef, state = nnx.split(model)
    template = list(nnx.to_flat_state(state))
    keys = [flat_key(path) for path, _ in template]
    if len(set(keys)) != len(keys):
        raise ValueError("variable paths collide once joined with '/'")

    def merge(flat: Mapping[str, jax.Array]) -> nnx.Module:
        missing = [k for k in keys if k not in flat]
        if missing:
            raise KeyError(
                f"pure_merge_fn: missing arrays {missing[:10]}{' ...' if len(missing) > 10 else ''}"
            )
        items = [(path, var.replace(flat[k])) for (path, var), k in zip(template, keys, strict=True)]
        return nnx.merge(graphdef, nnx.from_flat_state(items))

    return merge


def frozen_kinds() -> tuple[type, ...]:
    """Variable types that are saved but not trained."""
    return (Buffer, NormStat, nnx.BatchStat)


def image_to_unit_float(x: jnp.ndarray, key: str = "image") -> jnp.ndarray:
    """uint8 images -> float32 in [0, 1] (x / 255); float images are taken as already in [0, 1]."""
    if x.dtype == jnp.uint8:
        return x.astype(jnp.float32) / 255.0
    if jnp.issubdtype(x.dtype, jnp.floating):
        return x.astype(jnp.float32)
    raise TypeError(f"{key}: images must be uint8 or float in [0, 1], got {x.dtype}")


def current_frame(x: jnp.ndarray, feature: PolicyFeature, key: str, n_obs_steps: int = 1) -> jnp.ndarray:
    """Drop the observation-history axis of a single-step policy's input: (B, 1, *f) -> (B, *f).

    Also accepts (B, *f) without the history axis. Images are checked to be channel-last.
    """
    fdim = 3 if feature.type is FeatureType.VISUAL else len(feature.shape)
    if x.ndim == fdim + 2:
        if x.shape[1] != n_obs_steps:
            raise ValueError(
                f"{key}: history axis has {x.shape[1]} steps, this policy reads n_obs_steps={n_obs_steps}"
            )
        x = x[:, -1]
    elif x.ndim != fdim + 1:
        raise ValueError(
            f"{key}: expected (B, n_obs, ...) or (B, ...) with {fdim} feature axes, got shape {x.shape}"
        )
    if feature.type is FeatureType.VISUAL and x.shape[-1] != 3:
        hint = (
            " (channel-first? convert with jrobot.policies.spec.images_chw_to_hwc)"
            if x.shape[-3] == 3
            else ""
        )
        raise ValueError(f"{key}: images must be channel-last (..., H, W, 3), got shape {x.shape}{hint}")
    return x


def build_from_lerobot(
    path: Any,
    *,
    policy_type: str,
    config_cls: Any,
    make_spec: Callable[..., PolicySpec],
    policy_cls: Callable[..., nnx.Module],
) -> ImportedPolicy:
    """The import routine every policy shares: a LeRobot `pretrained_model` folder -> jrobot model.

    The architecture comes from the checkpoint's own config.json (`config_cls.from_lerobot`). Every
    tensor in model.safetensors must map to a jrobot leaf and vice versa (`StateDictError` otherwise,
    listing the keys). Stats come from the processor files (or pre-0.4 buffers); a feature without stats
    passes through unnormalized, as in LeRobot, with a warning.
    """
    import warnings

    from jrobot.policies.lerobot_checkpoint import read_lerobot_checkpoint
    from jrobot.policies.spec import ACTION_KEY, STATS_FOR_MODE
    from jrobot.policies.statedict import load_state_dict

    ckpt = read_lerobot_checkpoint(path, expected_type=policy_type)
    config, notes = config_cls.from_lerobot(ckpt.config)
    config = dataclasses.replace(
        config, normalization_mapping={k: v.value for k, v in ckpt.normalization_mapping.items()}
    )
    spec = make_spec(config, ckpt.input_features, ckpt.output_features)
    used = [k for k in (spec.state_key, spec.env_state_key, *spec.image_keys) if k] + [ACTION_KEY]
    for k in used:
        mode = spec.norm_mode(k)
        if any(s not in ckpt.stats.get(k, {}) for s in STATS_FOR_MODE[mode]):
            notes.append(
                f"{ckpt.path}: no {mode.value} stats for {k!r}; it passes through unnormalized (as in LeRobot)"
            )
    model = nnx.eval_shape(
        lambda: policy_cls(config, spec, ckpt.stats, rngs=nnx.Rngs(0), missing_stats="identity", eps=ckpt.eps)
    )
    report = load_state_dict(model, ckpt.state_dict, source=str(ckpt.path / "model.safetensors"))
    model.normalizer.set_stats(ckpt.stats, {**spec.input_features, **spec.output_features})
    flat = nnx.to_flat_state(nnx.state(model))
    left = [".".join(map(str, p)) for p, v in flat if isinstance(v.get_value(), jax.ShapeDtypeStruct)]
    if left:
        raise RuntimeError(f"{ckpt.path}: these model variables received no value: {left}")
    for note in notes:
        warnings.warn(note, stacklevel=3)
    return ImportedPolicy(
        model=model, spec=spec, stats=model.normalizer.stats_dict(), report=report, notes=ckpt.notes + notes
    )

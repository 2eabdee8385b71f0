"""The policy contract: what a policy type provides, checked once, plus helpers the trainer/exporter share.

Why a `typing.Protocol` and typed spec fields: the trainer, the exporter and the runtime handle every
policy type the same way, so what they may rely on is written down in one place (`PolicyModule`) and
checked when the type is looked up, with an error naming what is missing, instead of being probed with
`hasattr` or `inspect.signature` at each use. What they need to know about a particular policy (noise
shape, horizon, frames to drop, history length) is a typed field of its `PolicySpec`, not a key of its
config dict.

A policy of type `<t>` is the package `jrobot.policies.<t>` (no central registry: adding a policy means
adding a package), laid out by job: `config` (the hyperparameter dataclass and its LeRobot mapping),
`model` (the NNX modules), `policy` (the entry points below); its `__init__` re-exports the contract.

The model is an `nnx.Module` carrying `.config` and `.spec`; normalization statistics live inside it
(`NormStat` variables), so `sample_actions` takes raw observations and returns dataset units.

Batches (design.md): `observation.state` (B, n_obs, S) float32, `observation.images.<cam>`
(B, n_obs, H, W, 3) uint8 (or float in [0, 1]), `action` (B, horizon, A) float32, `action_is_pad`
(B, horizon) bool; language-conditioned policies also read their LANGUAGE input features (token ids
and mask). A stochastic policy (`spec.noise_shape` set) also accepts `observation["noise"]`
(B, *noise_shape), so an exported or compared run can be made exact.

Parameter partition: `nnx.Param` is trainable; `Buffer` (frozen BN statistics, fixed sinusoid tables),
`NormStat` and `nnx.BatchStat` are not. `param_labels` labels trainable leaves with the policy's
`param_group` (e.g. ACT's `model.backbone.*` -> "backbone" for its own learning rate). BatchStat
variables (trainable batch norm, e.g. Diffusion at LeRobot HEAD) change during train-mode forwards.

Also here: `flat_arrays(model)` / `pure_merge_fn(model)` to turn a model into plain
`{"a/b/kernel": array}` dicts and back, which is what safetensors files and `jax.export` need, and the
input helpers the policies share. Importing LeRobot checkpoints lives in `jrobot.policies.lerobot`.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable, Mapping
from types import ModuleType
from typing import Any, Protocol, cast, runtime_checkable

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jrobot.policies.ema import EMAConfig
from jrobot.policies.lerobot.statedict import LoadReport
from jrobot.policies.spec import FeatureType, PolicyFeature, PolicySpec, policy_features_from_dataset

# Filters for nnx.state / nnx.split / nnx.Optimizer(wrt=...).
TRAINABLE = nnx.Param


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


@runtime_checkable
class PolicyConfig(Protocol):
    """A policy's hyperparameter dataclass (frozen, hashable): the run config and checkpoints hold its dict."""

    def to_dict(self) -> dict[str, Any]: ...

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> PolicyConfig: ...

    @classmethod
    def from_lerobot(cls, d: Mapping[str, Any]) -> tuple[PolicyConfig, list[str]]:
        """From a LeRobot config.json dict: (config, notes on keys ignored or defaulted)."""
        ...


@runtime_checkable
class PolicyModule(Protocol):
    """What the package `jrobot.policies.<t>` provides; `load_policy_module` checks every member.

    `ema_preset` is part of the contract for every policy, returning None when the policy keeps no EMA of
    its parameters, so the trainer asks instead of guessing from the module's attributes; likewise
    `inference_model` returns the model itself when export should store it as trained.
    """

    POLICY_TYPE: str
    Config: type[PolicyConfig]

    def make_spec(
        self,
        config: Any,
        input_features: Mapping[str, PolicyFeature],
        output_features: Mapping[str, PolicyFeature],
    ) -> PolicySpec:
        """The spec for these features, after checking the policy can read them."""
        ...

    def build(
        self,
        config: Any,
        features: Mapping[str, Any],
        stats: Mapping[str, Mapping[str, Any]] | None,
        *,
        seed: int = 0,
        load_pretrained_backbone: bool = True,
    ) -> nnx.Module:
        """A freshly initialized model from (config, dataset or policy features, dataset stats)."""
        ...

    def loss(
        self, model: Any, batch: Mapping[str, Any], rng: jax.Array | None
    ) -> tuple[jax.Array, dict[str, jax.Array]]:
        """(scalar loss, dict of scalar metrics), train mode."""
        ...

    def sample_actions(
        self, model: Any, observation: Mapping[str, Any], rng: jax.Array | None = None
    ) -> jax.Array:
        """(B, spec.chunk_size, A) actions in dataset units, eval mode; `observation["noise"]` when stochastic."""
        ...

    def from_lerobot(self, path: Any) -> ImportedPolicy:
        """Import a LeRobot `pretrained_model` folder of this type."""
        ...

    def param_group(self, path: tuple) -> str:
        """Optimizer group of a parameter ("default", "backbone", ...)."""
        ...

    def optimizer_preset(self, config: Any) -> OptimizerPreset:
        """The policy's LeRobot optimizer preset."""
        ...

    def ema_preset(self, config: Any) -> EMAConfig | None:
        """The EMA schedule the trainer keeps of the parameters, or None for no EMA."""
        ...

    def inference_model(self, model: Any) -> nnx.Module:
        """What export traces and stores: `model`, or a copy computing the same with its weights laid
        out for batch-1 inference (`jrobot.policies.rows_layout`, `jrobot.policies.winograd`); `model`
        itself is left as it is."""
        ...


def _protocol_members(proto: type) -> tuple[str, ...]:
    """The members a Protocol declares: annotated attributes, then methods, in declaration order."""
    names = list(getattr(proto, "__annotations__", {}))
    names += [n for n, v in vars(proto).items() if not n.startswith("_") and callable(v) and n not in names]
    return tuple(names)


POLICY_MEMBERS: tuple[str, ...] = _protocol_members(PolicyModule)


def check_policy_module(module: ModuleType, policy_type: str) -> PolicyModule:
    """`module` as a `PolicyModule`, or a TypeError naming every member it lacks or gets wrong."""
    where = module.__name__
    missing = [m for m in POLICY_MEMBERS if m not in vars(module)]
    if missing:
        raise TypeError(f"{where} does not implement the policy interface: lacks {missing}")
    not_callable = [
        m for m in POLICY_MEMBERS if m not in PolicyModule.__annotations__ and not callable(vars(module)[m])
    ]
    if not_callable:
        raise TypeError(f"{where} does not implement the policy interface: {not_callable} are not callable")
    if policy_type != module.POLICY_TYPE:
        raise TypeError(f"{where}.POLICY_TYPE is {module.POLICY_TYPE!r}, expected {policy_type!r}")
    if not isinstance(module.Config, type):
        raise TypeError(f"{where}.Config must be the config class, got {module.Config!r}")
    return cast(PolicyModule, module)


def load_policy_module(policy_type: str) -> PolicyModule:
    """`jrobot.policies.<policy_type>`, checked to implement `PolicyModule`."""
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
    return check_policy_module(mod, policy_type)


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


def swap_layers(module: nnx.Module, twin: Callable[[Any], nnx.Module | None]) -> int:
    """Replace, in place, every layer under `module` (a module attribute or an `nnx.List` item) for
    which `twin(layer)` returns a module by that module; returns how many. Export uses it to lay
    weights out for inference (`rows_layout`, `winograd`)."""
    swapped = 0
    for _, node in list(nnx.iter_graph(module)):
        if isinstance(node, nnx.List):
            slots = list(enumerate(node))
            put = node.__setitem__
        elif isinstance(node, nnx.Module):
            slots = list(vars(node).items())
            put = lambda name, layer, node=node: setattr(node, name, layer)  # noqa: E731
        else:
            continue
        for slot, child in slots:
            replacement = twin(child)
            if replacement is not None:
                put(slot, replacement)
                swapped += 1
    return swapped


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

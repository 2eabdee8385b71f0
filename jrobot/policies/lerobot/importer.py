"""A LeRobot `pretrained_model` folder -> a jrobot model with the same weights and statistics.

`build_from_lerobot` is the routine every policy's `from_lerobot` delegates to (the policy supplies its
config class, `make_spec` and model class); `import_lerobot` picks the policy type from config.json.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
from flax import nnx

from jrobot.policies.base import ImportedPolicy, PolicyModule, load_policy_module
from jrobot.policies.lerobot.checkpoint import (
    CONFIG_FILE,
    LeRobotCheckpoint,
    naming_file,
    read_config,
    read_lerobot_checkpoint,
    resolve_checkpoint_dir,
)
from jrobot.policies.lerobot.statedict import load_state_dict
from jrobot.policies.spec import ACTION_KEY, STATS_FOR_MODE, PolicySpec


def import_lerobot(path: Any, **options: Any) -> ImportedPolicy:
    """Import any supported LeRobot policy folder: the type comes from its config.json.

    `options` (those not None) go to the policy's `from_lerobot`, e.g. SmolVLA's `vlm` (the VLM folder)
    and `precision`; a policy whose importer takes no such option gets a clear error naming it.
    """
    import inspect

    folder = resolve_checkpoint_dir(path)
    module = checkpoint_policy_module(folder)
    importer = module.from_lerobot
    options = {k: v for k, v in options.items() if v is not None}
    accepted = inspect.signature(importer).parameters
    unknown = [k for k in options if k not in accepted]
    if unknown:
        raise ValueError(
            f"{folder}: a {module.POLICY_TYPE!r} checkpoint takes no {unknown} option (VLA checkpoints do)"
        )
    return importer(folder, **options)


def checkpoint_policy_module(folder: Path) -> PolicyModule:
    """The jrobot policy module for the policy type a LeRobot folder's config.json names."""
    policy_type = read_config(folder)[0]
    with naming_file(folder / CONFIG_FILE):  # a type jrobot has no policy for
        return load_policy_module(policy_type)


def build_from_lerobot(
    path: Any,
    *,
    policy_type: str,
    config_cls: Any,
    make_spec: Callable[..., PolicySpec],
    policy_cls: Callable[..., nnx.Module],
    configure: Callable[[Any, LeRobotCheckpoint], tuple[Any, dict[str, Any], list[str]]] | None = None,
    ignore: tuple[str, ...] = (),
) -> ImportedPolicy:
    """The import routine every policy shares: a LeRobot `pretrained_model` folder -> jrobot model.

    The architecture comes from the checkpoint's own config.json (`config_cls.from_lerobot`). Every
    tensor in model.safetensors must map to a jrobot leaf and vice versa (`StateDictError` otherwise,
    listing the keys). Stats come from the processor files (or pre-0.4 buffers); a feature without stats
    passes through unnormalized, as in LeRobot, with a warning.

    `configure(config, ckpt) -> (config, extra policy_cls kwargs, notes)` lets a policy complete its
    config from outside the checkpoint (SmolVLA: the VLM folder's architecture and tokenizer);
    `ignore`: regular expressions of state_dict keys the policy has no use for (reported, not loaded).
    """
    ckpt = read_lerobot_checkpoint(path, expected_type=policy_type)
    with naming_file(ckpt.path / CONFIG_FILE):  # a hyperparameter of the wrong type or out of range
        config, notes = config_cls.from_lerobot(ckpt.config)
        config = dataclasses.replace(
            config, normalization_mapping={k: v.value for k, v in ckpt.normalization_mapping.items()}
        )
    extra: dict[str, Any] = {}
    if configure is not None:
        config, extra, more = configure(config, ckpt)
        notes += more
    with naming_file(ckpt.path / CONFIG_FILE):  # features the policy cannot read
        spec = make_spec(config, ckpt.input_features, ckpt.output_features)
    used = [k for k in (spec.state_key, spec.env_state_key, *spec.image_keys) if k] + [ACTION_KEY]
    for k in used:
        mode = spec.norm_mode(k)
        if any(s not in ckpt.stats.get(k, {}) for s in STATS_FOR_MODE[mode]):
            notes.append(
                f"{ckpt.path}: no {mode.value} stats for {k!r}; it passes through unnormalized (as in LeRobot)"
            )
    model = nnx.eval_shape(
        lambda: policy_cls(
            config, spec, ckpt.stats, rngs=nnx.Rngs(0), missing_stats="identity", eps=ckpt.eps, **extra
        )
    )
    report = load_state_dict(
        model, ckpt.state_dict, ignore=ignore, source=str(ckpt.path / "model.safetensors")
    )
    if report.ignored:
        notes.append(f"{ckpt.path}: {report.ignored} left out (the {policy_type} policy never uses them)")
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

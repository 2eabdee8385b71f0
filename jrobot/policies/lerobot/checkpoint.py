"""Read a LeRobot `pretrained_model` folder without torch: config, weights and normalization stats.

Layouts understood:
- LeRobot >= 0.4: `config.json`, `model.safetensors` (the policy state_dict), and the processors:
  `policy_preprocessor.json` whose `normalizer_processor` step names a safetensors file of flat keys
  `"<feature>.<stat>"` (e.g. `observation.state.mean`), and `policy_postprocessor.json` whose
  `unnormalizer_processor` step does the same for the outputs.
- Before 0.4: the stats live inside `model.safetensors` as `normalize_inputs.buffer_<key with . -> _>.<stat>`,
  `normalize_targets.*` and `unnormalize_outputs.*`; they are taken out of the state dict here.
- Very old configs (`input_shapes` / `output_shapes` / `*_normalization_modes` instead of
  `input_features` / `normalization_mapping`) are converted.
The folder may be the `pretrained_model` directory itself or a training checkpoint directory holding it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from jrobot.paths import inside
from jrobot.policies.spec import (
    ACTION_KEY,
    ENV_STATE_KEY,
    FeatureType,
    NormMode,
    PolicyFeature,
    features_from_json,
    parse_normalization_mapping,
)

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
PREPROCESSOR_FILE = "policy_preprocessor.json"
POSTPROCESSOR_FILE = "policy_postprocessor.json"
LEGACY_NORM_PREFIXES = ("normalize_inputs.", "normalize_targets.", "unnormalize_outputs.")

# Keys of LeRobot's `PreTrainedConfig` base (and of pre-0.2 configs) that are not policy hyperparameters.
LEROBOT_BASE_CONFIG_KEYS = frozenset(
    {
        "type",
        "input_features",
        "output_features",
        "device",
        "use_amp",
        "use_peft",
        "push_to_hub",
        "repo_id",
        "private",
        "tags",
        "license",
        "pretrained_path",
        "input_shapes",
        "output_shapes",
        "input_normalization_modes",
        "output_normalization_modes",
    }
)


@dataclasses.dataclass
class LeRobotCheckpoint:
    """Everything a jrobot importer needs from a LeRobot policy folder, as plain numpy/JSON."""

    path: Path
    policy_type: str
    config: dict[str, Any]
    input_features: dict[str, PolicyFeature]
    output_features: dict[str, PolicyFeature]
    normalization_mapping: dict[str, NormMode]
    state_dict: dict[str, np.ndarray]
    stats: dict[str, dict[str, np.ndarray]]
    stats_source: str  # "processor", "legacy_state_dict" or "none"
    eps: float = 1e-8
    notes: list[str] = dataclasses.field(default_factory=list)


def resolve_checkpoint_dir(path: str | os.PathLike) -> Path:
    """The folder holding config.json + model.safetensors (`path` itself or `path/pretrained_model`)."""
    p = Path(path).expanduser()
    if (p / CONFIG_FILE).is_file():
        return p
    if (p / "pretrained_model" / CONFIG_FILE).is_file():
        return p / "pretrained_model"
    raise FileNotFoundError(
        f"{p} is not a LeRobot policy folder: no {CONFIG_FILE} in it or in {p / 'pretrained_model'}"
    )


@contextlib.contextmanager
def naming_file(path: Path) -> Iterator[None]:
    """What a stranger's file provokes in the code that reads it (a value of the wrong type, an absurd
    one) as ValueError naming the file: this reader's error for a bad checkpoint."""
    try:
        yield
    except (ValueError, TypeError, LookupError, AttributeError, OverflowError) as e:
        if type(e) is ValueError and str(path) in str(e):
            raise
        detail = str(e) if type(e) is ValueError else f"{type(e).__name__}: {e}"
        raise ValueError(f"{path}: {detail}") from e


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:  # (nested too deep)
        raise ValueError(f"{path}: invalid JSON ({e})") from e


def load_safetensors(path: Path) -> dict[str, np.ndarray]:
    """Every tensor of a safetensors file; a corrupt one raises ValueError naming it."""
    import ml_dtypes  # noqa: F401  (registers bfloat16 with numpy: bf16 checkpoints load as such)
    from safetensors.numpy import load_file

    try:
        exists = path.is_file()
    except OSError as e:  # a name a processor file gave that is too long for the file system
        raise ValueError(f"{path}: unusable path ({e.strerror})") from e
    if not exists:
        raise FileNotFoundError(f"{path} does not exist")
    try:
        return dict(load_file(str(path)))
    except Exception as e:  # safetensors raises its own error types for corrupt headers
        raise ValueError(f"{path}: cannot read safetensors ({e})") from e


def _type_for_key(key: str) -> FeatureType:
    if key == ACTION_KEY:
        return FeatureType.ACTION
    if key == ENV_STATE_KEY:
        return FeatureType.ENV
    if key.startswith("observation.image"):
        return FeatureType.VISUAL
    if key.startswith("observation"):
        return FeatureType.STATE
    raise ValueError(f"cannot infer a feature type for {key!r}")


def _features_from_old_config(cfg: Mapping[str, Any], where: Path) -> tuple[dict, dict, dict[str, NormMode]]:
    inputs = {k: PolicyFeature(_type_for_key(k), tuple(v)) for k, v in cfg.get("input_shapes", {}).items()}
    outputs = {k: PolicyFeature(_type_for_key(k), tuple(v)) for k, v in cfg.get("output_shapes", {}).items()}
    by_type: dict[str, NormMode] = {}
    modes = {**cfg.get("input_normalization_modes", {}), **cfg.get("output_normalization_modes", {})}
    for key, feat in {**inputs, **outputs}.items():
        mode = NormMode(str(modes.get(key, "identity")).upper())
        prev = by_type.setdefault(feat.type.value, mode)
        if prev is not mode:
            raise ValueError(
                f"{where}: features of type {feat.type.value} use different normalization modes "
                f"({prev.value} and {mode.value} for {key!r}); jrobot maps modes per feature type"
            )
    return inputs, outputs, by_type


def read_config(
    folder: Path, expected_type: str | None = None
) -> tuple[str, dict, dict, dict, dict[str, NormMode]]:
    """(policy type, raw config, input features, output features, normalization mapping)."""
    path = folder / CONFIG_FILE
    cfg = _read_json(path)
    if not isinstance(cfg, dict):
        raise ValueError(f"{path}: expected a JSON object")
    ptype = cfg.get("type", expected_type)
    if ptype is None:
        raise ValueError(f"{path}: no 'type' key; pass the policy type explicitly")
    if expected_type is not None and ptype != expected_type:
        raise ValueError(f"{path}: this is a {ptype!r} policy, not {expected_type!r}")
    with naming_file(path):
        if "input_features" in cfg:
            inputs = features_from_json(cfg["input_features"], where=f"{path}:input_features")
            outputs = features_from_json(cfg.get("output_features", {}), where=f"{path}:output_features")
            mapping = parse_normalization_mapping(
                cfg.get("normalization_mapping", {}), where=f"{path}:normalization_mapping"
            )
        elif "input_shapes" in cfg:
            inputs, outputs, mapping = _features_from_old_config(cfg, path)
        else:
            raise ValueError(f"{path}: neither 'input_features' nor 'input_shapes' present")
    if ACTION_KEY not in outputs:
        raise ValueError(f"{path}: output features {sorted(outputs)} lack {ACTION_KEY!r}")
    return str(ptype), cfg, inputs, outputs, mapping


def _split_flat_stats(flat: Mapping[str, np.ndarray], source: str) -> dict[str, dict[str, np.ndarray]]:
    out: dict[str, dict[str, np.ndarray]] = {}
    for key, value in flat.items():
        feature, dot, stat = key.rpartition(".")
        if not dot:
            raise ValueError(f"{source}: stats key {key!r} is not '<feature>.<stat>'")
        out.setdefault(feature, {})[stat] = np.asarray(value, np.float32)
    return out


def _processor_step(folder: Path, file: str, registry_name: str) -> tuple[dict | None, Path | None]:
    path = folder / file
    if not path.is_file():
        return None, None
    pipeline = _read_json(path)
    steps = pipeline.get("steps", []) if isinstance(pipeline, dict) else None
    if not isinstance(steps, list) or not all(isinstance(step, dict) for step in steps):
        raise ValueError(f"{path}: expected {{'steps': [{{'registry_name': ..., 'config': {{...}}}}, ...]}}")
    for step in steps:
        if step.get("registry_name") == registry_name:
            config, state_file = step.get("config", {}), step.get("state_file")
            if not isinstance(config, dict) or not isinstance(state_file, str | None):
                raise ValueError(
                    f"{path}: step {registry_name!r} needs a 'config' object and a 'state_file' name"
                )
            if not state_file:
                return config, None
            try:
                state_path = inside(folder, state_file)  # the checkpoint's own file, never one outside it
            except (ValueError, OSError) as e:  # a NUL byte, a name too long
                raise ValueError(f"{path}: unusable state_file {state_file!r} ({e})") from e
            if state_path is None:
                raise ValueError(f"{path}: state_file {state_file!r} leads outside {folder}; refused")
            return config, state_path
    return None, None


def read_processor_stats(
    folder: Path,
) -> tuple[dict[str, dict[str, np.ndarray]] | None, dict | None, float, list[str]]:
    """(stats or None when no processor files, the normalizer's norm_map or None, eps, notes)."""
    notes: list[str] = []
    pre_cfg, pre_file = _processor_step(folder, PREPROCESSOR_FILE, "normalizer_processor")
    post_cfg, post_file = _processor_step(folder, POSTPROCESSOR_FILE, "unnormalizer_processor")
    if pre_cfg is None and post_cfg is None:
        return None, None, 1e-8, notes
    stats: dict[str, dict[str, np.ndarray]] = {}
    if pre_file is not None:
        stats.update(_split_flat_stats(load_safetensors(pre_file), str(pre_file)))
    if post_file is not None:
        post = _split_flat_stats(load_safetensors(post_file), str(post_file))
        for key, d in post.items():
            if key in stats and any(
                s in stats[key] and not np.array_equal(stats[key][s], v) for s, v in d.items()
            ):
                notes.append(
                    f"{post_file.name}: stats for {key!r} differ from the preprocessor's; "
                    "the postprocessor's are used (they define the actions the policy outputs)"
                )
            stats.setdefault(key, {}).update(d)
    cfg = pre_cfg if pre_cfg is not None else post_cfg
    where = folder / (PREPROCESSOR_FILE if pre_cfg is not None else POSTPROCESSOR_FILE)
    eps, norm_map = cfg.get("eps", 1e-8), cfg.get("norm_map")
    if isinstance(eps, bool) or not isinstance(eps, int | float) or not 0 <= eps < 1:
        raise ValueError(f"{where}: the normalizer's eps must be a small non-negative number, got {eps!r}")
    if norm_map is not None and not isinstance(norm_map, dict):
        raise ValueError(f"{where}: the normalizer's norm_map must be an object, got {norm_map!r}")
    return stats, norm_map, float(eps), notes


def extract_legacy_stats(
    sd: Mapping[str, np.ndarray], features: Mapping[str, PolicyFeature], source: str = WEIGHTS_FILE
) -> tuple[dict[str, dict[str, np.ndarray]], dict[str, np.ndarray], list[str]]:
    """Pull pre-0.4 `normalize_*.buffer_<key>.<stat>` tensors out of a state dict.

    Returns (stats, state dict without those buffers, notes). Buffers still at LeRobot's +inf
    initial value were never set and are dropped (LeRobot would refuse to run with them).
    """
    notes: list[str] = []
    stats: dict[str, dict[str, np.ndarray]] = {}
    by_buffer = {"buffer_" + k.replace(".", "_"): k for k in features}
    rest: dict[str, np.ndarray] = {}
    for key, value in sd.items():
        prefix = next((p for p in LEGACY_NORM_PREFIXES if key.startswith(p)), None)
        if prefix is None:
            rest[key] = value
            continue
        buffer, _, stat = key[len(prefix) :].rpartition(".")
        feature = by_buffer.get(buffer)
        if feature is None:
            notes.append(f"{source}: legacy normalization buffer {key!r} names no known feature; ignored")
            continue
        arr = np.asarray(value, np.float32)
        if np.isinf(arr).any():
            notes.append(f"{source}: {key} is still +inf (stats never set); ignored")
            continue
        prev = stats.setdefault(feature, {}).get(stat)
        if prev is not None and not np.array_equal(prev, arr):
            if prefix == "unnormalize_outputs.":
                stats[feature][stat] = arr
            notes.append(f"{source}: {feature}.{stat} differs between legacy normalization modules")
        elif prev is None:
            stats[feature][stat] = arr
    return stats, rest, notes


def read_lerobot_checkpoint(
    path: str | os.PathLike, *, expected_type: str | None = None
) -> LeRobotCheckpoint:
    """Read config, weights and stats of a LeRobot policy folder (see the module docstring for layouts)."""
    folder = resolve_checkpoint_dir(path)
    ptype, cfg, inputs, outputs, mapping = read_config(folder, expected_type)
    sd = load_safetensors(folder / WEIGHTS_FILE)
    stats, norm_map, eps, notes = read_processor_stats(folder)
    legacy_stats, sd, legacy_notes = extract_legacy_stats(sd, {**inputs, **outputs})
    notes += legacy_notes
    if stats is not None:
        source = "processor"
        if legacy_stats:
            notes.append(
                "both processor stats and legacy normalization buffers present; the processor's are used"
            )
        if norm_map is not None:
            proc_mapping = parse_normalization_mapping(
                norm_map, where=f"{folder / PREPROCESSOR_FILE}:norm_map"
            )
            if proc_mapping != mapping:
                notes.append(
                    "the processor's norm_map differs from config.json's normalization_mapping; "
                    "the processor's (what LeRobot applies) is used"
                )
                mapping = proc_mapping
    elif legacy_stats:
        source, stats = "legacy_state_dict", legacy_stats
    else:
        source, stats = "none", {}
        notes.append(f"{folder}: no normalization stats found (no processor files, no legacy buffers)")
    for note in notes:
        warnings.warn(note, stacklevel=2)
    return LeRobotCheckpoint(
        path=folder,
        policy_type=ptype,
        config=cfg,
        input_features=inputs,
        output_features=outputs,
        normalization_mapping=mapping,
        state_dict=sd,
        stats=stats,
        stats_source=source,
        eps=eps,
        notes=notes,
    )


def policy_hyperparameters(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """config.json minus LeRobot's base/bookkeeping keys: what a policy config dataclass consumes."""
    return {k: v for k, v in cfg.items() if k not in LEROBOT_BASE_CONFIG_KEYS}

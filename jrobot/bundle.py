"""The policy bundle: a self-describing folder the runtime executes without the model code.

    policy.json                  what the policy reads and writes (spec), normalisation stats, dataset
                                 features (names of the joints), fps, image preprocessing, training config
    params.safetensors           every model variable, flattened ("model/backbone/conv1/kernel", ...)
    inference/<variant>.jaxexport  serialized `jax.export` of f(params, observation, rng) -> actions for CPU
                                 and CUDA (EXPORT_PLATFORMS; older bundles: CPU only), batch dimension
                                 symbolic; variants by image dtype ("uint8" from cameras,
                                 "float32" for LeRobot-style [0, 1] inputs) and, for stochastic policies,
                                 "+noise" variants that take the initial noise in the observation
    tokenizer/                   language-conditioned policies only: the `jrobot.language.TaskTokenizer`
                                 that turns a task instruction into the policy's LANGUAGE inputs, so the
                                 robot tokenizes exactly as training did (policy.json's "language" names
                                 it and the fixed token length L the exported functions take)

Format versions: 2 (this jrobot) writes the spec's typed sampling fields (`horizon`, `noise_shape`,
`drop_n_last_frames`); version 1 bundles, which lack them, are read by deriving them from what a v1
policy.json holds (`upgrade_v1_spec`), so existing bundles keep running unchanged. The optional
"language" entry was added within version 2: bundles without it are policies without language.

Reading a bundle's description and parameters needs numpy and safetensors only (plus `tokenizers`
for a language policy); running its inference functions (`jrobot.runtime.policy.read_exported`) needs
jax. This module imports neither jax, flax, transformers nor the training libraries, so a laptop that
only drives the robot installs no training stack, and one driven by a policy server not even jax.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from jrobot.errors import InputError
from jrobot.features import Feature, features_from_json
from jrobot.paths import inside
from jrobot.policies.spec import ACTION_KEY, PolicySpec, stats_from_json

if TYPE_CHECKING:
    from jrobot.language import TaskTokenizer

FORMAT_NAME = "jrobot-policy"
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
POLICY_JSON = "policy.json"
PARAMS = "params.safetensors"
INFERENCE_DIR = "inference"
TOKENIZER_DIR = "tokenizer"
# inference functions are lowered for these; the laptop runs "cpu", a policy server "cuda" when it has a GPU
EXPORT_PLATFORMS = ("cpu", "cuda")


class BundleError(ValueError, InputError):
    """A policy bundle is missing pieces, is corrupt, or does not fit the robot it is asked to drive."""


def upgrade_v1_spec(spec: dict[str, Any], *, stochastic: bool) -> dict[str, Any]:
    """A version-1 policy.json spec with the fields version 2 added, derived as v1's exporter did.

    v1 exporters sized the noise of "+noise" variants as (config["horizon"] or chunk_size, action_dim),
    and v1 policies that dropped frames kept the count in config["drop_n_last_frames"].
    """
    config = spec.get("config", {})
    horizon = int(config.get("horizon", spec["chunk_size"]))
    action_dim = int(spec["output_features"][ACTION_KEY]["shape"][0])
    return {
        **spec,
        "horizon": horizon,
        "noise_shape": [horizon, action_dim] if stochastic else None,
        "drop_n_last_frames": int(config.get("drop_n_last_frames", 0)),
    }


def variant_name(image_dtype: str, with_noise: bool) -> str:
    return f"{image_dtype}+noise" if with_noise else image_dtype


VARIANTS = tuple(variant_name(d, n) for d in ("uint8", "float32") for n in (False, True))


def member(bundle: str | Path, relative: str | Path, what: str) -> Path:
    """A file or folder of the bundle; names leading outside it (`..`, absolute, symlinks) are refused."""
    bundle = Path(bundle)
    path = inside(bundle, relative)
    if path is None:
        raise BundleError(f"{bundle}: {what} {str(relative)!r} leads outside the bundle folder; refused")
    return path


def _parse_language(d: Any) -> dict[str, Any] | None:
    """policy.json's "language" entry: {"tokenizer_dir": str, "max_length": int}, or None (no language)."""
    if d is None:
        return None
    if not isinstance(d, dict) or not isinstance(d.get("tokenizer_dir"), str):
        raise ValueError(f"'language' must be {{'tokenizer_dir': str, 'max_length': int}} or null, got {d!r}")
    return {**d, "tokenizer_dir": d["tokenizer_dir"], "max_length": int(d["max_length"])}


def _variants(names: Any) -> list[str]:
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ValueError(f"'variants' must be a list of names, got {names!r}")
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        raise ValueError(f"unknown inference variants {unknown} (known: {list(VARIANTS)})")
    return list(names)


@dataclasses.dataclass
class BundleInfo:
    """Parsed policy.json.

    `language` is set for language-conditioned policies: {"tokenizer_dir": folder in the bundle,
    "max_length": L, the token length of the exported LANGUAGE inputs}.
    """

    spec: PolicySpec
    stats: dict[str, dict[str, np.ndarray]]
    features: dict[str, Feature]  # dataset features: joint names of state/action, camera shapes
    fps: int
    robot_type: str | None
    image_shapes: dict[str, tuple[int, int, int]]  # policy input key -> (H, W, 3) the model expects
    variants: list[str]
    stochastic: bool
    source: dict[str, Any]
    training_config: dict[str, Any] | None
    language: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        from jrobot.policies.spec import stats_to_json

        return {
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "spec": self.spec.to_json(),
            "stats": stats_to_json(self.stats),
            "features": {k: f.to_json() for k, f in self.features.items()},
            "fps": self.fps,
            "robot_type": self.robot_type,
            "image_shapes": {k: list(v) for k, v in self.image_shapes.items()},
            "variants": self.variants,
            "stochastic": self.stochastic,
            "source": self.source,
            "training_config": self.training_config,
            "language": self.language,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any], *, path: Path) -> BundleInfo:
        if not isinstance(d, dict):
            raise BundleError(f"{path}: not a jrobot policy bundle (policy.json holds no JSON object)")
        if d.get("format") != FORMAT_NAME:
            raise BundleError(f"{path}: not a jrobot policy bundle (format={d.get('format')!r})")
        version = d.get("version")
        if version not in READABLE_VERSIONS:
            raise BundleError(
                f"{path}: bundle format version {version} is not supported (reads {list(READABLE_VERSIONS)}); "
                "re-export it with this jrobot's `python -m jrobot.export`"
            )
        try:
            spec = d["spec"]
            if version == 1:
                spec = upgrade_v1_spec(spec, stochastic=bool(d.get("stochastic", False)))
            return cls(
                spec=PolicySpec.from_json(spec),
                stats=stats_from_json(d.get("stats", {})),
                features=features_from_json(d.get("features", {})),
                fps=int(d["fps"]),
                robot_type=d.get("robot_type"),
                image_shapes={k: tuple(int(x) for x in v) for k, v in d["image_shapes"].items()},
                variants=_variants(d["variants"]),
                stochastic=bool(d.get("stochastic", False)),
                source=dict(d.get("source", {})),
                training_config=d.get("training_config"),
                language=_parse_language(d.get("language")),
            )
        except (LookupError, TypeError, ValueError, AttributeError, OverflowError) as e:
            raise BundleError(f"{path}: malformed policy.json ({type(e).__name__}: {e})") from e


def read_info(bundle: str | Path) -> BundleInfo:
    bundle = Path(bundle)
    p = member(bundle, POLICY_JSON, "policy.json")
    if not p.is_file():
        raise BundleError(
            f"{bundle}: no {POLICY_JSON}; is this a bundle written by `python -m jrobot.export`?"
        )
    try:
        raw = json.loads(p.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise BundleError(f"{p}: corrupt JSON ({type(e).__name__}: {str(e)[:200]})") from e
    return BundleInfo.from_json(raw, path=p)


def read_params(bundle: str | Path) -> dict[str, np.ndarray]:
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    p = member(bundle, PARAMS, "the parameters file")
    if not p.is_file():
        raise BundleError(f"{p}: missing parameters file")
    try:
        return load_file(str(p))
    except (SafetensorError, OSError, AttributeError, TypeError, KeyError, ValueError) as e:
        # AttributeError: a dtype numpy lacks (float8), as safetensors.numpy raises it
        raise BundleError(f"{p}: cannot read parameters ({type(e).__name__}: {e})") from e


def read_tokenizer(bundle: str | Path, info: BundleInfo | None = None) -> TaskTokenizer | None:
    """The bundle's `jrobot.language.TaskTokenizer` (None for a policy without language).

    Its max_length must be the L the exported functions were traced with, or every call would fail.
    """
    from jrobot.language import TaskTokenizer, TokenizerError  # tokenizers only for language bundles

    bundle = Path(bundle)
    info = read_info(bundle) if info is None else info
    if info.language is None:
        return None
    folder = member(bundle, info.language["tokenizer_dir"], "language.tokenizer_dir")
    try:
        tok = TaskTokenizer.load(folder)
    except (OSError, TokenizerError) as e:
        raise BundleError(f"{bundle}: cannot load the policy's tokenizer ({e})") from e
    if tok.max_length != info.language["max_length"]:
        raise BundleError(
            f"{folder}: tokenizer max_length {tok.max_length} differs from policy.json's "
            f"language.max_length {info.language['max_length']}"
        )
    return tok

"""Exporting a policy bundle: trained (or LeRobot-imported) params with their compiled functions
(`jax.export`), features, stats and tokenizer, in the folder `jrobot.run` / `jrobot.serve` load.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jrobot.bundle import (
    EXPORT_PLATFORMS,
    INFERENCE_DIR,
    PARAMS,
    POLICY_JSON,
    TOKENIZER_DIR,
    BundleInfo,
    variant_name,
)
from jrobot.cli import CliError
from jrobot.features import ACTION_KEY, SO101_JOINT_KEYS, STATE_KEY, Feature, features_from_json
from jrobot.language import TaskTokenizer, language_dtype
from jrobot.policies.base import PolicyModule, load_policy_module
from jrobot.policies.spec import FeatureType, PolicySpec, stats_from_json


def flatten_state(state: nnx.State) -> dict[str, np.ndarray]:
    return {"/".join(map(str, p)): np.asarray(v.get_value()) for p, v in nnx.to_flat_state(state)}


def _observation_avals(spec: PolicySpec, image_dtype, batch) -> dict[str, jax.ShapeDtypeStruct]:
    """The observation the exported function takes: images/state/env with the history axis, LANGUAGE
    inputs (B, L) without one (the instruction is per call, not per frame)."""
    n_obs = spec.n_obs_steps
    avals = {}
    for key, feat in spec.input_features.items():
        if feat.type is FeatureType.VISUAL:
            c, h, w = feat.shape
            avals[key] = jax.ShapeDtypeStruct((*batch, n_obs, h, w, c), image_dtype)
        elif feat.type in (FeatureType.STATE, FeatureType.ENV):
            avals[key] = jax.ShapeDtypeStruct((*batch, n_obs, *feat.shape), jnp.float32)
        elif feat.type is FeatureType.LANGUAGE:
            avals[key] = jax.ShapeDtypeStruct((*batch, *feat.shape), language_dtype(key))
    return avals


def language_tokenizer(model: nnx.Module) -> TaskTokenizer | None:
    """The model's `tokenizer` if its spec reads language (None otherwise), checked against the spec.

    A bundle of a language policy without its tokenizer could not be driven by a task string, and one
    whose max_length differs from the LANGUAGE features' L would fail on every call: both are export
    errors, raised before anything is written.
    """
    spec: PolicySpec = model.spec
    if not spec.language_keys:
        return None
    tok = getattr(model, "tokenizer", None)
    if not isinstance(tok, TaskTokenizer):
        vlm_path = getattr(getattr(model, "config", None), "vlm_path", None)
        if vlm_path is not None:
            raise ValueError(
                f"the {spec.type} policy's tokenizer comes from its VLM folder {vlm_path}, which is not there "
                "(moved, or the run was copied from another machine): pass --vlm DIR with that VLM folder"
            )
        raise ValueError(
            f"the {spec.type} policy reads language inputs {list(spec.language_keys)}, so its model needs a "
            f"`tokenizer` attribute holding a jrobot.language.TaskTokenizer (got {type(tok).__name__})"
        )
    lengths = {k: spec.input_features[k].shape for k in spec.language_keys}
    bad = {k: s for k, s in lengths.items() if s != (tok.max_length,)}
    if bad:
        raise ValueError(
            f"the {spec.type} policy's language features {bad} must have shape (L,) with L = the "
            f"tokenizer's max_length {tok.max_length}"
        )
    return tok


def export_functions(model: nnx.Module, module: PolicyModule) -> dict[str, bytes]:
    """Serialized CPU inference functions, one per variant, with a symbolic batch size.

    A stochastic policy (`spec.noise_shape` set) also gets "+noise" variants that read the initial noise
    from `observation["noise"]`, (B, *noise_shape). A language policy's LANGUAGE inputs are (B, L) int32
    ids and bool mask in every variant (`_observation_avals`).
    """
    spec: PolicySpec = model.spec
    graphdef, state = nnx.split(model)
    flat = nnx.to_flat_state(state)
    params_avals = {
        "/".join(map(str, p)): jax.ShapeDtypeStruct(v.get_value().shape, v.get_value().dtype) for p, v in flat
    }

    def infer(params, observation, rng):
        st = nnx.from_flat_state([(p, v.replace(params["/".join(map(str, p))])) for p, v in flat])
        m = nnx.merge(graphdef, st)
        return module.sample_actions(m, observation, rng)

    (b,) = jax.export.symbolic_shape("b")
    rng_aval = jax.ShapeDtypeStruct((2,), jnp.uint32)
    out = {}
    noise_options = [False, True] if spec.noise_shape is not None else [False]
    for image_dtype in ("uint8", "float32"):
        if not spec.image_keys and image_dtype == "float32":
            continue
        for with_noise in noise_options:
            obs = _observation_avals(spec, jnp.dtype(image_dtype), (b,))
            if with_noise:
                obs["noise"] = jax.ShapeDtypeStruct((b, *spec.noise_shape), jnp.float32)
            with jax.default_matmul_precision("highest"):
                exported = jax.export.export(jax.jit(infer), platforms=EXPORT_PLATFORMS)(
                    params_avals, obs, rng_aval
                )
            out[variant_name(image_dtype, with_noise)] = exported.serialize()
    return out


def write_bundle(
    model: nnx.Module,
    module: PolicyModule,
    out: str | Path,
    *,
    features: Mapping[str, Feature],
    fps: int,
    robot_type: str | None,
    source: dict[str, Any],
    training_config: dict[str, Any] | None = None,
) -> BundleInfo:
    from safetensors.numpy import save_file

    model = module.inference_model(model)  # its weights laid out for inference, where the policy does
    spec: PolicySpec = model.spec
    tokenizer = language_tokenizer(model)
    out = Path(out)
    tmp = out.with_name(out.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    (tmp / INFERENCE_DIR).mkdir(parents=True)
    params = flatten_state(nnx.state(model))
    save_file({k: np.ascontiguousarray(v) for k, v in params.items()}, str(tmp / PARAMS))
    functions = export_functions(model, module)
    for name, blob in functions.items():
        (tmp / INFERENCE_DIR / f"{name}.jaxexport").write_bytes(blob)
    language = None
    if tokenizer is not None:
        tokenizer.save(tmp / TOKENIZER_DIR)
        language = {"tokenizer_dir": TOKENIZER_DIR, "max_length": tokenizer.max_length}
    image_shapes = {}
    for k in spec.image_keys:
        c, h, w = spec.input_features[k].shape
        image_shapes[k] = (h, w, c)
    info = BundleInfo(
        spec=spec,
        stats=model.normalizer.stats_dict(),
        features=dict(features),
        fps=int(fps),
        robot_type=robot_type,
        image_shapes=image_shapes,
        variants=sorted(functions),
        stochastic=spec.noise_shape is not None,
        source=source,
        training_config=training_config,
        language=language,
    )
    (tmp / POLICY_JSON).write_text(json.dumps(info.to_json(), indent=2))
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    return info


def _strip_value(tree: Any) -> Any:
    """orbax restores nnx.State leaves as {"value": array}; drop that level to get a pure dict."""
    if isinstance(tree, Mapping):
        if set(tree) == {"value"} and not isinstance(tree["value"], Mapping):
            return tree["value"]
        return {k: _strip_value(v) for k, v in tree.items()}
    return tree


def load_from_workdir(
    workdir: str | Path, step: int | None = None, use_ema: bool = True, *, vlm: str | None = None
):
    """(model with the checkpoint's weights, policy module, checkpoint metadata).

    `vlm`: a VLA's VLM folder (its tokenizer), when the one recorded at training time has moved.
    """
    from jrobot.train.checkpoint import Checkpointer

    ckpt = Checkpointer(Path(workdir) / "checkpoints", async_save=False)
    try:
        step = ckpt.latest_step if step is None else step
        if step is None:
            raise FileNotFoundError(f"{workdir}: no checkpoints to export")
        meta = ckpt.restore_meta(step)
        state = ckpt.restore_state(step)
    finally:
        ckpt.close()
    module = load_policy_module(meta["policy_type"])
    pcfg = module.Config.from_dict(meta["policy_config"])
    if vlm is not None:
        if not hasattr(pcfg, "vlm_path"):
            raise ValueError(f"--vlm: a {meta['policy_type']!r} policy has no VLM (VLA policies do)")
        pcfg = dataclasses.replace(pcfg, vlm_path=str(Path(vlm).absolute()))
    features = features_from_json(meta["features"])
    stats = stats_from_json(meta["stats"])
    model = nnx.eval_shape(
        lambda: module.build(pcfg, features, stats, seed=0, load_pretrained_backbone=False)
    )
    params_key = "ema" if use_ema and "ema" in state else "params"
    graphdef, params, frozen = nnx.split(model, nnx.Param, ...)
    nnx.replace_by_pure_dict(params, _strip_value(state[params_key]))
    nnx.replace_by_pure_dict(frozen, _strip_value(state["frozen"]))
    model = nnx.merge(graphdef, params, frozen)
    left = [
        p for p, v in nnx.to_flat_state(nnx.state(model)) if isinstance(v.get_value(), jax.ShapeDtypeStruct)
    ]
    if left:
        raise RuntimeError(f"{workdir} step {step}: checkpoint lacks model variables {left[:5]}")
    meta["step"] = step
    meta["params"] = params_key
    return model, module, meta


def default_features_for(spec: PolicySpec) -> dict[str, Feature]:
    """Dataset features for a policy that carries none (LeRobot checkpoints): SO-101 names when they fit."""
    feats: dict[str, Feature] = {}
    a = spec.action_dim
    feats[ACTION_KEY] = Feature(
        "float32", (a,), list(SO101_JOINT_KEYS) if a == 6 else [f"a{i}" for i in range(a)]
    )
    if spec.state_key:
        s = spec.input_features[STATE_KEY].shape[0]
        feats[STATE_KEY] = Feature(
            "float32", (s,), list(SO101_JOINT_KEYS) if s == 6 else [f"s{i}" for i in range(s)]
        )
    for k in spec.image_keys:
        c, h, w = spec.input_features[k].shape
        feats[k] = Feature("video", (h, w, c), ["height", "width", "channels"])
    return feats


def export_workdir(
    workdir: str | Path,
    out: str | Path,
    *,
    step: int | None = None,
    use_ema: bool = True,
    vlm: str | None = None,
    fps: int | None = None,
) -> BundleInfo:
    """The bundle of a training run's checkpoint (`step`, default the latest), with the run's features."""
    model, module, meta = load_from_workdir(workdir, step, use_ema=use_ema, vlm=vlm)
    return write_bundle(
        model,
        module,
        out,
        features=features_from_json(meta["features"]),
        fps=int(fps or meta["fps"]),
        robot_type=meta.get("robot_type"),
        source={"workdir": str(Path(workdir).absolute()), "step": meta["step"], "params": meta["params"]},
        training_config=meta.get("config"),
    )


def export_lerobot(
    source: str,
    out: str | Path,
    *,
    vlm: str | None = None,
    precision: str | None = None,
    fps: int | None = None,
) -> tuple[BundleInfo, list[str]]:
    """The bundle of a LeRobot checkpoint (a folder or a Hub model id), and the importer's notes."""
    from jrobot.policies.lerobot.importer import import_lerobot

    path = lerobot_checkpoint(source)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the notes are returned, for the caller to show once
        imported = import_lerobot(path, vlm=vlm, precision=precision)
    info = write_bundle(
        imported.model,
        load_policy_module(imported.spec.type),
        out,
        features=default_features_for(imported.spec),
        fps=int(fps or 30),
        robot_type=None,
        source={"lerobot_checkpoint": str(path.absolute())},
    )
    return info, list(imported.notes)


def lerobot_checkpoint(source: str) -> Path:
    """A LeRobot checkpoint folder: `source` itself, or a Hub model id downloaded (cached) to one."""
    path = Path(source).expanduser()
    if path.exists():
        return path
    from jrobot.hub import HubError, check_repo_id, download_model

    try:
        check_repo_id(source)
    except HubError:
        raise CliError(
            f"--from-lerobot {source}: no such folder (and not a Hub model id like 'owner/name')"
        ) from None
    try:
        return download_model(source, what="LeRobot checkpoint")
    except HubError as e:
        raise CliError(str(e)) from e

"""`python -m jrobot.export`: turn a training run (or a LeRobot checkpoint) into a policy bundle.

    python -m jrobot.export --workdir runs/act --out bundles/act            # latest step, EMA if any
    python -m jrobot.export --workdir runs/act --step 20000 --out bundles/act_20k
    python -m jrobot.export --from-lerobot path/to/pretrained_model --out bundles/lerobot_act [--fps 30]
    python -m jrobot.export --from-lerobot smolvla/pretrained_model [--vlm VLM_DIR] --out bundles/smolvla
    python -m jrobot.export --from-lerobot lerobot/smolvla_base --out bundles/smolvla     # a Hub model id
    python -m jrobot.export --workdir runs/act --out bundles/act --push_to_hub me/act_so101 [--hub_dataset me/pick]

With --push_to_hub the bundle is also uploaded as a model repo with a model card (its features, how to
run it, the bundle's eval.json when present); `--policy hf://me/act_so101[@REV]` then runs or serves it.

The bundle (see `jrobot.bundle`) holds the parameters and a serialized `jax.export` of the inference
function, traced here with the policy's model code, so `python -m jrobot.run` needs neither flax nor the
training stack and runs the exact same computation.

A language-conditioned policy (LANGUAGE input features, `spec.language_keys`) takes its instruction as
token ids (B, L) int32 and an attention mask (B, L) bool, with no history axis; its model carries the
`jrobot.language.TaskTokenizer` that made them (`model.tokenizer`), which is saved into the bundle so
the runtime turns a task string into exactly those inputs.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import sys
import warnings
from collections.abc import Mapping, Sequence
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
from jrobot.cli import Binder, CliError, exactly_one, flag, run_tool, usage
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


@dataclasses.dataclass
class ExportOptions:
    """`python -m jrobot.export` flags: exactly one of --workdir / --from-lerobot."""

    out: str = flag(help="bundle directory to write", metavar="DIR")
    workdir: str | None = flag(
        None, help="training run directory (python -m jrobot.train --workdir)", metavar="DIR"
    )
    from_lerobot: str | None = flag(
        None, help="LeRobot pretrained_model folder, or a Hugging Face Hub model id", metavar="DIR|ID"
    )
    step: int | None = flag(None, help="checkpoint step (default: latest)")
    no_ema: bool = flag(False, help="export the raw parameters even if an EMA exists")
    fps: int | None = flag(None, help="control rate for LeRobot checkpoints (default 30)")
    vlm: str | None = flag(
        None,
        help="VLA policies: the VLM folder (tokenizer; default: the one recorded, or vlm_model_name locally / in the HF cache)",
        metavar="DIR",
    )
    precision: str | None = flag(
        None, help="VLA checkpoints: float32 (default) or bfloat16 (LeRobot's mixed bf16/fp32)"
    )
    push_to_hub: str | None = flag(
        None, help="also upload the bundle as this Hub model repo", metavar="USER/REPO"
    )
    private: bool = flag(False, help="with --push_to_hub: a private repo")
    hub_dataset: str | None = flag(
        None, help="with --push_to_hub: the Hub dataset it was trained on, for the card"
    )


USAGE = usage("python -m jrobot.export", ExportOptions, __doc__ or "")


def main(argv: Sequence[str] | None = None) -> int:
    binder = Binder.from_argv(sys.argv[1:] if argv is None else argv)
    args = binder.build(ExportOptions)
    binder.finish()
    exactly_one(args, "workdir", "from_lerobot")

    if args.workdir:
        model, module, meta = load_from_workdir(
            args.workdir, args.step, use_ema=not args.no_ema, vlm=args.vlm
        )
        info = write_bundle(
            model,
            module,
            args.out,
            features=features_from_json(meta["features"]),
            fps=int(args.fps or meta["fps"]),
            robot_type=meta.get("robot_type"),
            source={
                "workdir": str(Path(args.workdir).absolute()),
                "step": meta["step"],
                "params": meta["params"],
            },
            training_config=meta.get("config"),
        )
    else:
        from jrobot.policies.lerobot.importer import import_lerobot

        path = _lerobot_checkpoint(args.from_lerobot)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # the importer's notes are printed once, below
            imported = import_lerobot(path, vlm=args.vlm, precision=args.precision)
        module = load_policy_module(imported.spec.type)
        for note in imported.notes:
            print(f"note: {note}", file=sys.stderr)
        info = write_bundle(
            imported.model,
            module,
            args.out,
            features=default_features_for(imported.spec),
            fps=int(args.fps or 30),
            robot_type=None,
            source={"lerobot_checkpoint": str(path.absolute())},
        )
    print(f"wrote {args.out}: {info.spec.type} policy, variants {info.variants}")
    if args.push_to_hub:
        from jrobot.hub import HubError, push_bundle

        try:
            url = push_bundle(args.out, args.push_to_hub, private=args.private, dataset=args.hub_dataset)
        except HubError as e:
            raise CliError(f"{e} (the bundle is written: {args.out})") from e
        print(f"pushed to {url}")
    return 0


def _lerobot_checkpoint(source: str) -> Path:
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


if __name__ == "__main__":
    sys.exit(run_tool(main, usage=USAGE))

"""SmolVLA's entry points (the `PolicyModule` contract): spec, build, loss, sampling, optimizer, import."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from jrobot.language import LANGUAGE_MASK_KEY, LANGUAGE_TOKENS_KEY
from jrobot.policies.base import (
    ImportedPolicy,
    OptimizerPreset,
    as_policy_features,
    current_frame,
    image_to_unit_float,
)
from jrobot.policies.ema import EMAConfig
from jrobot.policies.lerobot.importer import build_from_lerobot
from jrobot.policies.lerobot.statedict import load_state_dict
from jrobot.policies.smolvla import vlm_folder
from jrobot.policies.smolvla.config import POLICY_TYPE, SmolVLAConfig
from jrobot.policies.smolvla.model import SmolVLAPolicy, resize_with_pad
from jrobot.policies.spec import (
    ACTION_KEY,
    IMAGE_PREFIX,
    STATE_KEY,
    FeatureType,
    PolicyFeature,
    PolicySpec,
    split_features,
)

LANGUAGE_TOKENS = LANGUAGE_TOKENS_KEY
LANGUAGE_MASK = LANGUAGE_MASK_KEY
EMPTY_CAMERA = IMAGE_PREFIX + "empty_camera_"
ALOHA_FLIPPED = (1, 2, 8, 9)
ALOHA_GRIPPERS = (6, 13)


# ---------------------------------------------------------------------------------------------------
# LeRobot's pi-Aloha space conversions (adapt_to_pi_aloha), on normalized values
def _unnorm(x: jax.Array, lo: float, hi: float) -> jax.Array:
    return x * (hi - lo) + lo


def _norm(x: jax.Array, lo: float, hi: float) -> jax.Array:
    return (x - lo) / (hi - lo)


def aloha_gripper_to_angular(x: jax.Array) -> jax.Array:
    x = _unnorm(x, 0.01844, 0.05800)
    arm, horn = 0.036, 0.022
    x = jnp.arcsin(jnp.clip((horn**2 + x**2 - arm**2) / (2 * horn * x), -1.0, 1.0))
    return _norm(x, 0.4, 1.5)


def aloha_gripper_from_angular(x: jax.Array) -> jax.Array:
    return _norm(_unnorm(x, 0.4, 1.5), -0.6213, 1.4910)


def aloha_gripper_from_angular_inv(x: jax.Array) -> jax.Array:
    return _norm(_unnorm(x, -0.6213, 1.4910), 0.4, 1.5)


def _aloha(x: jax.Array, gripper_fn) -> jax.Array:
    flip = jnp.ones(x.shape[-1], x.dtype).at[jnp.asarray(ALOHA_FLIPPED)].set(-1.0)
    x = x * flip
    for i in ALOHA_GRIPPERS:
        x = x.at[..., i].set(gripper_fn(x[..., i]))
    return x


def pad_vector(x: jax.Array, width: int) -> jax.Array:
    """Zero-pad the last axis to `width` (LeRobot's `pad_vector`)."""
    if x.shape[-1] > width:
        raise ValueError(f"a vector of {x.shape[-1]} values does not fit the padded width {width}")
    return jnp.pad(x, [(0, 0)] * (x.ndim - 1) + [(0, width - x.shape[-1])])


# ---------------------------------------------------------------------------------------------------
# inputs
def prepare_inputs(
    model: SmolVLAPolicy, observation: Mapping[str, Any]
) -> tuple[list[jax.Array], list[jax.Array], jax.Array, jax.Array, jax.Array]:
    """Raw observation -> (images in [-1, 1], image masks, token ids, token mask, normalized padded state).

    Images: uint8 or float in [0, 1], channel-last, (B, H, W, 3) or with the history axis; resized with
    padding to `resize_imgs_with_padding`, mapped to [-1, 1]; `<key>_padding_mask` (B,) is honoured; then
    `empty_cameras` blank images (all -1, masked out). A camera of the policy that is missing from the
    observation is an error (LeRobot would silently drop it and shift the prefix).
    """
    cfg, spec, norm = model.config, model.spec, model.normalizer

    def take(key: str) -> jax.Array:
        if key not in observation:
            raise KeyError(f"observation lacks {key!r} (SmolVLA reads {list(spec.input_features)})")
        return current_frame(jnp.asarray(observation[key]), spec.input_features[key], key, 1)

    state = norm.normalize(STATE_KEY, take(STATE_KEY).astype(jnp.float32))
    if cfg.adapt_to_pi_aloha:
        state = _aloha(state, aloha_gripper_to_angular)
    state = pad_vector(state, cfg.max_state_dim)
    images, masks = [], []
    side = cfg.arch.vision.image_size
    for key in spec.image_keys:
        x = norm.normalize(key, image_to_unit_float(take(key), key))
        if cfg.resize_imgs_with_padding is not None:
            x = resize_with_pad(x, *cfg.resize_imgs_with_padding)
        elif not cfg.uses_keypoints and x.shape[1:3] != (side, side):
            raise ValueError(
                f"{key}: the vision tower reads {side}x{side} images and resize_imgs_with_padding is None, "
                f"got {x.shape[1]}x{x.shape[2]}"
            )
        images.append(x * 2.0 - 1.0)
        pm = observation.get(f"{key}_padding_mask")
        masks.append(jnp.ones(x.shape[0], bool) if pm is None else jnp.asarray(pm, bool).reshape(x.shape[0]))
    for _ in range(cfg.empty_cameras):
        images.append(-jnp.ones_like(images[-1]))
        masks.append(jnp.zeros_like(masks[-1]))
    for key in (LANGUAGE_TOKENS, LANGUAGE_MASK):
        if key not in observation:
            raise KeyError(
                f"observation lacks {key!r}: SmolVLA needs the tokenized task (jrobot.language.TaskTokenizer; "
                "the runtime tokenizes --task itself)"
            )
    tokens = jnp.asarray(observation[LANGUAGE_TOKENS]).astype(jnp.int32)
    lang_mask = jnp.asarray(observation[LANGUAGE_MASK]).astype(bool)
    if tokens.ndim != 2 or tokens.shape != lang_mask.shape:
        raise ValueError(
            f"{LANGUAGE_TOKENS} and {LANGUAGE_MASK} must both be (B, L), got {tokens.shape} and {lang_mask.shape}"
        )
    return images, masks, tokens, lang_mask, state


def _noise(model: SmolVLAPolicy, batch: int, noise: Any, rng: jax.Array | None, what: str) -> jax.Array:
    cfg = model.config
    shape = (batch, cfg.chunk_size, cfg.max_action_dim)
    if noise is None:
        if rng is None:
            raise ValueError(f"SmolVLA {what} needs an rng or the noise")
        return jax.random.normal(rng, shape, jnp.float32)
    noise = jnp.asarray(noise, jnp.float32)
    if tuple(noise.shape) != shape:
        raise ValueError(
            f"noise must have shape (B, chunk_size, max_action_dim) = {shape}, got {noise.shape}"
        )
    return noise


# ---------------------------------------------------------------------------------------------------
# entry points
def losses(
    model: SmolVLAPolicy,
    batch: Mapping[str, Any],
    rng: jax.Array | None,
    *,
    noise: Any = None,
    time: Any = None,
) -> jax.Array:
    """Per-element flow-matching losses (B, chunk, max_action_dim): LeRobot's `model.forward`.

    The noise is N(0, I) and the time Beta(1.5, 1) * 0.999 + 0.001, drawn from `rng` unless given; with
    `state_dropout` a random share of the samples' joint states is replaced by the dataset's mean.
    """
    cfg, spec = model.config, model.spec
    if ACTION_KEY not in batch:
        raise KeyError(f"SmolVLA loss needs {ACTION_KEY!r} in the batch")
    raw = jnp.asarray(batch[ACTION_KEY], jnp.float32)
    if raw.ndim != 3 or raw.shape[1:] != (cfg.chunk_size, spec.action_dim):
        raise ValueError(
            f"{ACTION_KEY}: expected (B, chunk_size={cfg.chunk_size}, {spec.action_dim}), got {raw.shape}"
        )
    actions = model.normalizer.normalize(ACTION_KEY, raw)
    if cfg.adapt_to_pi_aloha:
        actions = _aloha(actions, aloha_gripper_from_angular_inv)
    actions = pad_vector(actions, cfg.max_action_dim)
    k_noise = k_time = k_drop = None
    if rng is not None:
        if cfg.state_dropout:  # a third key only when used: other runs keep their draws
            k_noise, k_time, k_drop = jax.random.split(rng, 3)
        else:
            k_noise, k_time = jax.random.split(rng)
    noise = _noise(model, raw.shape[0], noise, k_noise, "training")
    if time is None:
        if k_time is None:
            raise ValueError("SmolVLA training needs an rng or the time")
        time = jax.random.beta(k_time, 1.5, 1.0, (raw.shape[0],), jnp.float32) * 0.999 + 0.001
    time = jnp.asarray(time, jnp.float32).reshape(raw.shape[0])
    images, masks, tokens, lang_mask, state = prepare_inputs(model, batch)
    if cfg.state_dropout:
        if k_drop is None:
            raise ValueError("SmolVLA training with state_dropout > 0 needs an rng")
        # the normalized state of a dropped sample is 0, the dataset's mean joint positions
        dropped = jax.random.bernoulli(k_drop, cfg.state_dropout, (state.shape[0], 1))
        state = jnp.where(dropped, jnp.zeros_like(state), state)
    return model.model.losses(images, masks, tokens, lang_mask, state, actions, noise, time)


def loss(
    model: SmolVLAPolicy,
    batch: Mapping[str, Any],
    rng: jax.Array | None,
    *,
    noise: Any = None,
    time: Any = None,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """LeRobot's `SmolVLAPolicy.forward` loss.

    "mean_all" (0.4.4): the mean over (B, chunk, max_action_dim), padded steps and dims included (0.4.4
    reads a misspelt `actions_id_pad` key, so it never masks). "mean_valid" (HEAD): the mean over valid
    steps (`action_is_pad` False) and the real action dims.
    """
    cfg, spec = model.config, model.spec
    per = losses(model, batch, rng, noise=noise, time=time)
    metrics = {"losses_after_forward": per.mean()}
    if cfg.loss_reduction == "mean_all":
        total = per.mean()
    else:
        a = spec.action_dim
        is_pad = batch.get("action_is_pad")
        valid = jnp.ones(per.shape[:2], bool) if is_pad is None else ~jnp.asarray(is_pad, bool)
        v = valid[..., None].astype(per.dtype)
        total = (per[:, :, :a] * v).sum() / jnp.maximum(v.sum() * a, 1.0)
    metrics["loss"] = total
    return total, metrics


def predict_chunk_normalized(
    model: SmolVLAPolicy, observation: Mapping[str, Any], rng: jax.Array | None = None, *, noise: Any = None
) -> jax.Array:
    """The sampled chunk in normalized units, real action dims only (B, chunk, A): LeRobot's
    `predict_action_chunk` before the postprocessor."""
    cfg = model.config
    if noise is None:
        noise = observation.get("noise")
    images, masks, tokens, lang_mask, state = prepare_inputs(model, observation)
    noise = _noise(model, state.shape[0], noise, rng, "sampling")
    if cfg.sampling_noise_scale != 1.0:
        noise = noise * cfg.sampling_noise_scale
    x = model.model.sample(images, masks, tokens, lang_mask, state, noise)[:, :, : model.spec.action_dim]
    if cfg.adapt_to_pi_aloha:
        x = _aloha(x, aloha_gripper_from_angular)
    return x


def sample_actions(
    model: SmolVLAPolicy, observation: Mapping[str, Any], rng: jax.Array | None = None, *, noise: Any = None
) -> jax.Array:
    """Action chunk in dataset units (B, chunk_size, A); the initial noise is `observation["noise"]`
    (B, chunk_size, max_action_dim) when given, else drawn from `rng`, times `sampling_noise_scale`."""
    return model.normalizer.unnormalize(
        ACTION_KEY, predict_chunk_normalized(model, observation, rng, noise=noise)
    )


def param_group(path: tuple) -> str:
    """One learning rate for everything trained (LeRobot's `get_optim_params`); frozen parts are Buffers."""
    return "default"


def optimizer_preset(config: SmolVLAConfig) -> OptimizerPreset:
    """AdamW(1e-4, (0.9, 0.95), 1e-8, wd 1e-10), clip 10, LeRobot's cosine decay with warmup."""
    return OptimizerPreset(
        name="adamw",
        lr=config.optimizer_lr,
        betas=tuple(config.optimizer_betas),  # type: ignore[arg-type]
        eps=config.optimizer_eps,
        weight_decay=config.optimizer_weight_decay,
        grad_clip_norm=float(config.optimizer_grad_clip_norm),
        scheduler={
            "name": "cosine_decay_with_warmup",
            "peak_lr": config.optimizer_lr,
            "decay_lr": config.scheduler_decay_lr,
            "num_warmup_steps": config.scheduler_warmup_steps,
            "num_decay_steps": config.scheduler_decay_steps,
        },
    )


def ema_preset(config: SmolVLAConfig) -> EMAConfig | None:
    """The constant-decay EMA `ema_decay` asks for (openpi's pi0 keeps one), or None (LeRobot)."""
    return None if config.ema_decay is None else config.ema_config()


def inference_model(model: Any) -> Any:
    """The model as trained: most of a SmolVLA call multiplies its kernels by the prefix's tokens
    (1,024 patches per camera in the SigLIP tower at smolvla_base size, three quarters of its FLOPs),
    where the rows layout does not pay (0.9-1.1x at 64-256 rows on a 2-core CPU)."""
    return model


# ---------------------------------------------------------------------------------------------------
# construction
def _is_empty_camera(key: str, config: SmolVLAConfig) -> bool:
    return any(key == f"{EMPTY_CAMERA}{i}" for i in range(config.empty_cameras))


def make_spec(
    config: SmolVLAConfig,
    input_features: Mapping[str, PolicyFeature],
    output_features: Mapping[str, PolicyFeature],
) -> PolicySpec:
    """The spec: the dataset's inputs (minus LeRobot's `empty_camera_<i>` placeholders, which the model
    adds itself), plus the tokenized task as two LANGUAGE features of `tokenizer_max_length` tokens."""
    inputs = {
        k: f
        for k, f in input_features.items()
        if not _is_empty_camera(k, config) and f.type is not FeatureType.LANGUAGE
    }
    n = config.tokenizer_max_length
    inputs[LANGUAGE_TOKENS] = PolicyFeature(FeatureType.LANGUAGE, (n,))
    inputs[LANGUAGE_MASK] = PolicyFeature(FeatureType.LANGUAGE, (n,))
    spec = PolicySpec(
        type=POLICY_TYPE,
        input_features=inputs,
        output_features=dict(output_features),
        normalization_mapping=config.normalization_mapping,
        n_obs_steps=1,
        chunk_size=config.chunk_size,
        n_action_steps=config.n_action_steps,
        observation_delta_indices=(0,),
        action_delta_indices=tuple(range(config.chunk_size)),
        horizon=config.chunk_size,
        noise_shape=(config.chunk_size, config.max_action_dim),
        config=config.to_dict(),
    )
    if spec.state_key is None:
        raise ValueError("SmolVLA needs the robot state 'observation.state' (STATE) among its inputs")
    if not spec.image_keys:
        raise ValueError("SmolVLA needs at least one camera (VISUAL input)")
    action = spec.output_features[ACTION_KEY]
    if action.type is not FeatureType.ACTION or len(action.shape) != 1:
        raise ValueError(f"SmolVLA needs a 1-D ACTION feature {ACTION_KEY!r}, got {action}")
    s = spec.input_features[STATE_KEY].shape
    if len(s) != 1 or s[0] > config.max_state_dim:
        raise ValueError(
            f"observation.state {s} must be 1-D with at most max_state_dim={config.max_state_dim}"
        )
    if spec.action_dim > config.max_action_dim:
        raise ValueError(f"action dim {spec.action_dim} exceeds max_action_dim={config.max_action_dim}")
    if config.adapt_to_pi_aloha and (s[0] < 14 or spec.action_dim < 14):
        raise ValueError("adapt_to_pi_aloha reads 14 Aloha joints: state and action need >= 14 dims")
    for k in spec.image_keys:
        if spec.input_features[k].shape[0] != 3:
            raise ValueError(f"{k}: SmolVLA reads RGB images (3, H, W), got {spec.input_features[k].shape}")
    return spec


def with_vlm(
    config: SmolVLAConfig,
    *,
    vlm: str | Path | None = None,
    search: tuple[Path, ...] = (),
    need_weights: bool = False,
    required: bool = True,
) -> tuple[SmolVLAConfig, Any, Path | None]:
    """(config with `vlm` and `vlm_path` filled, the task tokenizer or None, the VLM folder or None).

    With `required=False` and the architecture already in the config, a missing folder only means no
    tokenizer (enough to rebuild a trained model; the bundle needs the tokenizer).
    """
    try:
        explicit = vlm
        if explicit is None and config.vlm_path and (Path(config.vlm_path) / vlm_folder.CONFIG).is_file():
            explicit = config.vlm_path  # the folder recorded when the model was built, if still there
        folder = vlm_folder.resolve_vlm_dir(
            config.vlm_model_name, explicit=explicit, search=search, need_weights=need_weights
        )
    except FileNotFoundError:
        if required or config.vlm is None:
            raise
        return config, None, None
    tokenizer = vlm_folder.load_tokenizer(
        folder, max_length=config.tokenizer_max_length, padding=config.pad_language_to
    )
    arch = vlm_folder.read_arch(folder, tokenizer)
    if config.vlm is not None and config.vlm != arch.to_dict():
        raise ValueError(
            f"{folder}: this VLM's architecture differs from the one the model was built with "
            f"(config.vlm); pass the VLM folder it was trained with"
        )
    config = dataclasses.replace(config, vlm=arch.to_dict(), vlm_path=str(folder.absolute()))
    return config, tokenizer, folder


def load_pretrained_vlm(model: SmolVLAPolicy, folder: Path) -> list[str]:
    """Copy SmolVLM2's pretrained weights (model.safetensors of the VLM folder) into `model`, strictly."""
    sd, dropped = vlm_folder.read_vlm_state_dict(
        folder, model.config.num_vlm_layers, vision=not model.config.uses_keypoints
    )
    load_state_dict(model.model.vlm_with_expert.vlm, sd, source=str(folder))
    return dropped


def build(
    config: SmolVLAConfig,
    features: Mapping[str, Any],
    stats: Mapping[str, Mapping[str, Any]] | None,
    *,
    seed: int = 0,
    load_pretrained_backbone: bool = True,
) -> SmolVLAPolicy:
    """A fresh SmolVLA: the VLM's architecture and tokenizer from its folder (`vlm_model_name`), random
    weights, then, with `load_vlm_weights` (and `load_pretrained_backbone`), SmolVLM2's pretrained weights
    from that folder's model.safetensors, as LeRobot fine-tunes from the pretrained VLM."""
    load = bool(config.load_vlm_weights and load_pretrained_backbone)
    config, tokenizer, folder = with_vlm(config, need_weights=load, required=config.vlm is None or load)
    inputs, outputs = split_features(as_policy_features(features))
    spec = make_spec(config, inputs, outputs)
    model = SmolVLAPolicy(config, spec, stats, rngs=nnx.Rngs(seed), tokenizer=tokenizer)
    if load:
        assert folder is not None
        load_pretrained_vlm(model, folder)
    return model


def from_lerobot(path: Any, *, vlm: str | Path | None = None, precision: str = "float32") -> ImportedPolicy:
    """Import a LeRobot SmolVLA `pretrained_model` folder with the VLM folder its `vlm_model_name` names.

    The VLM folder is `vlm` if given, else resolved relative to the checkpoint folder or its parent, else
    from the Hugging Face cache (`vlm_folder.resolve_vlm_dir`); it supplies the architecture and the
    tokenizer, every weight comes from model.safetensors (strictly: every tensor used, every variable
    set; `lm_head`, which SmolVLA never uses, is left out with a note). `precision="bfloat16"` keeps
    LeRobot's mixed bf16/fp32 (a checkpoint saved from a bf16-loaded VLM); float32 by default.
    """

    def configure(config: SmolVLAConfig, ckpt: Any) -> tuple[SmolVLAConfig, dict[str, Any], list[str]]:
        config = dataclasses.replace(config, precision=precision)
        config, tokenizer, _ = with_vlm(config, vlm=vlm, search=(ckpt.path, ckpt.path.parent))
        notes = []
        if precision == "float32" and any(str(v.dtype) == "bfloat16" for v in ckpt.state_dict.values()):
            notes.append(
                f"{ckpt.path}: bf16 tensors converted to float32 (precision='bfloat16' keeps LeRobot's mixed mode)"
            )
        return config, {"tokenizer": tokenizer}, notes

    return build_from_lerobot(
        path,
        policy_type=POLICY_TYPE,
        config_cls=SmolVLAConfig,
        make_spec=make_spec,
        policy_cls=SmolVLAPolicy,
        configure=configure,
        ignore=(r"^model\.vlm_with_expert\.vlm\.lm_head\.",),
    )

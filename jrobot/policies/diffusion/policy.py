"""Diffusion Policy's entry points (the `PolicyModule` contract): spec, build, loss, sampling, optimizer,
EMA, import; plus the pieces the parity tests drive directly (`compute_loss`, `generate_trajectory`)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from jrobot.policies import resnet
from jrobot.policies.base import (
    ImportedPolicy,
    OptimizerPreset,
    as_policy_features,
    image_to_unit_float,
)
from jrobot.policies.diffusion.config import POLICY_TYPE, DiffusionConfig
from jrobot.policies.diffusion.model import DiffusionPolicy
from jrobot.policies.ema import EMAConfig
from jrobot.policies.lerobot.importer import build_from_lerobot
from jrobot.policies.rows_layout import lay_out_rows
from jrobot.policies.spec import (
    ACTION_KEY,
    FeatureType,
    PolicyFeature,
    PolicySpec,
    split_features,
)


# ---------------------------------------------------------------------------------------------------
# entry points
def _history(x: Any, key: str, feature: PolicyFeature, n_obs: int) -> jax.Array:
    """(B, n_obs, *f) as given, or (B, *f) promoted to one step when n_obs_steps == 1."""
    x = jnp.asarray(x)
    visual = feature.type is FeatureType.VISUAL
    fdim = 3 if visual else len(feature.shape)
    if x.ndim == fdim + 1 and n_obs == 1:
        x = x[:, None]
    if x.ndim != fdim + 2 or x.shape[1] != n_obs:
        raise ValueError(
            f"{key}: expected (B, n_obs_steps={n_obs}, ...) with {fdim} feature axes, got shape {tuple(x.shape)}; "
            "Diffusion Policy reads an observation history (the runtime repeats the first frame to fill it)"
        )
    if visual and x.shape[-1] != 3:
        hint = (
            " (channel-first? convert with jrobot.policies.spec.images_chw_to_hwc)"
            if x.shape[-3] == 3
            else ""
        )
        raise ValueError(
            f"{key}: images must be channel-last (..., H, W, 3), got shape {tuple(x.shape)}{hint}"
        )
    return x


def prepare_observation(
    model: DiffusionPolicy, observation: Mapping[str, Any]
) -> tuple[jax.Array, list[jax.Array], jax.Array | None]:
    """Raw observation -> normalized (state (B,S,Sd), [images (B,S,H,W,3)], env (B,S,E) or None).

    Images may be uint8 (divided by 255, the pipeline's format) or float in [0, 1] (LeRobot's), channel-last.
    """
    spec, norm, n_obs = model.spec, model.normalizer, model.config.n_obs_steps

    def take(key: str) -> jax.Array:
        if key not in observation:
            raise KeyError(f"observation lacks {key!r} (Diffusion reads {list(spec.input_features)})")
        return _history(observation[key], key, spec.input_features[key], n_obs)

    state = norm.normalize(spec.state_key, take(spec.state_key).astype(jnp.float32))
    images = []
    for k in spec.image_keys:
        img = take(k)
        if model.config.resize_shape is None and img.shape[2:4] != spec.input_features[k].shape[1:]:
            raise ValueError(
                f"{k}: images are {img.shape[2:4]} but the policy was built for {spec.input_features[k].shape[1:]} "
                "(set resize_shape to accept other sizes)"
            )
        images.append(norm.normalize(k, image_to_unit_float(img, k)))
    env = None
    if spec.env_state_key:
        env = norm.normalize(spec.env_state_key, take(spec.env_state_key).astype(jnp.float32))
    return state, images, env


def global_conditioning(
    model: DiffusionPolicy,
    observation: Mapping[str, Any],
    *,
    train: bool = False,
    rng: jax.Array | None = None,
) -> jax.Array:
    """LeRobot's `_prepare_global_conditioning` from a raw observation: (B, global_cond_dim)."""
    state, images, env = prepare_observation(model, observation)
    return model.diffusion.global_conditioning(state, images, env, train=train, rng=rng)


def compute_loss(
    model: DiffusionPolicy,
    batch: Mapping[str, Any],
    *,
    eps: jax.Array,
    timesteps: jax.Array,
    train: bool = True,
    crop_rng: jax.Array | None = None,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """The loss for given noise `eps` (B, horizon, A) and integer `timesteps` (B,): LeRobot's `compute_loss`."""
    cfg, spec = model.config, model.spec
    if ACTION_KEY not in batch:
        raise KeyError(f"Diffusion loss needs {ACTION_KEY!r} in the batch")
    actions = jnp.asarray(batch[ACTION_KEY], jnp.float32)
    if actions.ndim != 3 or actions.shape[1:] != (cfg.horizon, spec.action_dim):
        raise ValueError(
            f"{ACTION_KEY}: expected (B, horizon={cfg.horizon}, {spec.action_dim}), got {actions.shape}"
        )
    gc = global_conditioning(model, batch, train=train, rng=crop_rng)
    x0 = model.normalizer.normalize(ACTION_KEY, actions)
    sched = model.scheduler
    timesteps = jnp.asarray(timesteps, jnp.int32)
    noisy = sched.add_noise(x0, eps, timesteps)
    pred = model.diffusion.unet(noisy, timesteps, gc)
    err = jnp.square(pred - sched.training_target(x0, eps))
    metrics: dict[str, jax.Array] = {}
    if cfg.do_mask_loss_for_padding:
        if "action_is_pad" not in batch:
            raise KeyError("do_mask_loss_for_padding=True needs 'action_is_pad' in the batch")
        valid = (~jnp.asarray(batch["action_is_pad"], bool))[..., None].astype(err.dtype)
        masked = err * valid
        if cfg.mask_loss_reduction == "mean_all":
            value = masked.mean()
        else:
            value = masked.sum() / jnp.maximum(valid.sum() * err.shape[-1], 1.0)
        metrics["mse_unmasked"] = err.mean()
    else:
        value = err.mean()
    metrics["loss"] = value
    return value, metrics


def loss(
    model: DiffusionPolicy, batch: Mapping[str, Any], rng: jax.Array, *, train: bool = True
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Training loss: draws the noise, the timesteps U{0..T-1} and (train mode) the random crops from `rng`.

    `train=False` gives a validation loss with centre crops and eval-mode batch norm (noise still drawn).
    """
    if rng is None:
        raise ValueError("the Diffusion loss draws noise and timesteps: it needs an rng")
    if ACTION_KEY not in batch:
        raise KeyError(f"Diffusion loss needs {ACTION_KEY!r} in the batch")
    shape = jnp.shape(batch[ACTION_KEY])
    k_eps, k_t, k_crop = jax.random.split(rng, 3)
    eps = jax.random.normal(k_eps, shape, jnp.float32)
    timesteps = jax.random.randint(k_t, shape[:1], 0, model.config.num_train_timesteps)
    return compute_loss(model, batch, eps=eps, timesteps=timesteps, train=train, crop_rng=k_crop)


def generate_trajectory(
    model: DiffusionPolicy,
    observation: Mapping[str, Any],
    rng: jax.Array | None = None,
    *,
    noise: jax.Array | None = None,
    step_noise: jax.Array | None = None,
) -> jax.Array:
    """The full denoised trajectory in normalized units (B, horizon, A), eval mode.

    `noise` (B, horizon, A) replaces the initial N(0, I) draw; `step_noise` (n_inference_steps, B, horizon,
    A) replaces DDPM's per-step variance noise (diffusers draws one per step, the last one unused). What
    is not given is drawn from `rng`.
    """
    cfg, spec = model.config, model.spec
    gc = global_conditioning(model, observation, train=False)
    b = gc.shape[0]
    shape = (b, cfg.horizon, spec.action_dim)
    k_init = k_steps = None
    if rng is not None:
        k_init, k_steps = jax.random.split(rng)
    if noise is None:
        if k_init is None:
            raise ValueError("sampling needs an rng or the initial `noise`")
        noise = jax.random.normal(k_init, shape, jnp.float32)
    noise = jnp.asarray(noise, jnp.float32)
    if tuple(noise.shape) != shape:
        raise ValueError(
            f"noise must have shape (B, horizon, action_dim) = {shape}, got {tuple(noise.shape)}"
        )
    unet = model.diffusion.unet
    return model.scheduler.sample(lambda x, t: unet(x, t, gc), noise, rng=k_steps, step_noise=step_noise)


def executed_slice(config: DiffusionConfig, trajectory: jax.Array) -> jax.Array:
    """Actions [n_obs-1, n_obs-1+n_action_steps) of a (B, horizon, A) trajectory (from the current step)."""
    start = config.n_obs_steps - 1
    return trajectory[:, start : start + config.n_action_steps]


def sample_actions(
    model: DiffusionPolicy,
    observation: Mapping[str, Any],
    rng: jax.Array | None = None,
    *,
    noise: jax.Array | None = None,
    step_noise: jax.Array | None = None,
) -> jax.Array:
    """Eval-mode actions to execute, in dataset units: (B, n_action_steps, A).

    `noise` may also come as `observation["noise"]` (B, horizon, A), the runtime's offline key, so a DDIM
    run reproduces LeRobot's output for the same noise (DDPM also needs `step_noise`).
    """
    if noise is None and "noise" in observation:
        noise = observation["noise"]
    traj = generate_trajectory(model, observation, rng, noise=noise, step_noise=step_noise)
    return model.normalizer.unnormalize(ACTION_KEY, executed_slice(model.config, traj))


def param_group(path: tuple) -> str:
    """Diffusion trains every parameter with one learning rate (LeRobot's `get_optim_params`)."""
    return "default"


def optimizer_preset(config: DiffusionConfig) -> OptimizerPreset:
    """torch Adam (coupled L2: optax add_decayed_weights before scale_by_adam), betas (0.95, 0.999), lr 1e-4,
    wd 1e-6, grad clip 10, diffusers "cosine" with 500 warmup steps over the run's total steps."""
    return OptimizerPreset(
        name="adam",
        lr=config.optimizer_lr,
        betas=tuple(config.optimizer_betas),  # type: ignore[arg-type]
        eps=config.optimizer_eps,
        weight_decay=config.optimizer_weight_decay,
        grad_clip_norm=10.0,
        scheduler={"name": config.scheduler_name, "num_warmup_steps": config.scheduler_warmup_steps},
    )


def ema_preset(config: DiffusionConfig) -> EMAConfig | None:
    """The EMA schedule the trainer applies to the parameters, or None when `use_ema` is off."""
    return config.ema_config() if config.use_ema else None


def inference_model(model: DiffusionPolicy) -> DiffusionPolicy:
    """A copy whose U-Net convolution and linear layers hold their kernels as (out, in) rows
    (`rows_layout`): the sampler calls the U-Net 10-100 times per chunk, and at batch 1 each call
    multiplies 1-16 rows by ~1 GB of kernels (LeRobot's default size), which XLA's CPU dot reads about
    twice as fast stored as rows. The upsampling reads its kernels as rows already (`unet.upsample_x2`)."""
    copy = nnx.clone(model)
    lay_out_rows(copy.diffusion.unet)
    return copy


# ---------------------------------------------------------------------------------------------------
# construction
def make_spec(
    config: DiffusionConfig,
    input_features: Mapping[str, PolicyFeature],
    output_features: Mapping[str, PolicyFeature],
) -> PolicySpec:
    """The policy spec; checks Diffusion's feature requirements (LeRobot's `validate_features`).

    `chunk_size` = `n_action_steps`: `sample_actions` returns the executed slice, not the whole horizon;
    `noise_shape` = (horizon, action_dim), the initial noise of the whole trajectory.
    """
    spec = PolicySpec(
        type=POLICY_TYPE,
        input_features=dict(input_features),
        output_features=dict(output_features),
        normalization_mapping=config.normalization_mapping,
        n_obs_steps=config.n_obs_steps,
        chunk_size=config.n_action_steps,
        n_action_steps=config.n_action_steps,
        observation_delta_indices=config.observation_delta_indices,
        action_delta_indices=config.action_delta_indices,
        horizon=config.horizon,
        drop_n_last_frames=config.drop_n_last_frames,
        config=config.to_dict(),
    )
    if spec.state_key is None:
        raise ValueError("Diffusion Policy needs a robot state input feature 'observation.state' (STATE)")
    if not spec.image_keys and spec.env_state_key is None:
        raise ValueError(
            "Diffusion Policy needs at least one image or the environment state among its inputs"
        )
    action = spec.output_features[ACTION_KEY]
    if action.type is not FeatureType.ACTION or len(action.shape) != 1:
        raise ValueError(f"Diffusion needs a 1-D ACTION feature {ACTION_KEY!r}, got {action}")
    shapes = {k: spec.input_features[k].shape for k in spec.image_keys}
    if len(set(shapes.values())) > 1:
        raise ValueError(f"Diffusion Policy needs every camera at the same shape, got {shapes}")
    for k, shape in shapes.items():
        if shape[0] != 3:
            raise ValueError(f"{k}: the ResNet reads RGB images, shape (3, H, W); got {shape}")
        crop = config.crop_shape
        if config.resize_shape is None and crop is not None and (crop[0] > shape[1] or crop[1] > shape[2]):
            raise ValueError(f"crop_shape {crop} should fit within the image shape {shape} of {k!r}")
    # the sampler starts from N(0, I) over the whole normalized trajectory
    return dataclasses.replace(spec, noise_shape=(config.horizon, spec.action_dim))


def build(
    config: DiffusionConfig,
    features: Mapping[str, Any],
    stats: Mapping[str, Mapping[str, Any]] | None,
    *,
    seed: int = 0,
    load_pretrained_backbone: bool = True,
) -> DiffusionPolicy:
    """A freshly initialized Diffusion Policy from (config, dataset or policy features, dataset stats).

    Initialization follows LeRobot (torch defaults, torchvision's trunk init, GroupNorm ones/zeros); with a
    BatchNorm trunk and `pretrained_backbone_weights`, the ImageNet weights come from a local file.
    """
    inputs, outputs = split_features(as_policy_features(features))
    spec = make_spec(config, inputs, outputs)
    weights = config.pretrained_backbone_weights if load_pretrained_backbone and spec.image_keys else None
    # find the local ImageNet file before spending time on the random init
    weights_file = (
        resnet.find_pretrained_weights(weights, config.pretrained_backbone_path) if weights else None
    )
    model = DiffusionPolicy(config, spec, stats, rngs=nnx.Rngs(seed))
    if weights:
        encoders = model.diffusion.rgb_encoder
        for enc in encoders if isinstance(encoders, nnx.List) else [encoders]:
            resnet.load_pretrained(enc.backbone, weights, weights_file)
    return model


def from_lerobot(path: Any) -> ImportedPolicy:
    """Import a LeRobot Diffusion `pretrained_model` folder: config.json, model.safetensors and the stats.

    The architecture comes from the checkpoint's own config.json. Every tensor in model.safetensors must
    map to a jrobot leaf and vice versa (`StateDictError` otherwise, listing the keys), and the saved
    spatial-softmax grids must match the feature-map size the config implies. Stats come from the
    processor files (or pre-0.4 buffers); a feature without stats passes through unnormalized, as in
    LeRobot, with a warning.
    """
    return build_from_lerobot(
        path,
        policy_type=POLICY_TYPE,
        config_cls=DiffusionConfig,
        make_spec=make_spec,
        policy_cls=DiffusionPolicy,
    )


def global_cond_dim(model: DiffusionPolicy) -> int:
    """Width of the U-Net's global conditioning vector (per-step features x n_obs_steps)."""
    return int(model.diffusion.unet.global_cond_dim)

"""ACT's entry points (the `PolicyModule` contract): spec, build, loss, sampling, optimizer, import."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from jrobot.policies import resnet
from jrobot.policies.act.config import POLICY_TYPE, ACTConfig
from jrobot.policies.act.model import ACTPolicy
from jrobot.policies.base import (
    ImportedPolicy,
    OptimizerPreset,
    as_policy_features,
    current_frame,
    image_to_unit_float,
)
from jrobot.policies.layers import RngSeq
from jrobot.policies.lerobot.importer import build_from_lerobot
from jrobot.policies.spec import (
    ACTION_KEY,
    FeatureType,
    PolicyFeature,
    PolicySpec,
    split_features,
)


# ---------------------------------------------------------------------------------------------------
# entry points
def prepare_observation(
    model: ACTPolicy, observation: Mapping[str, jnp.ndarray]
) -> tuple[jnp.ndarray | None, jnp.ndarray | None, list[jnp.ndarray]]:
    """Raw observation -> normalized (state (B,S), env (B,E), [images (B,H,W,3)]).

    Images may be uint8 (divided by 255, the pipeline's format) or float in [0, 1] (LeRobot's), channel-last.
    """
    spec, norm = model.spec, model.normalizer

    def take(key: str) -> jnp.ndarray:
        if key not in observation:
            raise KeyError(f"observation lacks {key!r} (ACT reads {[k for k in spec.input_features]})")
        return current_frame(jnp.asarray(observation[key]), spec.input_features[key], key, spec.n_obs_steps)

    state = env = None
    if spec.state_key:
        state = norm.normalize(spec.state_key, take(spec.state_key).astype(jnp.float32))
    if spec.env_state_key:
        env = norm.normalize(spec.env_state_key, take(spec.env_state_key).astype(jnp.float32))
    images = [norm.normalize(k, image_to_unit_float(take(k), k)) for k in spec.image_keys]
    return state, env, images


def forward(
    model: ACTPolicy,
    observation: Mapping[str, jnp.ndarray],
    actions: jnp.ndarray | None = None,
    action_is_pad: jnp.ndarray | None = None,
    *,
    train: bool,
    rng: jax.Array | None = None,
    vae_eps: jnp.ndarray | None = None,
) -> tuple[jnp.ndarray, jnp.ndarray | None, jnp.ndarray | None]:
    """(normalized action chunk, mu, log_sigma_x2); mu/log_sigma_x2 are None unless the VAE ran.

    `actions` are normalized targets (B, chunk, A). In train mode with `use_vae` the VAE encoder runs and
    the latent noise is `vae_eps` if given, else drawn from `rng`; dropout draws from `rng`.
    """
    cfg = model.config
    state, env, images = prepare_observation(model, observation)
    batch = next(x.shape[0] for x in (state, env, *images) if x is not None)
    if train and cfg.dropout > 0 and rng is None:
        raise ValueError("ACT train mode with dropout needs an rng")
    drop_key = vae_key = shift_key = None
    if rng is not None:
        drop_key, vae_key = jax.random.split(rng)
        if train and cfg.random_shift_pixels:  # a third key only when used: other runs keep their draws
            vae_key, shift_key = jax.random.split(vae_key)
    if train and cfg.random_shift_pixels and model.spec.image_keys and rng is None:
        raise ValueError("ACT train mode with random_shift_pixels needs an rng")
    drops = RngSeq(drop_key if (train and cfg.dropout > 0) else None)
    mu = log_sigma_x2 = None
    if train and cfg.use_vae:
        if actions is None:
            raise ValueError("ACT train mode with use_vae needs the target actions")
        if action_is_pad is None:
            action_is_pad = jnp.zeros(actions.shape[:2], bool)
        mu, log_sigma_x2 = model.model.encode_latent(state, actions, action_is_pad, drops)
        if vae_eps is None:
            if vae_key is None:
                raise ValueError(
                    "ACT train mode with use_vae needs an rng (or vae_eps) for the latent sample"
                )
            vae_eps = jax.random.normal(vae_key, mu.shape, jnp.float32)
        latent = mu + jnp.exp(log_sigma_x2 / 2) * vae_eps
    else:
        latent = jnp.zeros((batch, cfg.latent_dim), jnp.float32)
    out = model.model(state, env, images, latent, train=train, rng=drops, shift_rng=shift_key)
    return out, mu, log_sigma_x2


def loss(
    model: ACTPolicy,
    batch: Mapping[str, jnp.ndarray],
    rng: jax.Array | None,
    *,
    train: bool = True,
    vae_eps: jnp.ndarray | None = None,
) -> tuple[jnp.ndarray, dict[str, jnp.ndarray]]:
    """LeRobot's `ACTPolicy.forward` loss: masked L1 (+ kl_weight * KL in train mode with the VAE).

    `train=False` evaluates a validation loss with the zero latent and no dropout (L1 only), which is what
    LeRobot HEAD does (0.4.4 crashes there).
    """
    cfg, spec = model.config, model.spec
    if ACTION_KEY not in batch:
        raise KeyError(f"ACT loss needs {ACTION_KEY!r} in the batch")
    raw_actions = jnp.asarray(batch[ACTION_KEY], jnp.float32)
    if raw_actions.ndim != 3 or raw_actions.shape[1:] != (cfg.chunk_size, spec.action_dim):
        raise ValueError(
            f"{ACTION_KEY}: expected (B, chunk_size={cfg.chunk_size}, {spec.action_dim}), got {raw_actions.shape}"
        )
    is_pad = jnp.asarray(batch.get("action_is_pad", jnp.zeros(raw_actions.shape[:2], bool)), bool)
    target = model.normalizer.normalize(ACTION_KEY, raw_actions)
    pred, mu, log_sigma_x2 = forward(model, batch, target, is_pad, train=train, rng=rng, vae_eps=vae_eps)
    valid = (~is_pad)[..., None].astype(jnp.float32)
    abs_err = jnp.abs(target - pred) * valid
    if cfg.l1_reduction == "mean_all":
        l1 = abs_err.mean()
    else:
        l1 = abs_err.sum() / jnp.maximum(valid.sum() * abs_err.shape[-1], 1.0)
    metrics = {"l1_loss": l1}
    total = l1
    if mu is not None:
        kld = (-0.5 * (1 + log_sigma_x2 - mu**2 - jnp.exp(log_sigma_x2))).sum(-1).mean()
        metrics["kld_loss"] = kld
        total = l1 + cfg.kl_weight * kld
    metrics["loss"] = total
    return total, metrics


def predict_chunk_normalized(model: ACTPolicy, observation: Mapping[str, jnp.ndarray]) -> jnp.ndarray:
    """Eval-mode chunk in normalized units (B, chunk, A): zero latent, no dropout."""
    return forward(model, observation, train=False)[0]


def sample_actions(
    model: ACTPolicy, observation: Mapping[str, jnp.ndarray], rng: jax.Array | None = None
) -> jnp.ndarray:
    """Eval-mode action chunk in dataset units (B, chunk_size, A). ACT is deterministic; `rng` is unused.

    The runtime executes the first `spec.n_action_steps` actions or feeds every chunk to
    `jrobot.policies.ensemble.TemporalEnsembler` when `spec.temporal_ensemble_coeff` is set.
    """
    return model.normalizer.unnormalize(ACTION_KEY, predict_chunk_normalized(model, observation))


def param_group(path: tuple) -> str:
    """LeRobot's ACT param groups: `model.backbone.*` gets `optimizer_lr_backbone`."""
    return "backbone" if tuple(path[:2]) == ("model", "backbone") else "default"


def optimizer_preset(config: ACTConfig) -> OptimizerPreset:
    """AdamW(lr, betas (0.9, 0.999), eps 1e-8, wd), grad clip 10, constant LR, backbone LR group."""
    return OptimizerPreset(
        name="adamw",
        lr=config.optimizer_lr,
        weight_decay=config.optimizer_weight_decay,
        group_lr={"backbone": config.optimizer_lr_backbone},
    )


def ema_preset(config: ACTConfig) -> None:
    """ACT keeps no EMA of its parameters (LeRobot's ACT trains and evaluates the raw weights)."""
    return None


def inference_model(model: Any) -> Any:
    """A copy whose ResNet computes its 3x3 stride-1 convolutions with Winograd's F(m x m, 3 x 3)
    (`resnet.lay_out_winograd`), on the layers whose maps the spec's camera sizes make large enough:
    at LeRobot's default 480x640 they are most of a call's work (ACT inference 1.2x faster on a
    2-core CPU). Other kernels stay as trained: a batch-1 ACT call multiplies them by the image
    tokens or the chunk's queries (about 100 rows and more at the shipped sizes), where the rows
    layout does not pay (0.9-1.1x at 64-256 rows on a 2-core CPU), or they stay in the caches."""
    backbone = getattr(model.model, "backbone", None)
    if not isinstance(backbone, resnet.ResNet):
        return model
    spec = model.spec
    image_hws = [tuple(spec.input_features[k].shape[1:]) for k in spec.image_keys]
    copy = nnx.clone(model)
    return copy if resnet.lay_out_winograd(copy.model.backbone, image_hws) else model


# ---------------------------------------------------------------------------------------------------
# construction
def make_spec(
    config: ACTConfig,
    input_features: Mapping[str, PolicyFeature],
    output_features: Mapping[str, PolicyFeature],
) -> PolicySpec:
    """The policy spec; checks ACT's feature requirements (LeRobot's `validate_features`)."""
    spec = PolicySpec(
        type=POLICY_TYPE,
        input_features=dict(input_features),
        output_features=dict(output_features),
        normalization_mapping=config.normalization_mapping,
        n_obs_steps=config.n_obs_steps,
        chunk_size=config.chunk_size,
        n_action_steps=config.n_action_steps,
        observation_delta_indices=None,
        action_delta_indices=tuple(range(config.chunk_size)),
        horizon=config.chunk_size,
        noise_shape=None,  # deterministic: eval mode uses the zero latent
        drop_n_last_frames=0,
        temporal_ensemble_coeff=config.temporal_ensemble_coeff,
        config=config.to_dict(),
    )
    if not spec.image_keys and spec.env_state_key is None:
        raise ValueError("ACT needs at least one image or the environment state among its input features")
    if (
        spec.output_features[ACTION_KEY].type is not FeatureType.ACTION
        or len(spec.output_features[ACTION_KEY].shape) != 1
    ):
        raise ValueError(
            f"ACT needs a 1-D ACTION feature {ACTION_KEY!r}, got {spec.output_features[ACTION_KEY]}"
        )
    for k in spec.image_keys:
        if spec.input_features[k].shape[0] != 3:
            raise ValueError(
                f"{k}: ACT's ResNet reads RGB images, shape (3, H, W); got {spec.input_features[k].shape}"
            )
    return spec


def build(
    config: ACTConfig,
    features: Mapping[str, Any],
    stats: Mapping[str, Mapping[str, Any]] | None,
    *,
    seed: int = 0,
    load_pretrained_backbone: bool = True,
) -> ACTPolicy:
    """A freshly initialized ACT from (config, dataset or policy features, dataset stats).

    Initialization follows LeRobot: xavier_uniform for the transformer encoder/decoder matrices, torch
    defaults elsewhere, torchvision's for the trunk; then, if `config.pretrained_backbone_weights` is set
    and `load_pretrained_backbone`, the ImageNet trunk from a local file (error if there is none).
    """
    inputs, outputs = split_features(as_policy_features(features))
    spec = make_spec(config, inputs, outputs)
    model = ACTPolicy(config, spec, stats, rngs=nnx.Rngs(seed))
    if config.pretrained_backbone_weights and load_pretrained_backbone and spec.image_keys:
        resnet.load_pretrained(
            model.model.backbone, config.pretrained_backbone_weights, config.pretrained_backbone_path
        )
    return model


def from_lerobot(path: Any) -> ImportedPolicy:
    """Import a LeRobot ACT `pretrained_model` folder: config.json, model.safetensors and the stats.

    Every tensor in model.safetensors must map to a jrobot leaf and vice versa (`StateDictError`
    otherwise, listing the keys). Stats come from the processor files (or pre-0.4 buffers); a feature
    without stats passes through unnormalized, as in LeRobot, with a warning.
    """
    return build_from_lerobot(
        path, policy_type=POLICY_TYPE, config_cls=ACTConfig, make_spec=make_spec, policy_cls=ACTPolicy
    )

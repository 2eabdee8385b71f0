"""ACT (Action Chunking Transformer) in Flax NNX, numerically matching LeRobot 0.4.4's `ACTPolicy`.

Module tree and parameter names mirror LeRobot (`model.backbone.*`, `model.encoder.layers.0.self_attn.*`,
...), so a LeRobot `model.safetensors` loads by path (`from_lerobot`). Tensors are batch-first here
(LeRobot's transformer is sequence-first; the math is identical).

Behaviour (reference: ../shared/reference/lerobot_policies.md §2):
- ResNet18 trunk with frozen batch norm, 1x1 conv projection, 2-D sinusoid positions per camera
  (shared trunk, no per-camera embedding), tokens [latent, state, env, cam0 (h w), cam1 ...].
- Positional embeddings are added to queries and keys only, in every layer; post-norm by default;
  the decoder ends with an extra LayerNorm; decoder queries are zeros + learned `decoder_pos_embed`.
- Train mode with `use_vae`: VAE encoder over [cls, state, actions] with the action pad mask, latent
  `mu + exp(log_sigma_x2 / 2) * eps`; eval mode: zero latent, no dropout.
- Loss: masked L1 averaged over all (B, chunk, A) elements, padded ones included (0.4.4,
  `l1_reduction="mean_all"`) or over valid elements only (HEAD, `"mean_valid"`), plus
  `kl_weight * mean_B(sum_latent KL)`.
- Normalization (MEAN_STD by default) happens inside: observations in, dataset-unit actions out.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jrobot.policies import resnet
from jrobot.policies.base import (
    ImportedPolicy,
    OptimizerPreset,
    as_policy_features,
    build_from_lerobot,
    current_frame,
    image_to_unit_float,
)
from jrobot.policies.layers import (
    Buffer,
    MultiheadAttention,
    RngSeq,
    activation,
    dropout,
    layer_norm,
    torch_conv,
    torch_embed,
    torch_linear,
)
from jrobot.policies.lerobot_checkpoint import policy_hyperparameters
from jrobot.policies.normalize import Normalizer
from jrobot.policies.spec import (
    ACTION_KEY,
    FeatureType,
    HyperparameterDict,
    PolicyFeature,
    PolicySpec,
    parse_normalization_mapping,
    split_features,
)

POLICY_TYPE = "act"
L1_REDUCTIONS = ("mean_all", "mean_valid")
COMPUTE_DTYPES = {"float32": None, "bfloat16": jnp.bfloat16}


def _default_norm_map() -> dict[str, str]:
    return {"VISUAL": "MEAN_STD", "STATE": "MEAN_STD", "ACTION": "MEAN_STD"}


@dataclasses.dataclass(frozen=True)
class ACTConfig(HyperparameterDict):
    """LeRobot's `ACTConfig` hyperparameters (same names, same defaults) plus three jrobot options.

    jrobot options:
    - `l1_reduction`: "mean_all" (LeRobot 0.4.4: padded entries count in the denominator) or
      "mean_valid" (LeRobot HEAD: divide by the number of valid entries).
    - `pretrained_backbone_path`: local file with the torchvision weights named by
      `pretrained_backbone_weights` (never downloaded; see `resnet.find_pretrained_weights`).
    - `compute_dtype`: "float32" or "bfloat16" activations (parameters stay float32).
    """

    n_obs_steps: int = 1
    chunk_size: int = 100
    n_action_steps: int = 100
    normalization_mapping: dict[str, str] = dataclasses.field(default_factory=_default_norm_map)
    vision_backbone: str = "resnet18"
    pretrained_backbone_weights: str | None = "ResNet18_Weights.IMAGENET1K_V1"
    replace_final_stride_with_dilation: bool = False
    pre_norm: bool = False
    dim_model: int = 512
    n_heads: int = 8
    dim_feedforward: int = 3200
    feedforward_activation: str = "relu"
    n_encoder_layers: int = 4
    n_decoder_layers: int = 1
    use_vae: bool = True
    latent_dim: int = 32
    n_vae_encoder_layers: int = 4
    temporal_ensemble_coeff: float | None = None
    dropout: float = 0.1
    kl_weight: float = 10.0
    optimizer_lr: float = 1e-5
    optimizer_weight_decay: float = 1e-4
    optimizer_lr_backbone: float = 1e-5
    # jrobot options
    l1_reduction: str = "mean_all"
    pretrained_backbone_path: str | None = None
    compute_dtype: str = "float32"

    def __post_init__(self) -> None:
        mapping = parse_normalization_mapping(
            self.normalization_mapping, where="ACTConfig.normalization_mapping"
        )
        object.__setattr__(self, "normalization_mapping", {k: v.value for k, v in mapping.items()})
        if self.n_obs_steps != 1:
            raise ValueError(f"ACT reads one observation step: n_obs_steps must be 1, got {self.n_obs_steps}")
        if not 1 <= self.n_action_steps <= self.chunk_size:
            raise ValueError(
                f"n_action_steps ({self.n_action_steps}) must be between 1 and chunk_size ({self.chunk_size})"
            )
        if self.temporal_ensemble_coeff is not None and self.n_action_steps > 1:
            raise ValueError("temporal ensembling queries the policy every step: n_action_steps must be 1")
        if not self.vision_backbone.startswith("resnet"):
            raise ValueError(f"vision_backbone must be a ResNet, got {self.vision_backbone!r}")
        depth = self.backbone_depth
        if depth not in resnet.BLOCKS_PER_LAYER:
            raise ValueError(
                f"vision_backbone {self.vision_backbone!r} is not supported; use "
                f"{[f'resnet{d}' for d in resnet.BLOCKS_PER_LAYER]}"
            )
        if self.replace_final_stride_with_dilation:
            raise ValueError(
                "replace_final_stride_with_dilation=True: torchvision's BasicBlock (resnet18/34) does not "
                "support dilation, so LeRobot cannot build this model either"
            )
        activation(self.feedforward_activation)  # validates
        if self.dim_model % self.n_heads:
            raise ValueError(f"dim_model ({self.dim_model}) must be divisible by n_heads ({self.n_heads})")
        if self.l1_reduction not in L1_REDUCTIONS:
            raise ValueError(f"l1_reduction must be one of {L1_REDUCTIONS}, got {self.l1_reduction!r}")
        if self.compute_dtype not in COMPUTE_DTYPES:
            raise ValueError(
                f"compute_dtype must be one of {sorted(COMPUTE_DTYPES)}, got {self.compute_dtype!r}"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")

    def __hash__(self) -> int:
        return hash(json.dumps(self.to_dict(), sort_keys=True))

    @property
    def backbone_depth(self) -> int:
        digits = self.vision_backbone[len("resnet") :]
        return int(digits) if digits.isdigit() else -1

    @classmethod
    def from_lerobot(cls, d: Mapping[str, Any]) -> tuple[ACTConfig, list[str]]:
        """From a LeRobot config.json dict; LeRobot base keys are dropped, unknown ones reported as notes."""
        hp = policy_hyperparameters(d)
        names = {f.name for f in dataclasses.fields(cls)}
        notes = [
            f"config.json key {k!r} is not an ACT hyperparameter jrobot knows; ignored"
            for k in sorted(set(hp) - names)
        ]
        return cls(**{k: v for k, v in hp.items() if k in names}), notes


Config = ACTConfig


# ---------------------------------------------------------------------------------------------------
# positional embeddings
def sinusoid_1d(num_positions: int, dimension: int) -> np.ndarray:
    """LeRobot `create_sinusoidal_pos_embedding`: float64, interleaved sin/cos, cast to float32."""
    pos = np.arange(num_positions, dtype=np.float64)[:, None]
    j = np.arange(dimension)
    table = pos / np.power(10000, 2 * (j // 2) / dimension)
    table[:, 0::2] = np.sin(table[:, 0::2])
    table[:, 1::2] = np.cos(table[:, 1::2])
    return table.astype(np.float32)


def sinusoid_2d(height: int, width: int, dim_model: int) -> np.ndarray:
    """LeRobot `ACTSinusoidalPositionEmbedding2d` for an h x w map, as (h*w, dim_model), row-major.

    Reproduces torch's float32 arithmetic step by step: positions 1..h / (h + 1e-6) * 2 pi, inverse
    frequencies 10000 ** (2 (j // 2) / d) with d = dim_model // 2, interleaved [sin, cos], channels
    [pos_y (d), pos_x (d)].
    """
    d = dim_model // 2
    f32 = np.float32
    two_pi, eps = f32(2 * math.pi), f32(1e-6)
    y = np.arange(1, height + 1, dtype=f32)
    x = np.arange(1, width + 1, dtype=f32)
    y = y / (f32(height) + eps) * two_pi
    x = x / (f32(width) + eps) * two_pi
    inv_freq = np.power(f32(10000), (f32(2) * (np.arange(d, dtype=f32) // f32(2))) / f32(d)).astype(f32)

    def embed(v: np.ndarray) -> np.ndarray:
        e = (v[:, None] / inv_freq).astype(f32)
        out = np.empty_like(e)
        out[:, 0::2] = np.sin(e[:, 0::2])
        out[:, 1::2] = np.cos(e[:, 1::2])
        return out

    ey, ex = embed(y), embed(x)  # (h, d), (w, d)
    grid = np.concatenate(
        [
            np.broadcast_to(ey[:, None, :], (height, width, d)),
            np.broadcast_to(ex[None, :, :], (height, width, d)),
        ],
        axis=-1,
    )
    return grid.reshape(height * width, 2 * d).astype(f32)


# ---------------------------------------------------------------------------------------------------
# transformer
class ACTEncoderLayer(nnx.Module):
    def __init__(self, cfg: ACTConfig, *, xavier: bool, dtype: Any, rngs: nnx.Rngs):
        d, f = cfg.dim_model, cfg.dim_feedforward
        self.self_attn = MultiheadAttention(
            d, cfg.n_heads, dropout_rate=cfg.dropout, xavier=xavier, dtype=dtype, rngs=rngs
        )
        self.linear1 = torch_linear(d, f, xavier=xavier, dtype=dtype, rngs=rngs)
        self.linear2 = torch_linear(f, d, xavier=xavier, dtype=dtype, rngs=rngs)
        self.norm1 = layer_norm(d, dtype=dtype, rngs=rngs)
        self.norm2 = layer_norm(d, dtype=dtype, rngs=rngs)
        self.pre_norm, self.rate, self.act = cfg.pre_norm, cfg.dropout, cfg.feedforward_activation

    def __call__(
        self,
        x: jnp.ndarray,
        pos: jnp.ndarray | None,
        key_padding_mask: jnp.ndarray | None,
        rng: RngSeq | None,
    ) -> jnp.ndarray:
        act = activation(self.act)
        skip = x
        if self.pre_norm:
            x = self.norm1(x)
        qk = x if pos is None else x + pos
        x = self.self_attn(qk, qk, x, key_padding_mask=key_padding_mask, rng=rng)
        x = skip + dropout(x, self.rate, rng)
        if self.pre_norm:
            skip = x
            x = self.norm2(x)
        else:
            x = self.norm1(x)
            skip = x
        x = self.linear2(dropout(act(self.linear1(x)), self.rate, rng))
        x = skip + dropout(x, self.rate, rng)
        if not self.pre_norm:
            x = self.norm2(x)
        return x


class ACTEncoder(nnx.Module):
    def __init__(self, cfg: ACTConfig, n_layers: int, *, xavier: bool, dtype: Any, rngs: nnx.Rngs):
        self.layers = nnx.List(
            [ACTEncoderLayer(cfg, xavier=xavier, dtype=dtype, rngs=rngs) for _ in range(n_layers)]
        )
        self.norm = layer_norm(cfg.dim_model, dtype=dtype, rngs=rngs) if cfg.pre_norm else None

    def __call__(
        self,
        x: jnp.ndarray,
        pos: jnp.ndarray | None = None,
        key_padding_mask: jnp.ndarray | None = None,
        rng: RngSeq | None = None,
    ) -> jnp.ndarray:
        for layer in self.layers:
            x = layer(x, pos, key_padding_mask, rng)
        return x if self.norm is None else self.norm(x)


class ACTDecoderLayer(nnx.Module):
    def __init__(self, cfg: ACTConfig, *, dtype: Any, rngs: nnx.Rngs):
        d, f = cfg.dim_model, cfg.dim_feedforward
        self.self_attn = MultiheadAttention(
            d, cfg.n_heads, dropout_rate=cfg.dropout, xavier=True, dtype=dtype, rngs=rngs
        )
        self.multihead_attn = MultiheadAttention(
            d, cfg.n_heads, dropout_rate=cfg.dropout, xavier=True, dtype=dtype, rngs=rngs
        )
        self.linear1 = torch_linear(d, f, xavier=True, dtype=dtype, rngs=rngs)
        self.linear2 = torch_linear(f, d, xavier=True, dtype=dtype, rngs=rngs)
        self.norm1 = layer_norm(d, dtype=dtype, rngs=rngs)
        self.norm2 = layer_norm(d, dtype=dtype, rngs=rngs)
        self.norm3 = layer_norm(d, dtype=dtype, rngs=rngs)
        self.pre_norm, self.rate, self.act = cfg.pre_norm, cfg.dropout, cfg.feedforward_activation

    def __call__(
        self, x: jnp.ndarray, enc: jnp.ndarray, dec_pos: jnp.ndarray, enc_pos: jnp.ndarray, rng: RngSeq | None
    ) -> jnp.ndarray:
        act = activation(self.act)
        skip = x
        if self.pre_norm:
            x = self.norm1(x)
        qk = x + dec_pos
        x = self.self_attn(qk, qk, x, rng=rng)
        x = skip + dropout(x, self.rate, rng)
        if self.pre_norm:
            skip = x
            x = self.norm2(x)
        else:
            x = self.norm1(x)
            skip = x
        x = self.multihead_attn(x + dec_pos, enc + enc_pos, enc, rng=rng)
        x = skip + dropout(x, self.rate, rng)
        if self.pre_norm:
            skip = x
            x = self.norm3(x)
        else:
            x = self.norm2(x)
            skip = x
        x = self.linear2(dropout(act(self.linear1(x)), self.rate, rng))
        x = skip + dropout(x, self.rate, rng)
        if not self.pre_norm:
            x = self.norm3(x)
        return x


class ACTDecoder(nnx.Module):
    def __init__(self, cfg: ACTConfig, *, dtype: Any, rngs: nnx.Rngs):
        self.layers = nnx.List(
            [ACTDecoderLayer(cfg, dtype=dtype, rngs=rngs) for _ in range(cfg.n_decoder_layers)]
        )
        self.norm = layer_norm(cfg.dim_model, dtype=dtype, rngs=rngs)  # present even with post-norm

    def __call__(
        self,
        x: jnp.ndarray,
        enc: jnp.ndarray,
        dec_pos: jnp.ndarray,
        enc_pos: jnp.ndarray,
        rng: RngSeq | None = None,
    ) -> jnp.ndarray:
        for layer in self.layers:
            x = layer(x, enc, dec_pos, enc_pos, rng)
        return self.norm(x)


# ---------------------------------------------------------------------------------------------------
# the network (LeRobot's `ACT` module; attribute names are its state_dict names)
class ACTModel(nnx.Module):
    def __init__(self, cfg: ACTConfig, spec: PolicySpec, *, rngs: nnx.Rngs):
        dtype = COMPUTE_DTYPES[cfg.compute_dtype]
        d = cfg.dim_model
        state_key, env_key, image_keys = spec.state_key, spec.env_state_key, spec.image_keys
        state_dim = spec.input_features[state_key].shape[0] if state_key else 0
        action_dim = spec.action_dim
        self.use_vae, self.latent_dim, self.dim_model, self.chunk_size = (
            cfg.use_vae,
            cfg.latent_dim,
            d,
            cfg.chunk_size,
        )
        self.has_state, self.has_env, self.n_cams = (
            state_key is not None,
            env_key is not None,
            len(image_keys),
        )

        def linear(i, o):
            return torch_linear(i, o, dtype=dtype, rngs=rngs)

        if cfg.use_vae:
            self.vae_encoder = ACTEncoder(cfg, cfg.n_vae_encoder_layers, xavier=False, dtype=dtype, rngs=rngs)
            self.vae_encoder_cls_embed = torch_embed(1, d, rngs=rngs)
            self.vae_encoder_robot_state_input_proj = linear(state_dim, d) if self.has_state else None
            self.vae_encoder_action_input_proj = linear(action_dim, d)
            self.vae_encoder_latent_output_proj = linear(d, 2 * cfg.latent_dim)
            n_vae_tokens = 1 + cfg.chunk_size + (1 if self.has_state else 0)
            self.vae_encoder_pos_enc = Buffer(jnp.asarray(sinusoid_1d(n_vae_tokens, d))[None])
        if image_keys:
            self.backbone = resnet.ResNet(cfg.backbone_depth, "frozen_bn", dtype=dtype, rngs=rngs)
        self.encoder = ACTEncoder(cfg, cfg.n_encoder_layers, xavier=True, dtype=dtype, rngs=rngs)
        self.decoder = ACTDecoder(cfg, dtype=dtype, rngs=rngs)
        if self.has_state:
            self.encoder_robot_state_input_proj = linear(state_dim, d)
        if self.has_env:
            env_dim = spec.input_features[env_key].shape[0]
            self.encoder_env_state_input_proj = linear(env_dim, d)
        self.encoder_latent_input_proj = linear(cfg.latent_dim, d)
        if image_keys:
            self.encoder_img_feat_input_proj = torch_conv(resnet.OUT_CHANNELS, d, 1, dtype=dtype, rngs=rngs)
        n_1d = 1 + int(self.has_state) + int(self.has_env)
        self.encoder_1d_feature_pos_embed = torch_embed(n_1d, d, rngs=rngs)
        self.decoder_pos_embed = torch_embed(cfg.chunk_size, d, rngs=rngs)
        self.action_head = linear(d, action_dim)

    def encode_latent(
        self, state: jnp.ndarray | None, actions: jnp.ndarray, action_is_pad: jnp.ndarray, rng: RngSeq | None
    ) -> tuple[jnp.ndarray, jnp.ndarray]:
        """VAE encoder: (mu, log_sigma_x2), each (B, latent_dim)."""
        b = actions.shape[0]
        d = self.dim_model
        tokens = [jnp.broadcast_to(self.vae_encoder_cls_embed.embedding[...][None], (b, 1, d))]
        if self.has_state:
            tokens.append(self.vae_encoder_robot_state_input_proj(state)[:, None])
        tokens.append(self.vae_encoder_action_input_proj(actions))
        x = jnp.concatenate([t.astype(tokens[-1].dtype) for t in tokens], axis=1)
        n_pre = 2 if self.has_state else 1
        mask = jnp.concatenate([jnp.zeros((b, n_pre), bool), action_is_pad.astype(bool)], axis=1)
        out = self.vae_encoder(x, self.vae_encoder_pos_enc[...], mask, rng)
        params = self.vae_encoder_latent_output_proj(out[:, 0]).astype(jnp.float32)
        return params[:, : self.latent_dim], params[:, self.latent_dim :]

    def __call__(
        self,
        state: jnp.ndarray | None,
        env_state: jnp.ndarray | None,
        images: list[jnp.ndarray],
        latent: jnp.ndarray,
        *,
        train: bool = False,
        rng: RngSeq | None = None,
    ) -> jnp.ndarray:
        """Normalized inputs + latent (B, latent_dim) -> normalized action chunk (B, chunk, A) float32."""
        b = latent.shape[0]
        tokens = [self.encoder_latent_input_proj(latent)[:, None]]
        pos = [self.encoder_1d_feature_pos_embed.embedding[...]]
        if self.has_state:
            tokens.append(self.encoder_robot_state_input_proj(state)[:, None])
        if self.has_env:
            tokens.append(self.encoder_env_state_input_proj(env_state)[:, None])
        if images:
            if len({im.shape for im in images}) == 1:  # one trunk call for all cameras
                fmaps = jnp.split(
                    self.backbone(jnp.concatenate(images, axis=0), train=train), len(images), axis=0
                )
            else:
                fmaps = [self.backbone(im, train=train) for im in images]
            for fmap in fmaps:
                _, h, w, _ = fmap.shape
                pos.append(jnp.asarray(sinusoid_2d(h, w, self.dim_model)))
                tokens.append(self.encoder_img_feat_input_proj(fmap).reshape(b, h * w, self.dim_model))
        dtype = tokens[0].dtype
        x = jnp.concatenate([t.astype(dtype) for t in tokens], axis=1)
        enc_pos = jnp.concatenate(pos, axis=0)[None]
        enc = self.encoder(x, enc_pos, None, rng)
        dec_in = jnp.zeros((b, self.chunk_size, self.dim_model), enc.dtype)
        dec = self.decoder(dec_in, enc, self.decoder_pos_embed.embedding[...][None], enc_pos, rng)
        return self.action_head(dec).astype(jnp.float32)


class ACTPolicy(nnx.Module):
    """ACT network + in-model normalization; carries its `config` and `spec` as static metadata."""

    def __init__(
        self,
        config: ACTConfig,
        spec: PolicySpec,
        stats: Mapping[str, Mapping[str, Any]] | None,
        *,
        rngs: nnx.Rngs,
        missing_stats: str = "error",
        eps: float = 1e-8,
    ):
        self.config, self.spec = config, spec
        self.model = ACTModel(config, spec, rngs=rngs)
        used = [k for k in (spec.state_key, spec.env_state_key, *spec.image_keys) if k] + [ACTION_KEY]
        feats = {**spec.input_features, **spec.output_features}
        self.normalizer = Normalizer(
            {k: feats[k] for k in used}, spec.normalization_mapping, stats, eps=eps, missing=missing_stats
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
    drop_key = vae_key = None
    if rng is not None:
        drop_key, vae_key = jax.random.split(rng)
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
    out = model.model(state, env, images, latent, train=train, rng=drops)
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

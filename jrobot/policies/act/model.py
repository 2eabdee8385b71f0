"""ACT's networks in Flax NNX; module and attribute names are LeRobot's state_dict names.

Tensors are batch-first here (LeRobot's transformer is sequence-first; the math is identical).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jrobot.policies import resnet
from jrobot.policies.act.config import CNN_BACKBONE, COMPUTE_DTYPES, ACTConfig
from jrobot.policies.conv_trunk import ConvTrunk, random_shift
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
from jrobot.policies.normalize import Normalizer
from jrobot.policies.spatial_softmax import SpatialSoftmax
from jrobot.policies.spec import ACTION_KEY, PolicySpec


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
        self.keypoints = cfg.image_features == "spatial_softmax"
        self.random_shift_pixels = cfg.random_shift_pixels
        if image_keys:
            if cfg.vision_backbone == CNN_BACKBONE:
                self.backbone = ConvTrunk(cfg.cnn_channels, cfg.cnn_strides, dtype=dtype, rngs=rngs)
            else:
                self.backbone = resnet.ResNet(cfg.backbone_depth, "frozen_bn", dtype=dtype, rngs=rngs)
        self.encoder = ACTEncoder(cfg, cfg.n_encoder_layers, xavier=True, dtype=dtype, rngs=rngs)
        self.decoder = ACTDecoder(cfg, dtype=dtype, rngs=rngs)
        if self.has_state:
            self.encoder_robot_state_input_proj = linear(state_dim, d)
        if self.has_env:
            env_dim = spec.input_features[env_key].shape[0]
            self.encoder_env_state_input_proj = linear(env_dim, d)
        self.encoder_latent_input_proj = linear(cfg.latent_dim, d)
        if image_keys and self.keypoints:
            # one spatial soft-argmax head and one token projection per camera (cameras see different things)
            k = cfg.spatial_softmax_num_keypoints
            pools, projs = [], []
            for key in image_keys:
                _, h, w = spec.input_features[key].shape
                pools.append(SpatialSoftmax(self.backbone.out_channels, self._feature_hw(h, w), k, rngs=rngs))
                projs.append(linear(2 * k, d))
            self.encoder_img_keypoints = nnx.List(pools)
            self.encoder_img_keypoint_proj = nnx.List(projs)
        elif image_keys:
            self.encoder_img_feat_input_proj = torch_conv(
                self.backbone.out_channels, d, 1, dtype=dtype, rngs=rngs
            )
        n_1d = 1 + int(self.has_state) + int(self.has_env) + (len(image_keys) if self.keypoints else 0)
        self.encoder_1d_feature_pos_embed = torch_embed(n_1d, d, rngs=rngs)
        self.decoder_pos_embed = torch_embed(cfg.chunk_size, d, rngs=rngs)
        self.action_head = linear(d, action_dim)

    def _feature_hw(self, height: int, width: int) -> tuple[int, int]:
        if isinstance(self.backbone, ConvTrunk):
            return self.backbone.feature_hw(height, width)
        return resnet.resnet_feature_hw(height, width)

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
        shift_rng: jax.Array | None = None,
    ) -> jnp.ndarray:
        """Normalized inputs + latent (B, latent_dim) -> normalized action chunk (B, chunk, A) float32.

        In train mode with `random_shift_pixels`, every image is shifted at random (keys from `shift_rng`).
        """
        b = latent.shape[0]
        tokens = [self.encoder_latent_input_proj(latent)[:, None]]
        pos = [self.encoder_1d_feature_pos_embed.embedding[...]]
        if self.has_state:
            tokens.append(self.encoder_robot_state_input_proj(state)[:, None])
        if self.has_env:
            tokens.append(self.encoder_env_state_input_proj(env_state)[:, None])
        if images and train and self.random_shift_pixels:
            if shift_rng is None:
                raise ValueError(
                    "ACT's random image shift (random_shift_pixels > 0) needs an rng in train mode"
                )
            keys = jax.random.split(shift_rng, len(images))
            images = [random_shift(im, self.random_shift_pixels, k) for im, k in zip(images, keys)]
        if images and self.keypoints:
            fmaps = self._trunk(images, train)
            for fmap, pool, proj in zip(fmaps, self.encoder_img_keypoints, self.encoder_img_keypoint_proj):
                tokens.append(proj(pool(fmap.astype(jnp.float32)).astype(tokens[0].dtype))[:, None])
        elif images:
            for fmap in self._trunk(images, train):
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

    def _trunk(self, images: list[jnp.ndarray], train: bool) -> list[jnp.ndarray]:
        if len({im.shape for im in images}) == 1:  # one trunk call for all cameras
            return jnp.split(self.backbone(jnp.concatenate(images, axis=0), train=train), len(images), axis=0)
        return [self.backbone(im, train=train) for im in images]


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

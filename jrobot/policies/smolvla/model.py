"""SmolVLA's networks in Flax NNX: SmolVLM (vision tower, connector, truncated Llama), the action expert,
and LeRobot's `VLAFlowMatching` heads. Attribute names are LeRobot's state_dict names, so a LeRobot
`model.safetensors` loads by path (`model.vlm_with_expert.vlm.model.text_model.layers.0.self_attn.q_proj`).

One computation serves training and sampling. In LeRobot's training forward the prefix (images,
language, state) never attends to the suffix (the noisy actions), so the VLM's per-layer keys/values are
exactly those of a prefix-only pass; the expert then attends to them. `prefix_kv` runs that pass once
and `expert` runs the suffix against it: the training loss calls both once, sampling calls `prefix_kv`
once and `expert` once per Euler step (the "KV cache" of LeRobot's `sample_actions`).

Dtypes follow LeRobot's mixed mode when `precision="bfloat16"`: every VLM and expert weight is bf16 and
the hidden state is cast to a projection's weight dtype before it, while `state_proj`, the action/time
heads and the cross-attention k/v projections (plain `nn.Linear` in LeRobot) stay fp32. Attention
logits and softmax are fp32 in both modes (LeRobot's `eager_attention_forward`).
"""

from __future__ import annotations

import contextlib
import contextvars
import math
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jrobot.policies.keypoint_tokens import KeypointTokens, image_hw_of
from jrobot.policies.layers import Buffer, torch_bias_init, torch_kernel_init
from jrobot.policies.normalize import Normalizer
from jrobot.policies.smolvla.config import SmolVLAConfig, TextArch, VisionArch, VLMArch, intermediate_size
from jrobot.policies.spec import PolicySpec

F32 = jnp.float32
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
hf_init = nnx.initializers.normal(0.02)  # transformers' `initializer_range` for Llama/SigLIP weights


_UNROLLED = contextvars.ContextVar("smolvla_unrolled", default=False)


@contextlib.contextmanager
def unrolled():
    """Trace without loops (batched heads, a Python loop over the Euler steps): same results, a larger
    program. For XLA's cost analysis, which counts a loop body once (`benchmarks/smolvla_inference.py`)."""
    token = _UNROLLED.set(True)
    try:
        yield
    finally:
        _UNROLLED.reset(token)


def freeze(module: nnx.Module) -> None:
    """Turn every trainable `nnx.Param` under `module` into a `Buffer`: saved, never trained.

    LeRobot freezes the VLM with `requires_grad=False`; here the variable kind carries it, so the trainer
    keeps no optimizer state for it and the exporter still saves it.
    """
    for _, m in nnx.iter_modules(module):
        for name, value in list(vars(m).items()):
            if isinstance(value, nnx.Param):
                setattr(m, name, Buffer(value.get_value()))


def hf_linear(i: int, o: int, *, bias: bool, dtype: Any, rngs: nnx.Rngs) -> nnx.Linear:
    """A transformers-initialized Linear whose weights (and compute) are `dtype`."""
    return nnx.Linear(
        i,
        o,
        use_bias=bias,
        kernel_init=hf_init,
        bias_init=nnx.initializers.zeros,
        param_dtype=dtype,
        dtype=dtype,
        rngs=rngs,
    )


def torch_linear_fp32(i: int, o: int, *, rngs: nnx.Rngs, bias: bool = True) -> nnx.Linear:
    """`nn.Linear` with torch's default init, float32 weights: LeRobot's own projections."""
    return nnx.Linear(
        i, o, use_bias=bias, kernel_init=torch_kernel_init, bias_init=torch_bias_init(i), rngs=rngs
    )


def linear_dtype(m: nnx.Linear) -> Any:
    return m.kernel.get_value().dtype


def add_into(out: jax.Array, residual: jax.Array) -> jax.Array:
    """torch's in-place `out += residual`: computed in the promoted type, stored in `out`'s dtype."""
    return (out.astype(jnp.promote_types(out.dtype, residual.dtype)) + residual).astype(out.dtype)


# ---------------------------------------------------------------------------------------------------
# shared numerics (../shared/reference/lerobot_policies.md §4.4)
def apply_rope(x: jax.Array, positions: jax.Array, max_wavelength: float = 10_000.0) -> jax.Array:
    """LeRobot's own RoPE (not the config's rope_theta): fp32, the two halves of the head rotated."""
    d = x.shape[-1]
    d_half = d // 2
    freq_exponents = (2.0 / d) * jnp.arange(d_half, dtype=F32)
    timescale = jnp.asarray(max_wavelength, F32) ** freq_exponents
    radians = positions[..., None].astype(F32) / timescale[None, None, :]
    radians = radians[..., None, :]
    sin, cos = jnp.sin(radians), jnp.cos(radians)
    xf = x.astype(F32)
    x1, x2 = xf[..., :d_half], xf[..., d_half:]
    return jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1).astype(x.dtype)


def gqa_attention(q: jax.Array, k: jax.Array, v: jax.Array, mask: jax.Array) -> jax.Array:
    """LeRobot's `eager_attention_forward`: q (B, L, H, D), k/v (B, S, KV, D), mask (B, L, S) bool.

    Query head h reads kv head h // (H // KV). Logits and softmax in fp32 with a boolean select to
    float32's most negative finite value (a fully masked row becomes uniform, never NaN); the
    probabilities are cast to v's dtype before the weighted sum. Returns (B, L, H * D).
    """
    b, length, h, d = q.shape
    kv = k.shape[2]
    qf = q.astype(F32).reshape(b, length, kv, h // kv, d)
    w = jnp.einsum("blkgd,bskd->bkgls", qf, k.astype(F32)) * (d**-0.5)
    w = jnp.where(mask[:, None, None, :, :], w, jnp.finfo(F32).min)
    probs = jax.nn.softmax(w, axis=-1).astype(v.dtype)
    out = jnp.einsum("bkgls,bskd->blkgd", probs, v)
    return out.reshape(b, length, h * d)


def make_att_2d_masks(pad_masks: jax.Array, att_masks: jax.Array) -> jax.Array:
    """Token i sees valid token j when cumsum(att)[j] <= cumsum(att)[i] (prefix-LM / causal blocks)."""
    cum = jnp.cumsum(att_masks.astype(jnp.int32), axis=1)
    att_2d = cum[:, None, :] <= cum[:, :, None]
    return att_2d & (pad_masks[:, None, :] & pad_masks[:, :, None])


def _split12(x: np.ndarray | jax.Array, xp: Any) -> Any:
    """The float32 value with only its top 12 significant bits (low 12 mantissa bits cleared): exact."""
    if xp is np:
        return (np.asarray(x, np.float32).view(np.uint32) & np.uint32(0xFFFFF000)).view(np.float32)
    bits = jax.lax.bitcast_convert_type(x.astype(F32), jnp.uint32) & jnp.uint32(0xFFFFF000)
    return jax.lax.bitcast_convert_type(bits, F32)


def time_embedding(t: jax.Array, dim: int, min_period: float, max_period: float) -> jax.Array:
    """LeRobot's `create_sinusoidal_pos_embedding` ([sin, cos] of 2*pi*t/period), float64-accurate in fp32.

    LeRobot computes the angle in float64; a plain float32 angle (up to 2*pi/min_period ~ 1.6e3 rad) is
    off by ~1e-4. Here t * (1/period) is reduced modulo 1 exactly: both factors are split into 12-bit
    halves whose products are exact in float32, the integer part of the large product is dropped, and
    only the small remainder is rounded, so sin/cos come out within ~3e-7 of the float64 values.
    """
    if dim % 2:
        raise ValueError(f"time embedding dimension ({dim}) must be even")
    fraction = np.linspace(0.0, 1.0, dim // 2, dtype=np.float64)
    freq = 1.0 / (min_period * (max_period / min_period) ** fraction)  # cycles per unit of t
    f_hi = _split12(freq.astype(np.float32), np)
    f_lo = (freq - f_hi.astype(np.float64)).astype(np.float32)
    t = t.astype(F32)[:, None]
    t_hi = _split12(t, jnp)
    t_lo = t - t_hi
    a = t_hi * jnp.asarray(f_hi)
    cycles = (a - jnp.round(a)) + t_lo * jnp.asarray(f_hi) + t * jnp.asarray(f_lo)
    cycles = cycles - jnp.round(cycles)
    theta = (2.0 * math.pi) * cycles
    return jnp.concatenate([jnp.sin(theta), jnp.cos(theta)], axis=1)


def resize_with_pad(img: jax.Array, width: int, height: int) -> jax.Array:
    """LeRobot's `resize_with_pad` on (B, H, W, C): bilinear without antialias (size truncated with
    int()), then zero padding on the top and left only."""
    b, h, w, c = img.shape
    ratio = max(w / width, h / height)
    rh, rw = int(h / ratio), int(w / ratio)
    if (rh, rw) != (h, w):
        img = jax.image.resize(img, (b, rh, rw, c), method="bilinear", antialias=False)
    pad_h, pad_w = max(0, int(height - rh)), max(0, int(width - rw))
    return jnp.pad(img, ((0, 0), (pad_h, 0), (pad_w, 0), (0, 0)))


def vision_position_ids(patches_per_side: int, dtype: Any) -> np.ndarray:
    """SigLIP patch position ids as transformers 4.57 computes them, in the pixel dtype (§4.8).

    `bucketize(h / n * (1 - 1e-6), arange(1/n, 1, 1/n), right=True)` per axis: in float32 the factor
    shifts every row/column after the first down by one bucket ([0, 0, 1, ..., n-2]); in bfloat16 it
    rounds to 1.0 and the ids are 0..n-1. Reproduced so imported weights see the same embeddings.
    """
    import ml_dtypes

    n = patches_per_side
    np_dtype = np.float32 if dtype == jnp.float32 else ml_dtypes.bfloat16
    idx = np.arange(n).astype(np_dtype)
    frac = (idx / np.asarray(n, np_dtype)).astype(np_dtype) * np.asarray(1 - 1e-6, np_dtype)
    boundaries = np.arange(1 / n, 1.0, 1 / n, dtype=np.float32)
    buckets = np.searchsorted(boundaries, frac.astype(np.float32), side="right")
    return (buckets[:, None] * n + buckets[None, :]).reshape(-1).astype(np.int32)


def _gelu(name: str):
    if name in ("gelu_pytorch_tanh", "gelu_new", "gelu_fast"):
        return lambda x: jax.nn.gelu(x, approximate=True)
    if name == "gelu":
        return lambda x: jax.nn.gelu(x, approximate=False)
    if name == "quick_gelu":
        return lambda x: x * jax.nn.sigmoid(1.702 * x)
    raise ValueError(f"unsupported vision activation {name!r}")


# ---------------------------------------------------------------------------------------------------
# SmolVLM vision tower (SigLIP-style) and connector
class VisionEmbeddings(nnx.Module):
    def __init__(self, v: VisionArch, dtype: Any, *, rngs: nnx.Rngs):
        p = v.patch_size
        self.patch_embedding = nnx.Conv(
            v.num_channels,
            v.hidden_size,
            kernel_size=(p, p),
            strides=(p, p),
            padding="VALID",
            kernel_init=hf_init,
            param_dtype=dtype,
            dtype=dtype,
            rngs=rngs,
        )
        self.position_embedding = nnx.Embed(
            v.patches_per_side**2,
            v.hidden_size,
            embedding_init=hf_init,
            param_dtype=dtype,
            dtype=dtype,
            rngs=rngs,
        )
        self.position_ids = tuple(int(i) for i in vision_position_ids(v.patches_per_side, dtype))

    def __call__(self, pixels: jax.Array) -> jax.Array:
        x = self.patch_embedding(pixels)  # (B, n, n, E): row-major patches, as torch's flatten(2)
        b, n1, n2, e = x.shape
        x = x.reshape(b, n1 * n2, e)
        return x + self.position_embedding(jnp.asarray(self.position_ids, jnp.int32))[None]


class VisionAttention(nnx.Module):
    def __init__(self, v: VisionArch, dtype: Any, *, rngs: nnx.Rngs):
        e = v.hidden_size
        self.n_heads = v.num_attention_heads
        self.q_proj = hf_linear(e, e, bias=True, dtype=dtype, rngs=rngs)
        self.k_proj = hf_linear(e, e, bias=True, dtype=dtype, rngs=rngs)
        self.v_proj = hf_linear(e, e, bias=True, dtype=dtype, rngs=rngs)
        self.out_proj = hf_linear(e, e, bias=True, dtype=dtype, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        b, n, e = x.shape
        h = self.n_heads
        d = e // h
        q, k, v = (
            p(x).reshape(b, n, h, d).transpose(0, 2, 1, 3).reshape(b * h, n, d)
            for p in (self.q_proj, self.k_proj, self.v_proj)
        )
        out = head_mapped_attention(q, k, v, d**-0.5)
        return self.out_proj(out.reshape(b, h, n, d).transpose(0, 2, 1, 3).reshape(b, n, e))


def head_mapped_attention(q: jax.Array, k: jax.Array, v: jax.Array, scale: float) -> jax.Array:
    """softmax(q k^T * scale) v over (B*H, N, D), two heads per step of a `lax.map`.

    Why: XLA's CPU backend runs one batched (B, H, N, N) logits tensor as separate passes through
    memory (logits, max, exp, sum, divide), ~2.7x slower than walking the heads so each head's N x N
    block stays in cache (SigLIP at 512 px: 1024 x 1024 logits per head). Each row's arithmetic is
    unchanged, so the result is bit-identical to the batched form.
    """
    if _UNROLLED.get():
        w = jnp.einsum("gqd,gkd->gqk", q, k).astype(F32) * scale
        return jnp.einsum("gqk,gkd->gqd", jax.nn.softmax(w, axis=-1).astype(v.dtype), v)
    g = 2 if q.shape[0] % 2 == 0 else 1

    def one(args: tuple[jax.Array, jax.Array, jax.Array]) -> jax.Array:
        qi, ki, vi = args
        w = jnp.einsum("gqd,gkd->gqk", qi, ki).astype(F32) * scale
        return jnp.einsum("gqk,gkd->gqd", jax.nn.softmax(w, axis=-1).astype(vi.dtype), vi)

    n, d = q.shape[1], q.shape[2]
    out = jax.lax.map(one, tuple(t.reshape(-1, g, t.shape[1], d) for t in (q, k, v)))
    return out.reshape(q.shape[0], n, d)


class VisionMLP(nnx.Module):
    def __init__(self, v: VisionArch, dtype: Any, *, rngs: nnx.Rngs):
        self.fc1 = hf_linear(v.hidden_size, v.intermediate_size, bias=True, dtype=dtype, rngs=rngs)
        self.fc2 = hf_linear(v.intermediate_size, v.hidden_size, bias=True, dtype=dtype, rngs=rngs)
        self.act = v.hidden_act

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.fc2(_gelu(self.act)(self.fc1(x)))


def _layer_norm(dim: int, eps: float, dtype: Any, rngs: nnx.Rngs) -> nnx.LayerNorm:
    return nnx.LayerNorm(dim, epsilon=eps, use_fast_variance=False, param_dtype=dtype, dtype=dtype, rngs=rngs)


class VisionLayer(nnx.Module):
    """Pre-LN transformer block: x += attn(LN1 x); x += MLP(LN2 x)."""

    def __init__(self, v: VisionArch, dtype: Any, *, rngs: nnx.Rngs):
        self.layer_norm1 = _layer_norm(v.hidden_size, v.layer_norm_eps, dtype, rngs)
        self.self_attn = VisionAttention(v, dtype, rngs=rngs)
        self.layer_norm2 = _layer_norm(v.hidden_size, v.layer_norm_eps, dtype, rngs)
        self.mlp = VisionMLP(v, dtype, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        x = x + self.self_attn(self.layer_norm1(x))
        return x + self.mlp(self.layer_norm2(x))


class VisionEncoder(nnx.Module):
    def __init__(self, v: VisionArch, dtype: Any, *, rngs: nnx.Rngs):
        self.layers = nnx.List([VisionLayer(v, dtype, rngs=rngs) for _ in range(v.num_hidden_layers)])

    def __call__(self, x: jax.Array) -> jax.Array:
        for layer in self.layers:
            x = layer(x)
        return x


class VisionTransformer(nnx.Module):
    def __init__(self, v: VisionArch, dtype: Any, *, rngs: nnx.Rngs):
        self.dtype = dtype
        self.embeddings = VisionEmbeddings(v, dtype, rngs=rngs)
        self.encoder = VisionEncoder(v, dtype, rngs=rngs)
        self.post_layernorm = _layer_norm(v.hidden_size, v.layer_norm_eps, dtype, rngs)

    def __call__(self, pixels: jax.Array) -> jax.Array:
        return self.post_layernorm(self.encoder(self.embeddings(pixels.astype(self.dtype))))


class ModalityProjection(nnx.Module):
    def __init__(self, i: int, o: int, dtype: Any, *, rngs: nnx.Rngs):
        self.proj = hf_linear(i, o, bias=False, dtype=dtype, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.proj(x)


class Connector(nnx.Module):
    """Pixel shuffle (space to depth by `scale_factor`, SmolVLM's exact reshape order) + projection."""

    def __init__(self, arch: VLMArch, dtype: Any, *, rngs: nnx.Rngs):
        self.scale = arch.scale_factor
        self.modality_projection = ModalityProjection(
            arch.vision.hidden_size * self.scale**2, arch.text.hidden_size, dtype, rngs=rngs
        )

    def __call__(self, x: jax.Array) -> jax.Array:
        b, seq, e = x.shape
        n, s = math.isqrt(seq), self.scale
        x = x.reshape(b, n, n // s, e * s)
        x = x.transpose(0, 2, 1, 3).reshape(b, n // s, n // s, e * s * s)
        x = x.transpose(0, 2, 1, 3).reshape(b, seq // (s * s), e * s * s)
        return self.modality_projection(x)


# ---------------------------------------------------------------------------------------------------
# Llama pieces (LeRobot calls the layers' submodules with its own attention and RoPE)
class RMSNorm(nnx.Module):
    """LlamaRMSNorm: normalize in fp32, cast back to the input dtype, then `weight * x`."""

    def __init__(self, dim: int, eps: float, dtype: Any):
        self.weight = nnx.Param(jnp.ones((dim,), dtype))
        self.eps = float(eps)

    def __call__(self, x: jax.Array) -> jax.Array:
        xf = x.astype(F32)
        xf = xf * jax.lax.rsqrt(jnp.mean(xf * xf, axis=-1, keepdims=True) + self.eps)
        return self.weight[...] * xf.astype(x.dtype)


class LlamaMLP(nnx.Module):
    def __init__(self, hidden: int, inner: int, bias: bool, dtype: Any, *, rngs: nnx.Rngs):
        self.gate_proj = hf_linear(hidden, inner, bias=bias, dtype=dtype, rngs=rngs)
        self.up_proj = hf_linear(hidden, inner, bias=bias, dtype=dtype, rngs=rngs)
        self.down_proj = hf_linear(inner, hidden, bias=bias, dtype=dtype, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.down_proj(jax.nn.silu(self.gate_proj(x)) * self.up_proj(x))


class LlamaAttention(nnx.Module):
    """The projections of a Llama attention block; `kv_in` set for an expert cross-attention layer,
    whose k/v read the VLM's keys/values (kv_heads * head_dim wide) through fp32 `nn.Linear`s."""

    def __init__(self, t: TextArch, hidden: int, dtype: Any, *, rngs: nnx.Rngs, kv_in: int | None = None):
        hd, bias = t.head_size, t.attention_bias
        self.head_dim = hd
        self.q_proj = hf_linear(hidden, t.num_attention_heads * hd, bias=bias, dtype=dtype, rngs=rngs)
        if kv_in is None:
            self.k_proj = hf_linear(hidden, t.kv_heads * hd, bias=bias, dtype=dtype, rngs=rngs)
            self.v_proj = hf_linear(hidden, t.kv_heads * hd, bias=bias, dtype=dtype, rngs=rngs)
        else:
            self.k_proj = torch_linear_fp32(kv_in, t.kv_heads * hd, bias=bias, rngs=rngs)
            self.v_proj = torch_linear_fp32(kv_in, t.kv_heads * hd, bias=bias, rngs=rngs)
        self.o_proj = hf_linear(t.num_attention_heads * hd, hidden, bias=bias, dtype=dtype, rngs=rngs)

    def project(self, m: nnx.Linear, x: jax.Array) -> jax.Array:
        """(B, L, in) -> (B, L, heads, head_dim), the input cast to the projection's weight dtype."""
        y = m(x.astype(linear_dtype(m)))
        return y.reshape(*y.shape[:-1], -1, self.head_dim)


class DecoderLayer(nnx.Module):
    def __init__(
        self, t: TextArch, hidden: int, inner: int, dtype: Any, *, rngs: nnx.Rngs, kv_in: int | None = None
    ):
        self.input_layernorm = RMSNorm(hidden, t.rms_norm_eps, dtype)
        self.self_attn = LlamaAttention(t, hidden, dtype, rngs=rngs, kv_in=kv_in)
        self.post_attention_layernorm = RMSNorm(hidden, t.rms_norm_eps, dtype)
        self.mlp = LlamaMLP(hidden, inner, t.mlp_bias, dtype, rngs=rngs)

    def qkv(self, x: jax.Array, positions: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        """Self-attention q/k/v of this stream, q and k RoPE'd."""
        h = self.input_layernorm(x)
        a = self.self_attn
        q, k, v = a.project(a.q_proj, h), a.project(a.k_proj, h), a.project(a.v_proj, h)
        return apply_rope(q, positions), apply_rope(k, positions), v

    def finish(self, att: jax.Array, x: jax.Array) -> jax.Array:
        """o_proj + residual, then the MLP block + residual (LeRobot's in-place adds)."""
        o = self.self_attn.o_proj
        y = add_into(o(att.astype(linear_dtype(o))), x)
        return add_into(self.mlp(self.post_attention_layernorm(y)), y)


class TextModel(nnx.Module):
    def __init__(self, arch: VLMArch, n_layers: int, dtype: Any, *, rngs: nnx.Rngs):
        t = arch.text
        self.embed_tokens = nnx.Embed(
            t.vocab_size, t.hidden_size, embedding_init=hf_init, param_dtype=dtype, dtype=dtype, rngs=rngs
        )
        self.layers = nnx.List(
            [DecoderLayer(t, t.hidden_size, t.intermediate_size, dtype, rngs=rngs) for _ in range(n_layers)]
        )
        self.norm = RMSNorm(t.hidden_size, t.rms_norm_eps, dtype)


class SmolVLMModel(nnx.Module):
    """Without `vision` (a policy whose images go through another encoder) only the text model is built."""

    def __init__(self, arch: VLMArch, n_layers: int, dtype: Any, *, rngs: nnx.Rngs, vision: bool = True):
        if vision:
            self.vision_model = VisionTransformer(arch.vision, dtype, rngs=rngs)
            self.connector = Connector(arch, dtype, rngs=rngs)
        self.text_model = TextModel(arch, n_layers, dtype, rngs=rngs)


class SmolVLM(nnx.Module):
    """`SmolVLMForConditionalGeneration` minus its `lm_head` (unused by SmolVLA; dropped on import)."""

    def __init__(self, arch: VLMArch, n_layers: int, dtype: Any, *, rngs: nnx.Rngs, vision: bool = True):
        self.model = SmolVLMModel(arch, n_layers, dtype, rngs=rngs, vision=vision)


class Expert(nnx.Module):
    """The action expert: a Llama stack `expert_width_multiplier` as wide, without embeddings."""

    def __init__(self, config: SmolVLAConfig, arch: VLMArch, dtype: Any, *, rngs: nnx.Rngs):
        t = arch.text
        hidden = config.expert_hidden_size(arch)
        inner = intermediate_size(hidden)
        kv_width = t.kv_heads * t.head_size
        self.layers = nnx.List(
            [
                DecoderLayer(
                    t,
                    hidden,
                    inner,
                    dtype,
                    rngs=rngs,
                    kv_in=kv_width if config.expert_built_cross(i) else None,
                )
                for i in range(config.n_expert_layers)
            ]
        )
        self.norm = RMSNorm(hidden, t.rms_norm_eps, dtype)


class VLMWithExpert(nnx.Module):
    def __init__(self, config: SmolVLAConfig, arch: VLMArch, dtype: Any, *, rngs: nnx.Rngs):
        self.vlm = SmolVLM(arch, config.num_vlm_layers, dtype, rngs=rngs, vision=not config.uses_keypoints)
        self.lm_expert = Expert(config, arch, dtype, rngs=rngs)
        self.plan = tuple(config.layer_plan())


# ---------------------------------------------------------------------------------------------------
# VLAFlowMatching
class VLAFlowMatching(nnx.Module):
    """LeRobot's `VLAFlowMatching`: prefix embedding, the layer stack, suffix heads, loss and sampler.

    With `image_encoder="keypoints"` the images go through `image_encoder` (built for `image_hw`, the
    (H, W) the cameras reach it at) instead of SmolVLM's vision tower and connector.
    """

    def __init__(
        self,
        config: SmolVLAConfig,
        *,
        rngs: nnx.Rngs,
        image_hw: tuple[int, int] | None = None,
        num_cameras: int = 1,
    ):
        arch = config.arch
        dtype = DTYPES[config.precision]
        self.config = config
        self.vlm_with_expert = VLMWithExpert(config, arch, dtype, rngs=rngs)
        if config.uses_keypoints:
            if image_hw is None:
                raise ValueError(
                    "image_encoder='keypoints' needs the cameras' (H, W) to build its keypoint grid"
                )
            self.image_encoder = KeypointTokens(
                image_hw,
                config.keypoint_cnn_channels,
                config.keypoint_cnn_strides,
                config.num_keypoints,
                arch.text.hidden_size,
                rngs=rngs,
                num_cameras=num_cameras,
                layout=config.keypoint_tokens,
                condition_width=arch.text.hidden_size if config.keypoint_film else None,
            )
        width = config.expert_hidden_size(arch)
        self.state_proj = torch_linear_fp32(config.max_state_dim, arch.text.hidden_size, rngs=rngs)
        self.action_in_proj = torch_linear_fp32(config.max_action_dim, width, rngs=rngs)
        self.action_out_proj = torch_linear_fp32(width, config.max_action_dim, rngs=rngs)
        self.action_time_mlp_in = torch_linear_fp32(2 * width, width, rngs=rngs)
        self.action_time_mlp_out = torch_linear_fp32(width, width, rngs=rngs)
        vlm = self.vlm_with_expert.vlm.model
        if config.train_expert_only:
            freeze(self.vlm_with_expert.vlm)
        elif config.freeze_vision_encoder and not config.uses_keypoints:
            freeze(vlm.vision_model)
        if not config.train_state_proj:
            freeze(self.state_proj)

    # -- prefix -----------------------------------------------------------------------------------
    def embed_image(self, img: jax.Array, camera: int = 0, instruction: jax.Array | None = None) -> jax.Array:
        """(B, tokens, text width) of image number `camera`: SigLIP's tokens scaled by sqrt(width) as
        LeRobot does (one tower for all cameras), or that camera's keypoint tokens (conditioned on
        `instruction`, the (B, width) instruction embedding, with `keypoint_film`)."""
        if self.config.uses_keypoints:
            text_dtype = self.vlm_with_expert.vlm.model.text_model.embed_tokens.embedding.get_value().dtype
            condition = instruction if self.config.keypoint_film else None
            return self.image_encoder(img, camera, condition).astype(text_dtype)
        vlm = self.vlm_with_expert.vlm.model
        e = vlm.connector(vlm.vision_model(img))
        return e * jnp.asarray(e.shape[-1] ** 0.5, e.dtype)

    def embed_tokens(self, ids: jax.Array) -> jax.Array:
        return self.vlm_with_expert.vlm.model.text_model.embed_tokens(ids)

    def embed_prefix(
        self,
        images: Sequence[jax.Array],
        img_masks: Sequence[jax.Array],
        lang_tokens: jax.Array,
        lang_masks: jax.Array,
        state: jax.Array,
    ) -> tuple[jax.Array, jax.Array, jax.Array]:
        """(embeddings (B, P, D), pad mask (B, P), attention-block mask (P,)): images, language, state."""
        cfg, arch = self.config, self.config.arch
        b = state.shape[0]
        embs: list[jax.Array] = []
        pads: list[jax.Array] = []
        att: list[int] = []

        def special(ids: list[int]) -> None:
            e = self.embed_tokens(jnp.asarray(ids, jnp.int32))
            embs.append(jnp.broadcast_to(e[None], (b, *e.shape)))
            pads.append(jnp.ones((b, len(ids)), bool))
            att.extend([0] * len(ids))

        lang = self.embed_tokens(lang_tokens)
        instruction = None
        if cfg.keypoint_film:  # the mean of the instruction's own token embeddings (padding excluded)
            m = lang_masks.astype(jnp.float32)[..., None]
            instruction = (lang.astype(jnp.float32) * m).sum(1) / jnp.maximum(m.sum(1), 1.0)
        for camera, (img, mask) in enumerate(zip(images, img_masks, strict=True)):
            if cfg.add_image_special_tokens:
                special([arch.fake_image_token_id, arch.global_image_token_id])
            e = self.embed_image(img, camera, instruction)
            embs.append(e)
            pads.append(jnp.broadcast_to(mask[:, None], e.shape[:2]))
            att.extend([0] * e.shape[1])
            if cfg.add_image_special_tokens:
                special([arch.fake_image_token_id])
        lang = (lang * math.sqrt(lang.shape[-1])).astype(lang.dtype)
        embs.append(lang)
        pads.append(lang_masks.astype(bool))
        att.extend([0] * lang.shape[1])
        embs.append(self.state_proj(state)[:, None, :])
        pads.append(jnp.ones((b, 1), bool))
        att.append(1)
        dtype = jnp.result_type(*[e.dtype for e in embs])
        emb = jnp.concatenate([e.astype(dtype) for e in embs], axis=1)
        pad = jnp.concatenate(pads, axis=1)
        att_arr = jnp.asarray(att, jnp.int32)
        if emb.shape[1] < cfg.prefix_length:
            extra = cfg.prefix_length - emb.shape[1]
            emb = jnp.pad(emb, ((0, 0), (0, extra), (0, 0)))
            pad = jnp.pad(pad, ((0, 0), (0, extra)))
            att_arr = jnp.pad(att_arr, (0, extra))
        return emb, pad, att_arr

    def prefix_kv(
        self, prefix: jax.Array, pad: jax.Array, att: jax.Array
    ) -> list[tuple[jax.Array, jax.Array]]:
        """Run the VLM over the prefix (every layer self-attention); per layer, its RoPE'd K and plain V."""
        mask = make_att_2d_masks(pad, jnp.broadcast_to(att[None], pad.shape))
        positions = jnp.cumsum(pad.astype(jnp.int32), axis=1) - 1
        x = prefix
        cache = []
        for layer in self.vlm_with_expert.vlm.model.text_model.layers:
            q, k, v = layer.qkv(x, positions)
            cache.append((k, v))
            x = layer.finish(gqa_attention(q, k, v, mask), x)
        return cache

    # -- suffix -----------------------------------------------------------------------------------
    def embed_suffix(self, x_t: jax.Array, t: jax.Array) -> jax.Array:
        cfg = self.config
        a = self.action_in_proj(x_t)
        te = time_embedding(t, a.shape[-1], cfg.min_period, cfg.max_period).astype(a.dtype)
        h = jnp.concatenate([a, jnp.broadcast_to(te[:, None, :], a.shape)], axis=2)
        return self.action_time_mlp_out(jax.nn.silu(self.action_time_mlp_in(h)))

    def expert(
        self, suffix: jax.Array, cache: Sequence[tuple[jax.Array, jax.Array]], prefix_pad: jax.Array
    ) -> jax.Array:
        """The expert stream over the suffix against the prefix cache -> velocity (B, S, max_action_dim)."""
        b, s, _ = suffix.shape
        p = prefix_pad.shape[1]
        positions = jnp.sum(prefix_pad.astype(jnp.int32), axis=1, keepdims=True) + jnp.arange(s)[None]
        cross_positions = jnp.broadcast_to(jnp.arange(s)[None], (b, s))
        prefix_cols = jnp.broadcast_to(prefix_pad[:, None, :], (b, s, p))
        causal = jnp.broadcast_to(jnp.tril(jnp.ones((s, s), bool))[None], (b, s, s))
        self_mask = jnp.concatenate([prefix_cols, causal], axis=2)
        x = suffix
        experts = self.vlm_with_expert.lm_expert.layers
        for (k_p, v_p), (e_idx, kind) in zip(cache, self.vlm_with_expert.plan, strict=True):
            if e_idx is None:
                continue
            layer = experts[e_idx]
            a = layer.self_attn
            if kind == "self":
                q, k, v = layer.qkv(x, positions)
                k = jnp.concatenate([k_p.astype(k.dtype), k], axis=1)
                v = jnp.concatenate([v_p.astype(v.dtype), v], axis=1)
                att = gqa_attention(q, k, v, self_mask)
            else:
                h = layer.input_layernorm(x)
                q = apply_rope(a.project(a.q_proj, h), cross_positions)
                k = a.project(a.k_proj, k_p.reshape(b, p, -1))
                v = a.project(a.v_proj, v_p.reshape(b, p, -1))
                att = gqa_attention(q, k, v, prefix_cols)
            x = layer.finish(att, x)
        x = self.vlm_with_expert.lm_expert.norm(x)
        return self.action_out_proj(x[:, -self.config.chunk_size :].astype(F32))

    # -- training and sampling --------------------------------------------------------------------
    def losses(
        self,
        images: Sequence[jax.Array],
        img_masks: Sequence[jax.Array],
        lang_tokens: jax.Array,
        lang_masks: jax.Array,
        state: jax.Array,
        actions: jax.Array,
        noise: jax.Array,
        time: jax.Array,
    ) -> jax.Array:
        """LeRobot's `VLAFlowMatching.forward`: per-element (u_t - v_t)^2, (B, chunk, max_action_dim)."""
        t = time[:, None, None]
        x_t = t * noise + (1 - t) * actions
        u_t = noise - actions
        prefix, pad, att = self.embed_prefix(images, img_masks, lang_tokens, lang_masks, state)
        cache = self.prefix_kv(prefix, pad, att)
        v_t = self.expert(self.embed_suffix(x_t, time), cache, pad)
        return jnp.square(u_t - v_t)

    def sample(
        self,
        images: Sequence[jax.Array],
        img_masks: Sequence[jax.Array],
        lang_tokens: jax.Array,
        lang_masks: jax.Array,
        state: jax.Array,
        noise: jax.Array,
    ) -> jax.Array:
        """LeRobot's `sample_actions`: Euler steps from t=1 to 0 against one prefix cache (lax.scan)."""
        n = self.config.num_steps
        dt = -1.0 / n
        times = np.asarray([1.0 + k * dt for k in range(n)], np.float32)
        prefix, pad, att = self.embed_prefix(images, img_masks, lang_tokens, lang_masks, state)
        cache = self.prefix_kv(prefix, pad, att)
        b = noise.shape[0]

        def step(x_t: jax.Array, t: jax.Array) -> tuple[jax.Array, None]:
            v_t = self.expert(self.embed_suffix(x_t, jnp.broadcast_to(t, (b,))), cache, pad)
            return x_t + jnp.float32(dt) * v_t, None

        if _UNROLLED.get():
            x = noise.astype(F32)
            for t in times:
                x = step(x, jnp.asarray(t))[0]
            return x
        x, _ = jax.lax.scan(step, noise.astype(F32), jnp.asarray(times))
        return x


class SmolVLAPolicy(nnx.Module):
    """The policy module: `VLAFlowMatching` plus in-model normalization and the task tokenizer."""

    def __init__(
        self,
        config: SmolVLAConfig,
        spec: PolicySpec,
        stats: Mapping[str, Mapping[str, Any]] | None,
        *,
        rngs: nnx.Rngs,
        missing_stats: str = "error",
        eps: float = 1e-8,
        tokenizer: Any = None,
    ):
        self.config = config
        self.spec = spec
        features = {**spec.input_features, **spec.output_features}
        self.normalizer = Normalizer(
            features, spec.normalization_mapping, stats, eps=eps, missing=missing_stats
        )
        image_hw = None
        if config.uses_keypoints:
            shapes = {k: spec.input_features[k].shape for k in spec.image_keys}
            image_hw = image_hw_of(shapes, config.resize_imgs_with_padding, "SmolVLA keypoint encoder")
        num_cameras = len(spec.image_keys) + config.empty_cameras
        self.model = VLAFlowMatching(config, rngs=rngs, image_hw=image_hw, num_cameras=num_cameras)
        self.tokenizer = tokenizer

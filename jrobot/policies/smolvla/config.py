"""SmolVLA's hyperparameters: LeRobot 0.4.4's `SmolVLAConfig` plus the VLM architecture it loads.

LeRobot builds the VLM from the config.json of the folder (or hub id) `vlm_model_name` names, so the
architecture is not in the policy's own config.json. jrobot copies it into `SmolVLAConfig.vlm` (a plain
dict, see `VLMArch`) when a model is built or imported, so a checkpoint or bundle is self-describing and
never needs the VLM folder again to rebuild the network (the tokenizer travels separately).
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from typing import Any

from jrobot.policies.conv_trunk import validate_trunk
from jrobot.policies.ema import EMAConfig
from jrobot.policies.keypoint_tokens import LAYOUTS as KEYPOINT_LAYOUTS
from jrobot.policies.lerobot.checkpoint import policy_hyperparameters
from jrobot.policies.spec import HyperparameterDict, parse_normalization_mapping

POLICY_TYPE = "smolvla"
DEFAULT_VLM = "HuggingFaceTB/SmolVLM2-500M-Video-Instruct"
PRECISIONS = ("float32", "bfloat16")
LOSS_REDUCTIONS = ("mean_all", "mean_valid")
PAD_LANGUAGE = ("longest", "max_length")
IMAGE_ENCODERS = ("siglip", "keypoints")
VISION_ACTIVATIONS = ("gelu_pytorch_tanh", "gelu", "gelu_new", "gelu_fast", "quick_gelu")
# LeRobot config keys that change nothing in the computation jrobot runs (accepted, reported once).
NO_EFFECT_KEYS = ("use_cache", "compile_model", "compile_mode", "rtc_config", "load_vlm_weights")


# SmolVLAConfig fields LeRobot's config.json never sets (a checkpoint of LeRobot is always "siglip")
JROBOT_OPTIONS = frozenset(
    {
        "vlm",
        "vlm_path",
        "precision",
        "loss_reduction",
        "image_encoder",
        "keypoint_cnn_channels",
        "keypoint_cnn_strides",
        "num_keypoints",
        "keypoint_tokens",
        "keypoint_film",
        "state_dropout",
        "sampling_noise_scale",
        "ema_decay",
    }
)


def _default_norm_map() -> dict[str, str]:
    return {"VISUAL": "IDENTITY", "STATE": "MEAN_STD", "ACTION": "MEAN_STD"}


def intermediate_size(hidden: int, ffn_dim_multiplier: int = 4, multiple_of: int = 256) -> int:
    """LeRobot's `get_intermediate_size`: the action expert's MLP width for its hidden size."""
    h = int(2 * hidden / 3)
    h = int(ffn_dim_multiplier * h)
    return multiple_of * ((h + multiple_of - 1) // multiple_of)


@dataclasses.dataclass(frozen=True)
class VisionArch:
    """SmolVLM's SigLIP-style vision tower (`SmolVLMVisionConfig`; defaults are transformers')."""

    hidden_size: int = 1152
    intermediate_size: int = 3072
    num_hidden_layers: int = 12
    num_attention_heads: int = 16
    num_channels: int = 3
    image_size: int = 224
    patch_size: int = 32
    hidden_act: str = "gelu_pytorch_tanh"
    layer_norm_eps: float = 1e-6

    @property
    def patches_per_side(self) -> int:
        return self.image_size // self.patch_size


@dataclasses.dataclass(frozen=True)
class TextArch:
    """The Llama text model (`LlamaConfig`; defaults are transformers'). `head_dim` None: hidden/heads."""

    hidden_size: int = 4096
    intermediate_size: int = 11008
    num_hidden_layers: int = 32
    num_attention_heads: int = 32
    num_key_value_heads: int | None = None
    head_dim: int | None = None
    hidden_act: str = "silu"
    rms_norm_eps: float = 1e-6
    vocab_size: int = 32000
    attention_bias: bool = False
    mlp_bias: bool = False

    @property
    def kv_heads(self) -> int:
        return self.num_key_value_heads or self.num_attention_heads

    @property
    def head_size(self) -> int:
        return self.head_dim or self.hidden_size // self.num_attention_heads


@dataclasses.dataclass(frozen=True)
class VLMArch:
    """What LeRobot reads from the VLM folder's config.json (plus two special token ids of its tokenizer)."""

    vision: VisionArch
    text: TextArch
    scale_factor: int = 2
    fake_image_token_id: int | None = None
    global_image_token_id: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], *, where: str = "SmolVLAConfig.vlm") -> VLMArch:
        try:
            return cls(
                vision=_strict(VisionArch, d["vision"], f"{where}.vision"),
                text=_strict(TextArch, d["text"], f"{where}.text"),
                **{
                    k: d[k]
                    for k in ("scale_factor", "fake_image_token_id", "global_image_token_id")
                    if k in d
                },
            )
        except KeyError as e:
            raise ValueError(f"{where}: missing {e.args[0]!r} (expected vision, text, scale_factor)") from e

    @classmethod
    def from_hf_config(
        cls,
        cfg: Mapping[str, Any],
        *,
        where: str = "config.json",
        special_token_ids: Mapping[str, int] | None = None,
    ) -> VLMArch:
        """From a SmolVLM (idefics3-style) config.json: `vision_config`, `text_config`, `scale_factor`."""
        if "vision_config" not in cfg or "text_config" not in cfg:
            raise ValueError(f"{where}: not a SmolVLM config (needs vision_config and text_config)")
        ids = dict(special_token_ids or {})
        return cls(
            vision=_known(VisionArch, cfg["vision_config"]),
            text=_known(TextArch, cfg["text_config"]),
            scale_factor=int(cfg.get("scale_factor", 2)),
            fake_image_token_id=ids.get("fake_image_token_id"),
            global_image_token_id=ids.get("global_image_token_id"),
        )


def _known(cls: type, d: Mapping[str, Any]) -> Any:
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in d.items() if k in names})


def _strict(cls: type, d: Mapping[str, Any], where: str) -> Any:
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - names)
    if unknown:
        raise ValueError(f"{where}: unknown keys {unknown}; known: {sorted(names)}")
    return cls(**dict(d))


# SmolVLM2-500M-Video-Instruct, the VLM of lerobot/smolvla_base (../shared/reference §4.2).
SMOLVLM2_500M = VLMArch(
    vision=VisionArch(
        hidden_size=768,
        intermediate_size=3072,
        num_hidden_layers=12,
        num_attention_heads=12,
        image_size=512,
        patch_size=16,
    ),
    text=TextArch(
        hidden_size=960,
        intermediate_size=2560,
        num_hidden_layers=32,
        num_attention_heads=15,
        num_key_value_heads=5,
        head_dim=64,
        rms_norm_eps=1e-5,
        vocab_size=49280,
    ),
    scale_factor=4,
)


@dataclasses.dataclass(frozen=True)
class SmolVLAConfig(HyperparameterDict):
    """LeRobot 0.4.4's `SmolVLAConfig` (same names, same defaults) plus jrobot options.

    jrobot options:
    - `vlm`: the VLM architecture (`VLMArch.to_dict()`), filled from the VLM folder when a model is built
      or imported; None until then.
    - `vlm_path`: the local VLM folder `vlm_model_name` resolved to (tokenizer, pretrained VLM weights).
    - `precision`: "float32" (default; LeRobot after `policy.to(torch.float32)`) or "bfloat16", LeRobot's
      mixed mode of a VLM loaded with `load_vlm_weights=True`: the VLM and expert in bf16, the
      projections LeRobot creates as plain `nn.Linear` (state/action/time, cross-attention k/v) in fp32.
    - `loss_reduction`: "mean_all" (0.4.4: padded steps and padded action dims included) or
      "mean_valid" (LeRobot HEAD: mean over valid steps and the real action dims only).
    - `image_encoder`: "siglip" (SmolVLM's vision tower and connector, as LeRobot) or "keypoints"
      (`jrobot.policies.keypoint_tokens`: a conv trunk of `keypoint_cnn_channels` / `keypoint_cnn_strides`
      reduced to `num_keypoints` soft-argmax keypoints per camera), for a VLA trained from scratch where
      no pretrained tower exists. The keypoint encoder always trains (`freeze_vision_encoder` and
      `train_expert_only` freeze only the VLM); the text model can still load SmolVLM2's weights.
    - `keypoint_tokens`: how a camera's keypoints enter the prefix: "per_keypoint" (one token each: its
      position, the features it found, its identity) or "per_camera" (ACT's: one token of all its
      keypoints' positions). Measured on the demos, "per_camera" is what makes the VLA use its cameras
      rather than the joint state (`jrobot.policies.keypoint_tokens`).
    - `keypoint_film`: the instruction (the mean of its token embeddings, the VLM's own table) scales and
      shifts the keypoint trunk's channels before the keypoint detectors (RT-1's FiLM), so the keypoints
      can follow the object the instruction names. Only with `image_encoder="keypoints"`.
    - `state_dropout`: in training, the share of samples whose joint state is replaced by the dataset's
      mean (0 = off, LeRobot). Along a scripted expert's paths the joints give the target away, and a
      VLA trained from scratch learns to read them instead of its cameras (causal confusion); samples
      without the state can only be solved by looking.
    - `sampling_noise_scale`: the flow starts from this multiple of the N(0, I) noise when sampling a
      chunk (1 = LeRobot; training is unaffected). Below 1 the chunk comes from the middle of what the
      policy learnt rather than a random draw of it (a diffusion/flow policy's "temperature"); at 0 it is
      deterministic, and a policy that stalls stays stalled. Measured on the pick-colour demo in
      benchmarks/README.md.
    - `ema_decay`: the trainer also keeps an exponential moving average of the parameters with this
      constant decay (openpi's pi0 recipe: 0.99; the first two updates copy them), and export takes the
      average. None = no EMA (LeRobot). On the pick-colour demo (cosine decay to 1e-5) 0.999 changed
      nothing measurable (benchmarks/README.md), so the demo config keeps none.
    """

    n_obs_steps: int = 1
    chunk_size: int = 50
    n_action_steps: int = 50
    normalization_mapping: dict[str, str] = dataclasses.field(default_factory=_default_norm_map)
    max_state_dim: int = 32
    max_action_dim: int = 32
    resize_imgs_with_padding: tuple[int, int] | None = (512, 512)
    empty_cameras: int = 0
    adapt_to_pi_aloha: bool = False
    use_delta_joint_actions_aloha: bool = False
    tokenizer_max_length: int = 48
    num_steps: int = 10
    use_cache: bool = True
    freeze_vision_encoder: bool = True
    train_expert_only: bool = True
    train_state_proj: bool = True
    optimizer_lr: float = 1e-4
    optimizer_betas: tuple[float, float] = (0.9, 0.95)
    optimizer_eps: float = 1e-8
    optimizer_weight_decay: float = 1e-10
    optimizer_grad_clip_norm: float = 10.0
    scheduler_warmup_steps: int = 1000
    scheduler_decay_steps: int = 30_000
    scheduler_decay_lr: float = 2.5e-6
    vlm_model_name: str = DEFAULT_VLM
    load_vlm_weights: bool = False
    add_image_special_tokens: bool = False
    attention_mode: str = "cross_attn"
    prefix_length: int = -1
    pad_language_to: str = "longest"
    num_expert_layers: int = -1
    num_vlm_layers: int = 16
    self_attn_every_n_layers: int = 2
    expert_width_multiplier: float = 0.75
    min_period: float = 4e-3
    max_period: float = 4.0
    rtc_config: dict[str, Any] | None = None
    compile_model: bool = False
    compile_mode: str = "max-autotune"
    # jrobot options
    vlm: dict[str, Any] | None = None
    vlm_path: str | None = None
    precision: str = "float32"
    loss_reduction: str = "mean_all"
    image_encoder: str = "siglip"
    keypoint_cnn_channels: tuple[int, ...] = (16, 32, 32)
    keypoint_cnn_strides: tuple[int, ...] = (2, 2, 1)
    num_keypoints: int = 32
    keypoint_tokens: str = "per_keypoint"
    keypoint_film: bool = False
    state_dropout: float = 0.0
    sampling_noise_scale: float = 1.0
    ema_decay: float | None = None

    def __post_init__(self) -> None:
        mapping = parse_normalization_mapping(
            self.normalization_mapping, where="SmolVLAConfig.normalization_mapping"
        )
        object.__setattr__(self, "normalization_mapping", {k: v.value for k, v in mapping.items()})
        for name in (
            "optimizer_betas",
            "resize_imgs_with_padding",
            "keypoint_cnn_channels",
            "keypoint_cnn_strides",
        ):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, tuple(value))
        if self.n_obs_steps != 1:
            raise ValueError(
                f"SmolVLA reads one observation step: n_obs_steps must be 1, got {self.n_obs_steps}"
            )
        if not 1 <= self.n_action_steps <= self.chunk_size:
            raise ValueError(
                f"n_action_steps ({self.n_action_steps}) must be between 1 and chunk_size ({self.chunk_size})"
            )
        if self.use_delta_joint_actions_aloha:
            raise ValueError(
                "use_delta_joint_actions_aloha=True: LeRobot has not implemented it either (it raises)"
            )
        if self.pad_language_to not in PAD_LANGUAGE:
            raise ValueError(f"pad_language_to must be one of {PAD_LANGUAGE}, got {self.pad_language_to!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.loss_reduction not in LOSS_REDUCTIONS:
            raise ValueError(f"loss_reduction must be one of {LOSS_REDUCTIONS}, got {self.loss_reduction!r}")
        if self.image_encoder not in IMAGE_ENCODERS:
            raise ValueError(f"image_encoder must be one of {IMAGE_ENCODERS}, got {self.image_encoder!r}")
        if not 0.0 <= float(self.state_dropout) < 1.0:
            raise ValueError(f"SmolVLAConfig.state_dropout must be in [0, 1), got {self.state_dropout}")
        if not (math.isfinite(float(self.sampling_noise_scale)) and float(self.sampling_noise_scale) >= 0):
            raise ValueError(
                f"SmolVLAConfig.sampling_noise_scale must be a finite number >= 0, got {self.sampling_noise_scale}"
            )
        if self.ema_decay is not None:
            self.ema_config()
        if self.keypoint_film and not self.uses_keypoints:
            raise ValueError(
                "SmolVLAConfig.keypoint_film=True needs image_encoder='keypoints' "
                f"(got {self.image_encoder!r}): it conditions the keypoint encoder on the instruction"
            )
        if self.uses_keypoints:
            validate_trunk(
                self.keypoint_cnn_channels, self.keypoint_cnn_strides, "SmolVLAConfig.keypoint_cnn"
            )
            if int(self.num_keypoints) < 1:
                raise ValueError(f"SmolVLAConfig.num_keypoints must be >= 1, got {self.num_keypoints}")
            if self.keypoint_tokens not in KEYPOINT_LAYOUTS:
                raise ValueError(
                    f"SmolVLAConfig.keypoint_tokens must be one of {KEYPOINT_LAYOUTS}, got {self.keypoint_tokens!r}"
                )
        for name in (
            "num_steps",
            "tokenizer_max_length",
            "max_state_dim",
            "max_action_dim",
            "num_vlm_layers",
        ):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"SmolVLAConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.empty_cameras < 0:
            raise ValueError(f"empty_cameras must be >= 0, got {self.empty_cameras}")
        if self.min_period <= 0 or self.max_period <= 0:
            raise ValueError(
                f"min_period and max_period must be > 0, got {self.min_period}, {self.max_period}"
            )
        if self.resize_imgs_with_padding is not None and (
            len(self.resize_imgs_with_padding) != 2 or min(self.resize_imgs_with_padding) < 1
        ):
            raise ValueError(
                f"resize_imgs_with_padding must be (width, height) or None, got {self.resize_imgs_with_padding}"
            )
        if self.vlm is not None:
            arch = VLMArch.from_dict(self.vlm)
            object.__setattr__(self, "vlm", arch.to_dict())
            self._check_arch(arch)

    def _check_arch(self, arch: VLMArch) -> None:
        v, t = arch.vision, arch.text
        where = f"SmolVLA with VLM {self.vlm_model_name!r}"
        if self.num_vlm_layers > t.num_hidden_layers:
            raise ValueError(
                f"{where}: num_vlm_layers ({self.num_vlm_layers}) exceeds the text model's "
                f"{t.num_hidden_layers} layers"
            )
        if t.num_attention_heads % t.kv_heads:
            raise ValueError(
                f"{where}: {t.num_attention_heads} heads are not a multiple of {t.kv_heads} kv heads"
            )
        if t.head_size % 2:
            raise ValueError(f"{where}: RoPE needs an even head_dim, got {t.head_size}")
        if t.hidden_act != "silu":
            raise ValueError(f"{where}: text hidden_act {t.hidden_act!r} is not supported (Llama uses silu)")
        if v.hidden_act not in VISION_ACTIVATIONS:
            raise ValueError(
                f"{where}: vision hidden_act {v.hidden_act!r} is not one of {VISION_ACTIVATIONS}"
            )
        if v.hidden_size % v.num_attention_heads:
            raise ValueError(
                f"{where}: vision hidden {v.hidden_size} not divisible by {v.num_attention_heads} heads"
            )
        if v.patches_per_side % arch.scale_factor:
            raise ValueError(
                f"{where}: {v.patches_per_side} patches per side are not divisible by scale_factor "
                f"{arch.scale_factor} (pixel shuffle)"
            )
        side = self.resize_imgs_with_padding
        if not self.uses_keypoints and side is not None and tuple(side) != (v.image_size, v.image_size):
            raise ValueError(
                f"{where}: resize_imgs_with_padding {tuple(side)} must equal the vision tower's image size "
                f"({v.image_size}, {v.image_size}); its position embeddings are fixed to that grid"
            )
        if self.num_expert_layers > 0 and self.num_vlm_layers % self.num_expert_layers:
            raise ValueError(
                f"num_vlm_layers ({self.num_vlm_layers}) must be a multiple of num_expert_layers "
                f"({self.num_expert_layers}), as LeRobot asserts"
            )
        if self.add_image_special_tokens and (
            arch.fake_image_token_id is None or arch.global_image_token_id is None
        ):
            raise ValueError(
                f"{where}: add_image_special_tokens needs the tokenizer's <fake_token_around_image> and "
                "<global-img> ids (VLMArch.fake_image_token_id / global_image_token_id)"
            )
        if self.expert_hidden_size(arch) < 1:
            raise ValueError(f"expert_width_multiplier {self.expert_width_multiplier} gives an empty expert")
        for vlm_layer, (expert_layer, kind) in enumerate(self.layer_plan()):
            if expert_layer is None:
                continue
            built_cross = self.cross_attention and not (
                self.self_attn_every_n_layers > 0 and expert_layer % self.self_attn_every_n_layers == 0
            )
            if built_cross != (kind == "cross"):
                raise ValueError(
                    f"layer pattern: VLM layer {vlm_layer} is a {kind}-attention layer but runs expert layer "
                    f"{expert_layer}, built for {'cross' if built_cross else 'self'}-attention "
                    f"(num_vlm_layers={self.num_vlm_layers}, num_expert_layers={self.num_expert_layers}, "
                    f"self_attn_every_n_layers={self.self_attn_every_n_layers}); LeRobot fails on this too"
                )

    def __hash__(self) -> int:
        return hash(json.dumps(self.to_dict(), sort_keys=True, default=str))

    # -- derived architecture -----------------------------------------------------------------------
    @property
    def arch(self) -> VLMArch:
        if self.vlm is None:
            raise ValueError(
                "SmolVLAConfig.vlm is not set: build the model through jrobot.policies.smolvla.build (which "
                "reads the VLM folder's config.json) or pass vlm=VLMArch(...).to_dict()"
            )
        return VLMArch.from_dict(self.vlm)

    def ema_config(self) -> EMAConfig:
        """`ema_decay` as a constant schedule; a decay outside [0, 1) is an error naming the field."""
        d = float(self.ema_decay)
        if not (math.isfinite(d) and 0.0 <= d < 1.0):
            raise ValueError(
                f"SmolVLAConfig.ema_decay must be a number in [0, 1) or None, got {self.ema_decay}"
            )
        return EMAConfig(min_decay=d, max_decay=d)

    @property
    def uses_keypoints(self) -> bool:
        return self.image_encoder == "keypoints"

    @property
    def cross_attention(self) -> bool:
        return "cross" in self.attention_mode

    @property
    def n_expert_layers(self) -> int:
        return self.num_expert_layers if self.num_expert_layers > 0 else self.num_vlm_layers

    def expert_hidden_size(self, arch: VLMArch | None = None) -> int:
        return int((arch or self.arch).text.hidden_size * self.expert_width_multiplier)

    def layer_kind(self, vlm_layer: int) -> str:
        """'self' (joint attention) or 'cross' (the expert attends to the VLM's keys/values) outside prefill."""
        if not self.cross_attention:
            return "self"
        n = self.self_attn_every_n_layers
        return "self" if n > 0 and vlm_layer % n == 0 else "cross"

    def expert_built_cross(self, expert_layer: int) -> bool:
        """Whether LeRobot replaced this expert layer's k/v projections for cross-attention."""
        n = self.self_attn_every_n_layers
        return self.cross_attention and not (n > 0 and expert_layer % n == 0)

    def layer_plan(self) -> list[tuple[int | None, str]]:
        """Per VLM layer: (expert layer it runs, or None when the expert stream passes through; kind)."""
        multiple_of = self.num_vlm_layers // self.n_expert_layers
        plan: list[tuple[int | None, str]] = []
        for i in range(self.num_vlm_layers):
            if multiple_of > 0 and i > 0 and i % multiple_of != 0:
                expert = None
            else:
                expert = i // multiple_of if multiple_of > 0 else i
            plan.append((expert, self.layer_kind(i)))
        return plan

    @classmethod
    def from_lerobot(cls, d: Mapping[str, Any]) -> tuple[SmolVLAConfig, list[str]]:
        """From a LeRobot config.json dict; unknown keys and keys without effect here come back as notes."""
        hp = policy_hyperparameters(d)
        names = {f.name for f in dataclasses.fields(cls)} - JROBOT_OPTIONS
        notes = [
            f"config.json key {k!r} is not a SmolVLA hyperparameter jrobot knows; ignored"
            for k in sorted(set(hp) - names)
        ]
        rtc = hp.get("rtc_config")
        if rtc and (not isinstance(rtc, Mapping) or rtc.get("enabled", True)):
            notes.append(
                "rtc_config: real-time chunking guidance is not implemented in jrobot; plain flow-matching "
                "sampling is used (what LeRobot's predict_action_chunk does without RTC arguments)"
            )
        return cls(**{k: v for k, v in hp.items() if k in names}), notes

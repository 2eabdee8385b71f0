"""Build extra LeRobot SmolVLA parity references (random weights, tiny VLMs, float32, fully offline).

Run with the LeRobot 0.4.4 reference interpreter, never from jrobot or its tests:

    HF_HUB_OFFLINE=1 .lerobot-ref/bin/python tools/make_smolvla_references.py [--out DIR] [VARIANT ...]

Each variant is written to `tests/fixtures/smolvla/<variant>/` in the layout of the public fixture
`shared/fixtures/parity/smolvla_so101_tiny/`: `vlm/` (a tiny SmolVLM config plus the fixture's tokenizer and
processor files), `pretrained_model/` (LeRobot's `save_pretrained` of the policy and of its pre/post
processors, with `vlm_model_name` "vlm", relative to the variant folder), `cases.npz` (exact inputs and
outputs, same keys as the public fixture plus `expected.prefix_len`) and `README.md`. jrobot's tests read
these outputs; they never import this script. Everything is seeded, so a rerun is bit-identical.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import os
import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before huggingface_hub is imported: never touch the network

import numpy as np
import torch
from lerobot.configs.types import FeatureType, PolicyFeature
from lerobot.policies.smolvla.configuration_smolvla import SmolVLAConfig
from lerobot.policies.smolvla.modeling_smolvla import SmolVLAPolicy, pad_vector
from lerobot.policies.smolvla.processor_smolvla import make_smolvla_pre_post_processors
from lerobot.processor import PolicyProcessorPipeline
from lerobot.processor.converters import (
    policy_action_to_transition,
    transition_to_policy_action,
)

REPO = Path(__file__).resolve().parents[1]
PUBLIC_FIXTURE = REPO.parent / "shared/fixtures/parity/smolvla_so101_tiny"
DEFAULT_OUT = REPO / "tests/fixtures/smolvla"
VLM_FILES = (
    "preprocessor_config.json",
    "processor_config.json",
    "special_tokens_map.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "video_preprocessor_config.json",
)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
STATE = "observation.state"
ACTION = "action"
ALOHA_GRIPPERS = (6, 13)


@dataclass(frozen=True)
class Variant:
    """One reference: the VLM config edits, the SmolVLAConfig fields it sets and its raw inputs."""

    name: str
    summary: str
    vlm_text: dict[str, Any]
    vlm_vision: dict[str, Any]
    policy: dict[str, Any]
    cameras: dict[str, tuple[int, int, int]]
    state_dim: int
    action_dim: int
    tasks: tuple[str, ...]
    time: tuple[float, ...]
    seed: int
    notes: tuple[str, ...] = field(default=())


VARIANTS: dict[str, Variant] = {
    v.name: v
    for v in (
        Variant(
            name="wide_cams",
            summary=(
                "Different VLM dims (vision 32 wide, patch 8 on 32x32; text 48 wide, 3 heads over 1 kv head), "
                "three cameras of different raw shapes plus one empty camera, image special tokens, prefix "
                "padding to prefix_length, language padded to max_length, self-attention only at layer 0, "
                "expert half as wide, custom time-embedding periods."
            ),
            vlm_text={
                "hidden_size": 48,
                "num_hidden_layers": 3,
                "num_attention_heads": 3,
                "num_key_value_heads": 1,
                "head_dim": 16,
                "intermediate_size": 96,
                "vocab_size": 320,
            },
            vlm_vision={
                "hidden_size": 32,
                "num_hidden_layers": 2,
                "num_attention_heads": 2,
                "intermediate_size": 64,
                "image_size": 32,
                "patch_size": 8,
            },
            policy={
                "chunk_size": 5,
                "n_action_steps": 3,
                "max_state_dim": 8,
                "max_action_dim": 6,
                "resize_imgs_with_padding": (32, 32),
                "empty_cameras": 1,
                "tokenizer_max_length": 10,
                "num_steps": 4,
                "add_image_special_tokens": True,
                "prefix_length": 44,
                "pad_language_to": "max_length",
                "num_expert_layers": -1,
                "num_vlm_layers": 3,
                "self_attn_every_n_layers": 3,
                "expert_width_multiplier": 0.5,
                "min_period": 0.01,
                "max_period": 2.0,
            },
            cameras={
                "observation.images.top": (3, 48, 64),
                "observation.images.side": (3, 64, 40),
                "observation.images.wrist": (3, 24, 24),
            },
            state_dim=5,
            action_dim=4,
            tasks=("pick the cube", "w3 w7 w1 the cube", "w12 a cube"),
            time=(0.15, 0.5, 0.9),
            seed=101,
            notes=(
                "prefix_length 44 = P + 5 with P = 4 cameras x (4 image tokens + 3 special tokens) + 10 "
                "language tokens + 1 state token = 39, so embed_prefix right-pads the prefix with 5 masked "
                "tokens (pad 0, att 0).",
                "empty_cameras 1: LeRobot adds the input feature observation.images.empty_camera_0 (3x480x640) "
                "itself (it is in pretrained_model/config.json's input_features and the normalizer's features, "
                "without stats); it is never in the batch and becomes an all -1 32x32 image with mask False, "
                "placed after the three real cameras.",
                "With add_image_special_tokens the 3 special tokens of every camera, the empty one included, are "
                "valid (pad 1): only the empty camera's 4 image tokens are masked. Their embeddings are not "
                "scaled by sqrt(hidden) (image and language embeddings are).",
                "Raw cameras: top 3x48x64 -> 24x32 then 8 rows of top padding; side 3x64x40 (portrait) -> "
                "32x20 then 12 columns of left padding; wrist 3x24x24 upscaled to 32x32.",
                "Expert: hidden int(48*0.5)=24, intermediate get_intermediate_size(24)=256, 3 layers; layer 0 "
                "self-attention, layers 1 and 2 cross-attention (k/v_proj 16->16).",
                "B=3: a third short task 'w12 a cube' was added.",
            ),
        ),
        Variant(
            name="aloha_layers",
            summary=(
                "The public fixture's tiny VLM with all 4 text layers kept, 2 expert layers paired with VLM "
                "layers 0 and 2 (layers 1 and 3 pass the expert stream through), cross-attention at every "
                "layer (self_attn_every_n_layers 0), a full-width expert and the pi/aloha state and action "
                "transforms (state 14, action 14)."
            ),
            vlm_text={"num_hidden_layers": 4},
            vlm_vision={},
            policy={
                "chunk_size": 6,
                "n_action_steps": 6,
                "max_state_dim": 16,
                "max_action_dim": 16,
                "resize_imgs_with_padding": (64, 64),
                "adapt_to_pi_aloha": True,
                "tokenizer_max_length": 4,
                "num_steps": 2,
                "attention_mode": "cross_attn",
                "pad_language_to": "longest",
                "num_expert_layers": 2,
                "num_vlm_layers": 4,
                "self_attn_every_n_layers": 0,
                "expert_width_multiplier": 1.0,
            },
            cameras={"observation.images.front": (3, 48, 64)},
            state_dim=14,
            action_dim=14,
            tasks=("pick the cube", "w3 w7 w1 the cube"),
            time=(0.35, 0.75),
            seed=202,
            notes=(
                "The public fixture's vlm/config.json already has text num_hidden_layers 4; it is copied "
                "unchanged.",
                "attention_mode 'cross_attn' with self_attn_every_n_layers 0 runs in LeRobot 0.4.4: every expert "
                "layer gets cross-attention k/v_proj (32->32) and every layer is cross-attention except while "
                "filling the prefix KV cache (all layers self-attention there, VLM stream only).",
                "num_expert_layers 2 with num_vlm_layers 4: multiple_of 2, so VLM layers 0 and 2 use expert "
                "layers 0 and 1; at VLM layers 1 and 3 the expert stream is passed through unchanged.",
                "Expert: hidden 64, intermediate get_intermediate_size(64)=256, same heads as the VLM.",
                "tokenizer_max_length 4 truncates the second task (5 words) to its first 4 tokens.",
                "adapt_to_pi_aloha: the policy transforms the *normalized* state (joints 1, 2, 8, 9 negated, "
                "grippers 6 and 13 through aloha_gripper_to_angular) and the normalized actions. The raw state "
                "at 6 and 13 was chosen so that its normalized value lies in [0.2, 0.8].",
                "Note that LeRobot 0.4.4 applies these transforms in place on the batch tensors, so each call "
                "here gets a fresh copy of the preprocessed batch.",
                "expected.losses are policy.model.forward's per-element losses on the inputs policy.forward "
                "gives it: the decoded state (_pi_aloha_decode_state of norm.observation.state, zero-padded) and "
                "_pi_aloha_encode_actions_inv(norm.action), zero-padded; expected.loss is their mean.",
                "expected.action_chunk_norm is predict_action_chunk's output, which already includes "
                "_pi_aloha_encode_actions (joints negated, grippers through aloha_gripper_from_angular); "
                "expected.action_chunk is the postprocessor (unnormalizer) applied to it.",
            ),
        ),
    )
}


@contextlib.contextmanager
def working_dir(path: Path) -> Iterator[None]:
    """chdir into `path` for the duration (LeRobot resolves vlm_model_name "vlm" against the cwd)."""
    old = Path.cwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


def write_vlm_dir(variant: Variant, public: Path, vlm_dir: Path) -> dict[str, Any]:
    """The public fixture's tokenizer and processor files plus its config.json with this variant's edits."""
    vlm_dir.mkdir(parents=True)
    for name in VLM_FILES:
        shutil.copyfile(public / "vlm" / name, vlm_dir / name)
    config = json.loads((public / "vlm/config.json").read_text())
    config["text_config"].update(variant.vlm_text)
    config["vision_config"].update(variant.vlm_vision)
    config["vocab_size"] = config["text_config"]["vocab_size"]
    for sub in ("text_config", "vision_config"):
        assert "torch_dtype" not in config[sub] and "dtype" not in config[sub], "keep float32"
    (vlm_dir / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    return config


def make_stats(variant: Variant, rng: np.random.Generator) -> dict[str, dict[str, np.ndarray]]:
    """Random MEAN_STD stats for state and action (min/max consistent), ImageNet stats for the cameras."""
    stats: dict[str, dict[str, np.ndarray]] = {}
    for key, dim in ((STATE, variant.state_dim), (ACTION, variant.action_dim)):
        mean = rng.normal(0.0, 20.0, dim).astype(np.float32)
        std = rng.uniform(1.0, 15.0, dim).astype(np.float32)
        stats[key] = {
            "mean": mean,
            "std": std,
            "min": (mean - 3.0 * std).astype(np.float32),
            "max": (mean + 3.0 * std).astype(np.float32),
        }
    for key in variant.cameras:
        stats[key] = {
            "mean": np.asarray(IMAGENET_MEAN, np.float32).reshape(3, 1, 1),
            "std": np.asarray(IMAGENET_STD, np.float32).reshape(3, 1, 1),
            "min": np.zeros((3, 1, 1), np.float32),
            "max": np.ones((3, 1, 1), np.float32),
        }
    return stats


def make_raw_inputs(
    variant: Variant, stats: dict[str, dict[str, np.ndarray]], rng: np.random.Generator
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Raw observations (images float CHW in [0,1], state) and raw training actions."""
    batch = len(variant.tasks)
    chunk = variant.policy["chunk_size"]
    obs: dict[str, np.ndarray] = {}
    z_state = rng.normal(0.0, 1.0, (batch, variant.state_dim))
    if variant.policy.get("adapt_to_pi_aloha"):
        # The aloha gripper transform takes arcsin of a function of the normalized value; keep it in range.
        for idx in ALOHA_GRIPPERS:
            z_state[:, idx] = rng.uniform(0.2, 0.8, batch)
    obs[STATE] = (stats[STATE]["mean"] + stats[STATE]["std"] * z_state).astype(np.float32)
    for key, shape in variant.cameras.items():
        obs[key] = rng.random((batch, *shape), dtype=np.float32)
    z_action = rng.normal(0.0, 1.0, (batch, chunk, variant.action_dim))
    if variant.policy.get("adapt_to_pi_aloha"):
        for idx in ALOHA_GRIPPERS:
            z_action[:, :, idx] = rng.uniform(0.2, 0.8, (batch, chunk))
    action = (stats[ACTION]["mean"] + stats[ACTION]["std"] * z_action).astype(np.float32)
    return obs, action


def make_config(variant: Variant) -> SmolVLAConfig:
    """SmolVLAConfig with vlm_model_name "vlm" (relative to the variant folder) and the variant's fields."""
    input_features = {STATE: PolicyFeature(type=FeatureType.STATE, shape=(variant.state_dim,))}
    for key, shape in variant.cameras.items():
        input_features[key] = PolicyFeature(type=FeatureType.VISUAL, shape=shape)
    output_features = {ACTION: PolicyFeature(type=FeatureType.ACTION, shape=(variant.action_dim,))}
    return SmolVLAConfig(
        input_features=input_features,
        output_features=output_features,
        device="cpu",
        vlm_model_name="vlm",
        load_vlm_weights=False,
        **variant.policy,
    )


def clone(batch: dict[str, Any]) -> dict[str, Any]:
    """A deep copy of a batch (LeRobot's aloha transforms write into the batch tensors)."""
    return {k: v.clone() if isinstance(v, torch.Tensor) else copy.deepcopy(v) for k, v in batch.items()}


def to_torch(obs: dict[str, np.ndarray], tasks: tuple[str, ...]) -> dict[str, Any]:
    """A raw LeRobot batch: float tensors plus the task strings."""
    batch: dict[str, Any] = {k: torch.from_numpy(v.copy()) for k, v in obs.items()}
    batch["task"] = list(tasks)
    return batch


def model_inputs(
    policy: SmolVLAPolicy, batch: dict[str, Any]
) -> tuple[list[torch.Tensor], list[torch.Tensor], torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """What SmolVLAPolicy.forward hands to VLAFlowMatching.forward (aloha transforms included)."""
    batch = clone(batch)
    if policy.config.adapt_to_pi_aloha:
        batch[STATE] = policy._pi_aloha_decode_state(batch[STATE])
        batch[ACTION] = policy._pi_aloha_encode_actions_inv(batch[ACTION])
    images, img_masks = policy.prepare_images(batch)
    state = policy.prepare_state(batch)
    actions = pad_vector(batch[ACTION], policy.config.max_action_dim)
    tokens = batch["observation.language.tokens"]
    masks = batch["observation.language.attention_mask"]
    return images, img_masks, tokens, masks, state, actions


def check_float32(policy: SmolVLAPolicy) -> None:
    """Every parameter and buffer float32 (no torch_dtype leaked in from the VLM sub-configs)."""
    bad = {
        n: t.dtype
        for n, t in policy.state_dict().items()
        if t.is_floating_point() and t.dtype != torch.float32
    }
    assert not bad, bad


def build_variant(variant: Variant, out_root: Path, public: Path) -> dict[str, Any]:
    """Write one variant folder and return a summary of what it holds."""
    out = out_root / variant.name
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    vlm_config = write_vlm_dir(variant, public, out / "vlm")
    rng = np.random.default_rng(variant.seed)
    batch_size = len(variant.tasks)
    chunk = variant.policy["chunk_size"]
    max_action_dim = variant.policy["max_action_dim"]

    with working_dir(out), torch.no_grad():
        cfg = make_config(variant)
        torch.manual_seed(variant.seed)
        policy = SmolVLAPolicy(cfg)
        policy.eval()
        check_float32(policy)

        stats = make_stats(variant, rng)
        preprocessor, postprocessor = make_smolvla_pre_post_processors(
            cfg, {k: {s: torch.from_numpy(a) for s, a in v.items()} for k, v in stats.items()}
        )
        obs, train_action = make_raw_inputs(variant, stats, rng)
        gen = torch.Generator().manual_seed(variant.seed)
        sample_noise = torch.randn((batch_size, chunk, max_action_dim), generator=gen)
        train_noise = torch.randn((batch_size, chunk, max_action_dim), generator=gen)
        train_time = torch.tensor(variant.time, dtype=torch.float32)

        infer_batch = preprocessor(to_torch(obs, variant.tasks))
        train_batch = preprocessor({**to_torch(obs, variant.tasks), ACTION: torch.from_numpy(train_action)})
        for key in (STATE, "observation.language.tokens", "observation.language.attention_mask"):
            assert torch.equal(infer_batch[key], train_batch[key]), key

        # Inference: the flow-matching sampler from the given noise, then the postprocessor.
        chunk_norm = policy.predict_action_chunk(clone(infer_batch), noise=sample_noise.clone())
        chunk_raw = postprocessor(chunk_norm.clone())

        # Prefix length as the model sees it (after any prefix_length padding) and unpadded.
        images, img_masks, tokens, masks, state, actions = model_inputs(policy, train_batch)
        prefix_embs, prefix_pad, _ = policy.model.embed_prefix(images, img_masks, tokens, masks, state=state)
        prefix_len = int(prefix_embs.shape[1])
        n_img_tokens = (
            vlm_config["vision_config"]["image_size"] // vlm_config["vision_config"]["patch_size"]
        ) ** 2
        n_img_tokens //= vlm_config["scale_factor"] ** 2
        n_cams = len(variant.cameras) + variant.policy.get("empty_cameras", 0)
        special = 3 if variant.policy.get("add_image_special_tokens") else 0
        real_prefix_len = n_cams * (n_img_tokens + special) + tokens.shape[1] + 1
        assert prefix_len == max(real_prefix_len, variant.policy.get("prefix_length", -1)), prefix_len

        # Training: per-element losses from the model, and the policy's loss.
        losses = policy.model.forward(
            images, img_masks, tokens, masks, state, actions, train_noise.clone(), train_time.clone()
        )
        seen: list[torch.Tensor] = []
        model_forward = policy.model.forward

        def spy(*args: Any, **kwargs: Any) -> torch.Tensor:
            seen.append(model_forward(*args, **kwargs))
            return seen[-1]

        policy.model.forward = spy  # see what policy.forward hands the model
        policy.train()
        loss, _ = policy.forward(clone(train_batch), noise=train_noise.clone(), time=train_time.clone())
        policy.eval()
        del policy.model.forward
        assert len(seen) == 1 and torch.equal(seen[0], losses), "policy.forward fed the model other inputs"
        assert torch.equal(loss, losses.mean()), (loss, losses.mean())

        pretrained = Path("pretrained_model")
        policy.save_pretrained(pretrained)
        preprocessor.save_pretrained(pretrained)
        postprocessor.save_pretrained(pretrained)
        saved = json.loads((pretrained / "config.json").read_text())
        assert saved["vlm_model_name"] == "vlm", saved["vlm_model_name"]

        cases: dict[str, np.ndarray] = {f"obs.{k}": v for k, v in obs.items()}
        cases["obs.task"] = np.asarray(variant.tasks)
        cases["norm.observation.state"] = infer_batch[STATE].numpy()
        cases["norm.observation.language.tokens"] = infer_batch["observation.language.tokens"].numpy()
        cases["norm.observation.language.attention_mask"] = infer_batch[
            "observation.language.attention_mask"
        ].numpy()
        cases["sample.noise"] = sample_noise.numpy()
        cases["expected.action_chunk_norm"] = chunk_norm.numpy()
        cases["expected.action_chunk"] = chunk_raw.numpy()
        cases["train.action"] = train_action
        cases["norm.action"] = train_batch[ACTION].numpy()
        cases["train.noise"] = train_noise.numpy()
        cases["train.time"] = train_time.numpy()
        cases["expected.losses"] = losses.numpy()
        cases["expected.loss"] = loss.numpy()
        cases["expected.prefix_len"] = np.asarray(prefix_len, np.int64)
        for key, value in cases.items():
            if value.dtype.kind == "f":
                assert value.dtype == np.float32 and np.isfinite(value).all(), key
        np.savez(out / "cases.npz", **cases)

        verify_reload(out, cases)

    summary = {
        "variant": variant.name,
        "prefix_len": prefix_len,
        "real_prefix_len": real_prefix_len,
        "prefix_valid": prefix_pad.sum(dim=1).tolist(),
        "max_abs_action_chunk": float(np.abs(cases["expected.action_chunk"]).max()),
        "max_abs_action_chunk_norm": float(np.abs(cases["expected.action_chunk_norm"]).max()),
        "loss": float(cases["expected.loss"]),
        "n_params": sum(p.numel() for p in policy.parameters()),
        "tokens": cases["norm.observation.language.tokens"].tolist(),
    }
    write_readme(variant, out, vlm_config, cases, summary)
    return summary


def verify_reload(out: Path, cases: dict[str, np.ndarray]) -> None:
    """Reload pretrained_model/ as a user would (from the variant folder) and reproduce the inference case."""
    policy = SmolVLAPolicy.from_pretrained(out / "pretrained_model")
    policy.eval()
    pre = PolicyProcessorPipeline.from_pretrained(
        out / "pretrained_model", config_filename="policy_preprocessor.json"
    )
    post = PolicyProcessorPipeline.from_pretrained(
        out / "pretrained_model",
        config_filename="policy_postprocessor.json",
        to_transition=policy_action_to_transition,
        to_output=transition_to_policy_action,
    )
    obs = {k[len("obs.") :]: v for k, v in cases.items() if k.startswith("obs.") and k != "obs.task"}
    batch = pre(to_torch(obs, tuple(str(t) for t in cases["obs.task"])))
    assert np.array_equal(batch[STATE].numpy(), cases["norm.observation.state"])
    assert np.array_equal(
        batch["observation.language.tokens"].numpy(), cases["norm.observation.language.tokens"]
    )
    chunk_norm = policy.predict_action_chunk(batch, noise=torch.from_numpy(cases["sample.noise"].copy()))
    assert np.array_equal(chunk_norm.numpy(), cases["expected.action_chunk_norm"]), (
        "reload: chunk_norm differs"
    )
    chunk = post(chunk_norm)
    assert np.array_equal(chunk.numpy(), cases["expected.action_chunk"]), "reload: action_chunk differs"


def fmt(value: Any) -> str:
    """A config value as it would be written in Python."""
    return repr(tuple(value)) if isinstance(value, list) else repr(value)


def write_readme(
    variant: Variant,
    out: Path,
    vlm_config: dict[str, Any],
    cases: dict[str, np.ndarray],
    summary: dict[str, Any],
) -> None:
    """The variant's README: what it sets, the VLM dims, the notes and the cases.npz key list."""
    text, vision = vlm_config["text_config"], vlm_config["vision_config"]
    batch = len(variant.tasks)
    chunk = variant.policy["chunk_size"]
    max_a = variant.policy["max_action_dim"]
    a_dim = variant.action_dim
    lines = [
        f"# SmolVLA reference `{variant.name}` (LeRobot 0.4.4, random weights, tiny VLM, float32)",
        "",
        "Written by `tools/make_smolvla_references.py` (run with the LeRobot reference venv:",
        f"`HF_HUB_OFFLINE=1 .lerobot-ref/bin/python tools/make_smolvla_references.py {variant.name}`), seed "
        f"{variant.seed}; a rerun is bit-identical. Same layout and cases.npz keys as the public fixture "
        "smolvla_so101_tiny.",
        "",
        variant.summary,
        "",
        "vlm/ holds a tiny SmolVLM config (the public fixture's tokenizer/processor files, its config.json with "
        "the edits below):",
        f"- vision: hidden {vision['hidden_size']}, {vision['num_hidden_layers']} layers, "
        f"{vision['num_attention_heads']} heads, intermediate {vision['intermediate_size']}, image "
        f"{vision['image_size']}, patch {vision['patch_size']}, {vision['hidden_act']}, LayerNorm eps "
        f"{vision['layer_norm_eps']}",
        f"- text (llama): hidden {text['hidden_size']}, {text['num_hidden_layers']} layers, "
        f"{text['num_attention_heads']} heads, {text['num_key_value_heads']} kv heads, head_dim {text['head_dim']}, "
        f"intermediate {text['intermediate_size']}, vocab {text['vocab_size']}, rms eps {text['rms_norm_eps']}",
        f"- pixel-shuffle scale factor {vlm_config['scale_factor']}; no torch_dtype anywhere (float32).",
        "- config.json edits relative to the public fixture's vlm/config.json: "
        + (", ".join(f"text_config.{k}={v}" for k, v in variant.vlm_text.items()) or "none")
        + (
            "; " + ", ".join(f"vision_config.{k}={v}" for k, v in variant.vlm_vision.items())
            if variant.vlm_vision
            else ""
        ),
        "",
        "pretrained_model/ is what LeRobot's `save_pretrained` writes (policy, pre- and postprocessor); its "
        'config.json has vlm_model_name "vlm", relative to this folder (LeRobot resolves it against the cwd).',
        "",
        "SmolVLAConfig fields set (everything else is the 0.4.4 default):",
        '- vlm_model_name="vlm", load_vlm_weights=False, device="cpu"',
        "- input_features: "
        + ", ".join([f"{STATE} ({variant.state_dim},)"] + [f"{k} {v}" for k, v in variant.cameras.items()]),
        f"- output_features: {ACTION} ({variant.action_dim},)",
    ]
    lines += [f"- {k}={fmt(v)}" for k, v in variant.policy.items()]
    lines += ["", "Notes:"] + [f"- {n}" for n in variant.notes]
    lines += [
        "",
        f"Prefix: {summary['real_prefix_len']} tokens before prefix_length padding, {summary['prefix_len']} as fed "
        f"to the model (expected.prefix_len); valid prefix tokens per row {summary['prefix_valid']}.",
        f"Tasks: {list(variant.tasks)} -> tokens {summary['tokens']}.",
        f"max |expected.action_chunk| = {summary['max_abs_action_chunk']:.6g}, expected.loss = "
        f"{summary['loss']:.7g}.",
        "",
        f"cases.npz (B={batch}):",
        "- obs.*: raw inputs (images float32 CHW in [0,1]); obs.task: the task strings.",
        "- norm.observation.state, norm.observation.language.tokens/attention_mask: after the preprocessor.",
        f"- sample.noise ({batch},{chunk},{max_a}): initial flow-matching noise; expected.action_chunk_norm / "
        f"expected.action_chunk ({batch},{chunk},{a_dim}): `predict_action_chunk` before / after the postprocessor.",
        f"- train.action (raw), norm.action, train.noise ({batch},{chunk},{max_a}), train.time ({batch},): "
        "flow-matching inputs;",
        f"  expected.losses ({batch},{chunk},{max_a}): per-element losses from the model's forward; expected.loss: "
        "the policy loss.",
        "- expected.prefix_len (int64 scalar): the prefix sequence length embed_prefix returns.",
        "",
        "Keys: " + ", ".join(f"{k} {v.dtype}{list(v.shape)}" for k, v in cases.items()),
        "",
    ]
    (out / "README.md").write_text("\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    """Build the requested variants (all by default) and print a JSON summary line per variant."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("variants", nargs="*", help=f"which to build (default all): {', '.join(VARIANTS)}")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--public", type=Path, default=PUBLIC_FIXTURE, help="the public smolvla fixture")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.variants) - set(VARIANTS))
    if unknown:
        parser.error(f"unknown variants {unknown}; known: {list(VARIANTS)}")
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    for name in args.variants or list(VARIANTS):
        summary = build_variant(VARIANTS[name], args.out.resolve(), args.public.resolve())
        print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())

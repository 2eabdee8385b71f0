"""The VLM folder a SmolVLA names (`vlm_model_name`): finding it, its architecture, tokenizer and weights.

LeRobot resolves `vlm_model_name` through transformers' `from_pretrained` (a local folder or a hub id).
jrobot resolves it without transformers, in this order: an explicit folder (`--vlm`); a local folder
(absolute, or relative to the checkpoint folder, its parent, or the working directory); the Hugging Face
cache for a hub id; a download of that id when online. Offline, a missing id is a clear error naming
it, never a hang or a silent random VLM.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from jrobot.policies.smolvla.config import VLMArch

CONFIG = "config.json"
TOKENIZER_PATTERNS = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")
WEIGHT_PATTERNS = ("model.safetensors", "model-*.safetensors", "model.safetensors.index.json")
FAKE_IMAGE_TOKEN = "<fake_token_around_image>"
GLOBAL_IMAGE_TOKEN = "<global-img>"
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def resolve_vlm_dir(
    name: str,
    *,
    explicit: str | os.PathLike | None = None,
    search: Iterable[Path] = (),
    need_weights: bool = False,
) -> Path:
    """The local folder holding the VLM's config.json (and tokenizer; weights when `need_weights`)."""
    if explicit is not None:
        p = Path(explicit).expanduser()
        if not (p / CONFIG).is_file():
            raise FileNotFoundError(f"VLM folder {p}: no {CONFIG} in it")
        return p
    p = Path(name).expanduser()
    candidates = [p] if p.is_absolute() else [*(Path(b) / name for b in search), Path.cwd() / name]
    for c in candidates:
        if (c / CONFIG).is_file():
            return c
    if not _HUB_ID.match(name):
        raise FileNotFoundError(
            f"VLM {name!r}: no folder with {CONFIG} at {[str(c) for c in candidates]}; pass --vlm DIR (export) or set "
            "policy.config.vlm_model_name=DIR (training)"
        )
    return _from_hub(name, need_weights)


def _from_hub(repo_id: str, need_weights: bool) -> Path:
    from huggingface_hub import snapshot_download

    patterns = [CONFIG, *TOKENIZER_PATTERNS, *(WEIGHT_PATTERNS if need_weights else ())]
    try:
        path = Path(snapshot_download(repo_id, allow_patterns=patterns, local_files_only=True))
        if not need_weights or weight_files(path, required=False):
            return path
    except Exception:  # not in the cache (huggingface_hub raises several error types for that)
        pass
    if _offline():
        raise FileNotFoundError(
            f"VLM {repo_id!r} is not a local folder and not in the Hugging Face cache, and HF_HUB_OFFLINE is "
            f"set: download it once online (`huggingface-cli download {repo_id}`), or pass --vlm DIR (export) / "
            "--config.policy.config.vlm_model_name=DIR (training)"
        )
    try:
        return Path(snapshot_download(repo_id, allow_patterns=patterns))
    except Exception as e:
        raise FileNotFoundError(
            f"VLM {repo_id!r}: not a local folder, not in the Hugging Face cache, and the download failed "
            f"({type(e).__name__}: {e}); pass --vlm DIR with a local copy"
        ) from e


def read_arch(folder: Path, tokenizer: Any = None) -> VLMArch:
    """The VLM architecture from `folder/config.json`, with the image special-token ids of its tokenizer."""
    path = folder / CONFIG
    try:
        cfg = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: cannot read the VLM config ({e})") from e
    ids: dict[str, int] = {}
    if tokenizer is not None:
        for key, token in (
            ("fake_image_token_id", FAKE_IMAGE_TOKEN),
            ("global_image_token_id", GLOBAL_IMAGE_TOKEN),
        ):
            with contextlib.suppress(KeyError, ValueError):
                ids[key] = int(tokenizer.token_id(token))
    return VLMArch.from_hf_config(cfg, where=str(path), special_token_ids=ids)


def load_tokenizer(folder: Path, *, max_length: int, padding: str) -> Any:
    from jrobot.language import TaskTokenizer

    return TaskTokenizer.from_dir(folder, max_length=max_length, padding=padding)


def weight_files(folder: Path, *, required: bool = True) -> list[Path]:
    """The VLM's safetensors files (one file, or the shards an index names)."""
    single = folder / "model.safetensors"
    if single.is_file():
        return [single]
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        files = [folder / s for s in shards]
        missing = [str(f) for f in files if not f.is_file()]
        if missing and required:
            raise FileNotFoundError(f"{index}: shards {missing} are missing")
        return [] if missing else files
    if required:
        raise FileNotFoundError(
            f"{folder}: no model.safetensors (or model.safetensors.index.json) to load the pretrained VLM from"
        )
    return []


def read_vlm_state_dict(
    folder: Path, num_vlm_layers: int, *, vision: bool = True
) -> tuple[dict[str, np.ndarray], list[str]]:
    """SmolVLM's weights as (state dict keyed like `SmolVLM`'s torch keys, keys left out).

    Text layers beyond `num_vlm_layers` (LeRobot truncates the model) and `lm_head` are left out, and
    without `vision` (a policy with its own image encoder) the vision tower and connector too.
    """
    import ml_dtypes  # noqa: F401  (bf16 tensors)
    from safetensors.numpy import load_file

    keep: dict[str, np.ndarray] = {}
    dropped: list[str] = []
    layer = re.compile(r"^model\.text_model\.layers\.(\d+)\.")
    for f in weight_files(folder):
        for k, v in load_file(str(f)).items():
            m = layer.match(k)
            unused_vision = not vision and k.startswith(("model.vision_model.", "model.connector."))
            if k.startswith("lm_head.") or unused_vision or (m and int(m.group(1)) >= num_vlm_layers):
                dropped.append(k)
            else:
                keep[k] = v
    return keep, dropped

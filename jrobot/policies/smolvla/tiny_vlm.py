"""A SmolVLM-architecture VLM folder sized for a CPU: what the VLA demo trains from scratch.

SmolVLA's recipe starts from the pretrained SmolVLM2-500M, which cannot be downloaded everywhere and
takes tens of seconds per training step on a laptop CPU. The VLA demo instead builds the same
architecture (SigLIP-style vision tower, pixel-shuffle connector, Llama text layers, action expert) at
a width a 2-core CPU trains in minutes, randomly initialized (`load_vlm_weights=False`). It needs what
a Hugging Face VLM folder provides besides weights: `config.json` (the architecture) and a fast
tokenizer. A pretrained subword tokenizer's vocabulary would be tens of thousands of rows of an
embedding nobody trains here, so the tokenizer is word-level over a small English vocabulary
(`BASE_WORDS`, enough for the simulator's instructions and their paraphrases) plus the words of any
texts given, lower-cased, punctuation split off, unknown words mapped to `<unk>`. It is a real
`tokenizers` tokenizer.json, so `jrobot.language.TaskTokenizer`, the exporter and the runtime treat it
exactly as SmolVLM2's.

    python tools/make_tiny_vlm.py OUT_DIR ["extra instruction" ...]

`SHIPPED` is the folder this writes with the defaults, kept in the package so a config can name it
(`configs/smolvla_so101_sim_cpu.py`); a test checks it is what `write_tiny_vlm` writes today.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer, models, normalizers, pre_tokenizers

# SmolVLM's special tokens in its own order (ids 0..7), then <unk>.
SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<fake_token_around_image>",
    "<image>",
    "<global-img>",
    "<end_of_utterance>",
    "<video>",
    "<unk>",
)
PAD, BOS, EOS, UNK = "<|endoftext|>", "<|im_start|>", "<end_of_utterance>", "<unk>"
_WORDS = """
    a an the this that it its of in into on onto to from at by with and or then now please
    put place pick up grab take lift move drop bring push set carry get
    cube cubes block blocks box bin basket container tray object objects one
    red green blue yellow orange purple pink black white grey gray brown
    left right front back top bottom near far middle centre center small big large
"""
BASE_WORDS = tuple(_WORDS.split())
SHIPPED = Path(__file__).parent / "assets" / "tiny_smolvlm"
PUNCTUATION = (".", ",", "!", "?", ";", ":", "'", '"', "-")

# widths chosen to train fast on 2 cores; same family as the parity fixture's tiny SmolVLM
DEFAULT_VISION = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
}
DEFAULT_TEXT = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 16,
}


def vocabulary(texts: Iterable[str] = ()) -> list[str]:
    """Special tokens, punctuation, `BASE_WORDS`, then new words of `texts` in order of appearance."""
    vocab = list(SPECIAL_TOKENS) + list(PUNCTUATION)
    seen = set(vocab)
    words = list(BASE_WORDS)
    for text in texts:
        words += re.findall(r"\w+", text.lower())
    for w in words:
        if w not in seen:
            seen.add(w)
            vocab.append(w)
    return vocab


def word_tokenizer(vocab: Sequence[str]) -> Tokenizer:
    """Word-level: NFKC + lower case, split on whitespace and punctuation, unknown words -> `<unk>`."""
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(vocab)}, unk_token=UNK))
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.add_special_tokens(list(SPECIAL_TOKENS))
    return tok


def write_tiny_vlm(
    folder: str | Path,
    texts: Iterable[str] = (),
    *,
    image_size: int = 64,
    patch_size: int = 8,
    vision: dict[str, Any] | None = None,
    text: dict[str, Any] | None = None,
    scale_factor: int = 2,
) -> Path:
    """Write config.json, tokenizer.json, tokenizer_config.json and special_tokens_map.json to `folder`.

    `image_size` is the tower's input (set the policy's `resize_imgs_with_padding` to it); the
    connector's pixel shuffle needs `(image_size / patch_size)` divisible by `scale_factor`.
    """
    side = image_size // patch_size
    if image_size % patch_size or side % scale_factor:
        raise ValueError(
            f"tiny VLM: image_size {image_size} must be a multiple of patch_size {patch_size}, and the "
            f"{side}x{side} patch grid divisible by scale_factor {scale_factor}"
        )
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vocab = vocabulary(texts)
    ids = {t: i for i, t in enumerate(vocab)}
    text_cfg = {
        **DEFAULT_TEXT,
        **(text or {}),
        "model_type": "llama",
        "hidden_act": "silu",
        "rms_norm_eps": 1e-5,
        "rope_theta": 100000.0,
        "max_position_embeddings": 512,
        "attention_bias": False,
        "mlp_bias": False,
        "vocab_size": len(vocab),
        "pad_token_id": ids[PAD],
    }
    vision_cfg = {
        **DEFAULT_VISION,
        **(vision or {}),
        "model_type": "smolvlm_vision",
        "hidden_act": "gelu_pytorch_tanh",
        "layer_norm_eps": 1e-6,
        "num_channels": 3,
        "image_size": image_size,
        "patch_size": patch_size,
    }
    config = {
        "model_type": "smolvlm",
        "scale_factor": scale_factor,
        "image_token_id": ids["<image>"],
        "pad_token_id": ids[PAD],
        "vocab_size": len(vocab),
        "tie_word_embeddings": False,
        "text_config": text_cfg,
        "vision_config": vision_cfg,
        "jrobot_note": "random-init CPU-sized SmolVLM written by jrobot.policies.smolvla.tiny_vlm",
    }
    special = {
        "bos_token": BOS,
        "eos_token": EOS,
        "pad_token": PAD,
        "unk_token": UNK,
        "image_token": "<image>",
        "fake_image_token": "<fake_token_around_image>",
        "global_image_token": "<global-img>",
        "end_of_utterance_token": EOS,
    }
    (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    word_tokenizer(vocab).save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(
        json.dumps(
            {**special, "tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": 512}, indent=2
        )
        + "\n"
    )
    (folder / "special_tokens_map.json").write_text(json.dumps(special, indent=2) + "\n")
    return folder

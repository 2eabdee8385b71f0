"""(Re)build the seed corpus in fuzz/corpus/<harness>/ and the libFuzzer dictionaries in fuzz/dicts/.

    python -m fuzz.make_corpus [--shared ../shared]

Seeds come from the real fixtures: the LeRobot-written datasets (../shared/fixtures/lerobot), the
LeRobot checkpoints (../shared/fixtures/parity/*/pretrained_model), a bundle exported from the ACT
checkpoint with `python -m jrobot.export`, calibration files as LeRobot writes them, torch zips laid
out as torch.save does (the writer of tests/policies/conftest.py) and frames packed with
`jrobot.serving.wire.encode`. The corpus is committed (well under 2 MB) so the harnesses and the
property tests need nothing else; the 45 MB checkpoint weights are represented by a few of their
tensors and by their header alone (which then claims tensors beyond the end of the file).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from fuzz.harness import (
    CORPUS_DIR,
    DATA_FILE,
    FRONT_VIDEO,
    FUZZ_DIR,
    HARNESSES,
    V2_JSONL_FILES,
    V21,
    V30,
    WRIST_VIDEO,
)

REPO = FUZZ_DIR.parent
DEFAULT_SHARED = Path(os.environ.get("JROBOT_SHARED", REPO.parent / "shared"))
PARITY = ("act_so101_tiny", "diffusion_so101_tiny_ddim", "diffusion_so101_tiny_ddpm", "smolvla_so101_tiny")


def _write(harness: str, name: str, data: bytes) -> None:
    path = CORPUS_DIR / harness / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _safetensors_header(path: Path) -> tuple[int, dict]:
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        return n, json.loads(f.read(n))


def _safetensors_subset(path: Path, keys: list[str]) -> bytes:
    from safetensors.numpy import load_file, save

    tensors = load_file(str(path))
    return save({k: tensors[k] for k in keys})


def _safetensors_seeds(harness: str, weights: Path) -> None:
    """Two seeds from a large safetensors file: its six smallest tensors, and its header alone (whose
    tensors then lie beyond the end of the file)."""
    n, header = _safetensors_header(weights)
    small = sorted(
        (k for k in header if k != "__metadata__"),
        key=lambda k: (header[k]["data_offsets"][1] - header[k]["data_offsets"][0], k),
    )[:6]
    _write(harness, "act_so101_tiny_head.safetensors", _safetensors_subset(weights, small))
    with open(weights, "rb") as f:
        _write(harness, "act_so101_tiny_header_only.safetensors", f.read(8 + n))


def dataset_seeds(lerobot: Path) -> None:
    v30, v21 = lerobot / V30, lerobot / V21
    _write("meta_info", f"{V30}.json", (v30 / "meta/info.json").read_bytes())
    _write("meta_info", f"{V21}.json", (v21 / "meta/info.json").read_bytes())
    _write("meta_episodes", f"{V30}.parquet", (v30 / "meta/episodes/chunk-000/file-000.parquet").read_bytes())
    _write("meta_tasks", f"{V30}.parquet", (v30 / "meta/tasks.parquet").read_bytes())
    _write("meta_tasks", "dictionary_bomb.parquet", dictionary_bomb())
    _write("meta_stats", f"{V30}.json", (v30 / "meta/stats.json").read_bytes())
    _write("data_parquet", f"{V30}.parquet", (v30 / DATA_FILE).read_bytes())
    _write("video", f"{V30}_front.mp4", (v30 / FRONT_VIDEO).read_bytes())
    _write("video", f"{V30}_wrist.mp4", (v30 / WRIST_VIDEO).read_bytes())
    for i, relative in enumerate(V2_JSONL_FILES):
        _write("meta_v2_jsonl", f"{V21}_{i}.bin", bytes([i]) + (v21 / relative).read_bytes())


def dictionary_bomb(rows: int = 3000, text_bytes: int = 1 << 20) -> bytes:
    """A tasks.parquet of a few KB whose one (zstd-compressed) dictionary entry, a 1 MB task text,
    every row repeats: 3 GB once expanded. The metadata reader must refuse it before expanding."""
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    texts = pa.DictionaryArray.from_arrays(pa.array(np.zeros(rows, np.int32)), pa.array(["x" * text_bytes]))
    table = pa.table({"task_index": pa.array(np.arange(rows)), "task": texts})
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd", store_schema=False)  # read back as plain strings
    return buf.getvalue()


def calibration_seeds() -> None:
    from jrobot.hw.calibration import calibration_to_json
    from jrobot.recording.devices import virtual_calibration

    _write(
        "calibration", "virtual_so101_degrees.json", calibration_to_json(virtual_calibration(True)).encode()
    )
    _write(
        "calibration", "virtual_so101_range.json", calibration_to_json(virtual_calibration(False)).encode()
    )


def checkpoint_seeds(parity: Path) -> None:
    for name in PARITY:
        folder = parity / name / "pretrained_model"
        _write("lerobot_config", f"{name}.json", (folder / "config.json").read_bytes())
    act = parity / "act_so101_tiny" / "pretrained_model"
    _write("lerobot_processor", "act_so101_tiny_pre.json", (act / "policy_preprocessor.json").read_bytes())
    _write("lerobot_processor", "act_so101_tiny_post.json", (act / "policy_postprocessor.json").read_bytes())
    smolvla = parity / "smolvla_so101_tiny" / "pretrained_model"
    _write(
        "lerobot_processor",
        "smolvla_so101_tiny_pre.json",
        (smolvla / "policy_preprocessor.json").read_bytes(),
    )
    _write(
        "lerobot_safetensors",
        "act_so101_tiny_normalizer.safetensors",
        (act / "policy_preprocessor_step_3_normalizer_processor.safetensors").read_bytes(),
    )
    _write(
        "lerobot_safetensors",
        "act_so101_tiny_unnormalizer.safetensors",
        (act / "policy_postprocessor_step_0_unnormalizer_processor.safetensors").read_bytes(),
    )
    _safetensors_seeds("lerobot_safetensors", act / "model.safetensors")
    _write("lerobot_safetensors", "dtypes.safetensors", _dtype_variety())
    _write("lerobot_safetensors", "legacy_norm_buffers.safetensors", _legacy_buffers())


def _dtype_variety() -> bytes:
    import ml_dtypes
    from safetensors.numpy import save

    rng = np.random.default_rng(0)
    return save(
        {
            "f32": rng.normal(size=(2, 3)).astype(np.float32),
            "f16": rng.normal(size=(4,)).astype(np.float16),
            "bf16": rng.normal(size=(3,)).astype(ml_dtypes.bfloat16),
            "f64": np.array(1.5),
            "i64": np.arange(3, dtype=np.int64),
            "u8": np.arange(5, dtype=np.uint8),
            "bool": np.array([True, False]),
            "empty": np.zeros((0, 3), np.float32),
        },
        metadata={"format": "pt"},
    )


def _legacy_buffers() -> bytes:
    """A pre-0.4 LeRobot state dict holding the normalization stats as buffers."""
    from safetensors.numpy import save

    t = {
        "normalize_inputs.buffer_observation_state.mean": np.zeros(6, np.float32),
        "normalize_inputs.buffer_observation_state.std": np.ones(6, np.float32),
        "normalize_targets.buffer_action.mean": np.zeros(6, np.float32),
        "normalize_targets.buffer_action.std": np.full(6, np.inf, np.float32),
        "unnormalize_outputs.buffer_action.mean": np.ones(6, np.float32),
        "unnormalize_outputs.buffer_action.std": np.ones(6, np.float32),
        "model.action_head.bias": np.zeros(6, np.float32),
    }
    return save(t)


def bundle_seeds(parity: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "bundle"
        subprocess.run(
            [sys.executable, "-m", "jrobot.export", "--from-lerobot", str(parity / "act_so101_tiny" / "pretrained_model"), "--out", str(out)],
            check=True, cwd=REPO, capture_output=True,
        )  # fmt: skip
        policy = (out / "policy.json").read_bytes()
        _write("bundle_policy_json", "act_so101_tiny.json", policy)
        v1 = json.loads(policy)
        v1["version"] = 1
        for key in ("horizon", "noise_shape", "drop_n_last_frames"):
            v1["spec"].pop(key, None)
        _write("bundle_policy_json", "act_so101_tiny_v1.json", json.dumps(v1, indent=2).encode())
        lang = json.loads(policy)
        lang["language"] = {"tokenizer_dir": "tokenizer", "max_length": 8}
        _write("bundle_policy_json", "act_so101_tiny_language.json", json.dumps(lang, indent=2).encode())
        _safetensors_seeds("bundle_params", out / "params.safetensors")


def torch_zip_writer() -> Any:
    """The torch-free torch.save writer of the policy tests (tests/policies/conftest.py), as a module:
    `write_torch_zip(path, tensors, extra, storages)` and `torch_zip_bytes_pickle(...)`."""
    spec = importlib.util.spec_from_file_location("_policy_conftest", REPO / "tests/policies/conftest.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def torch_zip_seeds() -> None:
    conftest = torch_zip_writer()
    rng = np.random.default_rng(0)
    tensors = {
        "conv1.weight": rng.normal(size=(2, 3, 3, 3)).astype(np.float32),
        "bn1.running_var": rng.uniform(size=2).astype(np.float32),
        "bn1.num_batches_tracked": np.array(7, np.int64),
        "half": rng.normal(size=(3,)).astype(np.float16),
        "mask": np.array([True, False]),
    }
    base = np.arange(12, dtype=np.float32)
    extra = {"fc.weight.T": ("shared", 0, (3, 4), (1, 3)), "tail": ("shared", 8, (2, 2), (2, 1))}
    with tempfile.TemporaryDirectory() as tmp:
        for name, (t, e, s) in {
            "resnet_like.pth": (tensors, extra, {"shared": base}),
            "one_tensor.pth": ({"w": np.arange(4, dtype=np.float64)}, None, None),
        }.items():
            path = Path(tmp) / name
            conftest.write_torch_zip(path, t, e, s)
            _write("torch_zip", name, path.read_bytes())


def wire_seeds() -> None:
    from jrobot.serving.wire import encode

    rng = np.random.default_rng(0)
    frames = {
        "request.bin": {
            "observation.state": rng.normal(size=6).astype(np.float32),
            "observation.images.front": rng.integers(0, 255, (4, 6, 3), dtype=np.uint8),
            "prompt": "pick the cube",
        },
        "reply.bin": {
            "actions": rng.normal(size=(5, 6)).astype(np.float32),
            "server_timing": {"infer_ms": 12.5, "prev_total_ms": 30.0},
            "step": np.int64(7),
        },
        "metadata.bin": {"policy_type": "act", "fps": 30, "chunk_size": 100, "names": ["a", "b"], "ok": True},
        "dtypes.bin": {
            "be": np.arange(3, dtype=">f4"),
            "b": np.array([True, False]),
            "u2": np.arange(4, dtype=np.uint16).reshape(2, 2),
            "empty": np.zeros((0, 3), np.float64),
            "scalar": np.float16(1.5),
            "nested": [[1, 2.5, None, b"raw"], {"k": -1}],
        },
    }
    for name, message in frames.items():
        _write("wire", name, encode(message))


def tokenizer_seeds() -> None:
    """A small byte-level BPE tokenizer with a chat-like template (the shape of SmolVLM2's, trained
    here on a few instructions) and the word-level one of jrobot's tiny test VLM, saved as a bundle
    saves them. The settings carry no hash, so a changed tokenizer.json still reaches the parser."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    from jrobot.language import SETTINGS_JSON, TOKENIZER_JSON, TaskTokenizer
    from jrobot.policies.smolvla.tiny_vlm import vocabulary, word_tokenizer

    texts = ["pick up the red cube", "put the blue block in the bin", "drop the green cube into the box"]
    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=120, special_tokens=["<unk>", "<pad>", "<|im_start|>"])
    bpe.train_from_iterator(texts * 4, trainer=trainer)
    bpe.post_processor = processors.TemplateProcessing(
        single="<|im_start|> $A", special_tokens=[("<|im_start|>", bpe.token_to_id("<|im_start|>"))]
    )
    tokenizers = {
        "bpe": TaskTokenizer(bpe.to_str(), max_length=24, pad_token="<pad>"),
        "word": TaskTokenizer(word_tokenizer(vocabulary(texts)).to_str(), max_length=12, pad_id=0),
    }
    with tempfile.TemporaryDirectory() as tmp:
        for name, tok in tokenizers.items():
            folder = tok.save(Path(tmp) / name)
            settings = json.loads((folder / SETTINGS_JSON).read_text())
            del settings["tokenizer_sha256"]
            _write("tokenizer", f"{name}_0.bin", b"\x00" + (folder / TOKENIZER_JSON).read_bytes())
            _write("tokenizer", f"{name}_1.bin", b"\x01" + json.dumps(settings, indent=2).encode())


def rlds_seeds() -> None:
    """features.json and dataset_info.json of a tiny RLDS dataset written by tensorflow-datasets (the
    writer of tests/data_tools/rlds_helpers.py), with a nested action dict in one variant."""
    spec = importlib.util.spec_from_file_location("_rlds_helpers", REPO / "tests/data_tools/rlds_helpers.py")
    helpers = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(helpers)
    with tempfile.TemporaryDirectory() as tmp:
        for variant, kwargs in (("", {}), ("action_dict_", {"action_dict": True})):
            root = helpers.write_rlds(Path(tmp) / variant.strip("_") / "d", **kwargs)
            for i, name in enumerate(("features.json", "dataset_info.json")):
                _write(
                    "rlds_metadata", f"tiny_open_x_{variant}{i}.bin", bytes([i]) + (root / name).read_bytes()
                )


JSON_HARNESSES = (
    "meta_info",
    "meta_stats",
    "meta_v2_jsonl",
    "calibration",
    "bundle_policy_json",
    "lerobot_config",
    "lerobot_processor",
)


def dictionaries() -> None:
    """libFuzzer dictionaries: JSON syntax and every key and short string value of the JSON seeds;
    the safetensors header's vocabulary; msgpack type bytes and the array map's keys."""
    words: set[str] = set()

    def collect(x) -> None:
        if isinstance(x, dict):
            for k, v in x.items():
                words.add(k)
                collect(v)
        elif isinstance(x, list):
            for v in x[:8]:
                collect(v)
        elif isinstance(x, str) and len(x) <= 40:
            words.add(x)

    for harness in JSON_HARNESSES:
        for p in sorted((CORPUS_DIR / harness).iterdir()):
            text = p.read_bytes()[1:] if harness == "meta_v2_jsonl" else p.read_bytes()
            for line in text.decode().splitlines() if harness == "meta_v2_jsonl" else [text.decode()]:
                if line.strip():
                    collect(json.loads(line))
    tokens = ["{", "}", "[", "]", ":", ",", '""', "null", "true", "false", "-1", "0", "1e309", "-0.0", "1e-8"]
    tokens += ["9223372036854775808", "4294967296", "../", "/", "{episode_index}", "{chunk_index:03d}"]
    tokens += [json.dumps(w) for w in sorted(words)]
    _write_dict("json.dict", tokens)
    st = ['"dtype"', '"shape"', '"data_offsets"', '"__metadata__"', '"format"', '"pt"']
    st += [
        f'"{d}"'
        for d in (
            "F32",
            "F16",
            "BF16",
            "F64",
            "I64",
            "I32",
            "I16",
            "I8",
            "U8",
            "BOOL",
            "F8_E4M3",
            "F8_E5M2",
            "U64",
        )
    ]
    _write_dict("safetensors.dict", st)
    mp = [
        "__ndarray__",
        "__npgeneric__",
        "data",
        "dtype",
        "shape",
        "<f4",
        "<f8",
        "|u1",
        "|b1",
        ">f4",
        "<i8",
        "|O",
        "V8",
        "<c8",
    ]
    raw = [
        b"\xc4",
        b"\xc5",
        b"\xc6",
        b"\xd9",
        b"\xda",
        b"\xdc",
        b"\xdd",
        b"\xde",
        b"\xdf",
        b"\xc3",
        b"\xc0",
        b"\x90",
        b"\x80",
    ]
    raw += [b"\xc4" + bytes([len(m)]) + m.encode() for m in mp] + [
        bytes([0xA0 + len(m)]) + m.encode() for m in mp
    ]
    _write_dict("msgpack.dict", raw)


def _write_dict(name: str, tokens: list) -> None:
    def quote(t) -> str:
        b = t.encode() if isinstance(t, str) else t
        return (
            '"' + "".join(chr(c) if 32 <= c < 127 and chr(c) not in '"\\' else f"\\x{c:02x}" for c in b) + '"'
        )

    path = FUZZ_DIR / "dicts" / name
    path.parent.mkdir(exist_ok=True)
    path.write_text("".join(f"{quote(t)}\n" for t in dict.fromkeys(tokens)))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--shared", type=Path, default=DEFAULT_SHARED, help="the shared fixtures folder")
    args = parser.parse_args()
    fixtures = args.shared / "fixtures"
    for harness in HARNESSES:
        shutil.rmtree(CORPUS_DIR / harness, ignore_errors=True)
    dataset_seeds(fixtures / "lerobot")
    calibration_seeds()
    checkpoint_seeds(fixtures / "parity")
    bundle_seeds(fixtures / "parity")
    torch_zip_seeds()
    wire_seeds()
    tokenizer_seeds()
    rlds_seeds()
    dictionaries()
    total = sum(p.stat().st_size for p in CORPUS_DIR.rglob("*") if p.is_file())
    for harness in HARNESSES:
        files = sorted((CORPUS_DIR / harness).iterdir())
        print(f"{harness}: {len(files)} seeds, {sum(p.stat().st_size for p in files)} bytes")
    print(f"corpus total: {total / 1024:.0f} KiB")


if __name__ == "__main__":
    main()

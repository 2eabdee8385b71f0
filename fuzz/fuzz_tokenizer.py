"""A language bundle's tokenizer folder: the first byte picks the file (tokenizer.json or
jrobot_tokenizer.json, the settings), the rest is its content. The folder is read by
`TaskTokenizer.load`, as `jrobot.bundle` does, and the tokenizer then encodes a few instructions."""

from __future__ import annotations

from fuzz.harness import expect_own_error, scratch, seed
from jrobot.language import SETTINGS_JSON, TOKENIZER_JSON, TaskTokenizer, TokenizerError

FILES = (TOKENIZER_JSON, SETTINGS_JSON)
TASKS = ["pick up the red cube and put it in the bin", "", "x" * 300, "Ünïcødé 立方体 🤖\n"]


def split_input(data: bytes) -> tuple[str, bytes]:
    if not data:
        return FILES[0], b""
    return FILES[data[0] % len(FILES)], data[1:]


def _load_and_encode(folder) -> None:
    tokenizer = TaskTokenizer.load(folder)
    tokenizer.encode(TASKS)
    tokenizer.encode(TASKS[0], padding="max_length")


def TestOneInput(data: bytes) -> None:
    folder = scratch("tokenizer")
    name, content = split_input(data)
    for i, file in enumerate(FILES):  # both files from the seeds, then the input over one of them
        (folder / file).write_bytes(split_input(seed("tokenizer", f"bpe_{i}.bin"))[1])
    (folder / name).write_bytes(content)
    expect_own_error(
        lambda: _load_and_encode(folder), own=(TokenizerError,), exact=(FileNotFoundError,), names=str(folder)
    )

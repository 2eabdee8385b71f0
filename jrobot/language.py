"""The task instruction of a language-conditioned policy (a VLA) as token ids, the way LeRobot makes them.

LeRobot's SmolVLA preprocessor turns `batch["task"]` into `observation.language.tokens` (int64) and
`observation.language.attention_mask` (bool) in two steps, which `TaskTokenizer.encode` reproduces:
1. `smolvla_new_line_processor`: a task that does not end with "\\n" gets one appended;
2. `tokenizer_processor`: the VLM's Hugging Face tokenizer with its default `add_special_tokens=True`
   (the tokenizer's own post-processor, e.g. a BOS token), truncation to `max_length` on the right,
   right padding with the pad token's id, padded to the longest task in the batch ("longest",
   LeRobot's default) or always to `max_length` ("max_length", smolvla_base's setting).

Why `tokenizers` and not `transformers`: a fast Hugging Face tokenizer *is* its `tokenizer.json`, run by
the `tokenizers` library; `transformers` only adds the pad-token lookup in `tokenizer_config.json`,
which is done here. So the robot laptop's runtime tokenizes the instruction exactly as training did
without installing transformers (or torch), and this module needs numpy and tokenizers only (no jax),
so the exporter, the runtime and the data code can all use it.

A `TaskTokenizer` is immutable, hashable and compared by the content of its tokenizer.json plus its
settings, so it can sit as static metadata on an NNX module (a policy's `model.tokenizer`) and travel
into a bundle: `save` writes a folder that `load` reads back with the same settings.

The LANGUAGE policy inputs are named by the two keys below; the exporter and the runtime tell the mask
from the ids with `is_language_mask`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from tokenizers import Tokenizer

from jrobot.errors import InputError
from jrobot.paths import inside

LANGUAGE_TOKENS_KEY = "observation.language.tokens"
LANGUAGE_MASK_KEY = "observation.language.attention_mask"

TOKENIZER_JSON = "tokenizer.json"
TOKENIZER_CONFIG_JSON = "tokenizer_config.json"
SPECIAL_TOKENS_MAP_JSON = "special_tokens_map.json"
SETTINGS_JSON = "jrobot_tokenizer.json"
SETTINGS_FORMAT = "jrobot-tokenizer"
SETTINGS_VERSION = 1

Padding = Literal["longest", "max_length"]
PADDING_MODES: tuple[str, ...] = ("longest", "max_length")


class TokenizerError(ValueError, InputError):
    """A tokenizer folder is unusable, or a task cannot be tokenized (the message says which and why)."""


# Far beyond any VLA's prompt (SmolVLA: 48), and a bound on the (B, max_length) arrays a settings
# file can make `encode` allocate.
MAX_LENGTH_LIMIT = 1 << 16


def _tokenizers_failed(e: BaseException) -> bool:
    """Whether `e` is the tokenizers library refusing its input: a Python exception, or a Rust panic
    (pyo3's PanicException derives from BaseException so that `except Exception` does not see it)."""
    return isinstance(e, Exception) or type(e).__name__ == "PanicException"


def is_language_mask(key: str) -> bool:
    """Whether the LANGUAGE input `key` is an attention mask (bool) rather than token ids (int32)."""
    return key.endswith("attention_mask")


def language_dtype(key: str) -> np.dtype:
    """The dtype a LANGUAGE input has at the policy's boundary: bool for masks, int32 for ids."""
    return np.dtype(np.bool_) if is_language_mask(key) else np.dtype(np.int32)


def language_inputs(
    tokenizer: TaskTokenizer,
    keys: Sequence[str],
    tasks: str | Sequence[str] | np.ndarray,
    *,
    batch: int | None = None,
) -> dict[str, np.ndarray]:
    """A language policy's LANGUAGE inputs `keys` for `tasks`: {key: (B, L)}, token ids int32 and the
    mask bool (`language_dtype`), always padded to the tokenizer's max_length L (fixed shapes for jit).

    The one conversion from instructions to policy inputs: the trainer's per-task table, the sim
    evaluation during training and the bundle runtime all call it. `tasks` is B strings, or one string
    for the whole batch (`batch` rows, default 1); with `batch` set, B must equal it.
    """
    if isinstance(tasks, np.ndarray) and tasks.ndim == 0:
        tasks = tasks.item()
    rows = [tasks] * (batch or 1) if isinstance(tasks, str) else list(tasks)
    if batch is not None and len(rows) != batch:
        raise TokenizerError(f"{len(rows)} task instructions for a batch of {batch} observations")
    tokens, mask = tokenizer.encode(rows, padding="max_length")
    return {k: (mask if is_language_mask(k) else tokens).astype(language_dtype(k)) for k in keys}


def with_newline(task: str) -> str:
    """LeRobot's `smolvla_new_line_processor`: the prompt ends with exactly the newline the VLA saw."""
    return task if task.endswith("\n") else task + "\n"


def _token_content(value: Any) -> str | None:
    """A special token as tokenizer_config.json stores it: a string, or an AddedToken dict."""
    if value is None:
        return None
    if isinstance(value, Mapping):
        value = value.get("content")
    return value if isinstance(value, str) else None


def _read_json(path: Path) -> dict[str, Any]:
    try:
        d = json.loads(path.read_bytes().decode("utf-8"))
    except (OSError, ValueError, RecursionError) as e:  # (ValueError: JSON and UTF-8 errors)
        raise TokenizerError(f"{path}: cannot read JSON ({e})") from e
    if not isinstance(d, dict):
        raise TokenizerError(f"{path}: expected a JSON object, got {type(d).__name__}")
    return d


class TaskTokenizer:
    """Task strings -> (token ids int64 (B, L), attention mask bool (B, L)), as LeRobot's SmolVLA
    preprocessor makes them; see the module docstring for the rules.

    Build one with `from_dir` (a Hugging Face tokenizer folder, e.g. the VLM's) or `load` (a folder
    `save` wrote). `pad_token=None` is allowed as long as no batch needs padding.
    """

    def __init__(
        self,
        tokenizer_json: bytes | str,
        *,
        max_length: int,
        padding: Padding = "longest",
        pad_token: str | None = None,
        pad_id: int | None = None,
        add_newline: bool = True,
        extra_files: Mapping[str, bytes] | None = None,
        source: str = "<memory>",
    ) -> None:
        """`tokenizer_json`: the content of a tokenizer.json. `pad_id` defaults to the id of
        `pad_token`. `extra_files` (tokenizer_config.json, ...) are kept only so that `save` writes a
        folder Hugging Face can load too; they do not change what `encode` does. `source` names the
        folder in error messages."""
        raw = tokenizer_json.encode() if isinstance(tokenizer_json, str) else bytes(tokenizer_json)
        self._source = str(source)
        try:
            tok = Tokenizer.from_str(raw.decode("utf-8"))
        except BaseException as e:  # tokenizers raises a bare Exception on a bad file, or panics
            if not _tokenizers_failed(e):
                raise
            raise TokenizerError(f"{self._source}: cannot parse {TOKENIZER_JSON} ({e})") from e
        if isinstance(max_length, bool) or not isinstance(max_length, int | np.integer):
            raise TokenizerError(f"{self._source}: max_length must be an integer, got {max_length!r}")
        max_length = int(max_length)
        if not 1 <= max_length <= MAX_LENGTH_LIMIT:
            raise TokenizerError(
                f"{self._source}: max_length must be in [1, {MAX_LENGTH_LIMIT}], got {max_length}"
            )
        if padding not in PADDING_MODES:
            raise TokenizerError(f"{self._source}: padding must be one of {PADDING_MODES}, got {padding!r}")
        if pad_token is not None and not isinstance(pad_token, str):
            raise TokenizerError(f"{self._source}: the pad token must be a string, got {pad_token!r}")
        if pad_id is None and pad_token is not None:
            pad_id = tok.token_to_id(pad_token)
            if pad_id is None:
                raise TokenizerError(
                    f"{self._source}: the pad token {pad_token!r} is not in the tokenizer's vocabulary"
                )
        vocab_size = tok.get_vocab_size(with_added_tokens=True)
        if pad_id is not None and (
            isinstance(pad_id, bool)
            or not isinstance(pad_id, int | np.integer)
            or not 0 <= pad_id < vocab_size
        ):
            raise TokenizerError(
                f"{self._source}: pad id {pad_id!r} is not a token id of this vocabulary (0..{vocab_size - 1})"
            )
        # The batch is padded here (numpy), so the tokenizer must not pad on its own; truncation is
        # the tokenizer's, which keeps room for the special tokens its post-processor adds, as HF does.
        tok.no_padding()
        tok.enable_truncation(max_length, stride=0, strategy="longest_first", direction="right")
        self._tok = tok
        self._json = raw
        self._hash = hashlib.sha256(raw).hexdigest()
        self._max_length = max_length
        self._padding: Padding = padding
        self._pad_token = pad_token
        self._pad_id = None if pad_id is None else int(pad_id)
        self._add_newline = bool(add_newline)
        self._extra = {str(k): bytes(v) for k, v in (extra_files or {}).items()}

    # -- construction ----------------------------------------------------------------------------
    @classmethod
    def from_dir(
        cls,
        folder: str | Path,
        *,
        max_length: int,
        padding: Padding = "longest",
        add_newline: bool = True,
    ) -> TaskTokenizer:
        """The tokenizer of a Hugging Face folder (tokenizer.json, plus tokenizer_config.json and/or
        special_tokens_map.json naming the pad token), with LeRobot's tokenizer_processor settings."""
        folder = Path(folder)
        path = folder / TOKENIZER_JSON
        if not path.is_file():
            raise FileNotFoundError(
                f"{folder}: no {TOKENIZER_JSON}; a language policy needs the VLM's fast tokenizer file"
            )
        pad_token = None
        extra: dict[str, bytes] = {}
        for name in (TOKENIZER_CONFIG_JSON, SPECIAL_TOKENS_MAP_JSON):  # transformers' order
            p = folder / name
            if not p.is_file():
                continue
            extra[name] = p.read_bytes()
            if pad_token is None:
                pad_token = _token_content(_read_json(p).get("pad_token"))
        return cls(
            path.read_bytes(),
            max_length=max_length,
            padding=padding,
            pad_token=pad_token,
            add_newline=add_newline,
            extra_files=extra,
            source=str(folder),
        )

    @classmethod
    def load(cls, folder: str | Path) -> TaskTokenizer:
        """A tokenizer `save` wrote, with the settings it was saved with."""
        folder = Path(folder)
        settings_path = folder / SETTINGS_JSON
        if not settings_path.is_file():
            raise FileNotFoundError(
                f"{folder}: no {SETTINGS_JSON}; for a Hugging Face tokenizer folder use "
                "TaskTokenizer.from_dir(folder, max_length=...)"
            )
        path = folder / TOKENIZER_JSON
        if not path.is_file():
            raise FileNotFoundError(f"{folder}: no {TOKENIZER_JSON}")
        s = _read_json(settings_path)
        if s.get("format") != SETTINGS_FORMAT or s.get("version") != SETTINGS_VERSION:
            raise TokenizerError(
                f"{settings_path}: not a {SETTINGS_FORMAT} v{SETTINGS_VERSION} settings file "
                f"(format={s.get('format')!r}, version={s.get('version')!r})"
            )
        names = s.get("extra_files", [])
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise TokenizerError(
                f"{settings_path}: 'extra_files' must be a list of file names, got {names!r}"
            )
        try:
            files = {}
            for n in names:  # side files of this folder only: a name leading out of it is never read
                p = inside(folder, n)
                if p is None or p.parent.resolve() != folder.resolve():
                    raise TokenizerError(
                        f"{settings_path}: extra file {n!r} is not a file of {folder}; refused"
                    )
                files[n] = p
            extra = {n: p.read_bytes() for n, p in files.items()}
            tok = cls(
                path.read_bytes(),
                max_length=s["max_length"],
                padding=s["padding"],
                pad_token=s.get("pad_token"),
                pad_id=s.get("pad_id"),
                add_newline=bool(s["add_newline"]),
                extra_files=extra,
                source=str(folder),
            )
        except (KeyError, TypeError, OSError, UnicodeError) as e:
            raise TokenizerError(f"{settings_path}: malformed or incomplete ({e!r})") from e
        if tok.content_hash != s.get("tokenizer_sha256", tok.content_hash):
            raise TokenizerError(f"{path}: content does not match the hash in {SETTINGS_JSON}")
        return tok

    def save(self, folder: str | Path) -> Path:
        """Write tokenizer.json (byte for byte), the Hugging Face side files it came with and
        jrobot_tokenizer.json (the settings), so `load(folder)` gives an equal tokenizer."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / TOKENIZER_JSON).write_bytes(self._json)
        for name, data in self._extra.items():
            (folder / name).write_bytes(data)
        settings = {
            "format": SETTINGS_FORMAT,
            "version": SETTINGS_VERSION,
            **self.settings,
            "pad_token": self._pad_token,
            "tokenizer_sha256": self._hash,
            "extra_files": sorted(self._extra),
        }
        (folder / SETTINGS_JSON).write_text(json.dumps(settings, indent=2) + "\n")
        return folder

    # -- settings ----------------------------------------------------------------------------------
    @property
    def max_length(self) -> int:
        return self._max_length

    @property
    def padding(self) -> Padding:
        return self._padding

    @property
    def pad_id(self) -> int | None:
        return self._pad_id

    @property
    def pad_token(self) -> str | None:
        return self._pad_token

    @property
    def add_newline(self) -> bool:
        return self._add_newline

    @property
    def content_hash(self) -> str:
        """sha256 of tokenizer.json: two tokenizers with the same hash and settings encode alike."""
        return self._hash

    @property
    def settings(self) -> dict[str, Any]:
        """What, besides tokenizer.json, decides the output of `encode`."""
        return {
            "max_length": self._max_length,
            "padding": self._padding,
            "pad_id": self._pad_id,
            "add_newline": self._add_newline,
        }

    @property
    def vocab_size(self) -> int:
        return int(self._tok.get_vocab_size(with_added_tokens=True))

    def token_id(self, token: str) -> int:
        """The id of one token string, e.g. a special token such as "<fake_token_around_image>"."""
        i = self._tok.token_to_id(token)
        if i is None:
            raise TokenizerError(f"{self._source}: token {token!r} is not in the tokenizer's vocabulary")
        return int(i)

    # -- encoding ----------------------------------------------------------------------------------
    def prompt(self, task: str) -> str:
        """The text that is tokenized for `task` (the newline rule applied)."""
        return with_newline(task) if self._add_newline else task

    def encode(
        self, tasks: str | Sequence[str] | np.ndarray, padding: Padding | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(tokens int64 (B, L), attention_mask bool (B, L)) for one task or a batch of B tasks.

        `padding` overrides the tokenizer's mode for this call (a runtime with a fixed L asks for
        "max_length"). L is `max_length`, or with "longest" the longest tokenized task, at most
        `max_length`.
        """
        mode = self._padding if padding is None else padding
        if mode not in PADDING_MODES:
            raise TokenizerError(f"padding must be one of {PADDING_MODES}, got {mode!r}")
        if isinstance(tasks, str):
            batch = [tasks]
        elif isinstance(tasks, np.ndarray) and tasks.ndim == 0:
            batch = [tasks.item()]
        else:
            if isinstance(tasks, np.ndarray) and tasks.ndim != 1:
                raise TokenizerError(
                    f"tasks must be a string or a (B,) array of strings, got shape {tasks.shape}"
                )
            batch = list(tasks)
        if not batch:
            raise TokenizerError("no tasks to tokenize: the batch is empty")
        for i, t in enumerate(batch):
            if not isinstance(t, str):
                raise TokenizerError(f"task {i} is not a string: {type(t).__name__} {t!r}")
        try:  # one by one: batches are a few tasks, and encode_batch's thread pool does not survive fork
            encodings = [self._tok.encode(self.prompt(t), add_special_tokens=True) for t in batch]
        except BaseException as e:  # e.g. max_length shorter than the special tokens the template adds
            if not _tokenizers_failed(e):
                raise
            raise TokenizerError(f"{self._source}: cannot tokenize the tasks ({e})") from e
        lengths = [len(e.ids) for e in encodings]
        width = self._max_length if mode == "max_length" else min(max(lengths), self._max_length)
        if any(n < width for n in lengths) and self._pad_id is None:
            raise TokenizerError(
                f"{self._source}: padding the tasks to {width} tokens needs a pad token, and the tokenizer "
                f"has none (set 'pad_token' in {TOKENIZER_CONFIG_JSON} or {SPECIAL_TOKENS_MAP_JSON})"
            )
        pad = 0 if self._pad_id is None else self._pad_id
        tokens = np.full((len(batch), width), pad, dtype=np.int64)
        mask = np.zeros((len(batch), width), dtype=bool)
        for row, (enc, n) in enumerate(zip(encodings, lengths, strict=True)):
            tokens[row, :n] = enc.ids
            mask[row, :n] = True
        return tokens, mask

    # -- identity: static metadata on an NNX module --------------------------------------------------
    def _identity(self) -> tuple[Any, ...]:
        return (self._hash, self._max_length, self._padding, self._pad_id, self._add_newline)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TaskTokenizer):
            return NotImplemented
        return self._identity() == other._identity()

    def __hash__(self) -> int:
        return hash(self._identity())

    def __repr__(self) -> str:
        return (
            f"TaskTokenizer({self._source!r}, max_length={self._max_length}, padding={self._padding!r}, "
            f"pad_id={self._pad_id}, add_newline={self._add_newline}, sha256={self._hash[:12]})"
        )

    # Immutable: copies share the object; pickling carries the file content and the settings.
    def __copy__(self) -> TaskTokenizer:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> TaskTokenizer:
        return self

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (self._json, self.settings, self._pad_token, self._extra, self._source))


def _rebuild(
    raw: bytes, settings: dict[str, Any], pad_token: str | None, extra: dict[str, bytes], source: str
) -> TaskTokenizer:
    return TaskTokenizer(
        raw,
        max_length=settings["max_length"],
        padding=settings["padding"],
        pad_token=pad_token,
        pad_id=settings["pad_id"],
        add_newline=settings["add_newline"],
        extra_files=extra,
        source=source,
    )

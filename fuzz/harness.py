"""What every fuzz harness shares: the verdict on an input, scratch folders, the seed corpus, the runner.

A harness is a module `fuzz/fuzz_<name>.py` with `TestOneInput(data: bytes)`: it puts the bytes where
jrobot reads an untrusted file (or hands them to the message decoder) and calls the real entry point.
The input passes when the parser accepts it or rejects it with jrobot's own error type for that
parser, whose message names the file (or folder) at fault. Anything else is a crash:

- any other exception (KeyError, IndexError, TypeError, UnicodeDecodeError, RecursionError,
  MemoryError, an exception from inside numpy, pyarrow or pickle ...), raised as it is;
- an own error whose message does not name the file: `UnclearError`;
- (under libFuzzer) an input running longer than `-timeout` seconds or growing the process beyond
  `-rss_limit_mb`; the property tests bound time per input with hypothesis' `deadline`.

The harness modules import jrobot at module level, so `run.py` imports them inside atheris'
`instrument_imports` to get coverage of jrobot's own code; the property tests in
tests/fuzz/test_parsers_property.py import the same modules without atheris.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fuzz import known

FUZZ_DIR = Path(__file__).resolve().parent
REPO = FUZZ_DIR.parent
CORPUS_DIR = FUZZ_DIR / "corpus"

# Every harness, in the order `make fuzz` runs them (the module is fuzz/fuzz_<name>.py, the seeds
# fuzz/corpus/<name>/).
HARNESSES = (
    "meta_info",
    "meta_episodes",
    "meta_tasks",
    "meta_stats",
    "meta_v2_jsonl",
    "calibration",
    "bundle_policy_json",
    "bundle_params",
    "lerobot_config",
    "lerobot_processor",
    "lerobot_safetensors",
    "torch_zip",
    "wire",
    "tokenizer",
    "data_parquet",
    "video",
    "rlds_metadata",
)


class UnclearError(AssertionError):
    """The parser rejected an input with its own error type, but the message does not name the file."""


def expect_own_error(
    call: Callable[[], Any],
    *,
    own: tuple[type[BaseException], ...] = (),
    exact: tuple[type[BaseException], ...] = (),
    names: str | None = None,
) -> Any:
    """Run `call`; return its result, or None when it raised one of the parser's own errors.

    `own`: error classes accepted with their subclasses (DatasetError, BundleError, ...). `exact`:
    classes accepted only as themselves, for parsers whose own errors are builtin classes (the LeRobot
    checkpoint reader raises ValueError): a UnicodeDecodeError or JSONDecodeError, although ValueErrors,
    is then still a crash. `names`: text every accepted error message must contain (the file or folder).
    Every other exception propagates unchanged: it is the crash libFuzzer or hypothesis reports.
    """
    try:
        try:
            return call()
        except Exception as e:
            if not (isinstance(e, own) or type(e) in exact):
                raise
            if names is not None and names not in str(e):
                raise UnclearError(f"{type(e).__name__} does not name {names!r}: {e}") from e
            return None
    except Exception as e:
        if known.skipping() and known.is_known(e):
            return None
        raise


def seed(harness: str, name: str) -> bytes:
    """A file of the committed seed corpus (also what the harnesses build their fixed folders from)."""
    return (CORPUS_DIR / harness / name).read_bytes()


def seeds(harness: str) -> list[bytes]:
    """Every seed of a harness, sorted by file name."""
    return [p.read_bytes() for p in sorted((CORPUS_DIR / harness).iterdir()) if p.is_file()]


_scratch: dict[str, Path] = {}


def scratch(name: str, build: Callable[[Path], None] | None = None) -> Path:
    """A temporary folder for this process, created (and filled by `build`) on first use, removed at exit.

    Harnesses reuse it for every input (writing one file per input is what makes them fast), so a
    harness must only ever overwrite the file it fuzzes, never leave anything else behind.
    """
    if name not in _scratch:
        root = Path(tempfile.mkdtemp(prefix=f"jrobot-fuzz-{name}-"))
        atexit.register(shutil.rmtree, root, ignore_errors=True)
        if build is not None:
            build(root)
        _scratch[name] = root
    return _scratch[name]


def put(root: Path, relative: str, data: bytes) -> Path:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


# -- the dataset folder the metadata harnesses share ---------------------------------------------

V30 = "so101_v30"
V21 = "so101_v21"
V2_JSONL_FILES = ("meta/episodes.jsonl", "meta/tasks.jsonl", "meta/episodes_stats.jsonl")


def split_jsonl_input(data: bytes) -> tuple[str, bytes]:
    """meta_v2_jsonl's input: the first byte picks the jsonl file, the rest is its content."""
    if not data:
        return V2_JSONL_FILES[0], b""
    return V2_JSONL_FILES[data[0] % len(V2_JSONL_FILES)], data[1:]


def build_dataset(root: Path, version: str) -> None:
    """The LeRobot fixtures' metadata files (from the seed corpus), both the v3.0 and the v2.1 ones.

    Which loader runs is decided by info.json's `codebase_version`, so a fuzzed info.json reaches both;
    the data files are empty stand-ins (the metadata loaders only check that they exist).
    """
    put(root, "meta/info.json", seed("meta_info", f"{V30 if version == 'v3.0' else V21}.json"))
    put(root, "meta/tasks.parquet", seed("meta_tasks", f"{V30}.parquet"))
    put(root, "meta/episodes/chunk-000/file-000.parquet", seed("meta_episodes", f"{V30}.parquet"))
    put(root, "meta/stats.json", seed("meta_stats", f"{V30}.json"))
    for i, relative in enumerate(V2_JSONL_FILES):
        name, content = split_jsonl_input(seed("meta_v2_jsonl", f"{V21}_{i}.bin"))
        assert name == relative
        put(root, relative, content)
    put(root, "data/chunk-000/file-000.parquet", b"")
    for episode in range(3):
        put(root, f"data/chunk-000/episode_{episode:06d}.parquet", b"")


DATA_FILE = "data/chunk-000/file-000.parquet"
FRONT_VIDEO = "videos/observation.images.front/chunk-000/file-000.mp4"
WRIST_VIDEO = "videos/observation.images.wrist/chunk-000/file-000.mp4"


def build_full_dataset(root: Path) -> None:
    """The whole v3.0 fixture dataset (metadata, data file, both cameras' videos) from the seed corpus."""
    put(root, "meta/info.json", seed("meta_info", f"{V30}.json"))
    put(root, "meta/tasks.parquet", seed("meta_tasks", f"{V30}.parquet"))
    put(root, "meta/episodes/chunk-000/file-000.parquet", seed("meta_episodes", f"{V30}.parquet"))
    put(root, "meta/stats.json", seed("meta_stats", f"{V30}.json"))
    put(root, DATA_FILE, seed("data_parquet", f"{V30}.parquet"))
    put(root, FRONT_VIDEO, seed("video", f"{V30}_front.mp4"))
    put(root, WRIST_VIDEO, seed("video", f"{V30}_wrist.mp4"))


def full_dataset_root(harness: str) -> Path:
    """Harness `harness`'s own copy of the whole v3.0 fixture dataset, built on first use."""
    return scratch(harness, build_full_dataset)


def dataset_root(harness: str, version: str) -> Path:
    """Harness `harness`'s own dataset folder ("v3.0" or "v2.1" info.json), built on first use."""
    return scratch(harness, lambda root: build_dataset(root, version))


# -- the runner (libFuzzer through atheris) ------------------------------------------------------


def run_atheris(name: str, argv: list[str]) -> None:
    """Fuzz harness `name` with libFuzzer; `argv` are libFuzzer's flags and corpus folders."""
    import importlib
    import sys

    import atheris

    with atheris.instrument_imports(include=["jrobot", "data_tools"]):
        module = importlib.import_module(f"fuzz.fuzz_{name}")
    atheris.Setup([sys.argv[0], *argv], module.TestOneInput)
    atheris.Fuzz()

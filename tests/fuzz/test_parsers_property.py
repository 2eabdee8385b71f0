"""Property tests of jrobot's parsers of untrusted input, through the fuzz harnesses (fuzz/fuzz_*.py).

Each harness feeds bytes to one parser and fails unless the parser accepts them or rejects them with
its own error type naming the file (fuzz/harness.py). Here hypothesis derives the bytes from the seed
corpus (fuzz/corpus/), at two levels:
- bytes: bit flips, insertions, deletions, truncations, repeated runs and the libFuzzer dictionaries'
  tokens, for every harness;
- structure: the seed's JSON with values replaced by extreme or ill-typed ones (inf, NaN, 2**70,
  '../', format fields, deep nesting, ...), its parquet tables with columns retyped, cells changed,
  columns dropped, renamed or duplicated and rows repeated; safetensors headers, msgpack array maps
  and torch-zip pickles built with sizes, strides, offsets and dtypes that lie.
No input may take longer than PER_INPUT_S (hypothesis' deadline) or grow the process by more than
RSS_GROWTH_MB. Examples are derandomized so the suite is reproducible; JROBOT_FUZZ_RANDOM=1 draws new
ones, JROBOT_FUZZ_SCALE=N runs N times as many. Coverage-guided fuzzing: `make fuzz`.
"""

from __future__ import annotations

import ast
import contextlib
import copy
import importlib
import io
import json
import math
import os
import resource
import struct
import time
import zipfile
from datetime import timedelta
from typing import Any

import msgpack
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fuzz import harness, known
from fuzz.make_corpus import dictionary_bomb, torch_zip_writer

PER_INPUT_S = 5
RSS_GROWTH_MB = 1024
RANDOM = os.environ.get("JROBOT_FUZZ_RANDOM") == "1"
SCALE = max(1, int(os.environ.get("JROBOT_FUZZ_SCALE", "1")))

MODULES = {name: importlib.import_module(f"fuzz.fuzz_{name}") for name in harness.HARNESSES}
SEEDS = {name: harness.seeds(name) for name in harness.HARNESSES}
JSON_HARNESSES = (
    "meta_info",
    "meta_stats",
    "calibration",
    "bundle_policy_json",
    "lerobot_config",
    "lerobot_processor",
)
PARQUET_HARNESSES = ("meta_episodes", "meta_tasks", "data_parquet")
SAFETENSORS_HARNESSES = ("bundle_params", "lerobot_safetensors")


def budget(examples: int) -> settings:
    return settings(
        max_examples=examples * SCALE,
        deadline=timedelta(seconds=PER_INPUT_S),
        derandomize=not RANDOM,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    )


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def run(name: str, data: bytes) -> None:
    """One input through harness `name`; it must also stay within the memory bound."""
    before = _peak_rss_mb()
    MODULES[name].TestOneInput(data)
    grown = _peak_rss_mb() - before
    assert grown < RSS_GROWTH_MB, f"{name}: one input grew the process by {grown:.0f} MB"


@pytest.fixture(scope="module", autouse=True)
def warm() -> None:
    """Every harness once on its seeds first: lazy imports (the policy modules) are not an input's time."""
    for name in harness.HARNESSES:
        for data in SEEDS[name]:
            MODULES[name].TestOneInput(data)


# -- the seeds, the regressions, the known crashes ------------------------------------------------


@pytest.mark.parametrize("name", harness.HARNESSES)
def test_every_seed_passes(name):
    assert SEEDS[name], f"no seeds in fuzz/corpus/{name}"
    for data in SEEDS[name]:
        t0 = time.monotonic()
        run(name, data)
        assert time.monotonic() - t0 < PER_INPUT_S


def _json_seed(name: str, file: str, **changes: Any) -> bytes:
    d = json.loads(harness.seed(name, file))
    d.update(changes)
    return json.dumps(d).encode()


def _info(**changes: Any) -> bytes:
    return _json_seed("meta_info", "so101_v21.json", **changes)


def _encrypted(zip_bytes: bytes) -> bytes:
    """The zip with every member flagged encrypted (bit 0 of the central directory's flags)."""
    out = bytearray(zip_bytes)
    pos = out.find(b"PK\x01\x02")
    while pos >= 0:
        out[pos + 8] |= 1
        pos = out.find(b"PK\x01\x02", pos + 4)
    return bytes(out)


def _parquet(**columns: list) -> bytes:
    out = io.BytesIO()
    names = [name.split("__")[0] or name for name in columns]  # "task_index__2": a second "task_index"
    pq.write_table(pa.Table.from_arrays([pa.array(v) for v in columns.values()], names=names), out)
    return out.getvalue()


def _data_file(column: str, row: int, value: Any) -> bytes:
    """The fixture's data file with one cell of `column` replaced (None: a null)."""
    table = pq.read_table(io.BytesIO(harness.seed("data_parquet", f"{harness.V30}.parquet")))
    values = table.column(column).to_pylist()
    values[row] = value
    table = table.set_column(
        table.schema.get_field_index(column), column, pa.array(values, table.schema.field(column).type)
    )
    out = io.BytesIO()
    pq.write_table(table, out)
    return out.getvalue()


def _codec_renamed(video: bytes) -> bytes:
    """The mp4 with its sample entry's codec renamed to one ffmpeg has no decoder for."""
    at = video.index(b"av01", 100)  # the stsd entry (the first "av01" is a brand in ftyp)
    return video[:at] + b"zzzz" + video[at + 4 :]


# Inputs the fuzzing found crashing before the fixes (one per crash class; fuzz/README.md lists them).
REGRESSIONS = {
    "info_template_single_brace": ("meta_info", _info(data_path="data/{episode_index}}.parquet")),
    "info_template_positional": ("meta_info", _info(video_path="videos/{0}.mp4")),
    "info_template_attribute": ("meta_info", _info(data_path="{episode_index.__class__}")),
    "info_template_width_bomb": ("meta_info", _info(data_path="{episode_index:999999999}")),
    "info_template_not_a_string": ("meta_info", _info(data_path=7)),
    "info_template_nul_byte": ("meta_info", _info(data_path="data/\x00{episode_index}")),
    "info_template_long_name": ("meta_info", _info(data_path="x" * 300 + "{episode_index}")),
    "info_fps_nan": ("meta_info", _info(fps=math.nan)),
    "info_shape_inf": ("meta_info", _info(features={"a": {"dtype": "float32", "shape": [math.inf]}})),
    "info_nested_too_deep": ("meta_info", b"[" * 100_000),
    "info_not_utf8": ("meta_info", b'{"codebase_version": "\xff"}'),
    "stats_not_utf8": ("meta_stats", b"{\xff}"),
    "stats_nested_too_deep": ("meta_stats", b'{"a": ' + b"[" * 100_000),
    "episodes_jsonl_no_index": ("meta_v2_jsonl", b'\x00{"length": 3}\n'),
    "episodes_jsonl_nan_index": ("meta_v2_jsonl", b'\x00{"episode_index": NaN, "length": 3}\n'),
    "episodes_jsonl_tasks_int": ("meta_v2_jsonl", b'\x00{"episode_index": 0, "length": 40, "tasks": 5}\n'),
    "episodes_jsonl_not_utf8": ("meta_v2_jsonl", b'\x00{"episode_index": 0, "tasks": ["\xff"]}\n'),
    "episodes_stats_ragged": (
        "meta_v2_jsonl",
        b'\x02{"episode_index": 0, "stats": {"a": {"mean": [1, 2]}}}\n'
        b'{"episode_index": 1, "stats": {"a": {"mean": [1, 2, 3]}}}\n'
        b'{"episode_index": 2, "stats": {"a": {"max": [1]}}}\n',
    ),
    "tasks_dictionary_bomb": ("meta_tasks", dictionary_bomb()),
    "tasks_column_twice": ("meta_tasks", _parquet(task_index=[0], task=["a"], task_index__2=[0])),
    "calibration_not_utf8": ("calibration", b'{"shoulder_pan": "\xde"}'),
    "calibration_nested_too_deep": ("calibration", b"[" * 100_000),
    "config_not_utf8": ("lerobot_config", b'{"type": "\x86"}'),
    "config_unknown_module": (
        "lerobot_config",
        _json_seed("lerobot_config", "act_so101_tiny.json", type="spec"),
    ),
    "config_chunk_size_text": (
        "lerobot_config",
        _json_seed("lerobot_config", "act_so101_tiny.json", chunk_size="100"),
    ),
    "config_old_shapes_not_lists": (
        "lerobot_config",
        b'{"type": "act", "input_shapes": {"observation.state": 6}, "output_shapes": {"action": [6]}}',
    ),
    "processor_not_object": ("lerobot_processor", b"[1, 2]"),
    "processor_state_file_outside": (
        "lerobot_processor",
        b'{"steps": [{"registry_name": "normalizer_processor", "config": {}, "state_file": "../../x"}]}',
    ),
    "processor_eps_text": (
        "lerobot_processor",
        b'{"steps": [{"registry_name": "normalizer_processor", "config": {"eps": "x"}}]}',
    ),
    "safetensors_header_only": (
        "lerobot_safetensors",
        harness.seed("lerobot_safetensors", "act_so101_tiny_header_only.safetensors"),
    ),
    "torch_zip_not_a_zip_body": ("torch_zip", b"PK\x05\x06" + bytes(18)),
    "data_null_timestamp": ("data_parquet", _data_file("timestamp", 3, None)),
    "data_task_index_beyond_tasks": ("data_parquet", _data_file("task_index", 5, 7)),
    "video_unknown_codec": ("video", _codec_renamed(harness.seed("video", f"{harness.V30}_front.mp4"))),
    "torch_zip_encrypted_member": ("torch_zip", _encrypted(harness.seed("torch_zip", "one_tensor.pth"))),
}


@pytest.mark.parametrize("case", sorted(REGRESSIONS))
def test_crashes_found_by_fuzzing_stay_fixed(case):
    known.skip(False)
    try:
        name, data = REGRESSIONS[case]
        run(name, data)
    finally:
        known.skip(True)


@pytest.mark.parametrize(
    ("k", "data"),
    [
        pytest.param(k, r, id=f"{k.harness}-{i}-{j}")
        for i, k in enumerate(known.KNOWN_CRASHES)
        for j, r in enumerate(k.reproducers)
    ],
)
def test_known_crashes_in_code_owned_elsewhere(k, data):
    """Reported, not fixed here (fuzz/known.py): this passes while the crash is still there, and fails
    once it is fixed, so the entry gets deleted and fuzzing stops letting that crash through."""
    known.skip(False)
    try:
        MODULES[k.harness].TestOneInput(data)
    except k.errors:
        return
    finally:
        known.skip(True)
    pytest.fail(f"{k.where} no longer crashes on this input: delete its entry in fuzz/known.py")


# -- byte-level mutations of the seeds, every harness ----------------------------------------------


def _dictionary(file: str) -> list[bytes]:
    lines = (harness.FUZZ_DIR / "dicts" / file).read_text().splitlines()
    return [ast.literal_eval("b" + line) for line in lines if line.startswith('"')]


TOKENS = {file: _dictionary(file) for file in ("json.dict", "safetensors.dict", "msgpack.dict")}
HARNESS_TOKENS = {
    name: TOKENS["json.dict"] if name in JSON_HARNESSES or name == "meta_v2_jsonl" else
    TOKENS["safetensors.dict"] if name in SAFETENSORS_HARNESSES else
    TOKENS["msgpack.dict"] if name == "wire" else [b"\x00", b"\xff\xff\xff\xff", b"PAR1", b"PK\x03\x04"]
    for name in harness.HARNESSES
}  # fmt: skip


@st.composite
def mutated_bytes(draw: st.DrawFn, name: str) -> bytes:
    seeds, tokens = SEEDS[name], HARNESS_TOKENS[name]
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(
            st.sampled_from(["flip", "set", "insert", "delete", "truncate", "token", "splice", "repeat"])
        )
        pos = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == "flip" and data:
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "set" and data:
            data[pos] = draw(st.sampled_from([0, 0x7F, 0x80, 0xFF, *b'[{"9-.e']))
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete":
            del data[pos : pos + draw(st.integers(1, 64))]
        elif op == "truncate":
            del data[pos:]
        elif op == "token":
            data[pos:pos] = draw(st.sampled_from(tokens))
        elif op == "splice":
            other = draw(st.sampled_from(seeds))
            start = draw(st.integers(0, len(other)))
            data[pos:pos] = other[start : start + draw(st.integers(1, 256))]
        elif op == "repeat":
            data[pos:pos] = bytes(data[pos : pos + draw(st.integers(1, 16))]) * draw(st.integers(2, 200))
    return bytes(data)


@pytest.mark.parametrize("name", harness.HARNESSES)
def test_byte_mutations(name):
    @budget(25)
    @given(data=mutated_bytes(name))
    def check(data):
        run(name, data)

    check()


# -- JSON documents with values replaced -----------------------------------------------------------

TEXTS = [
    "", "..", "../outside", "/etc/passwd", "{", "}", "{episode_index:999999999}", "{0}", "{video_key!r}",
    "{episode_index.real}", "a\x00b", "\ud800", "x" * 300, "v3.0", "v2.1", "v2.0", "video", "image",
    "string", "float32", "int64", "bool", "object", "MEAN_STD", "IDENTITY", "QUANTILES", "STATE",
    "VISUAL", "ACTION", "ENV", "observation.state", "observation.images.front", "action", "act",
    "diffusion", "smolvla", "spec", "base", "normalizer_processor", "jrobot-policy", "uint8", "float32+noise",
]  # fmt: skip
UTF8_TEXTS = [t for t in TEXTS if "\ud800" not in t]
NUMBERS = [0, -1, 1, 2, 3, 6, 2**31, 2**63, -(2**63), 10**30, 1e308, 1e-320, 0.5, -0.0]


def _keys(value: Any, out: set[str]) -> set[str]:
    if isinstance(value, dict):
        for k, v in value.items():
            out.add(k)
            _keys(v, out)
    elif isinstance(value, list):
        for v in value[:4]:
            _keys(v, out)
    return out


def _json_docs(name: str) -> list[Any]:
    return [json.loads(data) for data in SEEDS[name]]


KEYS = sorted(set().union(*(_keys(doc, set()) for name in JSON_HARNESSES for doc in _json_docs(name))))

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.sampled_from(NUMBERS),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(TEXTS),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=10,
)
DEEP = "__deep__"


def _paths(value: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(value, dict):
        for k, v in value.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value[:6]):
            out += _paths(v, (*prefix, i))
    return out


@st.composite
def mutated_json_doc(draw: st.DrawFn, doc: Any) -> str:
    doc = copy.deepcopy(doc)
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(_paths(doc)))
        op = draw(st.sampled_from(["replace", "replace", "delete", "add", "deep", "grow"]))
        if not path:
            if op in ("replace", "deep"):
                doc = DEEP if op == "deep" else draw(json_values)
            continue
        parent = doc
        for step in path[:-1]:
            parent = parent[step]
        key = path[-1]
        if op == "replace":
            parent[key] = draw(json_values)
        elif op == "delete":
            del parent[key]
        elif op == "add" and isinstance(parent[key], dict):
            parent[key][draw(st.sampled_from(KEYS))] = draw(json_values)
        elif op == "deep":
            parent[key] = DEEP
        elif op == "grow":
            parent[key] = [parent[key]] * draw(st.integers(2, 200))
    depth = draw(st.sampled_from([50, 900, 5000, 100_000]))
    return json.dumps(doc).replace(json.dumps(DEEP), "[" * depth + "]" * depth)


@st.composite
def mutated_json(draw: st.DrawFn, name: str) -> bytes:
    return draw(mutated_json_doc(draw(st.sampled_from(_json_docs(name))))).encode("utf-8", "surrogatepass")


@pytest.mark.parametrize("name", JSON_HARNESSES)
def test_json_mutations(name):
    @budget(120)
    @given(data=mutated_json(name))
    def check(data):
        run(name, data)

    check()


@st.composite
def mutated_jsonl(draw: st.DrawFn) -> bytes:
    """meta_v2_jsonl: one of the three files (the first byte), lines mutated, dropped or repeated."""
    data = draw(st.sampled_from(SEEDS["meta_v2_jsonl"]))
    lines = [json.loads(line) for line in data[1:].decode().splitlines() if line.strip()]
    texts = [json.dumps(line) for line in lines]
    for _ in range(draw(st.integers(1, 3))):
        i = draw(st.integers(0, len(lines) - 1))
        op = draw(st.sampled_from(["mutate", "mutate", "drop", "repeat"]))
        if op == "mutate":
            texts[i] = draw(mutated_json_doc(lines[i]))
        elif op == "drop":
            texts[i] = ""
        else:
            texts.append(texts[i])
    return data[:1] + "\n".join(texts).encode("utf-8", "surrogatepass")


@budget(150)
@given(data=mutated_jsonl())
def test_jsonl_mutations(data):
    run("meta_v2_jsonl", data)


@st.composite
def mutated_prefixed_json(draw: st.DrawFn, name: str) -> bytes:
    """A harness whose first byte picks the file (tokenizer, rlds_metadata): its JSON, values replaced."""
    data = draw(st.sampled_from(SEEDS[name]))
    return data[:1] + draw(mutated_json_doc(json.loads(data[1:]))).encode("utf-8", "surrogatepass")


@pytest.mark.parametrize("name", ["tokenizer", "rlds_metadata"])
def test_prefixed_json_mutations(name):
    @budget(150)
    @given(data=mutated_prefixed_json(name))
    def check(data):
        run(name, data)

    check()


# -- parquet tables with columns retyped, cells changed, columns dropped or renamed ----------------

# the fixture's files (meta_tasks' other seed is the dictionary bomb, 3 GB once read)
SEED_TABLES = {
    name: [pq.read_table(io.BytesIO(harness.seed(name, f"{harness.V30}.parquet")))]
    for name in PARQUET_HARNESSES
}


def _values_of(t: pa.DataType) -> st.SearchStrategy:
    if pa.types.is_integer(t):
        bits, signed = t.bit_width, pa.types.is_signed_integer(t)
        lo, hi = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)
        return (
            st.none()
            | st.integers(lo, hi)
            | st.sampled_from([v for v in (0, -1, 1, 2, 3, 2**40) if lo <= v <= hi])
        )
    if pa.types.is_floating(t):
        return st.none() | st.floats(allow_nan=True, allow_infinity=True, width=64)
    if pa.types.is_string(t) or pa.types.is_large_string(t):  # (arrow strings are UTF-8: no lone surrogates)
        return (
            st.none()
            | st.text(st.characters(exclude_categories=["Cs"]), max_size=12)
            | st.sampled_from(UTF8_TEXTS)
        )
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return st.none() | st.lists(_values_of(t.value_type), max_size=8)
    return st.none()


COLUMN_TYPES = [pa.int64(), pa.int32(), pa.float64(), pa.string(), pa.bool_(), pa.list_(pa.float64()),
                pa.list_(pa.string()), pa.list_(pa.int64()), pa.null(), pa.timestamp("s"), pa.binary()]  # fmt: skip


@st.composite
def mutated_parquet(draw: st.DrawFn, name: str) -> bytes:
    table = draw(st.sampled_from(SEED_TABLES[name]))
    names, arrays = (
        list(table.column_names),
        [table.column(i).combine_chunks() for i in range(table.num_columns)],
    )
    rows = table.num_rows
    metadata = table.schema.metadata
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.sampled_from(["cell", "cell", "column", "drop", "rename", "rows", "metadata"]))
        j = draw(st.integers(0, len(names) - 1)) if names else None
        if op == "cell" and j is not None and rows:
            with contextlib.suppress(pa.ArrowException, TypeError, ValueError, OverflowError):  # (no fit)
                values = arrays[j].to_pylist()
                values[draw(st.integers(0, rows - 1))] = draw(_values_of(arrays[j].type))
                arrays[j] = pa.array(values, type=arrays[j].type)
        elif op == "column" and j is not None:
            t = draw(st.sampled_from(COLUMN_TYPES))
            if pa.types.is_timestamp(t):  # dates Python cannot hold (year 300000)
                arrays[j] = pa.array(
                    [draw(st.integers(-(2**50), 2**50)) for _ in range(rows)], pa.int64()
                ).cast(t)
            else:
                arrays[j] = pa.array(draw(st.lists(_values_of(t), min_size=rows, max_size=rows)), type=t)
        elif op == "drop" and j is not None:
            del names[j], arrays[j]
        elif op == "rename" and j is not None:
            names[j] = draw(st.sampled_from([*names, "", "x", "episode_index", "tasks", "__index_level_0__"]))
        elif op == "rows":
            idx = draw(st.lists(st.integers(0, max(rows - 1, 0)), max_size=8)) if rows else []
            arrays, rows = [a.take(pa.array(idx, pa.int64())) for a in arrays], len(idx)
        elif op == "metadata":
            metadata = None
    out = io.BytesIO()
    pq.write_table(
        pa.Table.from_arrays(arrays, names=names, metadata=metadata),
        out,
        compression=draw(st.sampled_from(["snappy", "zstd", "none"])),
        use_dictionary=draw(st.booleans()),
    )
    return out.getvalue()


@pytest.mark.parametrize("name", PARQUET_HARNESSES)
def test_parquet_mutations(name):
    @budget(100)
    @given(data=mutated_parquet(name))
    def check(data):
        run(name, data)

    check()


# -- safetensors files whose header lies -----------------------------------------------------------

ST_DTYPES = ["F32", "F16", "BF16", "F64", "I64", "I32", "I16", "I8", "U8", "U16", "U32", "U64", "BOOL",
             "F8_E4M3", "F8_E5M2", "C64", "X", ""]  # fmt: skip
ST_ITEMSIZE = {
    "F64": 8,
    "I64": 8,
    "U64": 8,
    "C64": 8,
    "F32": 4,
    "I32": 4,
    "U32": 4,
    "F16": 2,
    "BF16": 2,
    "I16": 2,
    "U16": 2,
}
ST_NAMES = ["model.action_head.bias", "observation.state.mean", "action.std", "nodot",
            "normalize_inputs.buffer_observation_state.mean", "unnormalize_outputs.buffer_action.std"]  # fmt: skip
lying_ints = st.integers(0, 64) | st.sampled_from([-1, 2**31, 2**32 + 4, 2**62, 2**64 - 1])


@st.composite
def safetensors_files(draw: st.DrawFn) -> bytes:
    header: dict[str, Any] = {}
    end = 0
    for name in draw(st.lists(st.sampled_from(ST_NAMES), max_size=4, unique=True)):
        dtype = draw(st.sampled_from(ST_DTYPES))
        shape = draw(st.lists(st.integers(0, 4) | st.sampled_from([-1, 2**31, 2**62]), max_size=4))
        size = ST_ITEMSIZE.get(dtype, 1) * math.prod(shape)
        offsets = [end, end + size] if draw(st.booleans()) else [draw(lying_ints), draw(lying_ints)]
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": offsets}
        end = max(end, offsets[1]) if isinstance(offsets[1], int) and 0 <= offsets[1] < 4096 else end
    if draw(st.booleans()):
        header["__metadata__"] = draw(
            st.dictionaries(st.text(max_size=4), st.text(max_size=4) | st.integers(), max_size=2)
        )
    text = json.dumps(header).encode()
    declared = len(text) if draw(st.booleans()) else draw(lying_ints)
    data = bytes(min(end, 4096)) if draw(st.booleans()) else draw(st.binary(max_size=64))
    return struct.pack("<Q", declared % 2**64) + text + data


@pytest.mark.parametrize("name", SAFETENSORS_HARNESSES)
def test_safetensors_headers_that_lie(name):
    @budget(100)
    @given(data=safetensors_files())
    def check(data):
        run(name, data)

    check()


# -- msgpack frames with array maps that lie -------------------------------------------------------

WIRE_DTYPES = ["<f4", "|u1", ">f8", "|b1", "<i8", "<u2", "|O", "V8", "<c8", "S3", "<M8[s]", "f4,f4",
               "(2,)f4", "float32", "bool", "<f16", "<f2", "", "i", "u8"]  # fmt: skip
wire_ints = st.integers(-(2**63), 2**64 - 1)


def _key(name: str) -> st.SearchStrategy:
    return st.sampled_from([name.encode(), name])


@st.composite
def array_maps(draw: st.DrawFn) -> dict:
    kind = draw(st.sampled_from(["__ndarray__", "__npgeneric__"]))
    fields = {
        kind: st.sampled_from([True, True, 1, False, "x"]),
        "dtype": st.sampled_from(WIRE_DTYPES) | st.integers(-5, 5) | st.none() | st.binary(max_size=4),
        "shape": st.lists(st.integers(-2, 6) | st.sampled_from([0, 2**31, 2**63 - 1]), max_size=9)
        | st.integers(0, 4)
        | st.text(max_size=3)
        | st.none(),
        "data": st.binary(max_size=64)
        | st.text(max_size=4)
        | st.none()
        | wire_ints
        | st.floats(allow_nan=True, allow_infinity=True)
        | st.lists(st.integers(0, 3), max_size=3),
    }
    chosen = draw(st.lists(st.sampled_from(list(fields)), unique=True, min_size=1))
    return {draw(_key(f)): draw(fields[f]) for f in [kind, *[f for f in chosen if f != kind]]}


wire_leaves = (
    st.none()
    | st.booleans()
    | wire_ints
    | st.floats()
    | st.text(max_size=8)
    | st.binary(max_size=16)
    | array_maps()
)
wire_values = st.recursive(
    wire_leaves,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(max_size=6) | st.binary(max_size=4) | wire_ints, inner, max_size=4)
    ),
    max_leaves=12,
)


@budget(300)
@given(
    message=st.dictionaries(st.text(max_size=8) | st.binary(max_size=4) | wire_ints, wire_values, max_size=4)
    | wire_values
)
def test_wire_frames(message):
    run("wire", msgpack.packb(message, use_bin_type=True))


# -- torch zips whose tensors lie about their storage ----------------------------------------------

TORCH = torch_zip_writer()
STORAGE_NAMES = ["FloatStorage", "DoubleStorage", "HalfStorage", "LongStorage", "IntStorage", "ShortStorage",
                 "CharStorage", "ByteStorage", "BoolStorage", "BFloat16Storage"]  # fmt: skip
torch_ints = st.integers(-3, 12) | st.sampled_from([-(2**31), 2**31 - 1, 2**20])


@st.composite
def torch_zips(draw: st.DrawFn) -> bytes:
    storages = {
        f"s{i}": (draw(st.sampled_from(STORAGE_NAMES)), draw(st.integers(0, 96)), draw(torch_ints))
        for i in range(draw(st.integers(1, 3)))
    }
    entries = {
        f"w{j}": (
            draw(st.sampled_from(sorted(storages))),
            draw(torch_ints),
            tuple(draw(st.lists(torch_ints, max_size=4))),
            tuple(draw(st.lists(torch_ints, max_size=4))),
        )
        for j in range(draw(st.integers(0, 3)))
    }
    pickle = TORCH.torch_zip_bytes_pickle(
        entries, {k: v[0] for k, v in storages.items()}, {k: v[2] for k, v in storages.items()}
    )
    if draw(st.booleans()):  # a byte of the pickle changed, or a global no state dict needs
        pos = draw(st.integers(0, len(pickle) - 1))
        pickle = (
            pickle[:pos]
            + draw(st.sampled_from([b"\x00", b"\xff", b"cos\nsystem\n", b"."]))
            + pickle[pos + 1 :]
        )
    out = io.BytesIO()
    with zipfile.ZipFile(
        out, "w", compression=draw(st.sampled_from([zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED]))
    ) as zf:
        zf.writestr("archive/data.pkl", pickle)
        byteorder = draw(st.sampled_from([b"little", b"big", b"\xff", None]))
        if byteorder is not None:
            zf.writestr("archive/byteorder", byteorder)
        for key, (_, nbytes, _) in storages.items():
            zf.writestr(f"archive/data/{key}", draw(st.binary(min_size=nbytes, max_size=nbytes)))
    return out.getvalue()


@budget(200)
@given(data=torch_zips())
def test_torch_zips_that_lie(data):
    run("torch_zip", data)

"""`jrobot.language.TaskTokenizer`: LeRobot's SmolVLA prompt tokenization, without transformers.

The parity case pins the ids LeRobot 0.4.4's preprocessor produced for the fixture's tasks (padding
"longest", max_length 48); the synthetic tokenizers check what the fixture's cannot show (a template
post-processor that adds a BOS token, a folder without a pad token).
"""

from __future__ import annotations

import copy
import json
import pickle
import re
from pathlib import Path

import numpy as np
import pytest
from tokenizers import Tokenizer, models, pre_tokenizers, processors

from jrobot.language import (
    SETTINGS_JSON,
    TaskTokenizer,
    TokenizerError,
    is_language_mask,
    language_dtype,
)


@pytest.fixture(scope="module")
def fixture_dir(shared_dir: Path) -> Path:
    return shared_dir / "fixtures" / "parity" / "smolvla_so101_tiny"


@pytest.fixture(scope="module")
def vlm(fixture_dir: Path) -> Path:
    return fixture_dir / "vlm"


@pytest.fixture(scope="module")
def cases(fixture_dir: Path) -> dict[str, np.ndarray]:
    with np.load(fixture_dir / "cases.npz", allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


@pytest.fixture(scope="module")
def tok(vlm: Path) -> TaskTokenizer:
    return TaskTokenizer.from_dir(vlm, max_length=48)


def _word_folder(
    folder: Path, *, bos: bool = False, config: dict | None = None, special: dict | None = None
) -> Path:
    """A tiny word-level HF tokenizer folder: "<pad>"=0, "<s>"=1, then the words a..f."""
    vocab = {"<pad>": 0, "<s>": 1, "<unk>": 2, **{w: 3 + i for i, w in enumerate("abcdef")}}
    t = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    t.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    if bos:
        t.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    folder.mkdir(parents=True, exist_ok=True)
    t.save(str(folder / "tokenizer.json"))
    if config is not None:
        (folder / "tokenizer_config.json").write_text(json.dumps(config))
    if special is not None:
        (folder / "special_tokens_map.json").write_text(json.dumps(special))
    return folder


# -- parity with LeRobot's processor -----------------------------------------------------------------
def test_encode_matches_lerobots_preprocessor(tok, cases):
    tokens, mask = tok.encode(list(cases["obs.task"]))
    want_tokens = cases["norm.observation.language.tokens"]
    want_mask = cases["norm.observation.language.attention_mask"]
    assert tokens.dtype == np.int64 and mask.dtype == np.bool_
    np.testing.assert_array_equal(tokens, want_tokens)
    np.testing.assert_array_equal(mask, want_mask)
    # a (B,) '<U' array, as np.load gives it, is the same batch
    np.testing.assert_array_equal(tok.encode(cases["obs.task"])[0], want_tokens)


def test_pad_token_comes_from_tokenizer_config(tok):
    assert tok.pad_token == "<|endoftext|>" and tok.pad_id == 0
    assert tok.token_id("<fake_token_around_image>") == 3
    with pytest.raises(TokenizerError, match="'<no such token>' is not in the tokenizer's vocabulary"):
        tok.token_id("<no such token>")


def test_max_length_padding_always_gives_max_length(tok, cases, vlm):
    tokens, mask = tok.encode(list(cases["obs.task"]), padding="max_length")
    assert tokens.shape == mask.shape == (2, 48)
    want = cases["norm.observation.language.tokens"]
    np.testing.assert_array_equal(tokens[:, :5], want)
    assert np.all(tokens[:, 5:] == 0) and not mask[:, 5:].any()
    np.testing.assert_array_equal(mask.sum(1), [3, 5])
    # the same as a tokenizer built with that mode
    fixed = TaskTokenizer.from_dir(vlm, max_length=48, padding="max_length")
    np.testing.assert_array_equal(fixed.encode(list(cases["obs.task"]))[0], tokens)


def test_a_single_string_is_a_batch_of_one(tok):
    tokens, mask = tok.encode("pick the cube")
    np.testing.assert_array_equal(tokens, [[234, 235, 236]])
    assert mask.all()


def test_truncation_keeps_the_first_tokens(vlm, cases):
    short = TaskTokenizer.from_dir(vlm, max_length=2)
    tokens, mask = short.encode(list(cases["obs.task"]))
    np.testing.assert_array_equal(tokens, cases["norm.observation.language.tokens"][:, :2])
    assert mask.all()
    tokens, _ = short.encode(list(cases["obs.task"]), padding="max_length")
    assert tokens.shape == (2, 2)


def test_newline_is_appended_once(tok, vlm):
    assert tok.prompt("pick the cube") == "pick the cube\n"
    assert tok.prompt("pick the cube\n") == "pick the cube\n"
    np.testing.assert_array_equal(tok.encode("pick the cube\n")[0], tok.encode("pick the cube")[0])
    plain = TaskTokenizer.from_dir(vlm, max_length=48, add_newline=False)
    assert plain.prompt("pick the cube") == "pick the cube"


def test_truncation_keeps_room_for_the_post_processors_tokens(tmp_path):
    """As HF's fast tokenizers: the template's BOS stays, the task is cut to fit behind it."""
    folder = _word_folder(tmp_path / "bos", bos=True, config={"pad_token": "<pad>"})
    t = TaskTokenizer.from_dir(folder, max_length=3, add_newline=False)
    tokens, mask = t.encode(["a b c d", "e"])
    np.testing.assert_array_equal(tokens, [[1, 3, 4], [1, 7, 0]])
    np.testing.assert_array_equal(mask, [[True, True, True], [True, True, False]])


@pytest.mark.parametrize(
    "config, special",
    [
        ({"pad_token": {"content": "<pad>", "special": True}}, None),  # an AddedToken dict
        (None, {"pad_token": "<pad>"}),  # only special_tokens_map.json names it
        ({"pad_token": None}, {"pad_token": "<pad>"}),  # transformers reads both
    ],
    ids=["added-token-dict", "special-tokens-map", "config-null"],
)
def test_pad_token_forms(tmp_path, config, special):
    t = TaskTokenizer.from_dir(_word_folder(tmp_path / "t", config=config, special=special), max_length=4)
    assert t.pad_id == 0
    np.testing.assert_array_equal(
        t.encode(["a b", "c"], padding="max_length")[0], [[3, 4, 0, 0], [5, 0, 0, 0]]
    )


def test_no_pad_token_is_an_error_only_when_padding_is_needed(tmp_path):
    folder = _word_folder(tmp_path / "nopad")
    t = TaskTokenizer.from_dir(folder, max_length=4)
    assert t.pad_id is None
    np.testing.assert_array_equal(t.encode(["a b", "c d"])[0], [[3, 4], [5, 6]])  # equal lengths
    with pytest.raises(
        TokenizerError, match=re.escape(f"{folder}: padding the tasks to 2 tokens needs a pad token")
    ):
        t.encode(["a b", "c"])
    with pytest.raises(TokenizerError, match="needs a pad token"):
        t.encode("a", padding="max_length")


def test_pad_token_absent_from_the_vocabulary_is_an_error(tmp_path):
    folder = _word_folder(tmp_path / "t", config={"pad_token": "<nope>"})
    with pytest.raises(TokenizerError, match=r"the pad token '<nope>' is not in the tokenizer's vocabulary"):
        TaskTokenizer.from_dir(folder, max_length=4)


# -- save / load, identity ---------------------------------------------------------------------------
def test_save_load_round_trip(tok, cases, vlm, tmp_path):
    tok.save(tmp_path / "saved")
    assert (tmp_path / "saved" / "tokenizer.json").read_bytes() == (vlm / "tokenizer.json").read_bytes()
    settings = json.loads((tmp_path / "saved" / SETTINGS_JSON).read_text())
    assert {k: settings[k] for k in ("max_length", "padding", "pad_id", "add_newline")} == {
        "max_length": 48,
        "padding": "longest",
        "pad_id": 0,
        "add_newline": True,
    }
    back = TaskTokenizer.load(tmp_path / "saved")
    assert back == tok and hash(back) == hash(tok)
    assert back.pad_token == tok.pad_token
    for padding in ("longest", "max_length"):
        for a, b in zip(
            back.encode(list(cases["obs.task"]), padding), tok.encode(list(cases["obs.task"]), padding)
        ):
            np.testing.assert_array_equal(a, b)
    # the HF side files travel too, so the saved folder is still a Hugging Face tokenizer folder
    again = TaskTokenizer.from_dir(tmp_path / "saved", max_length=48)
    assert again == tok


def test_identity_is_content_and_settings(tok, vlm, tmp_path):
    import shutil

    shutil.copytree(vlm, tmp_path / "copy")
    same = TaskTokenizer.from_dir(tmp_path / "copy", max_length=48)  # another folder, the same file
    assert same == tok and hash(same) == hash(tok)
    assert TaskTokenizer.from_dir(vlm, max_length=47) != tok
    assert TaskTokenizer.from_dir(vlm, max_length=48, padding="max_length") != tok
    assert TaskTokenizer.from_dir(vlm, max_length=48, add_newline=False) != tok
    other = TaskTokenizer.from_dir(_word_folder(tmp_path / "w", config={"pad_token": "<pad>"}), max_length=48)
    assert other != tok
    assert len({tok, same}) == 1
    assert copy.deepcopy(tok) is tok
    assert pickle.loads(pickle.dumps(tok)) == tok


# -- errors ------------------------------------------------------------------------------------------
def test_missing_tokenizer_json_names_the_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match=re.escape(f"{tmp_path}: no tokenizer.json")):
        TaskTokenizer.from_dir(tmp_path, max_length=8)
    with pytest.raises(FileNotFoundError, match=re.escape(f"{tmp_path}: no {SETTINGS_JSON}") + ".*from_dir"):
        TaskTokenizer.load(tmp_path)


def test_corrupt_tokenizer_json_names_the_folder(tmp_path):
    (tmp_path / "tokenizer.json").write_text("{not json")
    with pytest.raises(TokenizerError, match=re.escape(f"{tmp_path}: cannot parse tokenizer.json")):
        TaskTokenizer.from_dir(tmp_path, max_length=8)


def test_a_saved_folder_cannot_reach_outside_itself_or_claim_absurd_settings(tmp_path):
    """A bundle's tokenizer folder comes from strangers: its settings name side files (copied into the
    next bundle a user exports) and sizes; names leading out of the folder and absurd sizes are refused."""
    folder = _word_folder(tmp_path / "t", config={"pad_token": "<pad>"})
    saved = TaskTokenizer.from_dir(folder, max_length=8).save(tmp_path / "saved")
    (tmp_path / "secret.txt").write_text("not yours")
    settings = json.loads((saved / SETTINGS_JSON).read_text())

    def load_with(**changes):
        (saved / SETTINGS_JSON).write_text(json.dumps({**settings, **changes}))
        return TaskTokenizer.load(saved)

    assert load_with() is not None
    for name in ("../secret.txt", str(tmp_path / "secret.txt"), "", "sub/../../secret.txt"):
        with pytest.raises(TokenizerError, match=re.escape(f"extra file {name!r} is not a file of {saved}")):
            load_with(extra_files=[name])
    with pytest.raises(TokenizerError, match="'extra_files' must be a list of file names"):
        load_with(extra_files="tokenizer_config.json")
    with pytest.raises(TokenizerError, match=r"max_length must be in \[1, 65536\], got 1000000000000"):
        load_with(max_length=10**12)
    with pytest.raises(TokenizerError, match="max_length must be an integer, got '8'"):
        load_with(max_length="8")
    with pytest.raises(TokenizerError, match=r"pad id 99 is not a token id of this vocabulary \(0..8\)"):
        load_with(pad_id=99)
    (saved / SETTINGS_JSON).write_bytes(b"\xff")
    with pytest.raises(TokenizerError, match=re.escape(f"{saved / SETTINGS_JSON}: cannot read JSON")):
        TaskTokenizer.load(saved)


def test_bad_tasks(tok, vlm):
    with pytest.raises(TokenizerError, match=r"task 1 is not a string: int 7"):
        tok.encode(["pick the cube", 7])
    with pytest.raises(TokenizerError, match="the batch is empty"):
        tok.encode([])
    with pytest.raises(TokenizerError, match="the batch is empty"):
        tok.encode(np.asarray([], dtype="<U1"))
    with pytest.raises(TokenizerError, match=r"got shape \(1, 2\)"):
        tok.encode(np.asarray([["a", "b"]]))
    with pytest.raises(TokenizerError, match="padding must be one of"):
        tok.encode("pick", padding="right")
    with pytest.raises(TokenizerError, match="padding must be one of"):
        TaskTokenizer.from_dir(vlm, max_length=8, padding="do_not_pad")
    with pytest.raises(TokenizerError, match=r"max_length must be in \[1, 65536\], got 0"):
        TaskTokenizer.from_dir(vlm, max_length=0)


def test_language_key_dtypes():
    assert is_language_mask("observation.language.attention_mask")
    assert not is_language_mask("observation.language.tokens")
    assert language_dtype("observation.language.attention_mask") == np.bool_
    assert language_dtype("observation.language.tokens") == np.int32

"""The writing tools write inside `--out` and nowhere else: not beside it, not in the source dataset,
not in the working directory, whatever names the source dataset's metadata or the user's flags hold.

Each tool runs in-process through its command-line entry point (`main(argv)`), with the working
directory inside the test's folder; every file of that folder is fingerprinted before and after.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest

from data_tools import build_shards, convert_lerobot, edit
from jrobot.cli import run_tool


def fingerprint(folder: Path, skip: Path | None = None) -> dict[str, str]:
    out = {}
    for p in sorted(folder.rglob("*")):
        if skip is not None and p.is_relative_to(skip):
            continue
        rel = str(p.relative_to(folder))
        out[rel] = "dir" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
    return out


@pytest.fixture
def sandbox(tmp_path, v30_dir, v21_dir, monkeypatch):
    """tmp/{v30,v21} (copies of the fixtures) and tmp/cwd (the working directory)."""
    for name, src in (("v30", v30_dir), ("v21", v21_dir)):
        shutil.copytree(src, tmp_path / name)
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    return tmp_path


RUNS = {
    "convert v2.1 with shards": (
        convert_lerobot.main,
        ["{v21}", "--out", "{out}/ds", "--shards", "{out}/shards", "--resolution", "24x32", "--workers", "0", "--quiet"],
    ),
    "delete": (edit.main, ["delete", "{v30}", "--episodes", "0", "--out", "{out}/ds"]),
    "split": (edit.main, ["split", "{v30}", "--splits", "a=0", "b=1,2", "--out", "{out}"]),
    "merge": (edit.main, ["merge", "{v30}", "{v21}", "--out", "{out}/ds"]),
    "rename": (edit.main, ["rename-features", "{v30}", "--map", "observation.images.front=observation.images.top", "--out", "{out}/ds"]),
    "build shards": (build_shards.main, ["{v30}", "--out", "{out}", "--resolution", "24x32", "--workers", "0"]),
}  # fmt: skip


@pytest.mark.parametrize("run", sorted(RUNS))
def test_a_writing_tool_writes_under_out_only(sandbox, run):
    main, args = RUNS[run]
    out = sandbox / "out"
    before = fingerprint(sandbox)
    assert main([a.format(v30=sandbox / "v30", v21=sandbox / "v21", out=out) for a in args]) == 0
    assert fingerprint(sandbox, skip=out) == before  # sources, cwd and out's neighbours untouched
    assert any(p.is_file() for p in out.rglob("*"))


@pytest.mark.parametrize(
    ("run", "args", "message"),
    [
        ("split", ["split", "{v30}", "--splits", "../escaped=0", "b=1", "--out", "{out}"], "split name '../escaped'"),
        ("split", ["split", "{v30}", "--splits", "..=0", "--out", "{out}"], "split name '..'"),
        (
            "rename",
            ["rename-features", "{v30}", "--map", "observation.images.front=..", "--out", "{out}/ds"],
            "camera feature '..' is not a plain folder name",
        ),
    ],
)  # fmt: skip
def test_names_from_flags_that_lead_out_are_refused(sandbox, capsys, run, args, message):
    before = fingerprint(sandbox)
    argv = [a.format(v30=sandbox / "v30", out=sandbox / "out") for a in args]
    code = run_tool(edit.main, argv, usage=edit.help_text)  # as `python -m data_tools.edit` runs it
    assert code == 2 and message in capsys.readouterr().err
    assert fingerprint(sandbox) == before


def test_a_stranger_dataset_whose_camera_key_leads_out_is_refused(sandbox, capsys):
    """A v3.0 dataset whose camera key is `../../escaped`: its videos would be read from, and a converted
    copy's written to, `videos/../../escaped/...`, outside both datasets."""
    src = sandbox / "v30"
    info = json.loads((src / "meta/info.json").read_text())
    info["features"] = {
        ("../../escaped" if k == "observation.images.front" else k): v for k, v in info["features"].items()
    }
    (src / "meta/info.json").write_text(json.dumps(info, indent=4))
    before = fingerprint(sandbox)
    argv = [str(src), "--out", str(sandbox / "out"), "--quiet"]
    code = run_tool(convert_lerobot.main, argv, input_errors=(ValueError,))
    err = capsys.readouterr().err
    assert code == 2 and "camera feature '../../escaped' is not a plain folder name" in err, err
    assert fingerprint(sandbox) == before
    assert not (sandbox.parent / "escaped").exists() and not os.path.exists(sandbox / "escaped")

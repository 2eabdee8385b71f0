"""Crashes fuzzing found in code this work could not change (another change owns those files).

They are reported, not fixed. While skipping is on (the default; JROBOT_FUZZ_KNOWN=crash turns it off)
an exception of one of a `KnownCrash`'s types whose traceback passes through its `where` is let
through by `harness.expect_own_error`, so fuzzing goes on to find other crashes.
tests/fuzz/test_parsers_property.py replays every reproducer with skipping off and expects the crash
(strict xfail): once the owner fixes it, that test says so and the entry is deleted.
"""

from __future__ import annotations

import dataclasses
import json
import os
import traceback
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


@dataclasses.dataclass(frozen=True)
class KnownCrash:
    harness: str
    errors: tuple[type[BaseException], ...]
    where: str  # "jrobot/x.py:function", a frame the traceback passes through
    reproducers: tuple[bytes, ...]
    note: str  # what goes wrong and the fix


def _policy_json(**changes: Any) -> bytes:
    """The seed policy.json (the ACT fixture's bundle) with `changes`."""
    d = json.loads((REPO / "fuzz/corpus/bundle_policy_json/act_so101_tiny.json").read_text())
    return json.dumps({**d, **changes}).encode()


KNOWN_CRASHES: tuple[KnownCrash, ...] = ()  # all reported crashes are fixed (see fuzz/README.md)

_skip = os.environ.get("JROBOT_FUZZ_KNOWN", "skip") != "crash"


def skip(on: bool) -> None:
    """Let known crashes through (True, the default) or report them like any other (False)."""
    global _skip
    _skip = on


def skipping() -> bool:
    return _skip


def own_frames(e: BaseException) -> list[str]:
    """ "jrobot/x.py:function" of every traceback frame in jrobot's or data_tools' code, outermost first."""
    out = []
    for frame, _ in traceback.walk_tb(e.__traceback__):
        path = Path(frame.f_code.co_filename)
        if path.is_relative_to(REPO) and path.relative_to(REPO).parts[0] in ("jrobot", "data_tools"):
            out.append(f"{path.relative_to(REPO).as_posix()}:{frame.f_code.co_name}")
    return out


def is_known(e: BaseException) -> bool:
    frames = own_frames(e)
    return any(isinstance(e, k.errors) and k.where in frames for k in KNOWN_CRASHES)

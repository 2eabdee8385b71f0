"""Shards shared by the pipeline tests: the LeRobot v3.0 fixture at 32x48, built once per session."""

from __future__ import annotations

import pytest

from jrobot.shards.builder import build_shards


@pytest.fixture(scope="session")
def shards(tmp_path_factory, v30_dir) -> str:
    out = tmp_path_factory.mktemp("pipeline") / "v30"
    build_shards(v30_dir, out, resolution=(32, 48), workers=0, progress=False)
    return str(out)

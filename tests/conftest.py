"""Shared test fixtures: where the read-only LeRobot fixtures live; no TensorFlow in a test process; one
XLA compilation cache per test run."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("JROBOT_SHARED", REPO.parent / "shared"))
LEROBOT_FIXTURES = SHARED / "fixtures" / "lerobot"
PARITY_FIXTURES = SHARED / "fixtures" / "parity"
TEST_CACHE_SIZE = 8 * 1024**3


def pytest_configure(config):
    """One empty compilation cache for the whole run, shared by the xdist workers and every process a
    test starts (they inherit the environment): a program that many tests compile (the same small
    policy trained, exported, served, resumed) is compiled once. Fresh for each run, so a run never
    depends on an earlier one, and not the user's own cache (`jrobot.compile_cache` keeps JAX's setting).
    The bound makes JAX lock the folder around each read and write, so workers never read half an entry.
    """
    if hasattr(config, "workerinput") or os.environ.get("JAX_COMPILATION_CACHE_DIR"):
        return  # an xdist worker (the controller set it up), or the caller chose a cache
    folder = tempfile.mkdtemp(prefix="jrobot-test-xla-")
    config._jrobot_xla_cache = folder
    os.environ["JAX_COMPILATION_CACHE_DIR"] = folder
    os.environ["JAX_COMPILATION_CACHE_MAX_SIZE"] = str(TEST_CACHE_SIZE)


def pytest_unconfigure(config):
    folder = getattr(config, "_jrobot_xla_cache", None)
    if folder is not None:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(autouse=True)
def _no_tensorflow_in_the_test_process(request):
    """TensorFlow (the rlds extra) must only ever load in child processes: its bundled LLVM clashes with
    Mesa's llvmpipe, and any later MuJoCo render in the same process segfaults, far from the cause."""
    yield
    if "tensorflow" in sys.modules:
        pytest.fail(
            f"{request.node.nodeid} imported TensorFlow into the test process; run that code in a child"
        )


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not SHARED.is_dir():
        pytest.fail(f"shared fixtures not found at {SHARED} (set JROBOT_SHARED)")
    return SHARED


@pytest.fixture(scope="session")
def v30_dir(shared_dir: Path) -> Path:
    return LEROBOT_FIXTURES / "so101_v30"


@pytest.fixture(scope="session")
def v21_dir(shared_dir: Path) -> Path:
    return LEROBOT_FIXTURES / "so101_v21"


@pytest.fixture(scope="session")
def stripes():
    """`decode(img) -> (frame_index % 256, episode_index)` from ../shared/tools/stripes.py."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("stripes", SHARED / "tools" / "stripes.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.decode

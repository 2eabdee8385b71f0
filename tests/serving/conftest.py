"""Fixtures of the serving tests: real bundles exported from the LeRobot parity checkpoints."""

from __future__ import annotations

from pathlib import Path

import pytest
from serve_helpers import export_lerobot


@pytest.fixture(scope="session")
def act_bundle(tmp_path_factory, shared_dir) -> Path:
    """ACT with two 96x128 cameras (front, wrist), 6 joints, chunk 10: deterministic."""
    return export_lerobot(shared_dir, "act_so101_tiny", tmp_path_factory.mktemp("serving") / "act")


@pytest.fixture(scope="session")
def diffusion_bundle(tmp_path_factory, shared_dir) -> Path:
    """Diffusion (DDIM): stochastic, so server-side seeding matters."""
    return export_lerobot(
        shared_dir, "diffusion_so101_tiny_ddim", tmp_path_factory.mktemp("serving") / "diff"
    )


@pytest.fixture(scope="session")
def vla_bundle(tmp_path_factory, shared_dir) -> Path:
    """SmolVLA (the tiny LeRobot parity checkpoint and its VLM folder): language-conditioned, stochastic."""
    out = tmp_path_factory.mktemp("serving") / "vla"
    fixture = shared_dir / "fixtures" / "parity" / "smolvla_so101_tiny"
    return export_lerobot(shared_dir, "smolvla_so101_tiny", out, "--vlm", str(fixture / "vlm"))

"""Fixtures for the hardware-layer tests: a virtual SO-101 on a pty and an isolated calibration root."""

from __future__ import annotations

from pathlib import Path

import pytest

from jrobot.sim.virtual_arm import VirtualArm


@pytest.fixture
def calib_root(tmp_path, monkeypatch) -> Path:
    """An empty calibration root, so tests never touch ~/.cache/huggingface."""
    root = tmp_path / "calibration"
    monkeypatch.setenv("HF_LEROBOT_CALIBRATION", str(root))
    return root


@pytest.fixture
def arm():
    with VirtualArm() as a:
        yield a


@pytest.fixture
def leader_arm():
    with VirtualArm() as a:
        yield a

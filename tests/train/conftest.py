"""Shared setup for the training tests: tiny shards built from the LeRobot fixture, a tiny ACT config
(or another policy's, through `policy=` / `config=`)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TINY_ACT = {
    "chunk_size": 8,
    "n_action_steps": 4,
    "dim_model": 32,
    "n_heads": 4,
    "dim_feedforward": 64,
    "n_encoder_layers": 1,
    "n_decoder_layers": 1,
    "n_vae_encoder_layers": 1,
    "latent_dim": 8,
    "dropout": 0.0,
    "pretrained_backbone_weights": None,
}


@pytest.fixture(scope="session")
def tiny_shards(tmp_path_factory, shared_dir) -> Path:
    from jrobot.shards.builder import build_shards

    out = tmp_path_factory.mktemp("train") / "shards"
    build_shards(
        shared_dir / "fixtures/lerobot/so101_v30", out, resolution=(32, 32), workers=0, progress=False
    )
    return out


def config_flags(shards: Path, policy: dict | None = None, **overrides) -> list[str]:
    """Command-line overrides of configs/act_so101_sim.py (or another config with `policy`, its policy
    config fields) for a seconds-long CPU run."""
    flags = {
        "data.shards": str(shards),
        "data.num_workers": 0,
        "data.read_threads": 1,
        "batch_size": 4,
        "num_steps": 6,
        "log_every": 1,
        "checkpoint.every": 2,
        "checkpoint.keep": 10,
        "wandb.mode": "disabled",
        "seed": 3,
    }
    policy = TINY_ACT if policy is None else policy
    flags.update({f"policy.config.{k}": v for k, v in policy.items() if v is not None})
    flags.update(overrides)
    out = []
    for k, v in flags.items():
        out.append(f"--config.{k}={v}")
    return out


def train_cmd(
    workdir: Path,
    shards: Path,
    *extra: str,
    config: str = "configs/act_so101_sim.py",
    policy: dict | None = None,
    **overrides,
) -> list[str]:
    return [
        sys.executable, "-m", "jrobot.train", "--config", str(REPO / config),
        "--workdir", str(workdir), *config_flags(shards, policy, **overrides), *extra,
    ]  # fmt: skip


def run(
    cmd: list[str], env: dict[str, str] | None = None, timeout: float = 600
) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        cmd,
        cwd=REPO,
        env={**os.environ, "WANDB_MODE": "disabled", **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, (
        f"{' '.join(cmd)}\n--- stdout\n{proc.stdout[-3000:]}\n--- stderr\n{proc.stderr[-5000:]}"
    )
    return proc

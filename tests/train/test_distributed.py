"""Scale-out: 8 simulated devices with data+fsdp sharding, and two JAX processes on localhost."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
from conftest import REPO, run, train_cmd

HERE = Path(__file__).parent


def test_eight_devices_data_and_fsdp_give_the_single_device_losses(tiny_shards):
    proc = run(
        [sys.executable, str(HERE / "sharded_losses.py"), str(tiny_shards)],
        env={"XLA_FLAGS": "--xla_force_host_platform_device_count=8", "JAX_PLATFORMS": "cpu"},
    )
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    one, sharded = res["one_device"], res["data2_fsdp4"]
    assert sharded["devices"] == 8 and one["devices"] == 1
    assert sharded["sharded_leaves"] > 10  # parameters really are split over the fsdp axis
    np.testing.assert_allclose(sharded["losses"], one["losses"], rtol=2e-5)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_on_localhost_train_like_one_process_with_two_devices(tmp_path, tiny_shards):
    # deterministic given the set of samples in each global batch (no VAE noise, no dropout), so the
    # per-process interleaving of the batch does not change the loss
    overrides = {"policy.config.use_vae": False, "num_steps": 3, "batch_size": 4, "checkpoint.every": 3}
    single = tmp_path / "single"
    run(
        train_cmd(single, tiny_shards, **overrides),
        env={"XLA_FLAGS": "--xla_force_host_platform_device_count=2"},
    )
    port = _free_port()
    work = tmp_path / "multi"
    env = {**os.environ, "WANDB_MODE": "disabled", "JAX_PLATFORMS": "cpu"}
    procs = [
        subprocess.Popen(
            train_cmd(
                work,
                tiny_shards,
                f"--coordinator_address=127.0.0.1:{port}",
                "--num_processes=2",
                f"--process_id={i}",
                **overrides,
            ),
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in range(2)
    ]
    outs = [p.communicate(timeout=600)[0] for p in procs]
    for p, out in zip(procs, outs, strict=True):
        assert p.returncode == 0, out[-5000:]
    want = [json.loads(line)["loss"] for line in (single / "metrics.jsonl").read_text().splitlines()]
    got = [json.loads(line)["loss"] for line in (work / "metrics.jsonl").read_text().splitlines()]
    np.testing.assert_allclose(got, want, rtol=1e-5)
    # each process saved its own data-iterator state next to the shared model checkpoint
    assert {p.name for p in (work / "checkpoints" / "3" / "data").iterdir()} >= {
        "process_0-of-2.json",
        "process_1-of-2.json",
    }


def test_smolvla_on_the_fsdp_axis(tiny_shards, shared_dir):
    """configs/smolvla_so101_sim.py splits smolvla_base's parameters, buffers and optimizer state over
    8 devices (only the trainable expert has AdamW state), and a tiny SmolVLA trains on an fsdp=8 mesh
    with the single device's losses."""
    vlm = shared_dir / "fixtures/parity/smolvla_so101_tiny/vlm"
    proc = run(
        [sys.executable, str(HERE / "sharded_smolvla.py"), str(tiny_shards), str(vlm)],
        env={"XLA_FLAGS": "--xla_force_host_platform_device_count=8", "JAX_PLATFORMS": "cpu"},
    )
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    full = res["full_size"]
    assert full["devices"] == 8 and full["fsdp"] == 8
    # smolvla_base is 450.0M with the lm_head SmolVLA never uses (49280 x 960), which is not built;
    # the frozen state also holds the normalizer's mean/std of state and action (4 x 6)
    assert full["trainable"] + full["frozen"] == 450_046_176 - 49280 * 960 + 4 * 6
    assert 95e6 < full["trainable"] < 105e6  # train_expert_only: ~100M (the expert), the VLM frozen
    assert full["optimizer_floats"] == 2 * full["trainable"]  # AdamW's mu and nu, trainable leaves only
    assert full["whole_large_leaves"] == []
    assert full["per_device_bytes"] < 0.13 * full["state_bytes"]  # ~1/8 each (small leaves replicated)
    assert "bfloat16" in full["frozen_dtypes"]  # the frozen VLM is held in bf16 (precision="bfloat16")
    tiny = res["tiny"]
    # the tiny model has few leaves above the 16k-element fsdp threshold (its embeddings are)
    assert tiny["fsdp8"]["devices"] == 8 and tiny["fsdp8"]["sharded_leaves"] >= 1
    np.testing.assert_allclose(tiny["fsdp8"]["losses"], tiny["one_device"]["losses"], rtol=2e-5)

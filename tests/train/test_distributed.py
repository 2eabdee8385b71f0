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

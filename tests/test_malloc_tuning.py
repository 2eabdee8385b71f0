"""The processes that run XLA on the CPU reuse freed memory instead of faulting it in on every call.

Each case runs a fresh interpreter (the settings must precede XLA's threads) that imports a jrobot
module the way an entry point does, then counts the minor page faults of a jitted call whose 64 MB
matmul result lives only inside the call. With glibc's defaults that buffer is mapped afresh and
faulted in on every call; with `jrobot.malloc_tuning` applied, the second call onwards faults nothing.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TEMP_PAGES = (2048 * 8192 * 4) // 4096  # the (2048, 8192) float32 matmul result, in 4 KiB pages

PROBE = """
import json, resource, sys
import importlib
importlib.import_module(sys.argv[1])
from jrobot import malloc_tuning
import jax, jax.numpy as jnp
x = jnp.ones((2048, 1024), jnp.float32)
w = jnp.ones((1024, 8192), jnp.float32)
f = jax.jit(lambda x, w: jnp.sum(jnp.tanh(x @ w), axis=0))
for _ in range(3):
    f(x, w).block_until_ready()
r0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    f(x, w).block_until_ready()
faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - r0) / 10
print(json.dumps({"applied": malloc_tuning.keep_freed_memory(), "faults_per_call": faults}))
"""

pytestmark = pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc malloc only"
)


def probe(module: str, switch: str | None) -> dict:
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    env.pop("JROBOT_MALLOC_TUNING", None)
    if switch is not None:
        env["JROBOT_MALLOC_TUNING"] = switch
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, module], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("module", ["jrobot.runtime.policy", "jrobot.train.trainer"])
def test_xla_processes_reuse_freed_memory(module):
    out = probe(module, None)
    assert out["applied"] is True
    assert out["faults_per_call"] < 0.01 * TEMP_PAGES, out


def test_switched_off_keeps_glibc_defaults_which_fault_every_call():
    out = probe("jrobot.runtime.policy", "0")
    assert out["applied"] is False
    # the cost the tuning removes: a large share of the buffer faulted in again on every call
    assert out["faults_per_call"] > 0.25 * TEMP_PAGES, out

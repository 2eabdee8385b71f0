"""The commands that compile keep XLA's programs on disk: a second process loads what the first compiled.

Each case runs fresh interpreters (the cache is set up once per process, before its first compile) that
import a jrobot package the way an entry point does, compile, and report JAX's own cache events. The
test session's cache (conftest) is taken out of their environment, so what they see is the package's
doing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from jrobot.compile_cache import ENV_DIR, host_cpu_key

REPO = Path(__file__).resolve().parents[1]

PROBE = """
import importlib, json, sys
importlib.import_module(sys.argv[1])
import jax, jax.numpy as jnp
from jax import monitoring
events = []
monitoring.register_event_listener(lambda name, **kw: events.append(name))
def f(x):
    for i in range(8):
        x = jnp.tanh(x @ x.T + i)
    return x.sum()
value = float(jax.jit(f)(jnp.linspace(0.0, 1.0, 256).reshape(16, 16)))
print(json.dumps({"dir": jax.config.jax_compilation_cache_dir, "value": value,
                  "max_size": jax.config.jax_compilation_cache_max_size,
                  "hits": events.count("/jax/compilation_cache/cache_hits"),
                  "misses": events.count("/jax/compilation_cache/cache_misses")}))
"""


def clean_env(**update: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JAX_COMPILATION_CACHE", ENV_DIR))}
    # every compile is stored, so a small program shows the behaviour of a large one
    return {**env, "JAX_PLATFORMS": "cpu", "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0", **update}


def probe(module: str, env_update: dict[str, str], script: str = PROBE, *args: str) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", script, module, *args],
        cwd=REPO,
        env=clean_env(**env_update),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return {**json.loads(proc.stdout.strip().splitlines()[-1]), "stderr": proc.stderr}


@pytest.mark.parametrize("module", ["jrobot.runtime.policy", "jrobot.train.trainer"])
def test_second_process_loads_what_the_first_compiled(module, tmp_path):
    env = {ENV_DIR: str(tmp_path / "xla")}
    folder = tmp_path / "xla" / host_cpu_key()
    first = probe(module, env)
    assert first["dir"] == str(folder)
    assert first["misses"] >= 1 and first["hits"] == 0, first
    assert any(p.name.endswith("-cache") for p in folder.iterdir()), sorted(folder.iterdir())
    # bounded, which also makes JAX lock the folder around each read and write
    assert 0 < first["max_size"] < 2**40
    second = probe(module, env)
    assert second["hits"] >= 1 and second["misses"] == 0, second
    assert second["value"] == first["value"]


def test_default_folder_is_under_the_user_cache(tmp_path):
    out = probe("jrobot.runtime.policy", {"XDG_CACHE_HOME": str(tmp_path)})
    assert out["dir"] == str(tmp_path / "jrobot" / "xla" / host_cpu_key())


@pytest.mark.parametrize("switch", ["0", "off", "false", ""])
def test_switched_off(switch, tmp_path):
    out = probe("jrobot.runtime.policy", {ENV_DIR: switch, "XDG_CACHE_HOME": str(tmp_path)})
    assert out["dir"] is None and out["hits"] == 0
    assert not (tmp_path / "jrobot").exists()


def test_jax_setting_of_the_user_wins(tmp_path):
    mine = tmp_path / "mine"
    out = probe(
        "jrobot.train.trainer",
        {"JAX_COMPILATION_CACHE_DIR": str(mine), ENV_DIR: str(tmp_path / "ours")},
    )
    assert out["dir"] == str(mine)
    assert any(p.name.endswith("-cache") for p in mine.iterdir())
    assert not (tmp_path / "ours").exists()


def test_unwritable_folder_warns_and_runs_without_cache(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    out = probe("jrobot.runtime.policy", {ENV_DIR: str(blocker)})
    assert out["dir"] is None
    assert out["value"] == pytest.approx(probe("jrobot.runtime.policy", {ENV_DIR: "0"})["value"])
    assert f"cannot write {blocker / host_cpu_key()}" in out["stderr"]
    assert ENV_DIR in out["stderr"]


def test_host_key_names_the_architecture_and_is_stable():
    import platform

    key = host_cpu_key()
    arch, digest = key.rsplit("-", 1)
    assert arch == platform.machine()
    assert len(digest) == 12 and int(digest, 16) >= 0
    assert host_cpu_key() == key


BUNDLE_PROBE = """
import json, sys
import numpy as np
import jax
from jax import monitoring
events = []
monitoring.register_event_listener(lambda name, **kw: events.append(name))
from jrobot.runtime.policy import BundlePolicy
policy = BundlePolicy(sys.argv[2])
obs = dict(np.load(sys.argv[3]))
actions = policy.predict(obs)
np.save(sys.argv[4], np.asarray(actions))
print(json.dumps({"hits": events.count("/jax/compilation_cache/cache_hits"),
                  "misses": events.count("/jax/compilation_cache/cache_misses")}))
"""


def test_bundle_loaded_from_the_cache_gives_the_same_actions(tmp_path, shared_dir):
    """`jrobot.run`'s path: the parity ACT (2 cameras 96x128) exported, then two processes predict."""
    bundle = tmp_path / "act"
    checkpoint = shared_dir / "fixtures" / "parity" / "act_so101_tiny" / "pretrained_model"
    subprocess.run(
        [sys.executable, "-m", "jrobot.export", "--from-lerobot", str(checkpoint), "--out", str(bundle)],
        check=True, capture_output=True, text=True, cwd=REPO, env=clean_env(**{ENV_DIR: "0"}),
    )  # fmt: skip
    rng = np.random.default_rng(0)
    obs = {"observation.state": rng.uniform(-30, 30, (1, 6)).astype(np.float32)}
    for camera in ("observation.images.front", "observation.images.wrist"):
        obs[camera] = rng.integers(0, 256, (1, 96, 128, 3), dtype=np.uint8)
    np.savez(tmp_path / "obs.npz", **obs)
    env = {ENV_DIR: str(tmp_path / "xla")}
    runs = []
    for i in range(2):
        out = probe(
            "json", env, BUNDLE_PROBE, str(bundle), str(tmp_path / "obs.npz"), str(tmp_path / f"{i}.npy")
        )
        runs.append(out)
    assert runs[0]["misses"] >= 1 and runs[0]["hits"] == 0, runs[0]
    assert runs[1]["hits"] >= 1 and runs[1]["misses"] == 0, runs[1]
    np.testing.assert_array_equal(np.load(tmp_path / "0.npy"), np.load(tmp_path / "1.npy"))

"""Offscreen rendering: both cameras produce real images; the GL platform is chosen without help."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from jrobot.sim.simulator import SO101Sim


def test_both_cameras_render_non_trivial_distinct_images():
    sim = SO101Sim("pick_place", image_size=(96, 128))
    sim.reset(seed=1)
    images = sim.images()
    assert set(images) == {"front", "wrist"}
    for cam, img in images.items():
        assert img.shape == (96, 128, 3) and img.dtype == np.uint8, cam
        assert img.std() > 20, f"{cam} image is nearly uniform"
        assert len(np.unique(img.reshape(-1, 3), axis=0)) > 15, cam
    assert np.abs(images["front"].astype(int) - images["wrist"].astype(int)).mean() > 10
    # The front camera sees the red cube and the blue bin; the wrist camera sees the yellow jaws.
    r, g, b = (images["front"][..., i].astype(int) for i in range(3))
    assert ((r > 120) & (g < 60) & (b < 60)).sum() >= 10, "no red cube pixels in the front view"
    assert ((b > 120) & (r < 80)).sum() >= 100, "no blue bin pixels in the front view"
    r, g, b = (images["wrist"][..., i].astype(int) for i in range(3))
    assert ((r > 80) & (g > 60) & (b < 40)).sum() >= 100, "no yellow jaw pixels in the wrist view"
    sim.close()


def test_render_follows_the_state_and_other_sizes():
    sim = SO101Sim("pick_place", image_size=(48, 64))
    sim.reset(seed=2)
    before = sim.render("wrist")
    target = sim.joint_positions()
    target[0] += 30.0
    for _ in range(20):
        sim.set_joint_targets(target)
        sim.step()
    after = sim.render("wrist")
    assert before.shape == (48, 64, 3)
    assert np.abs(before.astype(int) - after.astype(int)).mean() > 5
    with pytest.raises(ValueError, match="unknown camera 'top'"):
        sim.renderer.render(sim.data, "top")
    sim.close()


_SNIPPET = """
import numpy as np
from jrobot.sim import gl
from jrobot.sim.simulator import SO101Sim
sim = SO101Sim("pick_place", image_size=(32, 32))
img = sim.render("front")
print(gl.gl_backend(), int(img.std() > 10))
"""


def _run(env: dict[str, str]) -> str:
    out = subprocess.run(
        [sys.executable, "-c", _SNIPPET], env=env, capture_output=True, text=True, timeout=120, check=True
    )
    return out.stdout.strip().splitlines()[-1]


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("MUJOCO_GL", "PYOPENGL_PLATFORM")}
    return env


def test_user_mujoco_gl_is_respected():
    env = _clean_env()
    env["MUJOCO_GL"] = "osmesa"
    assert _run(env) == "osmesa 1"


def test_falls_back_to_osmesa_when_egl_does_not_work():
    env = _clean_env()
    # libglvnd finds no EGL vendor library: EGL cannot initialise, as on a machine without drivers.
    env["__EGL_VENDOR_LIBRARY_FILENAMES"] = "/nonexistent/egl_vendor.json"
    assert _run(env) == "osmesa 1"


def test_disabled_rendering_is_a_clear_error(monkeypatch):
    from jrobot.sim import gl

    monkeypatch.setenv("MUJOCO_GL", "disable")
    gl.gl_backend.cache_clear()
    try:
        with pytest.raises(RuntimeError, match="rendering is disabled by MUJOCO_GL='disable'"):
            SO101Sim("reach", image_size=(16, 16)).render("front")
    finally:
        monkeypatch.undo()
        gl.gl_backend.cache_clear()

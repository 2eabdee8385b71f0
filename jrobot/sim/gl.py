"""Which OpenGL platform offscreen rendering uses: EGL where it works, else OSMesa.

MuJoCo's Python package binds its GL context class when `mujoco` is first imported, from the
`MUJOCO_GL` environment variable, and PyOpenGL binds its platform when `OpenGL` is first imported.
A failed EGL attempt inside this process would leave PyOpenGL bound to EGL and make an OSMesa fallback
impossible, so the EGL check runs in a short-lived subprocess, once per process tree: the result is
written back to `MUJOCO_GL` so that child processes (dataloader workers, pytest-xdist workers started
later) skip the probe. A `MUJOCO_GL` set by the user is always respected.

`jrobot.sim.render.OffscreenRenderer` asks `gl_context_class()` for the context class itself, so the
choice does not depend on when `mujoco` was imported.
"""

from __future__ import annotations

import functools
import os
import platform
import subprocess
import sys
from typing import Any

# Mesa's on-disk shader cache (software GL: llvmpipe) writes from a thread of its own that, on a
# loaded machine, kept a process whose main thread had already exited from being reaped for up to
# ~10 s (measured: Ctrl-C of `jrobot.record --robot.type=sim` with 12 busy processes on 2 cores took
# 1-12 s with the cache, 0.4-0.9 s without). MuJoCo compiles a handful of small shaders, so the
# cache saves next to nothing. Set before any GL library loads; a user's own setting wins.
os.environ.setdefault("MESA_SHADER_CACHE_DISABLE", "true")

_PROBE = r"""
import os, sys
import mujoco
from mujoco.{module} import GLContext
ctx = GLContext(16, 16)
ctx.make_current()
m = mujoco.MjModel.from_xml_string(
    '<mujoco><visual><global offwidth="16" offheight="16"/></visual>'
    '<worldbody><light pos="0 0 1"/><geom type="sphere" size=".1"/></worldbody></mujoco>')
d = mujoco.MjData(m)
mujoco.mj_forward(m, d)
con = mujoco.MjrContext(m, mujoco.mjtFontScale.mjFONTSCALE_150)
mujoco.mjr_setBuffer(mujoco.mjtFramebuffer.mjFB_OFFSCREEN, con)
scn = mujoco.MjvScene(m, maxgeom=10)
cam = mujoco.MjvCamera()
cam.lookat[:] = 0; cam.distance = 1.0
mujoco.mjv_updateScene(m, d, mujoco.MjvOption(), None, cam, mujoco.mjtCatBit.mjCAT_ALL, scn)
rect = mujoco.MjrRect(0, 0, 16, 16)
mujoco.mjr_render(rect, scn, con)
import numpy as np
rgb = np.zeros((16, 16, 3), np.uint8)
mujoco.mjr_readPixels(rgb, None, rect, con)
sys.exit(0 if rgb.any() else 3)
"""

# MUJOCO_GL value -> module under `mujoco` that provides GLContext.
_MODULES = {"egl": "egl", "osmesa": "osmesa", "glfw": "glfw", "glx": "glfw", "cgl": "cgl"}


def probe(backend: str, timeout_s: float = 60.0) -> bool:
    """True when `backend` ("egl" or "osmesa") can create a context and render a frame.

    Runs in a subprocess because a failing GL platform can poison the process that tried it.
    """
    module = _MODULES[backend]
    env = dict(os.environ, MUJOCO_GL=backend, PYOPENGL_PLATFORM=backend if backend != "glfw" else "")
    try:
        r = subprocess.run(
            [sys.executable, "-c", _PROBE.replace("{module}", module)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=timeout_s,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return r.returncode == 0


@functools.cache
def gl_backend() -> str:
    """The MUJOCO_GL value offscreen rendering uses in this process (decided once, then cached).

    Order: the user's `MUJOCO_GL`; on macOS and Windows the platform default; on Linux EGL when the
    probe renders a frame, else OSMesa. The decision is exported as `MUJOCO_GL` for child processes.
    """
    user = os.environ.get("MUJOCO_GL", "").strip().lower()
    if user:
        return user
    system = platform.system()
    if system == "Darwin":
        return "cgl"
    if system == "Windows":
        return "wgl"
    choice = "egl" if probe("egl") else "osmesa"
    os.environ["MUJOCO_GL"] = choice
    return choice


def gl_context_class() -> Any:
    """The `GLContext` class for `gl_backend()`, imported from MuJoCo's own bindings.

    Raises a RuntimeError saying what to install when the chosen platform cannot be loaded.
    """
    backend = gl_backend()
    if backend in ("disable", "disabled", "off", "false", "0"):
        raise RuntimeError(f"rendering is disabled by MUJOCO_GL={os.environ.get('MUJOCO_GL')!r}")
    if backend == "wgl":
        from mujoco.glfw import GLContext  # Windows: MuJoCo uses GLFW

        return GLContext
    module = _MODULES.get(backend)
    if module is None:
        raise RuntimeError(f"unsupported MUJOCO_GL={backend!r}; use egl, osmesa or glfw")
    try:
        mod = __import__(f"mujoco.{module}", fromlist=["GLContext"])
        return mod.GLContext
    except (ImportError, AttributeError, OSError) as e:
        hint = {
            "osmesa": "install OSMesa (Debian/Ubuntu: apt-get install -y libosmesa6) or make EGL work "
            "(libegl1 plus a Mesa or NVIDIA EGL driver)",
            "egl": "install libegl1 and an EGL driver (libegl-mesa0 or the NVIDIA driver), or set MUJOCO_GL=osmesa",
        }.get(backend, "set MUJOCO_GL to egl or osmesa for offscreen rendering")
        raise RuntimeError(
            f"cannot load the {backend!r} OpenGL platform for MuJoCo rendering ({e}); {hint}"
        ) from e

"""Offscreen RGB rendering of a MuJoCo model's cameras, with one GL context for all of them.

`mujoco.Renderer` takes its GL platform from `MUJOCO_GL` as it was when `mujoco` was imported; this
renderer takes it from `jrobot.sim.gl` (EGL where it works, OSMesa otherwise, the user's `MUJOCO_GL`
first), so simulation code can import `mujoco` whenever it likes. One context renders every camera at
one resolution, which is what the environments need per step.
"""

from __future__ import annotations

import atexit
import contextlib
import weakref
from typing import Any

import mujoco
import numpy as np

from jrobot.sim.gl import gl_backend, gl_context_class

# Renderers still open at interpreter exit are closed while the GL bindings are still usable (freeing
# an OSMesa context during module teardown prints errors). The hook is registered after MuJoCo's GL
# module is imported, so that it runs before that module's own exit hook (atexit is last-in, first-out)
# terminates the EGL display.
_LIVE: weakref.WeakSet[OffscreenRenderer] = weakref.WeakSet()
_hook_registered = False


def _close_all() -> None:
    for r in list(_LIVE):
        with contextlib.suppress(Exception):
            r.close()


def _register_exit_hook() -> None:
    global _hook_registered
    if not _hook_registered:
        atexit.register(_close_all)
        _hook_registered = True


class OffscreenRenderer:
    """Renders named cameras of `model` to (height, width, 3) uint8 RGB arrays.

    The GL context is made current before each render, so one renderer per thread is safe; several
    renderers in one thread are too. Call `close()` (or use it as a context manager) to free the GL
    resources early; they are also freed when the object is garbage-collected.
    """

    def __init__(self, model: mujoco.MjModel, height: int, width: int, *, max_geom: int = 2000) -> None:
        if height <= 0 or width <= 0:
            raise ValueError(f"image size must be positive, got {height}x{width}")
        self.height, self.width = int(height), int(width)
        self._model = model
        # The offscreen framebuffer is sized from the model; grow it if the request is larger.
        model.vis.global_.offwidth = max(model.vis.global_.offwidth, self.width)
        model.vis.global_.offheight = max(model.vis.global_.offheight, self.height)
        gl_cls = gl_context_class()
        _register_exit_hook()
        try:
            self._gl: Any = gl_cls(self.width, self.height)
        except Exception as e:
            raise RuntimeError(
                f"could not create a {gl_backend()!r} OpenGL context for offscreen rendering ({e}); "
                "set MUJOCO_GL=egl or MUJOCO_GL=osmesa (apt-get install -y libosmesa6)"
            ) from e
        self._gl.make_current()
        self._con = mujoco.MjrContext(model, mujoco.mjtFontScale.mjFONTSCALE_150)
        mujoco.mjr_setBuffer(mujoco.mjtFramebuffer.mjFB_OFFSCREEN, self._con)
        self._scene = mujoco.MjvScene(model, maxgeom=max_geom)
        self._opt = mujoco.MjvOption()
        self._cam = mujoco.MjvCamera()
        self._cam.type = mujoco.mjtCamera.mjCAMERA_FIXED
        self._rect = mujoco.MjrRect(0, 0, self.width, self.height)
        self._camera_ids: dict[str, int] = {}
        _LIVE.add(self)

    def camera_id(self, camera: str) -> int:
        if camera not in self._camera_ids:
            cid = mujoco.mj_name2id(self._model, mujoco.mjtObj.mjOBJ_CAMERA, camera)
            if cid < 0:
                names = [self._model.camera(i).name for i in range(self._model.ncam)]
                raise ValueError(f"unknown camera {camera!r}; the model has {names}")
            self._camera_ids[camera] = cid
        return self._camera_ids[camera]

    def render(self, data: mujoco.MjData, camera: str, out: np.ndarray | None = None) -> np.ndarray:
        """The image camera `camera` sees in `data` (kinematics must be current, e.g. after mj_step)."""
        if self._con is None:
            raise RuntimeError("renderer is closed")
        self._cam.fixedcamid = self.camera_id(camera)
        self._gl.make_current()
        mujoco.mjv_updateScene(
            self._model, data, self._opt, None, self._cam, mujoco.mjtCatBit.mjCAT_ALL, self._scene
        )
        mujoco.mjr_render(self._rect, self._scene, self._con)
        if out is None:
            out = np.empty((self.height, self.width, 3), dtype=np.uint8)
        mujoco.mjr_readPixels(out, None, self._rect, self._con)
        # OpenGL's origin is the bottom-left corner.
        return np.ascontiguousarray(out[::-1])

    def close(self) -> None:
        if self._con is not None:
            self._gl.make_current()
            self._con.free()
            self._con = None
        if self._gl is not None:
            self._gl.free()
            self._gl = None

    def __enter__(self) -> OffscreenRenderer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        # not contextlib.suppress: at interpreter exit the module's globals may already be None
        try:  # noqa: SIM105
            self.close()
        except Exception:
            pass

"""OpenCV cameras with one capture thread each, LeRobot's `OpenCVCamera` contract, sturdier.

Same configuration and read API as LeRobot 0.4.4 (`index_or_path`, `fps`, `width`, `height` of the
*output* image after rotation, `color_mode`, `rotation` in {0, 90, 180, -90}, `warmup_s`, `fourcc`,
`backend`; `read()`, `async_read(timeout_ms)`, `read_latest(max_age_ms)`), with these differences:

- a dead capture thread is reported with the error that killed it, not just "thread not running";
- `read_latest_with_timestamp()` returns the capture time LeRobot's docstring promises but never gives;
- counters (`frames`, `failures`) for diagnosing dropped frames;
- a video file or an image-sequence pattern (`frames/%04d.png`) works as a camera: it is replayed at
  the configured fps and looped, so tests and demos run on real decoded frames without a device.
  Its size is checked against width/height (a file cannot be resized by the driver).

Frames are HxWx3 uint8, RGB unless `color_mode="bgr"`.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import platform
import threading
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from jrobot.robot import DeviceAlreadyConnectedError, DeviceNotConnectedError

logger = logging.getLogger(__name__)

MAX_OPENCV_INDEX = 60
MAX_CONSECUTIVE_FAILURES = 12  # LeRobot's thread gives up on the 12th failure in a row
_ROTATIONS: dict[int, int | None] = {
    0: None,
    90: cv2.ROTATE_90_CLOCKWISE,
    180: cv2.ROTATE_180,
    -90: cv2.ROTATE_90_COUNTERCLOCKWISE,
    270: cv2.ROTATE_90_COUNTERCLOCKWISE,
}
# LeRobot's backends, plus OpenCV's IMAGES (2000): an image sequence read frame by frame, unscaled.
BACKENDS = {
    0: "ANY",
    200: "V4L2",
    700: "DSHOW",
    800: "PVAPI",
    1000: "ANDROID",
    1200: "AVFOUNDATION",
    1400: "MSMF",
    2000: "IMAGES",
}


@dataclasses.dataclass
class OpenCVCameraConfig:
    """LeRobot's `OpenCVCameraConfig` (registered type "opencv")."""

    index_or_path: int | str | Path
    fps: float | None = None
    width: int | None = None
    height: int | None = None
    color_mode: str = "rgb"
    rotation: int = 0
    warmup_s: float = 1
    fourcc: str | None = None
    backend: int = 0
    type: str = "opencv"

    def __post_init__(self) -> None:
        if self.type != "opencv":
            raise ValueError(f"camera type must be 'opencv', got {self.type!r}")
        if isinstance(self.index_or_path, str) and self.index_or_path.isdigit():
            self.index_or_path = int(self.index_or_path)
        self.color_mode = str(getattr(self.color_mode, "value", self.color_mode)).lower()
        if self.color_mode not in ("rgb", "bgr"):
            raise ValueError(f"color_mode must be 'rgb' or 'bgr', got {self.color_mode!r}")
        self.rotation = int(self.rotation)
        if self.rotation not in _ROTATIONS:
            raise ValueError(f"rotation must be one of 0, 90, 180, -90, got {self.rotation}")
        if self.fourcc is not None and (not isinstance(self.fourcc, str) or len(self.fourcc) != 4):
            raise ValueError(f"fourcc must be a 4-character string such as 'MJPG', got {self.fourcc!r}")
        if int(self.backend) not in BACKENDS:
            raise ValueError(f"backend must be one of {sorted(BACKENDS)}, got {self.backend}")
        for key in ("width", "height"):
            v = getattr(self, key)
            if v is not None and (isinstance(v, bool) or int(v) != v or v <= 0):
                raise ValueError(f"{key} must be a positive integer, got {v!r}")
        if self.fps is not None and not (math.isfinite(self.fps) and self.fps > 0):
            raise ValueError(f"fps must be positive, got {self.fps!r}")
        if self.warmup_s < 0:
            raise ValueError(f"warmup_s must be >= 0, got {self.warmup_s}")

    @property
    def is_device(self) -> bool:
        """A camera device (index or /dev path) rather than a file or image-sequence pattern."""
        src = self.index_or_path
        if isinstance(src, int):
            return True
        s = str(src)
        return s.startswith("/dev/") or (os.path.exists(s) and not os.path.isfile(s))


class OpenCVCamera:
    """One camera, read in a background thread; see the module docstring."""

    def __init__(self, config: OpenCVCameraConfig) -> None:
        self.config = config
        self.index_or_path = config.index_or_path
        self.fps = config.fps
        self.width = config.width
        self.height = config.height
        self.color_mode = config.color_mode
        self.rotation = _ROTATIONS[config.rotation]
        self.capture_width: int | None = None
        self.capture_height: int | None = None
        if self.width and self.height:
            self.capture_width, self.capture_height = self._capture_size(self.width, self.height)
        self.videocapture: cv2.VideoCapture | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._new_frame = threading.Event()
        self._frame: np.ndarray | None = None
        self._timestamp: float | None = None
        self._thread_error: BaseException | None = None
        self.frames = 0
        self.failures = 0

    def __str__(self) -> str:
        return f"OpenCVCamera({self.index_or_path})"

    def _capture_size(self, out_w: int, out_h: int) -> tuple[int, int]:
        if self.rotation in (cv2.ROTATE_90_CLOCKWISE, cv2.ROTATE_90_COUNTERCLOCKWISE):
            return out_h, out_w
        return out_w, out_h

    @property
    def is_connected(self) -> bool:
        return self.videocapture is not None and self.videocapture.isOpened()

    # ------------------------------------------------------------ connect
    def connect(self, warmup: bool = True) -> None:
        """Open, apply and verify fourcc/size/fps, start the capture thread, then warm up."""
        if self.is_connected:
            raise DeviceAlreadyConnectedError(f"{self} is already connected")
        cv2.setNumThreads(1)
        src = self.index_or_path
        cap = cv2.VideoCapture(src if isinstance(src, int) else str(src), int(self.config.backend))
        if not cap.isOpened():
            cap.release()
            raise ConnectionError(
                f"failed to open {self}. Run `python -m jrobot.find_cameras` to list the cameras on this machine."
            )
        self.videocapture = cap
        try:
            self._configure()
        except BaseException:
            cap.release()
            self.videocapture = None
            raise
        self._start_thread()
        deadline = time.perf_counter() + max(float(self.config.warmup_s), 0.0) + 5.0
        warm_until = time.perf_counter() + (float(self.config.warmup_s) if warmup else 0.0)
        while True:
            with self._lock:
                have = self._frame is not None
            now = time.perf_counter()
            if have and now >= warm_until:
                break
            if self._thread_error is not None or now > deadline:
                self.disconnect()
                raise ConnectionError(f"{self} failed to capture frames during warmup: {self._thread_error}")
            time.sleep(0.01)
        logger.info("%s connected (%sx%s @ %s fps)", self, self.width, self.height, self.fps)

    def _configure(self) -> None:
        cap = self.videocapture
        assert cap is not None
        device = self.config.is_device
        if self.config.fourcc is not None:
            code = cv2.VideoWriter_fourcc(*self.config.fourcc)
            ok = cap.set(cv2.CAP_PROP_FOURCC, code)
            actual = _fourcc_text(cap.get(cv2.CAP_PROP_FOURCC))
            if device and (not ok or actual != self.config.fourcc):
                logger.warning(
                    "%s: could not set fourcc %s (actual %r); using the default format",
                    self,
                    self.config.fourcc,
                    actual,
                )
        default_w = round(cap.get(cv2.CAP_PROP_FRAME_WIDTH))
        default_h = round(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        if self.width is None or self.height is None:
            self.capture_width, self.capture_height = default_w, default_h
            rotated = self.rotation in (cv2.ROTATE_90_CLOCKWISE, cv2.ROTATE_90_COUNTERCLOCKWISE)
            self.width, self.height = (default_h, default_w) if rotated else (default_w, default_h)
        elif device:
            ok_w = cap.set(cv2.CAP_PROP_FRAME_WIDTH, float(self.capture_width))
            ok_h = cap.set(cv2.CAP_PROP_FRAME_HEIGHT, float(self.capture_height))
            got_w = round(cap.get(cv2.CAP_PROP_FRAME_WIDTH))
            got_h = round(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
            if not ok_w or got_w != self.capture_width:
                raise RuntimeError(
                    f"{self} failed to set capture width {self.capture_width} (actual {got_w})"
                )
            if not ok_h or got_h != self.capture_height:
                raise RuntimeError(
                    f"{self} failed to set capture height {self.capture_height} (actual {got_h})"
                )
        elif (default_w, default_h) != (self.capture_width, self.capture_height):
            raise RuntimeError(
                f"{self}: the file's frames are {default_w}x{default_h} but {self.capture_width}x{self.capture_height} "
                f"(before rotation) was configured"
            )
        source_fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        if self.fps is None:
            self.fps = source_fps if source_fps > 0 else 30.0
        elif device:
            ok = cap.set(cv2.CAP_PROP_FPS, float(self.fps))
            actual = cap.get(cv2.CAP_PROP_FPS)
            if not ok or not math.isclose(self.fps, actual, rel_tol=1e-3):
                raise RuntimeError(f"{self} failed to set fps={self.fps} (actual {actual})")
        elif source_fps > 0 and not math.isclose(self.fps, source_fps, rel_tol=1e-3):
            logger.info("%s: replaying a %.3g fps file at %.3g fps", self, source_fps, self.fps)

    # ------------------------------------------------------------ capture thread
    def _start_thread(self) -> None:
        self._stop.clear()
        self._thread_error = None
        self._thread = threading.Thread(target=self._read_loop, name=f"{self}-capture", daemon=True)
        self._thread.start()

    def _postprocess(self, image: np.ndarray) -> np.ndarray:
        if image.ndim != 3 or image.shape[2] != 3:
            raise RuntimeError(f"{self} frame has shape {image.shape}, expected HxWx3")
        h, w = image.shape[:2]
        if (w, h) != (self.capture_width, self.capture_height):
            raise RuntimeError(
                f"{self} frame is {w}x{h}, expected {self.capture_width}x{self.capture_height} (capture size)"
            )
        if self.color_mode == "rgb":
            image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        if self.rotation is not None:
            image = cv2.rotate(image, self.rotation)
        return image

    def _read_loop(self) -> None:
        cap = self.videocapture
        assert cap is not None
        paced = not self.config.is_device
        period = 1.0 / float(self.fps or 30.0)
        next_t = time.perf_counter()
        consecutive = 0
        try:
            while not self._stop.is_set():
                if paced:
                    delay = next_t - time.perf_counter()
                    if delay > 0 and self._stop.wait(delay):
                        break
                    next_t = max(next_t + period, time.perf_counter() - period)
                ok, frame = cap.read()
                if not ok and paced:
                    cap.set(cv2.CAP_PROP_POS_FRAMES, 0)  # end of the file: loop
                    ok, frame = cap.read()
                try:
                    if not ok or frame is None:
                        raise RuntimeError(f"{self} read failed")
                    image = self._postprocess(frame)
                except RuntimeError as e:
                    consecutive += 1
                    self.failures += 1
                    if consecutive >= MAX_CONSECUTIVE_FAILURES:
                        raise RuntimeError(
                            f"{self}: {consecutive} consecutive read failures, last: {e}"
                        ) from e
                    logger.warning("%s: %s", self, e)
                    time.sleep(min(period, 0.05))
                    continue
                consecutive = 0
                now = time.perf_counter()
                with self._lock:
                    self._frame = image
                    self._timestamp = now
                    self.frames += 1
                self._new_frame.set()
        except BaseException as e:  # kept so every read API can report why the camera stopped
            self._thread_error = e
            logger.error("%s capture thread stopped: %s", self, e)

    def _check_thread(self) -> None:
        if not self.is_connected and self._thread is None:
            raise DeviceNotConnectedError(f"{self} is not connected")
        if self._thread is None or not self._thread.is_alive():
            cause = f": {self._thread_error}" if self._thread_error else ""
            raise RuntimeError(f"{self} capture thread is not running{cause}")

    # ------------------------------------------------------------ reading
    def async_read(self, timeout_ms: float = 200) -> np.ndarray:
        """Wait up to `timeout_ms` for a frame newer than the last one returned, and return it."""
        self._check_thread()
        if not self._new_frame.wait(timeout=timeout_ms / 1000.0):
            self._check_thread()
            raise TimeoutError(f"timed out waiting for a frame from {self} after {timeout_ms} ms")
        with self._lock:
            frame = self._frame
            self._new_frame.clear()
        if frame is None:
            raise RuntimeError(f"{self}: frame event set without a frame")
        return frame

    def read(self) -> np.ndarray:
        """Block for the next fresh frame (up to 10 s)."""
        self._check_thread()
        self._new_frame.clear()
        return self.async_read(timeout_ms=10_000)

    def read_latest_with_timestamp(self, max_age_ms: float = 500) -> tuple[np.ndarray, float]:
        """Newest frame and its `time.perf_counter()` capture time, without waiting.

        Raises TimeoutError if it is older than `max_age_ms` (a stalled camera) and RuntimeError if
        nothing was captured yet.
        """
        self._check_thread()
        with self._lock:
            frame, ts = self._frame, self._timestamp
        if frame is None or ts is None:
            raise RuntimeError(f"{self} has not captured any frame yet")
        age_ms = (time.perf_counter() - ts) * 1e3
        if age_ms > max_age_ms:
            raise TimeoutError(f"{self} latest frame is {age_ms:.1f} ms old (max {max_age_ms} ms)")
        return frame, ts

    def read_latest(self, max_age_ms: float = 500) -> np.ndarray:
        """Newest frame without waiting (LeRobot 0.4.4's `read_latest`)."""
        return self.read_latest_with_timestamp(max_age_ms)[0]

    def disconnect(self) -> None:
        """Stop the thread, release the capture, forget frames."""
        if self.videocapture is None and self._thread is None:
            raise DeviceNotConnectedError(f"{self} is not connected")
        self._stop.set()
        if self._thread is not None and self._thread.is_alive():
            self._thread.join(timeout=2.0)
        self._thread = None
        if self.videocapture is not None:
            self.videocapture.release()
            self.videocapture = None
        with self._lock:
            self._frame = None
            self._timestamp = None
        self._new_frame.clear()

    # ------------------------------------------------------------ discovery
    @staticmethod
    def find_cameras(targets: list[int | str] | None = None) -> list[dict[str, Any]]:
        """Cameras OpenCV can open: /dev/video* on Linux, indices 0..59 elsewhere (LeRobot's scan)."""
        if targets is None:
            if platform.system() == "Linux":
                targets = [str(p) for p in sorted(Path("/dev").glob("video*"), key=lambda p: p.name)]
            else:
                targets = list(range(MAX_OPENCV_INDEX))
        found = []
        for target in targets:
            cap = cv2.VideoCapture(target)
            if cap.isOpened():
                found.append(
                    {
                        "name": f"OpenCV Camera @ {target}",
                        "type": "OpenCV",
                        "id": target,
                        "backend_api": cap.getBackendName(),
                        "default_stream_profile": {
                            "format": cap.get(cv2.CAP_PROP_FORMAT),
                            "fourcc": _fourcc_text(cap.get(cv2.CAP_PROP_FOURCC)),
                            "width": int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)),
                            "height": int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)),
                            "fps": cap.get(cv2.CAP_PROP_FPS),
                        },
                    }
                )
            cap.release()
        return found


def _fourcc_text(code: float) -> str:
    n = int(code)
    return "".join(chr((n >> (8 * i)) & 0xFF) for i in range(4))

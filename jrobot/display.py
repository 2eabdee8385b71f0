"""Live view of what the arm sees and does, in rerun (as LeRobot's `--display_data=true`).

Every step logs each camera (`observation/images/<camera>`, JPEG-compressed above thumbnail size so a
remote viewer keeps up), each measured joint (`observation/state/<joint>`) and each commanded joint
(`action/<joint>`) against two timelines, `frame` and `time`, so tracking error reads straight off the
plots. A recording, a teleoperation or a dataset episode (`data_tools.view --rerun`) all log through
this one class. Where the view goes:

- spawn: the rerun viewer on this machine (installed with rerun-sdk: `rerun`);
- url: a viewer elsewhere, e.g. a laptop watching the robot's computer: `rerun+http://HOST:9876/proxy`
  (start it there with `rerun --serve-web` or just `rerun`);
- save: an `.rrd` file to open later with `rerun FILE.rrd`.

The control loop only hands each step to a background thread (a queue of a few steps): image
compression and the viewer's socket never delay a tick, and when the viewer falls behind, display
steps are dropped (counted in `dropped`), never control steps. rerun is the optional extra
`jrobot[viz]`. Nothing here imports jax.
"""

from __future__ import annotations

import dataclasses
import queue
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

THUMBNAIL_PIXELS = 96 * 128  # images up to this size go raw; larger ones as JPEG
QUEUE_STEPS = 4  # steps waiting for the display thread; beyond that, display steps are dropped


class DisplayError(RuntimeError):
    """The live view cannot start (rerun missing, the viewer unreachable); the message says which."""


@dataclasses.dataclass
class DisplayOptions:
    """The `--display_*` flags of the commands that drive an arm."""

    display_data: bool = False  # open the rerun viewer on this machine (and a live line in the terminal)
    display_url: str | None = None  # or stream to a rerun viewer elsewhere: rerun+http://HOST:9876/proxy
    display_save: Path | None = None  # or write an .rrd file (rerun FILE.rrd opens it)
    display_jpeg_quality: int = 75

    def __post_init__(self) -> None:
        if not 1 <= self.display_jpeg_quality <= 100:
            raise ValueError(f"display_jpeg_quality must be in 1..100, got {self.display_jpeg_quality}")

    @property
    def wanted(self) -> bool:
        return self.display_data or self.display_url is not None or self.display_save is not None

    def open(self, app_id: str) -> RerunDisplay | None:
        if not self.wanted:
            return None
        return RerunDisplay(
            app_id,
            save=self.display_save,
            url=self.display_url,
            spawn=self.display_data and self.display_url is None and self.display_save is None,
            jpeg_quality=self.display_jpeg_quality,
        )


class RerunDisplay:
    """One rerun recording; `log` a step, `close` at the end (a context manager too)."""

    def __init__(
        self,
        app_id: str,
        *,
        save: str | Path | None = None,
        url: str | None = None,
        spawn: bool = False,
        jpeg_quality: int = 75,
        block: bool = False,
    ) -> None:
        """`block`: wait for the display thread instead of dropping steps (playing back a dataset)."""
        if save is None and url is None and not spawn:
            raise ValueError("RerunDisplay needs one of save, url or spawn")
        try:
            import rerun as rr
        except ImportError:
            raise DisplayError("the live view needs rerun: pip install 'jrobot[viz]' (rerun-sdk)") from None
        self._rr = rr
        self.jpeg_quality = jpeg_quality
        self.rec = rr.RecordingStream(app_id)
        try:
            if save is not None:
                Path(save).parent.mkdir(parents=True, exist_ok=True)
                self.rec.save(str(save))
            elif url is not None:
                self.rec.connect_grpc(url)
            else:
                self.rec.spawn()
        except Exception as e:  # rerun raises its own kinds (no viewer binary, a bad URL)
            where = save or url or "a local viewer"
            raise DisplayError(f"the live view cannot start ({where}): {e}") from e
        self.dropped = 0
        self.logged = 0
        self._block = block
        self._queue: queue.Queue = queue.Queue(maxsize=QUEUE_STEPS)
        self._thread = threading.Thread(target=self._drain, name="jrobot-display", daemon=True)
        self._thread.start()

    def log(
        self, step: int, observation: Mapping[str, Any], action: Mapping[str, Any] | None, *, fps: float
    ) -> None:
        """One step: `observation` as a robot returns it (`"<joint>.pos"` numbers, camera images HWC
        uint8) and the action sent (`"<joint>.pos"` numbers). Returns at once; the display thread
        logs it, or drops it when it is behind."""
        self._put((step, dict(observation), dict(action or {}), fps, None))

    def log_chunk(self, step: int, chunk: np.ndarray, names: list[str], *, fps: float) -> None:
        """A policy's predicted action chunk (n, A) at `step`: one line per action dimension over the
        chunk's horizon (`policy/chunk/<name>`), replaced by each new chunk."""
        self._put((step, {}, {}, fps, (np.asarray(chunk, np.float64), list(names))))

    def _put(self, item: tuple) -> None:
        try:
            self._queue.put(item, block=self._block)
        except queue.Full:
            self.dropped += 1

    def summary(self) -> str:
        return f"live view: {self.logged} steps shown, {self.dropped} dropped (the viewer fell behind)"

    def _drain(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            try:
                self._log_now(*item)
                self.logged += 1
            except Exception:  # a viewer that went away must not take the control loop with it
                self.dropped += 1

    def _log_now(
        self,
        step: int,
        observation: Mapping[str, Any],
        action: Mapping[str, Any],
        fps: float,
        chunk: tuple[np.ndarray, list[str]] | None,
    ) -> None:
        rr, rec = self._rr, self.rec
        rec.set_time("frame", sequence=int(step))
        rec.set_time("time", duration=float(step) / float(fps))
        for key, value in observation.items():
            if isinstance(value, np.ndarray) and value.ndim == 3 and value.shape[-1] in (1, 3, 4):
                image = rr.Image(np.ascontiguousarray(value))
                if (
                    value.shape[0] * value.shape[1] > THUMBNAIL_PIXELS
                    and value.dtype == np.uint8
                    and value.shape[-1] == 3
                ):
                    image = image.compress(jpeg_quality=self.jpeg_quality)
                rec.log(f"observation/images/{_name(key)}", image)
            elif _is_number(value):
                rec.log(f"observation/state/{_name(key)}", rr.Scalars(float(value)))
        for key, value in action.items():
            if _is_number(value):
                rec.log(f"action/{_name(key)}", rr.Scalars(float(value)))
        if chunk is not None:
            values, names = chunk
            for j in range(values.shape[1]):
                name = _name(names[j]) if j < len(names) else str(j)
                rec.log(f"policy/chunk/{name}", rr.SeriesLines(), static=True)
                rec.log(
                    f"policy/chunk/{name}",
                    rr.LineStrips2D([np.stack([np.arange(len(values)), values[:, j]], 1)]),
                )

    def close(self) -> None:
        """Log what is queued, then close the recording (an .rrd file is complete after this)."""
        self._queue.put(None)
        self._thread.join(timeout=30)
        self.rec.flush()
        self.rec.disconnect()

    def __enter__(self) -> RerunDisplay:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _name(key: str) -> str:
    return key.removeprefix("observation.images.").removeprefix("observation.").removesuffix(".pos")


def _is_number(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int | float | np.integer | np.floating):
        return True
    return isinstance(value, np.ndarray) and value.size == 1 and value.dtype.kind in "iuf"

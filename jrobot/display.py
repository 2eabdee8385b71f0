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
Nothing here imports jax.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

THUMBNAIL_PIXELS = 96 * 128  # images up to this size go raw; larger ones as JPEG


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
    ) -> None:
        import rerun as rr

        self._rr = rr
        self.jpeg_quality = jpeg_quality
        self.rec = rr.RecordingStream(app_id)
        if save is not None:
            Path(save).parent.mkdir(parents=True, exist_ok=True)
            self.rec.save(str(save))
        elif url is not None:
            self.rec.connect_grpc(url)
        elif spawn:
            self.rec.spawn()
        else:
            raise ValueError("RerunDisplay needs one of save, url or spawn")

    def log(
        self, step: int, observation: Mapping[str, Any], action: Mapping[str, Any] | None, *, fps: float
    ) -> None:
        """One step: `observation` as a robot returns it (`"<joint>.pos"` numbers, camera images HWC
        uint8) and the action sent (`"<joint>.pos"` numbers)."""
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
        for key, value in (action or {}).items():
            if _is_number(value):
                rec.log(f"action/{_name(key)}", rr.Scalars(float(value)))

    def close(self) -> None:
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

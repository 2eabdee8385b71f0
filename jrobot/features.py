"""Feature specs shared by every layer: what a dataset column, a robot reading or a policy input is.

This module is the bottom of the import graph (numpy only), so the hardware, simulation, data and
policy code can all agree on names, dtypes and shapes without importing each other. The JSON form of
a `Feature` is exactly the entry LeRobot writes under `features` in `meta/info.json`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

# SO-100/SO-101 motors in bus order (LeRobot's names and ids 1..6).
SO101_MOTORS: tuple[str, ...] = (
    "shoulder_pan",
    "shoulder_lift",
    "elbow_flex",
    "wrist_flex",
    "wrist_roll",
    "gripper",
)
SO101_JOINT_KEYS: tuple[str, ...] = tuple(f"{m}.pos" for m in SO101_MOTORS)

STATE_KEY = "observation.state"
ACTION_KEY = "action"
IMAGE_PREFIX = "observation.images."

VISUAL_DTYPES = ("video", "image")
# Bounds on what a dataset may claim, checked before anything is allocated: 8K video fits with room,
# a lying header that asks for a gigapixel frame (or a terabyte state vector) does not.
MAX_IMAGE_SIDE = 16384
MAX_IMAGE_PIXELS = 8192 * 8192
MAX_VECTOR_ELEMENTS = 1 << 24
# Columns every LeRobot dataset carries after the user's features, in this order.
DEFAULT_FEATURE_NAMES: tuple[str, ...] = ("timestamp", "frame_index", "episode_index", "index", "task_index")


def folder_name_problem(name: object) -> str | None:
    """Why `name` cannot be one folder's name (None when it can). A camera's key names its video
    folder (`videos/<key>/...`), so a key from a stranger's dataset such as `a/../../x` would make
    the writer of a converted or edited copy write outside it."""
    if not isinstance(name, str) or not name:
        return f"{name!r} is not a non-empty string"
    if name in (".", "..") or any(c in name for c in "/\\\x00"):
        return f"{name!r} is not a plain folder name (no '/', '\\', NUL, '.' or '..')"
    if len(name.encode("utf-8", "surrogatepass")) > 255:
        return f"{name[:60]!r}... is longer than a folder name may be (255 bytes)"
    return None


@dataclasses.dataclass(frozen=True)
class Feature:
    """One feature as LeRobot describes it: dtype, shape and optional names/info.

    `dtype` is "video", "image", "string" or a numpy dtype name. Visual shapes are (H, W, C) unless
    the legacy `names` say channels come first. `info` holds the video stream description LeRobot
    stores after the first episode (codec, pix_fmt, ...); legacy datasets call it `video_info`.
    """

    dtype: str
    shape: tuple[int, ...]
    names: list[str] | dict[str, Any] | None = None
    info: dict[str, Any] | None = None
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)  # e.g. converted datasets' "fps"

    @property
    def is_visual(self) -> bool:
        return self.dtype in VISUAL_DTYPES

    @property
    def is_video(self) -> bool:
        return self.dtype == "video"

    @property
    def channels_first(self) -> bool:
        """LeRobot transposes to HWC only when `names[2]` is a channel name; CHW names mark CHW data."""
        names = self.flat_names
        if not self.is_visual or names is None or len(names) != 3:
            return False
        return names[0] in ("channel", "channels") and names[2] not in ("channel", "channels", "rgb")

    @property
    def hwc_shape(self) -> tuple[int, int, int]:
        if not self.is_visual:
            raise ValueError(f"feature with dtype {self.dtype!r} is not visual")
        if self.channels_first:
            c, h, w = self.shape
        else:
            h, w, c = self.shape
        return int(h), int(w), int(c)

    @property
    def flat_names(self) -> list[str] | None:
        """Names as a flat list, accepting the legacy `{"motors": [...]}` form."""
        if self.names is None:
            return None
        if isinstance(self.names, Mapping):
            values = list(self.names.values())
            if len(values) == 1 and isinstance(values[0], list | tuple):
                return [str(v) for v in values[0]]
            return [str(v) for v in values]
        return [str(v) for v in self.names]

    @property
    def numpy_dtype(self) -> np.dtype:
        if self.dtype in VISUAL_DTYPES:
            return np.dtype(np.uint8)
        if self.dtype == "string":
            return np.dtype(object)
        return np.dtype(self.dtype)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"dtype": self.dtype, "shape": list(self.shape), "names": self.names}
        if self.info is not None:
            out["info"] = self.info
        out.update(self.extra)
        return out

    @classmethod
    def from_json(cls, d: Mapping[str, Any], *, key: str = "?") -> Feature:
        try:
            dtype = str(d["dtype"])
            shape = tuple(int(s) for s in d["shape"])
        except (KeyError, TypeError, ValueError, OverflowError) as e:  # (OverflowError: int(inf))
            raise ValueError(
                f"feature {key!r}: needs 'dtype' and an integer 'shape' list, got {dict(d)!r}"
            ) from e
        info = d.get("info", d.get("video_info"))
        extra = {k: v for k, v in d.items() if k not in ("dtype", "shape", "names", "info", "video_info")}
        feature = cls(dtype=dtype, shape=shape, names=d.get("names"), info=info, extra=extra)
        feature.check_size(key)
        return feature

    def check_size(self, key: str = "?") -> None:
        """Refuse shapes no real feature has, so that a lying file cannot make a reader allocate them."""
        if any(s < 0 for s in self.shape):
            raise ValueError(f"feature {key!r}: negative size in shape {list(self.shape)}")
        if self.is_visual:
            if len(self.shape) != 3:
                raise ValueError(f"feature {key!r}: an image shape has 3 sizes, got {list(self.shape)}")
            h, w, _ = self.hwc_shape
            if not (0 < h <= MAX_IMAGE_SIDE and 0 < w <= MAX_IMAGE_SIDE and h * w <= MAX_IMAGE_PIXELS):
                raise ValueError(
                    f"feature {key!r}: image size {h}x{w} is beyond what a camera gives "
                    f"(at most {MAX_IMAGE_SIDE} a side and {MAX_IMAGE_PIXELS} pixels)"
                )
        elif math.prod(self.shape) > MAX_VECTOR_ELEMENTS:
            raise ValueError(
                f"feature {key!r}: shape {list(self.shape)} holds more than {MAX_VECTOR_ELEMENTS} values a frame"
            )


def default_features() -> dict[str, Feature]:
    """The five bookkeeping columns LeRobot appends to every dataset."""
    return {
        "timestamp": Feature("float32", (1,), None),
        "frame_index": Feature("int64", (1,), None),
        "episode_index": Feature("int64", (1,), None),
        "index": Feature("int64", (1,), None),
        "task_index": Feature("int64", (1,), None),
    }


def features_from_json(d: Mapping[str, Mapping[str, Any]]) -> dict[str, Feature]:
    return {k: Feature.from_json(v, key=k) for k, v in d.items()}


def features_to_json(features: Mapping[str, Feature]) -> dict[str, dict[str, Any]]:
    return {k: f.to_json() for k, f in features.items()}


def dataset_features_for_robot(
    observation_features: Mapping[str, Any],
    action_features: Mapping[str, Any],
    *,
    use_videos: bool = True,
) -> dict[str, Feature]:
    """Dataset features for a robot, laid out as LeRobot's record script does.

    Robot feature dicts map a key to `float` (one joint value, e.g. "shoulder_pan.pos"), to an
    (H, W, 3) tuple (a camera) or to an (N,) tuple (a vector such as the simulator's
    "environment_state"). Scalars are packed, in order, into `action` / `observation.state` vectors
    whose `names` are the keys; cameras become `observation.images.<key>`, vectors
    `observation.<key>`. Unlike LeRobot 0.4.x, `use_videos=False` keeps cameras as `image` features
    instead of dropping them.
    """
    out: dict[str, Feature] = {}
    action_names = [k for k, v in action_features.items() if v is float]
    if action_names:
        out[ACTION_KEY] = Feature("float32", (len(action_names),), action_names)
    state_names = [k for k, v in observation_features.items() if v is float]
    if state_names:
        out[STATE_KEY] = Feature("float32", (len(state_names),), state_names)
    for k, v in observation_features.items():
        if isinstance(v, tuple) and len(v) == 1:
            out[f"observation.{k}"] = Feature("float32", (int(v[0]),), None)
        elif isinstance(v, tuple):
            if len(v) != 3 or v[2] != 3:
                raise ValueError(f"camera feature {k!r} must have shape (H, W, 3) or (N,), got {v}")
            out[IMAGE_PREFIX + k] = Feature(
                "video" if use_videos else "image", tuple(int(x) for x in v), ["height", "width", "channels"]
            )
    return out


def pack_frame(
    features: Mapping[str, Feature],
    observation: Mapping[str, Any],
    action: Mapping[str, float] | None,
) -> dict[str, Any]:
    """Turn a robot observation and action dict into one dataset frame (vectors in `names` order)."""
    frame: dict[str, Any] = {}
    for key, feat in features.items():
        if key == ACTION_KEY:
            if action is None:
                continue
            frame[key] = np.asarray([action[n] for n in feat.flat_names or ()], dtype=np.float32)
        elif key == STATE_KEY:
            frame[key] = np.asarray([observation[n] for n in feat.flat_names or ()], dtype=np.float32)
        elif key.startswith(IMAGE_PREFIX):
            frame[key] = observation[key[len(IMAGE_PREFIX) :]]
        elif key.startswith("observation.") and key[len("observation.") :] in observation:
            frame[key] = np.asarray(observation[key[len("observation.") :]], dtype=np.float32)
    return frame

"""RLDS (Open X-Embodiment, Octo, openpi) -> a LeRobot v3.0 episode store, through jrobot's writer.

Which step fields become which features is read off the dataset's own feature tree: every RGB image
under `observation` becomes a camera (`observation.images.<path joined by _>`), the `state` vector (or
the float vectors under `observation`) `observation.state`, `action` (a vector, or a dict of them,
concatenated in key order) `action`, the `language_instruction` the frame's task, `reward` and
`is_terminal` LeRobot's `next.reward` and `next.done`. Flags override each choice. Per-step language
embeddings are ignored; `is_first`/`is_last` mark where an episode starts and ends (steps after the
first `is_last` are dropped and reported). Open-X quirks: cameras stored BGR (`bgr_keys`), images whose
size varies (`resolution` resizes, else the first frame's size must hold throughout).
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from jrobot.data.errors import DatasetError
from jrobot.data.rlds.source import RldsSource, open_rlds, text
from jrobot.data.write.writer import DatasetWriter
from jrobot.features import Feature

log = logging.getLogger(__name__)

Path_ = tuple[str, ...]  # a field's path in a step, e.g. ("observation", "wrist", "image")
MAX_VECTOR_SIZE = 4096  # a robot's state or action, with room; not a point cloud or an embedding
FPS_METADATA_KEYS = ("fps", "control_frequency", "frequency", "control_freq", "hz")


@dataclasses.dataclass
class RldsMapping:
    """Which step fields become which jrobot features."""

    cameras: dict[str, Path_]  # "observation.images.<name>" -> path
    state: list[Path_]
    action: list[Path_]
    language: Path_ | None  # in the step; else the episode metadata's instruction, else the fallback task
    reward: bool
    terminal: bool


@dataclasses.dataclass
class RldsConvertReport:
    source: Path
    out: Path
    file_format: str
    episodes: int = 0
    frames: int = 0
    cameras: list[str] = dataclasses.field(default_factory=list)
    findings: list[str] = dataclasses.field(default_factory=list)

    def summary(self) -> str:
        lines = [f"source {self.source} (RLDS, {self.file_format} shards)"]
        lines += [f"found: {f}" for f in self.findings]
        lines.append(
            f"wrote {self.out}: {self.episodes} episodes, {self.frames} frames, cameras {self.cameras or 'none'}"
        )
        return "\n".join(lines)


def convert_rlds(
    source: str | Path,
    out: str | Path,
    *,
    split: str = "train",
    image_keys: Sequence[str] | None = None,
    state_keys: Sequence[str] | None = None,
    action_keys: Sequence[str] | None = None,
    bgr_keys: Sequence[str] = (),
    fps: float | None = None,
    resolution: tuple[int, int] | None = None,
    video: bool = True,
    task: str | None = None,
    robot_type: str | None = None,
    max_episodes: int | None = None,
    durable: bool = True,
) -> RldsConvertReport:
    """Write the RLDS dataset `source` (one split) as a LeRobot v3.0 dataset in `out` (which must not
    exist); keys name step fields by their path under `observation` (or under `action` for
    `action_keys`), with `/` or `.` between levels."""
    src = open_rlds(source, split=split)
    mapping = rlds_mapping(src, image_keys=image_keys, state_keys=state_keys, action_keys=action_keys)
    bgr = {_camera_key(_split(k)) for k in bgr_keys}  # (paths under observation, as image_keys)
    if bgr - set(mapping.cameras):
        raise DatasetError(
            f"bgr_keys {sorted(bgr - set(mapping.cameras))}: not cameras of {src.root} "
            f"(cameras: {sorted(mapping.cameras)})"
        )
    rate = _frame_rate(src, fps)
    fallback_task = task or src.builder.info.name
    report = RldsConvertReport(source=src.root, out=Path(out), file_format=src.file_format)
    report.cameras = sorted(mapping.cameras)
    report.findings += _mapping_findings(src, mapping, bgr)

    episodes = _with_steps(src.episodes(), report)
    first = next(episodes, None)  # (its images give the cameras' sizes before the writer starts)
    if first is None:
        raise DatasetError(f"{src.root}: split {split!r} holds no steps to convert")
    image_size = _image_sizes(src, mapping, first, resolution, video)
    features = _features(src, mapping, image_size, video)
    with DatasetWriter.create(
        out, fps=rate, features=features, robot_type=robot_type or "unknown", durable=durable
    ) as writer:
        for i, episode in enumerate(itertools.chain([first], episodes)):
            if max_episodes is not None and i >= max_episodes:
                break
            steps = _episode_steps(episode, i, report)
            meta_task = _episode_task(episode)
            for j, step in enumerate(steps):
                frame = _frame(
                    src, mapping, step, image_size, bgr, resolution is not None, f"episode {i} step {j}"
                )
                step_task = text(_get(step, mapping.language)) if mapping.language else ""
                writer.add_frame(frame, task=step_task or meta_task or fallback_task)
            writer.save_episode()
            report.episodes += 1
            report.frames += len(steps)
    return report


def rlds_mapping(
    src: RldsSource,
    *,
    image_keys: Sequence[str] | None = None,
    state_keys: Sequence[str] | None = None,
    action_keys: Sequence[str] | None = None,
) -> RldsMapping:
    """The step fields each jrobot feature comes from: found in the feature tree, or as the keys say."""
    import tensorflow_datasets as tfds

    leaves = dict(_leaves(src.steps_features))
    observation = {p[1:]: f for p, f in leaves.items() if p[0] == "observation"}

    def pick(keys: Sequence[str], pool: Mapping[Path_, Any], where: str) -> list[Path_]:
        out = []
        for key in keys:
            path = _split(key)
            if path not in pool:
                raise DatasetError(
                    f"{src.root}: no step field {where}/{'/'.join(path)} (there: {_listing(pool, where)})"
                )
            out.append(path)
        return out

    def is_rgb(f: Any) -> bool:
        shape = tuple(f.shape)
        return (
            (isinstance(f, tfds.features.Image) or np.dtype(f.np_dtype) == np.uint8)
            and len(shape) == 3
            and shape[-1] == 3
        )

    def is_vector(f: Any) -> bool:
        shape = tuple(f.shape) if isinstance(f, tfds.features.Tensor) else ()
        return (
            isinstance(f, tfds.features.Tensor)
            and len(shape) <= 1
            and all(isinstance(n, int) and 0 < n <= MAX_VECTOR_SIZE for n in shape)
            and np.dtype(f.np_dtype).kind in "fiub"
        )

    if image_keys is None:
        cams = [p for p, f in observation.items() if is_rgb(f)]
    else:
        cams = pick(image_keys, observation, "observation")
        bad = [p for p in cams if not is_rgb(observation[p])]
        if bad:
            raise DatasetError(
                f"{src.root}: observation/{'/'.join(bad[0])} is not an RGB image ({observation[bad[0]]})"
            )
    if state_keys is None:
        named = [p for p in observation if p[-1] in ("state", "proprio") and is_vector(observation[p])]
        state = named[:1] or [p for p, f in observation.items() if is_vector(f) and "embedding" not in p[-1]]
    else:
        state = pick(state_keys, observation, "observation")
    action_pool = {p[1:]: f for p, f in leaves.items() if p[0] == "action"}
    if action_keys is None:
        action = [p for p, f in action_pool.items() if is_vector(f)]
    else:
        action = pick(action_keys, action_pool, "action")
    for where, paths, pool in (("observation", state, observation), ("action", action, action_pool)):
        bad = [p for p in paths if not is_vector(pool[p])]
        if bad:
            raise DatasetError(
                f"{src.root}: {where}/{'/'.join(bad[0])} is not a number or a vector ({pool[bad[0]]}); choose "
                f"others with {'state' if where == 'observation' else 'action'}_keys"
            )
    if not action:
        raise DatasetError(f"{src.root}: no action vector in the steps (fields: {_listing(leaves, '')})")
    language = ("language_instruction",) if ("language_instruction",) in leaves else None
    return RldsMapping(
        cameras={_camera_key(p): ("observation", *p) for p in cams},
        state=[("observation", *p) for p in state],
        action=[("action", *p) if p else ("action",) for p in action],
        language=language,
        reward=("reward",) in leaves and is_vector(leaves[("reward",)]),
        terminal=("is_terminal",) in leaves,
    )


# -- the feature tree -------------------------------------------------------------------------------


def _leaves(features: Any, prefix: Path_ = ()) -> Iterable[tuple[Path_, Any]]:
    import tensorflow_datasets as tfds

    if isinstance(features, tfds.features.FeaturesDict):
        for key in sorted(features.keys()):  # (TFDS's own key order varies with the hash seed)
            yield from _leaves(features[key], (*prefix, key))
    else:
        yield prefix, features


def _listing(pool: Mapping[Path_, Any], where: str) -> list[str]:
    return sorted("/".join((where, *p)).strip("/") for p in pool)


def _split(key: str) -> Path_:
    return tuple(part for part in key.replace(".", "/").split("/") if part)


def _camera_key(path: Path_) -> str:
    return "observation.images." + "_".join(path)


def _get(step: Mapping[str, Any], path: Path_) -> Any:
    value: Any = step
    for part in path:
        value = value[part]
    return value


def _vector_names(src: RldsSource, paths: list[Path_]) -> list[str]:
    names = []
    leaves = dict(_leaves(src.steps_features))
    for p in paths:
        size = math.prod(leaves[p].shape) if leaves[p].shape else 1
        label = "_".join(p[1:]) or p[0]
        names += [label] if size == 1 else [f"{label}_{i}" for i in range(size)]
    return names


def _mapping_findings(src: RldsSource, m: RldsMapping, bgr: set[str]) -> list[str]:
    cams = ", ".join(f"{k} <- {'/'.join(p)}" for k, p in m.cameras.items())
    out = [f"cameras {cams or 'none'}"]
    if m.state:
        out.append(f"observation.state <- {' + '.join('/'.join(p) for p in m.state)}")
    out.append(f"action <- {' + '.join('/'.join(p) for p in m.action)}")
    ignored = [p for p, _ in _leaves(src.steps_features) if "embedding" in p[-1]]
    if ignored:
        out.append(f"ignored (per-step language embeddings): {['/'.join(p) for p in ignored]}")
    if bgr:
        out.append(f"BGR cameras turned to RGB: {sorted(bgr)}")
    if m.language is None:
        out.append("no per-step language_instruction: tasks from the episode metadata, or the fallback task")
    return out


# -- frame rate, image sizes, features ---------------------------------------------------------------


def _frame_rate(src: RldsSource, fps: float | None) -> int:
    where = "--fps"
    if fps is None:
        meta = src.metadata
        found = next((k for k in FPS_METADATA_KEYS if k in meta), None)
        if found is None:
            raise DatasetError(
                f"{src.root}: the dataset's metadata gives no frame rate ({list(FPS_METADATA_KEYS)}); pass fps"
            )
        fps, where = meta[found], f"{src.root}/dataset_info.json metadata {found!r}"
    try:
        value = float(fps)
    except (TypeError, ValueError):
        raise DatasetError(f"{where}: frame rate {fps!r} is not a number") from None
    if not (0 < value < 10_000) or abs(value - round(value)) > 1e-6:
        raise DatasetError(
            f"{where}: frame rate {fps!r} must be a positive whole number of frames per second"
        )
    return round(value)


def _image_sizes(
    src: RldsSource,
    m: RldsMapping,
    episode: Mapping[str, Any],
    resolution: tuple[int, int] | None,
    video: bool,
) -> dict[str, tuple[int, int]]:
    sizes = {}
    for key, path in m.cameras.items():
        if resolution is not None:
            sizes[key] = tuple(resolution)
        else:
            h, w = np.asarray(_get(episode["steps"][0], path)).shape[:2]
            sizes[key] = (int(h), int(w))
        h, w = sizes[key]
        if video and (h % 2 or w % 2):
            raise DatasetError(
                f"{src.root}: camera {'/'.join(path)} is {h}x{w}; video needs even sizes: pass a resolution, "
                "or store images (video=false)"
            )
    return sizes


def _features(
    src: RldsSource, m: RldsMapping, sizes: Mapping[str, tuple[int, int]], video: bool
) -> dict[str, Feature]:
    feats: dict[str, Feature] = {}
    for key in m.cameras:
        h, w = sizes[key]
        feats[key] = Feature("video" if video else "image", (h, w, 3), ["height", "width", "channels"])
    if m.state:
        names = _vector_names(src, m.state)
        feats["observation.state"] = Feature("float32", (len(names),), names)
    names = _vector_names(src, m.action)
    feats["action"] = Feature("float32", (len(names),), names)
    if m.reward:
        feats["next.reward"] = Feature("float32", (1,), None)
    if m.terminal:
        feats["next.done"] = Feature("bool", (1,), None)
    for key, feat in feats.items():
        try:
            feat.check_size(key)
        except ValueError as e:
            raise DatasetError(f"{src.root}: {e}") from e
    return feats


# -- episodes and frames -------------------------------------------------------------------------------


def _with_steps(episodes: Iterable[dict[str, Any]], report: RldsConvertReport) -> Iterator[dict[str, Any]]:
    """The episodes that have steps; the others are reported and skipped."""
    for i, episode in enumerate(episodes):
        if episode["steps"]:
            yield episode
        else:
            report.findings.append(f"episode {i} of the source: no steps, skipped")


def _episode_steps(episode: Mapping[str, Any], i: int, report: RldsConvertReport) -> list[Mapping[str, Any]]:
    steps = episode["steps"]
    if "is_first" in steps[0] and not bool(steps[0]["is_first"]):
        report.findings.append(f"episode {i}: its first step is not marked is_first")
    ends = [j for j, s in enumerate(steps) if bool(s.get("is_last", False))]
    if ends and ends[0] < len(steps) - 1:
        report.findings.append(f"episode {i}: {len(steps) - ends[0] - 1} steps after is_last dropped")
        return steps[: ends[0] + 1]
    return steps


def _episode_task(episode: Mapping[str, Any]) -> str:
    meta = episode.get("episode_metadata") or {}
    for key in ("language_instruction", "instruction", "task"):
        if key in meta:
            return text(meta[key])
    return ""


def _frame(
    src: RldsSource,
    m: RldsMapping,
    step: Mapping[str, Any],
    sizes: Mapping[str, tuple[int, int]],
    bgr: set[str],
    resize: bool,
    where: str,
) -> dict[str, Any]:
    frame: dict[str, Any] = {}
    for key, path in m.cameras.items():
        img = np.asarray(_get(step, path))
        h, w = sizes[key]
        if img.ndim != 3 or img.shape[-1] != 3 or img.dtype != np.uint8:
            raise DatasetError(
                f"{src.root} ({where}): camera {'/'.join(path)} is not an RGB image ({img.dtype} {img.shape})"
            )
        if img.shape[:2] != (h, w):
            if not resize:
                raise DatasetError(
                    f"{src.root} ({where}): camera {'/'.join(path)} is {img.shape[0]}x{img.shape[1]}, not {h}x{w} "
                    "as its first frame; pass a resolution to resize every frame"
                )
            img = cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)
        frame[key] = img[..., ::-1] if key in bgr else img
    if m.state:
        frame["observation.state"] = _vector(step, m.state)
    frame["action"] = _vector(step, m.action)
    if m.reward:
        frame["next.reward"] = np.asarray(step["reward"], np.float32).reshape(1)
    if m.terminal:
        frame["next.done"] = np.asarray(bool(step["is_terminal"])).reshape(1)
    return frame


def _vector(step: Mapping[str, Any], paths: list[Path_]) -> np.ndarray:
    return np.concatenate([np.asarray(_get(step, p), np.float32).reshape(-1) for p in paths])

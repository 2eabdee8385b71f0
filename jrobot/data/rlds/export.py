"""A jrobot/LeRobot dataset -> an RLDS dataset (TFDS builder folder, ArrayRecord shards), written by
tensorflow-datasets' own writer, so that Octo, openpi and Open-X tooling load it with `tfds`.

The step layout is the one `jrobot.data.rlds.convert` reads back: every RGB camera becomes an image under
`observation` (named without the `observation.images.` prefix), `observation.state` becomes
`observation/state`, other `observation.*` features go under `observation` by the rest of their key,
`action` (float32), the frame's task `language_instruction`, `next.reward` `reward` (0.0 without it),
`next.done` `is_terminal` (else `is_last`), plus `discount` 1.0 and `is_first`/`is_last`. Each
episode's metadata holds its `episode_index` and its first frame's `task`; the dataset's metadata its
`fps` (which the converter needs) and its jrobot feature names.

Images go to TFDS as PNG bytes encoded by OpenCV (lossless), so nothing here imports TensorFlow:
ArrayRecord needs none. TFDS writes into a build folder inside `out`; the version folder's files are
then moved up so that `out` itself is the dataset folder, and nothing is written anywhere else.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import logging
import math
import os
import re
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from jrobot.data.errors import DatasetError
from jrobot.features import ACTION_KEY, DEFAULT_FEATURE_NAMES, IMAGE_PREFIX, STATE_KEY, Feature

log = logging.getLogger(__name__)

DATASET_VERSION = "1.0.0"
REWARD_KEY = "next.reward"
DONE_KEY = "next.done"
OBSERVATION_PREFIX = "observation."
_TFDS_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


@dataclasses.dataclass
class TfdsExportReport:
    """What `export_tfds` wrote, and which features it mapped where (or left out)."""

    source: Path
    out: Path
    name: str
    episodes: int = 0
    steps: int = 0
    cameras: list[str] = dataclasses.field(default_factory=list)
    findings: list[str] = dataclasses.field(default_factory=list)

    def summary(self) -> str:
        lines = [f"source {self.source}"]
        lines += [f"found: {f}" for f in self.findings]
        lines.append(
            f"wrote {self.out}: RLDS dataset {self.name!r} {DATASET_VERSION} (ArrayRecord), "
            f"{self.episodes} episodes, {self.steps} steps, cameras {self.cameras or 'none'}"
        )
        return "\n".join(lines)


@dataclasses.dataclass
class _Plan:
    """Which jrobot feature becomes which step field."""

    cameras: dict[str, str]  # RLDS observation key -> jrobot key
    observation: dict[str, str]  # RLDS observation key -> jrobot key (state and the other vectors)
    reward: str | None
    done: str | None
    dropped: list[str]


def export_tfds(
    dataset: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    name: str | None = None,
    split: str = "train",
    max_episodes: int | None = None,
) -> TfdsExportReport:
    """Write the LeRobot dataset `dataset` (folder or Hub id) as an RLDS dataset in `out`, which must not
    exist and becomes the TFDS version folder (dataset_info.json, features.json, shards): load it with
    `tfds.builder_from_directory(out)`. `name` is the TFDS dataset name (default: the dataset folder's
    name in snake_case); `max_episodes` exports only the first episodes."""
    from jrobot.data.read.reader import open_dataset

    out = Path(out).expanduser()
    if out.exists() or out.is_symlink():
        raise DatasetError(f"{out}: already exists; pass a new folder as out")
    if max_episodes is not None and max_episodes < 0:
        raise DatasetError(f"max_episodes must be >= 0, got {max_episodes}")
    if not _TFDS_NAME.match(split):
        raise DatasetError(f"split name {split!r}: lowercase letters, digits and '_', starting with a letter")
    name = _dataset_name(dataset) if name is None else name
    if not _TFDS_NAME.match(name):
        raise DatasetError(
            f"TFDS dataset name {name!r}: lowercase letters, digits and '_', starting with a letter"
        )
    try:
        import tensorflow_datasets as tfds
    except ImportError as e:  # pragma: no cover - a dependency
        raise DatasetError("writing RLDS needs tensorflow-datasets (pip install tensorflow-datasets)") from e

    with open_dataset(dataset) as ds:
        plan = _plan(ds.meta.features, ds.root)
        report = TfdsExportReport(source=ds.root, out=out, name=name, cameras=sorted(plan.cameras))
        report.findings += _findings(plan)
        episodes = ds.meta.episodes if max_episodes is None else ds.meta.episodes[:max_episodes]
        if not any(ep.length for ep in episodes):
            raise DatasetError(f"{ds.root}: no frames to export (max_episodes={max_episodes})")
        features = _tfds_features(tfds, ds.meta.features, plan)

        def generate() -> Iterator[tuple[str, dict[str, Any]]]:
            for ep in episodes:
                steps = [
                    _step(
                        plan, ds.meta.features, frame, j, ep.length, f"{ds.root} episode {ep.index} frame {j}"
                    )
                    for j, frame in enumerate(ds.iter_episode(ep.index))
                ]
                if not steps:
                    report.findings.append(f"episode {ep.index}: no frames, skipped")
                    continue
                report.episodes += 1
                report.steps += len(steps)
                log.info("episode %d: %d steps", ep.index, len(steps))
                task = str(steps[0]["language_instruction"])
                yield (
                    f"episode_{ep.index:09d}",
                    {"steps": steps, "episode_metadata": {"episode_index": ep.index, "task": task}},
                )

        fps = int(ds.fps) if float(ds.fps).is_integer() else float(ds.fps)
        metadata = {"fps": fps, "source": "jrobot", "features": list(ds.meta.features)}
        _build(tfds, out, name, split, features, metadata, generate)
    return report


def _dataset_name(dataset: str | os.PathLike[str]) -> str:
    """The folder's name (or the Hub id's name) in snake_case, made a valid TFDS name."""
    import tensorflow_datasets as tfds

    path = Path(dataset).expanduser()
    base = path.resolve().name if path.exists() else os.fspath(dataset).rstrip("/").rsplit("/", 1)[-1]
    snake = tfds.core.naming.camelcase_to_snakecase(base)
    snake = re.sub(r"_+", "_", re.sub(r"[^a-z0-9_]", "_", snake.lower())).strip("_")
    return snake if snake[:1].isalpha() else f"dataset_{snake}".rstrip("_")


def _plan(features: Mapping[str, Feature], root: Path) -> _Plan:
    """Each feature's step field, decided from meta/info.json before anything is written, so that a
    dataset RLDS cannot hold is refused up front and what is left out is reported."""
    info = root / "meta" / "info.json"
    if ACTION_KEY not in features or features[ACTION_KEY].is_visual:
        raise DatasetError(f"{info}: no {ACTION_KEY!r} feature; an RLDS step needs an action")
    cameras: dict[str, str] = {}
    observation: dict[str, str] = {}
    dropped: list[str] = []
    for key, f in features.items():
        if f.is_visual:
            if f.hwc_shape[2] != 3:
                dropped.append(f"{key} (not RGB: {f.hwc_shape[2]} channels)")
                continue
            rlds = key.removeprefix(IMAGE_PREFIX).removeprefix(OBSERVATION_PREFIX)
            if rlds in cameras:
                raise DatasetError(
                    f"{info}: cameras {cameras[rlds]!r} and {key!r} would both be observation/{rlds}"
                )
            cameras[rlds] = key
        elif key == STATE_KEY:
            observation["state"] = key
        elif key.startswith(OBSERVATION_PREFIX):
            if f.dtype == "string":
                dropped.append(f"{key} (text)")
                continue
            observation[key.removeprefix(OBSERVATION_PREFIX)] = key
        elif key in (REWARD_KEY, DONE_KEY) and math.prod(f.shape) != 1:
            dropped.append(f"{key} (not one number a frame: shape {list(f.shape)})")
        elif key not in (ACTION_KEY, REWARD_KEY, DONE_KEY, *DEFAULT_FEATURE_NAMES):
            dropped.append(key)
    for rlds in cameras.keys() & observation.keys():
        raise DatasetError(
            f"{info}: features {cameras[rlds]!r} and {observation[rlds]!r} would both be observation/{rlds}"
        )
    for rlds, key in {**cameras, **observation}.items():
        if "/" in rlds or not rlds:
            raise DatasetError(f"{info}: feature {key!r} cannot be named observation/{rlds} in RLDS")
    reward = REWARD_KEY if REWARD_KEY in features and math.prod(features[REWARD_KEY].shape) == 1 else None
    done = DONE_KEY if DONE_KEY in features and math.prod(features[DONE_KEY].shape) == 1 else None
    return _Plan(cameras=cameras, observation=observation, reward=reward, done=done, dropped=dropped)


def _findings(plan: _Plan) -> list[str]:
    lines = [f"cameras {', '.join(f'observation/{r} <- {k}' for r, k in plan.cameras.items()) or 'none'}"]
    if plan.observation:
        lines.append(
            "observation vectors " + ", ".join(f"observation/{r} <- {k}" for r, k in plan.observation.items())
        )
    lines.append(f"reward <- {plan.reward or '0.0'}, is_terminal <- {plan.done or 'is_last'}")
    if plan.dropped:
        lines.append(f"not exported: {plan.dropped}")
    return lines


def _tfds_features(tfds: Any, features: Mapping[str, Feature], plan: _Plan) -> Any:
    observation: dict[str, Any] = {
        rlds: tfds.features.Image(shape=features[key].hwc_shape, encoding_format="png")
        for rlds, key in plan.cameras.items()
    }
    for rlds, key in plan.observation.items():
        f = features[key]
        dtype = np.float32 if key == STATE_KEY else f.numpy_dtype
        observation[rlds] = tfds.features.Tensor(shape=f.shape, dtype=dtype)
    step = {
        "observation": tfds.features.FeaturesDict(observation),
        "action": tfds.features.Tensor(shape=features[ACTION_KEY].shape, dtype=np.float32),
        "language_instruction": tfds.features.Text(),
        "reward": tfds.features.Scalar(dtype=np.float32),
        "discount": tfds.features.Scalar(dtype=np.float32),
        "is_first": tfds.features.Scalar(dtype=np.bool_),
        "is_last": tfds.features.Scalar(dtype=np.bool_),
        "is_terminal": tfds.features.Scalar(dtype=np.bool_),
    }
    return tfds.features.FeaturesDict(
        {
            "steps": tfds.features.Dataset(step),
            "episode_metadata": tfds.features.FeaturesDict(
                {"episode_index": tfds.features.Scalar(dtype=np.int64), "task": tfds.features.Text()}
            ),
        }
    )


def _step(
    plan: _Plan, features: Mapping[str, Feature], frame: Mapping[str, Any], j: int, length: int, where: str
) -> dict[str, Any]:
    observation: dict[str, Any] = {}
    for rlds, key in plan.cameras.items():
        img = np.asarray(frame[key])
        if img.shape != features[key].hwc_shape or img.dtype != np.uint8:
            raise DatasetError(
                f"{where}: camera {key!r} decoded as {img.dtype} {img.shape}, "
                f"not uint8 {features[key].hwc_shape} as meta/info.json says"
            )
        ok, buf = cv2.imencode(".png", np.ascontiguousarray(img[..., ::-1]))  # OpenCV takes BGR
        if not ok:  # pragma: no cover - OpenCV encodes any uint8 HWC image
            raise DatasetError(f"{where}: camera {key!r}: PNG encoding failed")
        observation[rlds] = buf.tobytes()
    for rlds, key in plan.observation.items():
        f = features[key]
        dtype = np.float32 if key == STATE_KEY else f.numpy_dtype
        observation[rlds] = _array(frame[key], f.shape, dtype, where, key)
    last = j == length - 1
    done = bool(_array(frame[plan.done], (1,), np.bool_, where, plan.done)[0]) if plan.done else last
    reward = (
        float(_array(frame[plan.reward], (1,), np.float32, where, plan.reward)[0]) if plan.reward else 0.0
    )
    return {
        "observation": observation,
        "action": _array(frame[ACTION_KEY], features[ACTION_KEY].shape, np.float32, where, ACTION_KEY),
        "language_instruction": str(frame["task"]),
        "reward": reward,
        "discount": 1.0,
        "is_first": j == 0,
        "is_last": last,
        "is_terminal": done,
    }


def _array(value: Any, shape: tuple[int, ...], dtype: Any, where: str, key: str) -> np.ndarray:
    """`value` as `dtype` in the feature's shape (the reader gives shape-(1,) features as 0-d values)."""
    a = np.asarray(value)
    if a.size != math.prod(shape):
        raise DatasetError(
            f"{where}: {key!r} holds {a.size} values, not {list(shape)} as meta/info.json says"
        )
    return a.astype(dtype).reshape(shape)


def _build(
    tfds: Any, out: Path, name: str, split: str, features: Any, metadata: dict[str, Any], generate: Any
) -> None:
    """Run TFDS's writer in a build folder inside `out`, then make `out` the version folder. `out` is
    removed again if anything fails, so a failed export leaves nothing behind."""

    class _LocalInfo(tfds.core.DatasetInfo):
        def initialize_from_bucket(self) -> None:
            """TFDS would look for the name's metadata on GCS, through a temp folder outside `out`."""

    class Builder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
        VERSION = tfds.core.Version(DATASET_VERSION)

        @tfds.core.utils.classproperty
        @classmethod
        def code_path(cls) -> None:
            """No source file: TFDS would look for download checksums beside it (and, for a class in a
            package, trips over the optional `importlib_resources` backport)."""
            return None

        def _info(self) -> Any:
            return _LocalInfo(
                builder=self,
                features=features,
                metadata=tfds.core.MetadataDict(metadata),
                disable_shuffling=True,  # keep the episodes in the dataset's order
            )

        def _split_generators(self, dl_manager: Any) -> dict[str, Any]:
            return {split: self._generate_examples()}

        def _generate_examples(self) -> Iterator[tuple[str, dict[str, Any]]]:
            yield from generate()

    Builder.name = name
    out.mkdir(parents=True)
    try:
        build = Path(tempfile.mkdtemp(prefix=".build-", dir=out))
        builder = Builder(data_dir=str(build), file_format="array_record")
        chatter = io.StringIO()  # TFDS prints where it builds (the build folder, gone at the end)
        with contextlib.redirect_stdout(chatter):
            builder.download_and_prepare(
                download_dir=str(build / "downloads"),
                download_config=tfds.download.DownloadConfig(try_download_gcs=False),
            )
        log.debug("%s", chatter.getvalue())
        version_dir = Path(builder.data_dir)
        for path in sorted(version_dir.iterdir()):
            path.rename(out / path.name)
        shutil.rmtree(build)
    except DatasetError:
        shutil.rmtree(out, ignore_errors=True)
        raise
    except Exception as e:  # TFDS raises many kinds; say which, and where
        shutil.rmtree(out, ignore_errors=True)
        raise DatasetError(
            f"{out}: tensorflow-datasets could not write the dataset ({type(e).__name__}: {e})"
        ) from e
    except BaseException:  # Ctrl-C: no half-written dataset either
        shutil.rmtree(out, ignore_errors=True)
        raise

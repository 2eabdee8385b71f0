"""An RLDS dataset on disk (a TFDS builder folder: `dataset_info.json`, `features.json`, shards), read
with tensorflow-datasets itself.

ArrayRecord shards are read through TFDS's data sources, which need no TensorFlow; TFRecord shards need
TensorFlow (`pip install 'jrobot[rlds]'`) and are read through `as_dataset`. Before TFDS opens a shard,
every shard path the metadata builds (its `filepathTemplate`) must lie inside the folder: the metadata
is a stranger's, and TFDS follows a template such as `../../{SPLIT}` wherever it leads.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from jrobot.data.errors import DatasetError
from jrobot.paths import inside

INFO_JSON = "dataset_info.json"
FEATURES_JSON = "features.json"
MAX_METADATA_BYTES = 64 << 20  # the metadata of the largest Open-X datasets is a few MB


@dataclasses.dataclass
class RldsSource:
    """One split of an RLDS dataset, opened. `episodes()` yields each episode as numpy: {"steps": [step
    dicts, in order], "episode_metadata": {...}} (text as bytes, as TFDS gives it)."""

    root: Path
    builder: Any  # tfds.core.ReadOnlyBuilder
    split: str
    file_format: str  # "array_record" or "tfrecord"

    @property
    def features(self) -> Any:
        """The dataset's top-level tfds FeaturesDict."""
        return self.builder.info.features

    @property
    def steps_features(self) -> Any:
        """The FeaturesDict of one step (the `steps` Dataset feature's element)."""
        return self.features["steps"].feature

    @property
    def num_episodes(self) -> int:
        return int(self.builder.info.splits[self.split].num_examples)

    @property
    def metadata(self) -> Mapping[str, Any]:
        return dict(self.builder.info.metadata or {})

    def episodes(self) -> Iterator[dict[str, Any]]:
        if self.file_format == "array_record":
            yield from self._array_record_episodes()
        else:
            yield from self._tfrecord_episodes()

    def _array_record_episodes(self) -> Iterator[dict[str, Any]]:
        source = _tfds_call(self.root, lambda: self.builder.as_data_source(split=self.split))
        for i in range(len(source)):
            episode = _tfds_call(self.root, lambda i=i: source[i], f"episode {i}")
            steps = episode["steps"]
            yield {
                "steps": [
                    _tfds_call(self.root, lambda j=j, steps=steps: steps[j], f"episode {i} step {j}")
                    for j in range(len(steps))
                ],
                "episode_metadata": episode.get("episode_metadata", {}),
            }

    def _tfrecord_episodes(self) -> Iterator[dict[str, Any]]:
        import tensorflow_datasets as tfds

        dataset = _tfds_call(
            self.root, lambda: self.builder.as_dataset(split=self.split, shuffle_files=False)
        )
        for i, episode in enumerate(_tfds_iter(self.root, tfds.as_numpy(dataset))):
            yield {
                "steps": list(_tfds_iter(self.root, episode["steps"], f"episode {i}")),
                "episode_metadata": episode.get("episode_metadata", {}),
            }


def open_rlds(source: str | os.PathLike[str], *, split: str = "train") -> RldsSource:
    """The RLDS dataset in folder `source` (the version folder holding dataset_info.json, or a folder
    with exactly one such version folder), ready to read `split`."""
    root = _dataset_folder(Path(source).expanduser())
    info = _read_json(root / INFO_JSON)
    _read_json(root / FEATURES_JSON)
    try:
        import tensorflow_datasets as tfds
    except ImportError as e:  # pragma: no cover - a dependency
        raise DatasetError(
            f"{root}: reading RLDS needs tensorflow-datasets (pip install tensorflow-datasets)"
        ) from e
    builder = _tfds_call(root, lambda: tfds.builder_from_directory(str(root)))
    splits = list(builder.info.splits)
    if split not in splits:
        raise DatasetError(f"{root / INFO_JSON}: no split {split!r} (splits: {splits})")
    file_format = str(getattr(builder.info.file_format, "value", builder.info.file_format or "tfrecord"))
    if file_format not in ("array_record", "tfrecord"):
        raise DatasetError(
            f"{root / INFO_JSON}: file format {file_format!r} (array_record or tfrecord expected)"
        )
    if file_format == "tfrecord":
        # (found, not imported: TensorFlow loads only when the shards are read; in a process that also
        # renders MuJoCo with Mesa, TensorFlow's bundled LLVM clashes with llvmpipe's)
        try:
            found = importlib.util.find_spec("tensorflow") is not None
        except (ImportError, ValueError):  # (a None entry in sys.modules: blocked)
            found = False
        if not found:
            raise DatasetError(
                f"{root}: its shards are TFRecord files, which only TensorFlow reads: "
                "pip install 'jrobot[rlds]' (ArrayRecord shards need no TensorFlow)"
            )
    for name in splits:  # every split's shards, not only the one read: a converter may read them all later
        paths = _tfds_call(root, lambda name=name: builder.info.splits[name].filepaths, f"split {name!r}")
        for path in paths:
            relative = os.path.relpath(os.fspath(path), root)
            if inside(root, relative) is None:
                template = next(
                    (s.get("filepathTemplate") for s in info.get("splits", []) if s.get("name") == name), None
                )
                raise DatasetError(
                    f"{root / INFO_JSON}: split {name!r} (filepathTemplate {template!r}) names the shard "
                    f"{os.path.normpath(path)}, outside the dataset folder {root}; refused"
                )
    for path in builder.info.splits[split].filepaths:
        if not Path(path).is_file():
            raise DatasetError(f"{root}: shard {Path(path).name} of split {split!r} is missing")
    if "steps" not in builder.info.features or not hasattr(builder.info.features["steps"], "feature"):
        raise DatasetError(
            f"{root / FEATURES_JSON}: not an RLDS dataset (no 'steps' sequence of step features)"
        )
    return RldsSource(root=root, builder=builder, split=split, file_format=file_format)


def _dataset_folder(path: Path) -> Path:
    if not path.is_dir():
        raise DatasetError(f"{path}: no such RLDS dataset folder")
    if (path / INFO_JSON).is_file():
        return path
    versions = sorted(p.parent for p in path.glob(f"*/{INFO_JSON}"))
    if len(versions) == 1:
        return versions[0]
    if versions:
        raise DatasetError(f"{path}: holds several versions {[v.name for v in versions]}; pass one of them")
    raise DatasetError(f"{path}: not a TFDS dataset folder (no {INFO_JSON})")


def _read_json(path: Path) -> dict[str, Any]:
    """The metadata, checked before TFDS parses it: present, bounded in size, UTF-8 JSON, an object."""
    try:
        size = path.stat().st_size
        if size > MAX_METADATA_BYTES:
            raise DatasetError(f"{path}: {size} bytes, more than metadata ever holds; refused")
        d = json.loads(path.read_bytes().decode("utf-8"))
    except FileNotFoundError:
        raise DatasetError(f"{path}: missing; not a TFDS dataset folder") from None
    except (OSError, ValueError, RecursionError) as e:
        raise DatasetError(f"{path}: not readable JSON ({e})") from e
    if not isinstance(d, dict):
        raise DatasetError(f"{path}: expected a JSON object, got {type(d).__name__}")
    return d


def _tfds_call(root: Path, call: Any, what: str = "") -> Any:
    """`call()`, with whatever TFDS raises on a malformed dataset turned into a DatasetError naming it."""
    try:
        return call()
    except DatasetError:
        raise
    except Exception as e:  # TFDS and protobuf raise many kinds on bad metadata or shards
        where = f"{root} ({what})" if what else str(root)
        raise DatasetError(f"{where}: not a readable TFDS dataset ({type(e).__name__}: {e})") from e


def _tfds_iter(root: Path, iterable: Any, what: str = "") -> Iterator[Any]:
    iterator = _tfds_call(root, lambda: iter(iterable), what)
    while True:
        try:
            item = next(iterator)
        except StopIteration:
            return
        except Exception as e:
            where = f"{root} ({what})" if what else str(root)
            raise DatasetError(f"{where}: not a readable TFDS dataset ({type(e).__name__}: {e})") from e
        yield item


def text(value: Any) -> str:
    """A TFDS Text value (bytes, or a 0-d numpy bytes array) as str."""
    if isinstance(value, np.ndarray):
        value = value.item()
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)

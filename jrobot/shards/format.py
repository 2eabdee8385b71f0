"""Training shards: the read-optimised copy of an episode store that the grain pipeline samples from.

Layout of a shard directory (everything a training run needs, nothing it has to decode twice):

    manifest.json          format version, source dataset, resolution, image encoding, feature specs,
                           shard file list with their global record ranges
    episodes.parquet       one row per episode: episode_index, start, end (global record range), length,
                           task_index, task
    lowdim/<feature>.npy   one (N, ...) array per low-dimensional feature (state, action, timestamp, ...)
    records/*.array_record ArrayRecord files written with group_size:1; record i = frame i: the camera
                           images at the training resolution (JPEG or raw), with its episode/frame index
    stats.json             LeRobot-style stats of the source dataset, computed while building

Action chunks, windows and normalisation stats only touch `lowdim/`; images are read one record per
frame. Records carry their (episode, frame) ids so a mismatch between records and side arrays is caught
instead of silently training on misaligned data.
"""

from __future__ import annotations

import bisect
import dataclasses
import json
import struct
import threading
from collections.abc import Mapping, Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pyarrow.parquet as pq
import simplejpeg

from jrobot.errors import InputError
from jrobot.features import Feature, features_from_json, features_to_json

FORMAT_NAME = "jrobot-shards"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
EPISODES = "episodes.parquet"
STATS = "stats.json"
LOWDIM_DIR = "lowdim"
RECORDS_DIR = "records"
ARRAY_RECORD_OPTIONS = "group_size:1,uncompressed"

_RECORD_MAGIC = b"JRF1"
_HEADER = struct.Struct("<4sqqH")  # magic, episode_index, frame_index, number of cameras
_LEN = struct.Struct("<I")


class ShardError(ValueError, InputError):
    """A shard directory is missing, corrupt, or does not match what the caller asked for."""


# ---------------------------------------------------------------------------------------------------
# Image encoding


@dataclasses.dataclass(frozen=True)
class ImageFormat:
    """How camera frames are stored in records: "jpeg" with a quality, or "raw" HxWx3 bytes."""

    kind: str = "jpeg"
    quality: int = 90

    @classmethod
    def parse(cls, text: str) -> ImageFormat:
        """Parse "jpeg", "jpeg:90" or "raw"."""
        kind, _, q = text.strip().lower().partition(":")
        if kind == "raw" and not q:
            return cls("raw", 0)
        if kind in ("jpeg", "jpg"):
            try:
                quality = int(q) if q else 90
            except ValueError:
                raise ValueError(
                    f"image format {text!r}: JPEG quality must be an integer, e.g. jpeg:90"
                ) from None
            if not 1 <= quality <= 100:
                raise ValueError(f"image format {text!r}: JPEG quality must be in 1..100")
            return cls("jpeg", quality)
        raise ValueError(f"unknown image format {text!r}; use 'jpeg:<quality>' or 'raw'")

    def __str__(self) -> str:
        return "raw" if self.kind == "raw" else f"jpeg:{self.quality}"

    def encode(self, rgb: np.ndarray) -> bytes:
        if self.kind == "raw":
            return np.ascontiguousarray(rgb, dtype=np.uint8).tobytes()
        ok, buf = cv2.imencode(
            ".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, self.quality]
        )
        if not ok:
            raise ShardError("JPEG encoding failed")
        return buf.tobytes()

    def decode(
        self, payload: bytes | memoryview, shape: tuple[int, int, int], out: np.ndarray | None = None
    ) -> np.ndarray:
        """The RGB image; written into `out` (contiguous, `shape`, uint8) when given, saving a copy."""
        if self.kind == "raw":
            arr = np.frombuffer(payload, dtype=np.uint8)
            if arr.size != shape[0] * shape[1] * shape[2]:
                raise ShardError(f"raw image has {arr.size} bytes, expected {shape}")
            arr = arr.reshape(shape)
            if out is None:
                return arr
            out[...] = arr
            return out
        # simplejpeg (libjpeg-turbo) decodes straight to RGB, into the batch's own memory, with the
        # GIL released: ~20% faster than cv2.imdecode + cvtColor, and bit-identical to it.
        try:
            rgb = simplejpeg.decode_jpeg(payload, colorspace="RGB", buffer=out)
        except ValueError as e:
            if out is not None and "buffer" in str(e).lower():
                raise ShardError(f"decoded image is larger than the manifest's {tuple(shape)}") from e
            raise ShardError(f"corrupt JPEG payload in shard record ({e})") from e
        if rgb.shape != tuple(shape):
            raise ShardError(f"decoded image has shape {rgb.shape}, manifest says {tuple(shape)}")
        return rgb


def encode_record(episode_index: int, frame_index: int, images: Sequence[bytes]) -> bytes:
    parts = [_HEADER.pack(_RECORD_MAGIC, episode_index, frame_index, len(images))]
    for img in images:
        parts.append(_LEN.pack(len(img)))
        parts.append(img)
    return b"".join(parts)


def decode_record(record: bytes) -> tuple[int, int, list[memoryview]]:
    """Split a record into (episode_index, frame_index, [camera payloads])."""
    view = memoryview(record)
    if len(view) < _HEADER.size:
        raise ShardError(f"shard record of {len(view)} bytes is truncated")
    magic, ep, fi, n = _HEADER.unpack_from(view, 0)
    if magic != _RECORD_MAGIC:
        raise ShardError(f"shard record has bad magic {magic!r}")
    off = _HEADER.size
    payloads = []
    for _ in range(n):
        if off + _LEN.size > len(view):
            raise ShardError("shard record is truncated")
        (length,) = _LEN.unpack_from(view, off)
        off += _LEN.size
        if off + length > len(view):
            raise ShardError("shard record is truncated")
        payloads.append(view[off : off + length])
        off += length
    return ep, fi, payloads


class RecordReader:
    """Random access to the records of a list of ArrayRecord files, from any number of threads.

    array_record's `read([i])` hands even a single record to its thread pool and waits for it (~25 us
    and a few futex round trips, with the GIL held). Here each thread gets its own reader per file
    that seeks and reads in the calling thread (~12 us). Readers open lazily; a copy sent to another
    process opens its own.
    """

    OPTIONS = "readahead_buffer_size:0,max_parallelism:0"

    def __init__(self, paths: Sequence[str], num_records: Sequence[int]):
        self.paths = [str(p) for p in paths]
        self._ends = np.cumsum(np.asarray(num_records, dtype=np.int64)).tolist()
        self._local = threading.local()

    def __getstate__(self):
        return {"paths": self.paths, "_ends": self._ends}

    def __setstate__(self, state) -> None:
        self.__dict__.update(state)
        self._local = threading.local()

    def __len__(self) -> int:
        return self._ends[-1] if self._ends else 0

    def _open(self, k: int):
        from array_record.python.array_record_module import ArrayRecordReader

        try:
            return ArrayRecordReader(self.paths[k], self.OPTIONS)
        except Exception as e:  # array_record raises bare RuntimeError/ValueError on bad files
            raise ShardError(f"{self.paths[k]}: cannot open shard records ({e})") from e

    def read(self, indices: Sequence[int]) -> list[bytes]:
        """The records at global `indices`, in that order."""
        readers = getattr(self._local, "readers", None)
        if readers is None:
            readers = self._local.readers = {}
        ends, n, out = self._ends, len(self), []
        for i in indices:
            i = int(i)
            if not 0 <= i < n:
                raise IndexError(f"record {i} is out of range for {n} records")
            k = bisect.bisect_right(ends, i)
            reader = readers.get(k)
            if reader is None:
                reader = readers[k] = self._open(k)
            try:
                reader.seek(i - ends[k - 1] if k else i)
                out.append(reader.read())
            except Exception as e:
                raise ShardError(f"{self.paths[k]}: cannot read record {i} ({e})") from e
        return out

    def __getitem__(self, i: int) -> bytes:
        return self.read((i,))[0]


# ---------------------------------------------------------------------------------------------------
# Manifest


@dataclasses.dataclass
class ShardFile:
    path: str  # relative to the shard directory
    start: int  # first global record index
    num_records: int


@dataclasses.dataclass
class Manifest:
    source: dict[str, Any]
    fps: int
    robot_type: str | None
    resolution: tuple[int, int] | None  # (H, W) of stored images; None keeps the source resolution
    image_format: ImageFormat
    cameras: list[str]  # visual feature keys, in record order
    features: dict[str, Feature]  # all features; visual ones carry the stored (H, W, 3) shape
    num_frames: int
    num_episodes: int
    tasks: list[str]
    files: list[ShardFile]
    version: int = FORMAT_VERSION

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT_NAME,
            "version": self.version,
            "source": self.source,
            "fps": self.fps,
            "robot_type": self.robot_type,
            "resolution": list(self.resolution) if self.resolution else None,
            "image_format": str(self.image_format),
            "cameras": self.cameras,
            "features": features_to_json(self.features),
            "num_frames": self.num_frames,
            "num_episodes": self.num_episodes,
            "tasks": self.tasks,
            "files": [dataclasses.asdict(f) for f in self.files],
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any], *, path: Path) -> Manifest:
        if d.get("format") != FORMAT_NAME:
            raise ShardError(f"{path}: not a jrobot shard manifest (format={d.get('format')!r})")
        version = d.get("version")
        if version != FORMAT_VERSION:
            raise ShardError(
                f"{path}: shard format version {version} is not supported by this jrobot "
                f"(expects {FORMAT_VERSION}); rebuild the shards with `python -m data_tools.build_shards`"
            )
        try:
            return cls(
                source=dict(d["source"]),
                fps=int(d["fps"]),
                robot_type=d.get("robot_type"),
                resolution=tuple(d["resolution"]) if d.get("resolution") else None,
                image_format=ImageFormat.parse(d["image_format"]),
                cameras=list(d["cameras"]),
                features=features_from_json(d["features"]),
                num_frames=int(d["num_frames"]),
                num_episodes=int(d["num_episodes"]),
                tasks=list(d["tasks"]),
                files=[ShardFile(**f) for f in d["files"]],
                version=int(version),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise ShardError(f"{path}: malformed manifest ({e})") from e

    def write(self, directory: Path) -> None:
        tmp = directory / (MANIFEST + ".tmp")
        tmp.write_text(json.dumps(self.to_json(), indent=2))
        tmp.replace(directory / MANIFEST)


# ---------------------------------------------------------------------------------------------------
# Reading


class ShardSet:
    """Read access to one shard directory: manifest, episode table, low-dim arrays and image records.

    Low-dimensional arrays are memory-mapped, so opening a shard set is cheap and worker processes
    share the page cache instead of copying the data.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        mpath = self.path / MANIFEST
        if not mpath.is_file():
            raise ShardError(f"{self.path}: no {MANIFEST}; is this a shard directory built by build_shards?")
        try:
            raw = json.loads(mpath.read_text())
        except json.JSONDecodeError as e:
            raise ShardError(f"{mpath}: corrupt JSON ({e})") from e
        self.manifest = Manifest.from_json(raw, path=mpath)
        for f in self.manifest.files:
            p = self.path / f.path
            if not p.is_file():
                raise ShardError(f"{p}: shard file listed in the manifest is missing")
        total = sum(f.num_records for f in self.manifest.files)
        if total != self.manifest.num_frames:
            raise ShardError(
                f"{mpath}: shard files hold {total} records but the manifest says {self.num_frames}"
            )

    def __len__(self) -> int:
        return self.manifest.num_frames

    @property
    def num_frames(self) -> int:
        return self.manifest.num_frames

    @property
    def fps(self) -> int:
        return self.manifest.fps

    @property
    def cameras(self) -> list[str]:
        return self.manifest.cameras

    @property
    def features(self) -> dict[str, Feature]:
        return self.manifest.features

    def image_shape(self, camera: str) -> tuple[int, int, int]:
        return self.manifest.features[camera].hwc_shape

    @cached_property
    def episodes(self) -> dict[str, np.ndarray]:
        p = self.path / EPISODES
        try:
            table = pq.read_table(p)
        except (OSError, pq.lib.ArrowException) as e:
            raise ShardError(f"{p}: cannot read episode index ({e})") from e
        return {name: table.column(name).to_numpy() for name in table.column_names}

    @cached_property
    def stats(self) -> dict[str, dict[str, np.ndarray]]:
        p = self.path / STATS
        try:
            raw = json.loads(p.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise ShardError(f"{p}: cannot read stats ({e})") from e
        return {k: {s: np.asarray(v) for s, v in d.items()} for k, d in raw.items()}

    def lowdim(self, key: str) -> np.ndarray:
        """The (N, ...) array of a low-dimensional feature, memory-mapped."""
        return self._lowdim[key]

    @cached_property
    def _lowdim(self) -> dict[str, np.ndarray]:
        out = {}
        for key, feat in self.manifest.features.items():
            if feat.is_visual or feat.dtype == "string":
                continue
            p = self.path / LOWDIM_DIR / f"{key}.npy"
            try:
                arr = np.load(p, mmap_mode="r")
            except (OSError, ValueError) as e:
                raise ShardError(f"{p}: cannot read low-dimensional array for {key!r} ({e})") from e
            if arr.shape[0] != self.num_frames:
                raise ShardError(f"{p}: has {arr.shape[0]} rows, the manifest says {self.num_frames} frames")
            out[key] = arr.view(np.ndarray)  # still mapped; indexing a plain ndarray is ~3x cheaper
        return out

    def __getstate__(self):
        state = self.__dict__.copy()
        state.pop("_lowdim", None)  # a copy sent to a worker process maps the files again
        return state

    def lowdim_keys(self) -> list[str]:
        return list(self._lowdim)

    def record_paths(self) -> list[str]:
        return [str(self.path / f.path) for f in self.manifest.files]

    def record_reader(self) -> RecordReader:
        return RecordReader(self.record_paths(), [f.num_records for f in self.manifest.files])

    def decode_images(self, record: bytes) -> tuple[int, int, dict[str, np.ndarray]]:
        ep, fi, payloads = decode_record(record)
        if len(payloads) != len(self.cameras):
            raise ShardError(
                f"{self.path}: record has {len(payloads)} images, the manifest lists cameras {self.cameras}"
            )
        fmt = self.manifest.image_format
        return (
            ep,
            fi,
            {
                cam: fmt.decode(p, self.image_shape(cam))
                for cam, p in zip(self.cameras, payloads, strict=True)
            },
        )

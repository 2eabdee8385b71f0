"""The per-frame columns of a dataset, read from its data parquet files.

Low-dimensional columns (vectors, scalars, strings) are read once into numpy arrays: random access
and windows are then plain fancy indexing. `image` columns (PNG bytes) stay on disk and are read one
row group at a time (LeRobot writes one row group per episode) with a small cache.
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa

from jrobot.data.errors import DatasetError
from jrobot.data.format.arrow_schema import to_numpy
from jrobot.data.format.images import decode_image
from jrobot.data.format.parquet_io import open_parquet
from jrobot.features import Feature
from jrobot.paths import inside


class FrameTable:
    def __init__(
        self, files: Sequence[Path], features: Mapping[str, Feature], total_frames: int, root: Path
    ) -> None:
        self.root = root  # an image stored by path (not embedded) must lie inside the dataset folder
        self.features = dict(features)
        self.total_frames = total_frames
        self.lowdim_keys = [k for k, f in features.items() if not f.is_visual]
        self.image_keys = [k for k, f in features.items() if f.dtype == "image"]
        parts: dict[str, list[np.ndarray]] = {k: [] for k in self.lowdim_keys}
        # (path, first global row, row-group starts) for lazy image access
        self._files: list[tuple[Path, int, list[int]]] = []
        start = 0
        for path in files:
            if start >= total_frames:
                break
            pf = open_parquet(path)
            names = pf.schema_arrow.names
            missing = [k for k in self.lowdim_keys + self.image_keys if k not in names]
            if missing:
                raise DatasetError(f"{path}: missing column(s) {missing} that meta/info.json declares")
            n = pf.metadata.num_rows
            take = min(n, total_frames - start)
            try:
                table = pf.read(columns=self.lowdim_keys)
            except (pa.ArrowException, OSError) as e:
                raise DatasetError(f"{path}: truncated or corrupt parquet file ({e})") from e
            if take < n:
                table = table.slice(0, take)
            for k in self.lowdim_keys:
                try:
                    parts[k].append(to_numpy(table.column(k), features[k]))
                except ValueError as e:
                    raise DatasetError(
                        f"{path}: column {k!r} does not match its feature {features[k].shape}: {e}"
                    ) from e
            rg_starts = np.cumsum(
                [0] + [pf.metadata.row_group(i).num_rows for i in range(pf.metadata.num_row_groups)]
            )
            self._files.append((path, start, rg_starts.tolist()))
            start += take
        if start < total_frames:
            where = files[0].parent.parent if files else "data/"
            raise DatasetError(
                f"{where}: data files hold {start} frames but meta/info.json says {total_frames}"
            )
        self.columns: dict[str, np.ndarray] = {}
        for k in self.lowdim_keys:
            if parts[k]:
                self.columns[k] = np.concatenate(parts[k]) if len(parts[k]) > 1 else parts[k][0]
            else:
                f = features[k]
                shape = (0,) if tuple(f.shape) == (1,) else (0, *f.shape)
                self.columns[k] = np.zeros(shape, dtype=f.numpy_dtype)
        for arr in self.columns.values():
            arr.flags.writeable = False  # handed out as views (iter_episode, column): keep them intact
        self._file_starts = np.asarray([s for _, s, _ in self._files], dtype=np.int64)
        self._rg_cache: collections.OrderedDict[tuple[int, int, str], pa.Array] = collections.OrderedDict()
        self._lock = threading.Lock()

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        del state["_lock"], state["_rg_cache"]
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()
        self._rg_cache = collections.OrderedDict()

    def column(self, key: str) -> np.ndarray:
        try:
            return self.columns[key]
        except KeyError:
            raise DatasetError(
                f"{key!r} is not a low-dimensional feature (have {sorted(self.columns)})"
            ) from None

    def _image_bytes(self, key: str, row: int) -> tuple[bytes | None, str]:
        fi = int(np.searchsorted(self._file_starts, row, side="right") - 1)
        path, first, rg_starts = self._files[fi]
        local = row - first
        rg = int(np.searchsorted(rg_starts, local, side="right") - 1)
        cache_key = (fi, rg, key)
        with self._lock:
            arr = self._rg_cache.get(cache_key)
            if arr is None:
                try:
                    col = open_parquet(path).read_row_group(rg, columns=[key]).column(key)
                except (pa.ArrowException, OSError) as e:
                    raise DatasetError(f"{path}: truncated or corrupt parquet file ({e})") from e
                arr = col.combine_chunks()
                self._rg_cache[cache_key] = arr
                while len(self._rg_cache) > 4:
                    self._rg_cache.popitem(last=False)
            else:
                self._rg_cache.move_to_end(cache_key)
        value = arr[local - rg_starts[rg]].as_py()
        data = value.get("bytes") if isinstance(value, dict) else value
        where = f"{path} row {local} column {key!r}"
        if data is None and isinstance(value, dict) and value.get("path"):  # image stored beside the file
            data = self._image_file(str(value["path"]), path.parent, where)
        return data, where

    def _image_file(self, name: str, folder: Path, where: str) -> bytes | None:
        """The bytes of an image a row names by path (relative to its parquet file's folder), if the
        file is there; a name leading outside the dataset folder is refused, never read."""
        try:
            p = None if Path(name).is_absolute() else inside(self.root, folder.relative_to(self.root) / name)
        except (ValueError, OSError) as e:  # a NUL byte, a name too long for the file system
            raise DatasetError(f"{where}: unusable image path {name[:300]!r} ({e})") from e
        if p is None:
            raise DatasetError(
                f"{where}: image path {name[:300]!r} leads outside the dataset folder {self.root}; refused"
            )
        return p.read_bytes() if p.is_file() else None

    def images(self, key: str, rows: Sequence[int]) -> list[np.ndarray]:
        """Decoded HWC uint8 images of an `image` feature at the given global rows."""
        out = []
        for r in rows:
            data, where = self._image_bytes(key, int(r))
            out.append(decode_image(data, where=where))
        return out

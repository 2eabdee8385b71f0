"""Samples = windows around a frame, with LeRobot's `delta_timestamps` semantics, read from shards.

A policy asks for frame offsets per feature (ACT: the observation at t and actions t..t+99; Diffusion:
observations t-1, t and actions t-1..t+14). For frame t of an episode spanning rows [from, to), offset d
reads row clamp(t + d, from, to - 1) and marks `<key>_is_pad` where t + d falls outside the episode —
exactly LeRobot's rule, so a padded position repeats the boundary frame. Low-dimensional windows are
gathered from the memory-mapped side arrays; only the camera frames a window needs are decoded.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from jrobot.features import ACTION_KEY, STATE_KEY
from jrobot.shards.format import RecordReader, ShardError, ShardSet, decode_record


@dataclasses.dataclass(frozen=True)
class WindowSpec:
    """Frame offsets per feature key, plus how many frames to leave out at each episode's end.

    `drop_last_frames` mirrors LeRobot's `drop_n_last_frames` (Diffusion samples no start frame whose
    action window would be mostly padding).
    """

    deltas: Mapping[str, tuple[int, ...]]
    drop_last_frames: int = 0

    def __post_init__(self):
        for key, d in self.deltas.items():
            if len(d) == 0:
                raise ValueError(f"window for {key!r} has no offsets")
        object.__setattr__(self, "deltas", {k: tuple(int(x) for x in v) for k, v in self.deltas.items()})

    @classmethod
    def for_policy(
        cls,
        *,
        observation_deltas: Sequence[int],
        action_deltas: Sequence[int],
        state_keys: Iterable[str] = (STATE_KEY,),
        camera_keys: Iterable[str] = (),
        action_key: str = ACTION_KEY,
        drop_last_frames: int = 0,
    ) -> WindowSpec:
        """Observation offsets apply to every state and camera key, as LeRobot's policy configs do."""
        deltas: dict[str, tuple[int, ...]] = {}
        for k in list(state_keys) + list(camera_keys):
            deltas[k] = tuple(observation_deltas)
        deltas[action_key] = tuple(action_deltas)
        return cls(deltas=deltas, drop_last_frames=drop_last_frames)

    def to_json(self) -> dict[str, Any]:
        return {
            "deltas": {k: list(v) for k, v in self.deltas.items()},
            "drop_last_frames": self.drop_last_frames,
        }


class WindowSource:
    """grain random-access source: item i = the window around the i-th selected frame.

    `frames` restricts sampling to a subset of global frame indices (a train/val split, some tasks);
    windows still read neighbours outside that subset within the same episode, as LeRobot does.
    The object is picklable: file handles are reopened lazily in each grain worker process.
    """

    def __init__(
        self,
        shards: ShardSet | str,
        spec: WindowSpec,
        frames: np.ndarray | None = None,
        *,
        dataset_index: int = 0,
    ):
        self.dataset_index = int(dataset_index)  # which shard set of a mixture a sample came from
        self.shards = shards if isinstance(shards, ShardSet) else ShardSet(shards)
        self.spec = spec
        self._check_spec()
        ep = self.shards.episodes
        n = self.shards.num_frames
        self._ep_from = np.empty(n, dtype=np.int64)
        self._ep_to = np.empty(n, dtype=np.int64)
        for start, end in zip(ep["start"], ep["end"], strict=True):
            self._ep_from[start:end] = start
            self._ep_to[start:end] = end
        if frames is None:
            frames = np.arange(n, dtype=np.int64)
        frames = np.asarray(frames, dtype=np.int64)
        if spec.drop_last_frames:
            frames = frames[frames < self._ep_to[frames] - spec.drop_last_frames]
        if frames.size and (frames.min() < 0 or frames.max() >= n):
            raise ValueError(f"frame indices out of range for {self.shards.path} ({n} frames)")
        self.frames = frames
        self._cameras = [k for k in spec.deltas if self.shards.features[k].is_visual]
        self._camera_slot = {c: self.shards.cameras.index(c) for c in self._cameras}
        self._records = None
        # every key's offsets in one array, so a batch's rows and pads come from one vectorized query
        self._all_deltas = np.concatenate([np.asarray(d, dtype=np.int64) for d in spec.deltas.values()])
        bounds = np.cumsum([0] + [len(d) for d in spec.deltas.values()])
        self._delta_slices = {k: slice(int(a), int(b)) for k, a, b in zip(spec.deltas, bounds, bounds[1:])}

    def _check_spec(self) -> None:
        feats = self.shards.features
        for key in self.spec.deltas:
            if key not in feats:
                have = ", ".join(k for k in feats if k not in ("timestamp", "frame_index", "index"))
                raise ShardError(
                    f"window asks for feature {key!r}, which the shards at {self.shards.path} do not have "
                    f"(available: {have})"
                )
            if feats[key].dtype == "string":
                raise ShardError(f"window asks for string feature {key!r}; only numeric and image features")

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_records"] = None
        return state

    def __len__(self) -> int:
        return int(self.frames.size)

    def __repr__(self) -> str:
        return f"WindowSource({self.shards.path}, {len(self)} frames, keys={list(self.spec.deltas)})"

    @property
    def records(self) -> RecordReader:
        if self._records is None:
            self._records = self.shards.record_reader()
        return self._records

    def query(self, frame: int | np.ndarray, deltas: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """Clamped row indices and pad mask for offsets around global frame(s) `frame`.

        A scalar frame gives (T,) arrays; an array of B frames gives (B, T)."""
        frame = np.asarray(frame, dtype=np.int64)
        lo, hi = self._ep_from[frame][..., None], self._ep_to[frame][..., None]
        want = frame[..., None] + np.asarray(deltas, dtype=np.int64)
        return np.clip(want, lo, hi - 1), (want < lo) | (want >= hi)

    def __getitem__(self, i: int) -> dict[str, np.ndarray]:
        return {k: v[0] for k, v in self.read_batch(np.array([i])).items()}

    def read_batch(
        self, positions: np.ndarray, out: Mapping[str, np.ndarray] | None = None
    ) -> dict[str, np.ndarray]:
        """The windows around the selected frames at `positions`, stacked: every array has a leading
        batch axis. One call per batch keeps the Python work per sample small; what is left is the
        JPEG decoding, which releases the GIL, so reading threads run in parallel.

        With `out` (arrays of exactly the shapes and dtypes this returns, e.g. a shared-memory slot)
        everything is written there instead, images decoded straight into it; `out` is returned.
        """
        frames = self.frames[np.asarray(positions, dtype=np.int64)]
        b = frames.shape[0]
        episode_index = self.shards.lowdim("episode_index")
        arrays: dict[str, np.ndarray] = {
            "index": frames,
            "dataset_index": np.full(b, self.dataset_index, dtype=np.int64),
            "episode_index": episode_index[frames].astype(np.int64),
            "task_index": self.shards.lowdim("task_index")[frames].astype(np.int64),
        }
        all_rows, all_pad = self.query(frames, self._all_deltas)
        image_rows: dict[str, np.ndarray] = {}
        for key, sl in self._delta_slices.items():
            rows = all_rows[:, sl]
            arrays[f"{key}_is_pad"] = np.ascontiguousarray(all_pad[:, sl])
            if key in self._camera_slot:
                image_rows[key] = rows
            else:
                arrays[key] = self.shards.lowdim(key)[rows]
        if out is None:
            if image_rows:
                arrays.update(self._read_images(image_rows))
            return arrays
        if set(out) != set(arrays) | set(image_rows):
            raise ValueError(
                f"out has keys {sorted(out)}, the windows have {sorted(set(arrays) | set(image_rows))}"
            )
        for key, value in arrays.items():
            out[key][...] = value
        if image_rows:
            self._read_images(image_rows, out)
        return dict(out)

    def _read_images(
        self, image_rows: Mapping[str, np.ndarray], out: Mapping[str, np.ndarray] | None = None
    ) -> dict[str, np.ndarray]:
        needed = np.unique(np.concatenate([rows.ravel() for rows in image_rows.values()]))
        rows_list = needed.tolist()
        records = self.records.read(rows_list)  # errors name the shard file
        parsed = [decode_record(record) for record in records]
        want_ep = self.shards.lowdim("episode_index")[needed]
        want_fi = self.shards.lowdim("frame_index")[needed]
        got = np.array([(ep, fi) for ep, fi, _ in parsed], dtype=np.int64).reshape(-1, 2)
        bad = np.flatnonzero((got[:, 0] != want_ep) | (got[:, 1] != want_fi))
        if bad.size:
            j = int(bad[0])
            raise ShardError(
                f"{self.shards.path}: record {rows_list[j]} holds episode {got[j, 0]} frame {got[j, 1]}, "
                f"but the side arrays say episode {int(want_ep[j])} frame {int(want_fi[j])}; "
                "the shards are inconsistent, rebuild them"
            )
        payloads = {r: parts for r, (_, _, parts) in zip(rows_list, parsed, strict=True)}
        fmt = self.shards.manifest.image_format
        images = {}
        for cam, rows in image_rows.items():
            shape = self.shards.image_shape(cam)
            slot = self._camera_slot[cam]
            if out is None:
                frames = np.empty((*rows.shape, *shape), dtype=np.uint8)
            else:
                frames = out[cam]
                if (
                    frames.shape != (*rows.shape, *shape)
                    or frames.dtype != np.uint8
                    or not frames.flags.c_contiguous
                ):
                    raise ValueError(
                        f"out[{cam!r}] is {frames.dtype}{frames.shape}, expected C-contiguous "
                        f"uint8{(*rows.shape, *shape)}"
                    )
            flat = frames.reshape(-1, *shape)
            first: dict[int, int] = {}  # a row repeated by padding is decoded once, then copied
            for j, r in enumerate(rows.ravel().tolist()):
                if r in first:
                    flat[j] = flat[first[r]]
                else:
                    first[r] = j
                    fmt.decode(payloads[r][slot], shape, out=flat[j])
            images[cam] = frames
        return images


def select_frames(
    shards: ShardSet,
    *,
    episodes: Iterable[int] | None = None,
    tasks: Iterable[str | int] | None = None,
) -> np.ndarray:
    """Global frame indices of the chosen episodes and/or tasks (by task string or index)."""
    n = shards.num_frames
    mask = np.ones(n, dtype=bool)
    if episodes is not None:
        wanted = {int(e) for e in episodes}
        known = set(int(e) for e in shards.episodes["episode_index"])
        missing = sorted(wanted - known)
        if missing:
            raise ValueError(f"episodes {missing} are not in the shards at {shards.path}")
        mask &= np.isin(shards.lowdim("episode_index")[:], np.fromiter(wanted, dtype=np.int64))
    if tasks is not None:
        idx = set()
        for t in tasks:
            if isinstance(t, str):
                if t not in shards.manifest.tasks:
                    raise ValueError(
                        f"task {t!r} is not in the shards at {shards.path}: {shards.manifest.tasks}"
                    )
                idx.add(shards.manifest.tasks.index(t))
            else:
                idx.add(int(t))
        mask &= np.isin(shards.lowdim("task_index")[:], np.fromiter(idx, dtype=np.int64))
    return np.flatnonzero(mask).astype(np.int64)


def oversample_episode_starts(shards: ShardSet, frames: np.ndarray, first: int, repeats: int) -> np.ndarray:
    """`frames` plus `repeats` more copies of those among them within the first `first` frames of their
    episode (LeRobot's `frame_index` < `first`), so an epoch draws them `1 + repeats` times as often.

    Why: a language-conditioned policy needs its instruction only until the arm's motion gives the
    target away; after that, the joints and the images of the moving arm say where it is going. On
    the pick-colour demo its first 20 frames are ~11% of the data, and a VLA trained on them at their
    natural share learnt to ignore the instruction (the same first chunk whatever colour it named).
    """
    first, repeats = int(first), int(repeats)
    if first < 0 or repeats < 0:
        raise ValueError(
            f"episode start oversampling needs frames >= 0 and repeats >= 0, got {first}, {repeats}"
        )
    frames = np.asarray(frames, dtype=np.int64)
    if not first or not repeats:
        return frames
    start = frames[shards.lowdim("frame_index")[:][frames] < first]
    return np.concatenate([frames, *([start] * repeats)])


def split_episodes(
    shards: ShardSet, *, val_fraction: float = 0.0, val_episodes: Iterable[int] | None = None, seed: int = 0
) -> tuple[list[int], list[int]]:
    """Train/validation split by whole episodes (never by frame, which would leak neighbours)."""
    eps = [int(e) for e in shards.episodes["episode_index"]]
    if val_episodes is not None:
        val = sorted({int(e) for e in val_episodes})
        unknown = sorted(set(val) - set(eps))
        if unknown:
            raise ValueError(f"validation episodes {unknown} are not in the shards at {shards.path}")
    elif val_fraction > 0:
        if not 0 < val_fraction < 1:
            raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
        k = max(1, round(len(eps) * val_fraction))
        if k >= len(eps):
            raise ValueError(f"val_fraction {val_fraction} leaves no training episodes ({len(eps)} episodes)")
        rng = np.random.default_rng(seed)
        val = sorted(int(e) for e in rng.choice(eps, size=k, replace=False))
    else:
        val = []
    vs = set(val)
    return [e for e in eps if e not in vs], val

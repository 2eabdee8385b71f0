"""Background packing of camera videos: joining saved episodes' own mp4s onto the camera's file.

`save_episode` moves every camera's episode into `videos/` as a file of its own (a rename, O(1)),
so saving never waits for a concatenation whose cost grows with the file. This thread then joins
those single-episode files, oldest first, onto the camera's current file by stream copy, giving
LeRobot's layout (episodes back to back, a new file once `video_files_size_in_mb` would be
reached).

A stream copy rewrites the whole file, so joining each episode as it is saved would copy O(n^2)
packets over n episodes (and take the GIL from the recording loop for it). The thread therefore
waits until the episodes waiting for a camera add up to `JOIN_RATIO` of its file, then joins them
all in one copy: every packet is copied a bounded number of times, O(n) in all. `wait()` and
`stop()` (so `finalize`) join whatever is waiting, so a closed dataset has LeRobot's layout; until
then the newest episodes may still be files of their own, which is a layout LeRobot reads too.

Each join is crash-safe: the joined file replaces the old one atomically (earlier episodes keep
their timestamps), then the joined episodes' meta/episodes rows are rewritten to point into it,
then their single files are removed. Killed in between, the dataset still references valid files
only; `recovery` cuts an unreferenced tail and removes unreferenced files.
"""

from __future__ import annotations

import collections
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from jrobot.data.errors import DatasetError
from jrobot.data.format.layout import video_path
from jrobot.data.format.parquet_io import file_size_mb
from jrobot.data.video.encode import concat_videos
from jrobot.data.write.fsio import WorkDir

log = logging.getLogger(__name__)

# join the waiting episodes once they reach this share of the camera's file (each packet is then
# copied at most ~(1 + 1/JOIN_RATIO) times over a recording)
JOIN_RATIO = 0.5


def video_file_of(row: Mapping[str, Any], key: str) -> tuple[int, int]:
    """(chunk_index, file_index) of camera `key`'s file for a meta/episodes row."""
    return int(row[f"videos/{key}/chunk_index"]), int(row[f"videos/{key}/file_index"])


class VideoPacker:
    """Owns, per camera, the file being appended to and the episodes waiting to be joined onto it.

    Shares the writer's lock and episode rows: `rows()` returns the committed rows (read under the
    lock) and `update_rows({k: row})` replaces those rows and rewrites their meta/episodes files
    (called under the lock).
    """

    def __init__(
        self,
        *,
        root: Path,
        work: WorkDir,
        lock: threading.RLock,
        rows: Callable[[], list[dict[str, Any]]],
        update_rows: Callable[[dict[int, dict[str, Any]]], None],
        video_keys: Sequence[str],
        fps: int,
        file_limit_mb: float,
        enabled: bool = True,
    ) -> None:
        self._root, self._work, self._lock = root, work, lock
        self._rows, self._update_rows = rows, update_rows
        self._keys = list(video_keys)
        self._fps = fps
        self._limit = float(file_limit_mb)
        self.enabled = enabled
        self._target: dict[str, tuple[int, int] | None] = {}
        self._pending: dict[str, collections.deque[int]] = {}
        self.error: BaseException | None = None
        self._wake = threading.Condition(lock)
        self._stop = False
        self._flush = 0  # callers of wait() that want everything joined now
        self._busy = False
        self._thread: threading.Thread | None = None
        self.reset()

    def reset(self) -> None:
        """Derive the state from the committed rows: trailing single-episode files are still to pack."""
        with self._lock:
            rows = self._rows()
            for key in self._keys:
                self._pending[key] = collections.deque()
                self._target[key] = None
                if not rows:
                    continue
                users = collections.Counter(video_file_of(r, key) for r in rows)
                k = len(rows)
                while k > 0 and users[video_file_of(rows[k - 1], key)] == 1:
                    k -= 1
                if k == 0:
                    k = 1
                self._target[key] = video_file_of(rows[k - 1], key)
                if self.enabled:
                    self._pending[key].extend(range(k, len(rows)))
                else:
                    self._target[key] = video_file_of(rows[-1], key)
        if any(self._pending.values()):
            self.wake()

    def episode_saved(self, index: int, files: Mapping[str, tuple[int, int]]) -> None:
        """Record a committed episode whose camera files are `files` (call under the lock)."""
        for key in self._keys:
            if self.enabled and (self._target[key] is not None or self._pending[key]):
                self._pending[key].append(index)
            else:
                self._target[key] = files[key]

    def raise_error(self) -> None:
        if self.error is not None:
            raise DatasetError(f"video packing failed: {self.error!r}") from self.error

    # -- thread ---------------------------------------------------------------------------------

    def wake(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._stop = False
                self._thread = threading.Thread(target=self._loop, name="jrobot-video-packer", daemon=True)
                self._thread.start()
            self._wake.notify_all()

    def wait(self) -> None:
        """Join every waiting episode now and block until that is done (or packing failed)."""
        with self._lock:
            self._flush += 1
            try:
                if any(self._pending.values()):
                    self.wake()
                while (
                    self._thread is not None
                    and self._thread.is_alive()
                    and (any(self._pending.values()) or self._busy)
                    and self.error is None
                ):
                    self._wake.wait(timeout=0.5)
            finally:
                self._flush -= 1
        self.raise_error()

    def stop(self) -> None:
        """Join the waiting episodes, then end the thread."""
        with self._lock:
            thread = self._thread
            if thread is None:
                return
            self._stop = True
            self._wake.notify_all()
        thread.join()
        self._thread = None

    def _due(self) -> str | None:
        """A camera whose waiting episodes should be joined now (call under the lock)."""
        force = self._stop or self._flush > 0
        for key, queue in self._pending.items():
            if not queue:
                continue
            target_cf = self._target[key]
            if force or target_cf is None:
                return key
            rows = self._rows()
            waiting = sum(
                file_size_mb(video_path(self._root, key, *video_file_of(rows[k], key))) for k in queue
            )
            target_mb = file_size_mb(video_path(self._root, key, *target_cf))
            if waiting >= JOIN_RATIO * target_mb or target_mb + waiting >= self._limit:
                return key
        return None

    def _loop(self) -> None:
        try:
            while True:
                with self._lock:
                    key = self._due()
                    while key is None and not self._stop:
                        self._wake.wait()
                        key = self._due()
                    if key is None:
                        return
                    self._busy = True
                self._pack(key)
                with self._lock:
                    self._busy = False
                    self._wake.notify_all()
        except BaseException as e:  # reported by the next save/finalize; the dataset stays valid
            log.error("video packing failed: %r", e)
            with self._lock:
                self.error = e
                self._busy = False
                self._wake.notify_all()

    def _pack(self, key: str) -> None:
        """Join the oldest waiting episodes of `key` that fit onto the camera's file, in one copy, or
        make the oldest one the camera's new file when none fits."""
        with self._lock:
            rows = self._rows()
            target_cf = self._target[key]
            first = self._pending[key][0]
            if target_cf is None:
                self._target[key] = video_file_of(rows[first], key)
                self._pending[key].popleft()
                return
            target = video_path(self._root, key, *target_cf)
            size = file_size_mb(target)
            batch: list[tuple[int, Path]] = []
            for k in self._pending[key]:
                fresh = video_path(self._root, key, *video_file_of(rows[k], key))
                size += file_size_mb(fresh)
                if size >= self._limit:
                    break
                batch.append((k, fresh))
            if not batch:  # the oldest does not fit: it starts the camera's next file
                self._target[key] = video_file_of(rows[first], key)
                self._pending[key].popleft()
                return
        tmp = self._work.tmp_path(".mp4")
        try:
            # the slow part, outside the lock
            segments = concat_videos([target, *(fresh for _, fresh in batch)], tmp)
            with self._lock:
                rows = self._rows()
                prev_end = max(
                    float(r[f"videos/{key}/to_timestamp"])
                    for r in rows[: batch[0][0]]
                    if video_file_of(r, key) == target_cf
                )
                if abs(float(segments[0].end) - prev_end) > 0.5 / self._fps:
                    raise DatasetError(
                        f"{target}: ends at {float(segments[0].end):.6f} s but its last episode ends at {prev_end:.6f} s"
                    )
                self._work.replace(tmp, target)
                updates = {}
                for (k, _), seg in zip(batch, segments[1:], strict=True):
                    row = dict(rows[k])
                    row[f"videos/{key}/chunk_index"], row[f"videos/{key}/file_index"] = target_cf
                    row[f"videos/{key}/from_timestamp"] = float(seg.start)
                    row[f"videos/{key}/to_timestamp"] = float(seg.end)
                    updates[k] = row
                self._update_rows(updates)
                for _, fresh in batch:  # under the lock: their indices may be handed out again next
                    self._work.remove(fresh)
                    self._pending[key].popleft()
        finally:
            tmp.unlink(missing_ok=True)

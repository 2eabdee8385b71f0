"""Exact frame access to mp4 files: frames are found by presentation timestamp, not by float luck.

A `VideoFile` keeps its container and decoder open. A request for time t becomes the tick
`round(t / time_base)`; the decoder seeks to the keyframe at or before it (or just keeps decoding
when the target is a few frames ahead of where it is), decodes forward, and returns the frame whose
pts is nearest, checked against LeRobot's tolerance (1e-4 s by default). Recently decoded frames are
cached, so a window of consecutive frames (delta timestamps) is decoded once. `iter_frames` walks a
range front to back with one seek, for the sequential readers (shard building, stats).

`VideoPool` bounds how many files are open and reopens them after a fork (decoder state must not be
shared between processes).
"""

from __future__ import annotations

import collections
import os
import threading
from collections.abc import Iterator, Sequence
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from jrobot.data.errors import DatasetError, FrameTimestampError
from jrobot.data.video.container import open_video, sane_frame_size

DEFAULT_TOLERANCE_S = 1e-4


class _Cached:
    """A decoded frame, converted to RGB only when someone asks for it."""

    __slots__ = ("array", "frame")

    def __init__(self, frame: av.VideoFrame) -> None:
        self.frame: av.VideoFrame | None = frame
        self.array: np.ndarray | None = None

    def rgb(self, reformatter: VideoReformatter) -> np.ndarray:
        if self.array is None:
            # A reused reformatter keeps its swscale context: ~2x faster than frame.to_ndarray().
            self.array = reformatter.reformat(self.frame, format="rgb24").to_ndarray()
            self.frame = None
        return self.array


class VideoFile:
    """One open mp4: seek-to-keyframe random access with a cache of recently decoded frames."""

    def __init__(
        self,
        path: Path,
        *,
        size: tuple[int, int] | None = None,
        cache_frames: int = 48,
        threads: int = 1,
    ) -> None:
        """`size`: the (height, width) the dataset's metadata promises; a stream of another size (or of
        an absurd one) is refused when opened, before a frame is decoded."""
        self.path = Path(path)
        self._size = size
        self._threads = threads
        self._open()
        self.time_base: Fraction = self._stream.time_base
        rate = self._stream.average_rate or self._stream.base_rate or Fraction(30)
        self.frame_ticks = max(1, round(1 / (Fraction(rate) * self.time_base)))
        self._cache: collections.OrderedDict[int, _Cached] = collections.OrderedDict()
        self._cache_frames = max(4, cache_frames)
        self._gen: Iterator[av.VideoFrame] | None = None
        self._last_pts: int | None = None  # pts of the last frame the decoder produced
        self._eof = False
        self._reformatter = VideoReformatter()
        self.lock = threading.Lock()

    def _open(self) -> None:
        if not self.path.is_file():
            raise DatasetError(f"missing video file: {self.path}")
        self._container, self._stream = open_video(self.path)
        try:
            self._check_size(self._stream.height, self._stream.width, "its header")
        except DatasetError:
            self._container.close()
            raise
        self._stream.thread_type = "AUTO" if self._threads != 1 else "SLICE"
        self._stream.thread_count = self._threads
        self._closed = False

    def _check_size(self, h: int, w: int, what: str) -> None:
        if not sane_frame_size(h, w):
            raise DatasetError(f"{self.path}: {what} gives the video stream the absurd size {h}x{w}; refused")
        expected = self._size if self._size is not None else (self._stream.height, self._stream.width)
        if (h, w) != tuple(expected):
            whose = (
                "its feature in meta/info.json says" if self._size is not None else "the stream header says"
            )
            raise DatasetError(
                f"{self.path}: {what} gives {h}x{w} frames but {whose} {expected[0]}x{expected[1]}"
            )

    def _checked(self, frame: av.VideoFrame) -> av.VideoFrame:
        """A decoded frame, if it has the stream's size (a mid-stream size change is refused)."""
        if (frame.height, frame.width) != (self._stream.height, self._stream.width):
            t = float(frame.pts * self.time_base) if frame.pts is not None else float("nan")
            self._check_size(frame.height, frame.width, f"the frame at {t:.6f} s")
        return frame

    @property
    def height(self) -> int:
        return self._stream.height

    @property
    def width(self) -> int:
        return self._stream.width

    def close(self) -> None:
        """Release the decoder; a later request reopens the file (a pool may close a file in use)."""
        self._gen = None
        self._last_pts = None
        self._cache.clear()
        if not self._closed:
            self._container.close()
            self._closed = True

    # -- decoding -------------------------------------------------------------------------------

    def _seek(self, target: int) -> None:
        if self._closed:
            self._open()
        try:
            self._container.seek(max(0, target), stream=self._stream, backward=True, any_frame=False)
        except av.error.FFmpegError as e:
            raise DatasetError(f"{self.path}: seek to pts {target} failed ({e})") from e
        self._gen = self._container.decode(self._stream)
        self._last_pts = None
        self._eof = False

    def _next_frame(self) -> int | None:
        """Decode one more frame into the cache; returns its pts, or None at the end of the stream."""
        if self._gen is None or self._closed:
            self._seek(0)
        try:
            frame = next(self._gen)
        except StopIteration:
            self._eof = True
            return None
        except av.error.FFmpegError as e:
            raise DatasetError(f"{self.path}: truncated or corrupt video ({e})") from e
        pts = frame.pts if frame.pts is not None else frame.dts
        if pts is None:
            raise DatasetError(f"{self.path}: decoded a frame without a timestamp")
        self._last_pts = pts
        self._cache[pts] = _Cached(self._checked(frame))
        self._cache.move_to_end(pts)
        while len(self._cache) > self._cache_frames:
            self._cache.popitem(last=False)
        return pts

    def _nearest_cached(self, target: int) -> int | None:
        if target in self._cache:
            return target
        best = None
        for pts in self._cache:
            if best is None or abs(pts - target) < abs(best - target):
                best = pts
        return best

    def _locate(self, target: int, tol_ticks: float) -> int:
        """pts of the frame nearest to `target`, decoding as needed; raises if none within tolerance."""
        hit = self._nearest_cached(target)
        if hit is not None and abs(hit - target) <= tol_ticks:
            self._cache.move_to_end(hit)
            return hit
        ahead = self._last_pts is not None and not self._eof and self._last_pts < target
        near = ahead and target - self._last_pts <= 8 * self.frame_ticks
        if not near:
            self._seek(target)
        for attempt in range(2):
            while True:
                pts = self._next_frame()
                if pts is None or pts >= target - tol_ticks:
                    break
            if pts is not None and attempt == 0 and pts > target + tol_ticks and not near:
                # The seek landed after the target (no keyframe index entry before it): start over.
                self._seek(0)
                continue
            break
        hit = self._nearest_cached(target)
        if hit is None or abs(hit - target) > tol_ticks:
            found = "no frame" if hit is None else f"nearest frame at {float(hit * self.time_base):.6f} s"
            raise FrameTimestampError(
                f"{self.path}: no frame at {float(target * self.time_base):.6f} s within the tolerance "
                f"({found}); the file is shorter than its metadata says, or timestamps are off the frame grid"
            )
        self._cache.move_to_end(hit)
        return hit

    def frames_at(
        self, times_s: Sequence[float], tolerance_s: float = DEFAULT_TOLERANCE_S
    ) -> list[np.ndarray]:
        """HWC uint8 RGB frames at the given times (seconds, file clock)."""
        tol_ticks = float(tolerance_s / self.time_base)
        targets = [round(t / self.time_base) for t in times_s]
        out: dict[int, np.ndarray] = {}
        with self.lock:
            for target in sorted(set(targets)):
                pts = self._locate(target, tol_ticks)
                out[target] = self._cache[pts].rgb(self._reformatter)
        return [out[t] for t in targets]

    def iter_frames(
        self, start_s: float, count: int, fps: float, tolerance_s: float = DEFAULT_TOLERANCE_S
    ) -> Iterator[np.ndarray]:
        """`count` consecutive frames from `start_s`, decoded front to back after a single seek.

        Every decoded frame must be the next expected one (pts within the tolerance of
        start + k/fps); a missing frame raises FrameTimestampError. Meant for a VideoFile of its
        own (the reader opens one per walk): it bypasses the cache and does not take the lock.
        """
        tol_ticks = float(tolerance_s / self.time_base)
        period = Fraction(1) / Fraction(fps).limit_denominator(1001)
        start = Fraction(start_s).limit_denominator(10**9)
        if count <= 0:
            return
        self._seek(round(start / self.time_base))
        self._cache.clear()
        for k in range(count):
            target = round((start + k * period) / self.time_base)
            while True:
                try:
                    frame = next(self._gen)
                except StopIteration:
                    frame = None
                except av.error.FFmpegError as e:
                    raise DatasetError(f"{self.path}: truncated or corrupt video ({e})") from e
                if frame is None:
                    raise FrameTimestampError(
                        f"{self.path}: the video ends before {float(target * self.time_base):.6f} s "
                        f"(frame {k} of {count} starting at {float(start):.6f} s)"
                    )
                pts = frame.pts if frame.pts is not None else frame.dts
                if pts is not None and pts >= target - tol_ticks:
                    break
            if pts > target + tol_ticks:
                raise FrameTimestampError(
                    f"{self.path}: no frame at {float(target * self.time_base):.6f} s within the tolerance "
                    f"(next frame at {float(pts * self.time_base):.6f} s)"
                )
            self._last_pts = pts
            yield self._reformatter.reformat(self._checked(frame), format="rgb24").to_ndarray()


class VideoPool:
    """Open `VideoFile`s, least recently used closed first; per process (reopened after fork)."""

    def __init__(self, max_open: int = 16, *, cache_frames: int = 48, threads: int = 1) -> None:
        self.max_open = max(1, max_open)
        self.cache_frames = cache_frames
        self.threads = threads
        self._files: collections.OrderedDict[Path, VideoFile] = collections.OrderedDict()
        self._pid = os.getpid()
        self._lock = threading.Lock()

    def get(self, path: Path, size: tuple[int, int] | None = None) -> VideoFile:
        """The open file at `path` (`size`: the (height, width) its metadata promises)."""
        with self._lock:
            if self._pid != os.getpid():
                self._files = collections.OrderedDict()  # inherited handles belong to the parent
                self._pid = os.getpid()
            vf = self._files.get(path)
            if vf is None:
                vf = VideoFile(path, size=size, cache_frames=self.cache_frames, threads=self.threads)
                self._files[path] = vf
                while len(self._files) > self.max_open:
                    _, old = self._files.popitem(last=False)
                    with old.lock:  # not while another thread decodes from it
                        old.close()
            else:
                self._files.move_to_end(path)
            return vf

    def __getstate__(self) -> dict:
        """Pickled (e.g. to a worker process) without its open files: the copy opens its own."""
        return {"max_open": self.max_open, "cache_frames": self.cache_frames, "threads": self.threads}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["max_open"], cache_frames=state["cache_frames"], threads=state["threads"])

    def close(self) -> None:
        with self._lock:
            if self._pid == os.getpid():
                for vf in self._files.values():
                    vf.close()
            self._files.clear()

"""Video writing: per-camera streaming encoders, stream-copy concatenation, probing.

Encoding happens while an episode is recorded: each camera has a `CameraEncoder` thread fed through a
bounded queue. A full queue blocks the caller (back-pressure) instead of dropping frames as LeRobot's
streaming encoder does; an encoder failure is raised on the caller's next frame. Each episode becomes
its own mp4; joining episodes into one file is a stream copy (`concat_videos`), never a re-encode.
Defaults match LeRobot 0.4.4: libsvtav1, yuv420p, g=2, crf=30, preset 12.

The encoder threads run 10 nice levels below the recording process and never real-time (see
`demote_realtime_threads`): on a small computer they use most of the CPU, and whatever they delay
must be something with a queue (theirs), not the control loop, the cameras or the servo bus.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import queue
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np

from jrobot.data.errors import DatasetError
from jrobot.data.format.stats import frame_channel_counts
from jrobot.data.video.container import open_video

log = logging.getLogger(__name__)

# SVT-AV1 prints a banner per encoder on stderr; keep only its errors unless the user asked otherwise.
os.environ.setdefault("SVT_LOG", "1")

HW_ENCODERS = (
    "h264_videotoolbox",
    "hevc_videotoolbox",
    "h264_nvenc",
    "hevc_nvenc",
    "h264_vaapi",
    "h264_qsv",
)


# How much lower the encoder threads' priority is than the recording process's. Encoders have a queue
# to catch up from; the control loop, the camera threads and the servo bus do not.
ENCODER_NICE_INCREMENT = 10


def _thread_ids() -> set[int]:
    """This process's kernel thread ids (empty where /proc is not Linux's)."""
    try:
        return {int(t) for t in os.listdir("/proc/self/task")}
    except (OSError, ValueError):
        return set()


def lower_this_threads_priority(increment: int = ENCODER_NICE_INCREMENT) -> int | None:
    """Raise the calling thread's nice value by `increment` (at most 19); its new value, or None where
    threads have no nice value of their own (not Linux). Threads it starts later inherit it."""
    if not (sys.platform.startswith("linux") and hasattr(os, "setpriority")):
        return None
    tid = threading.get_native_id()
    try:
        nice = min(19, os.getpriority(os.PRIO_PROCESS, tid) + increment)
        os.setpriority(os.PRIO_PROCESS, tid, nice)
    except OSError:
        return None
    return nice


def demote_realtime_threads(thread_ids: set[int], nice: int | None = None) -> int:
    """Put those of `thread_ids` that run under a real-time policy back under the normal one (at
    `nice`, when given). Returns how many were demoted; threads that exit meanwhile are skipped.

    SVT-AV1 creates its worker threads SCHED_FIFO at priority 99 when the process may (root, as in a
    container or under sudo), and nice values do not apply to those. Its encoders then take both
    cores of a small computer in bursts of tens of ms: the control loop, the camera threads and the
    servo bus wait, and the record loop misses ticks. Measured on a 2-core VM with two 640x480
    encoders: a 1 ms sleeper in another process woke up to 46 ms late at p99, 4 ms with the encoder
    threads demoted.
    """
    if not hasattr(os, "sched_getscheduler"):
        return 0
    realtime = (os.SCHED_FIFO, os.SCHED_RR)
    demoted = 0
    for tid in thread_ids:
        try:
            if os.sched_getscheduler(tid) in realtime:
                os.sched_setscheduler(tid, os.SCHED_OTHER, os.sched_param(0))
                if nice is not None:
                    os.setpriority(os.PRIO_PROCESS, tid, nice)
                demoted += 1
        except OSError:
            continue
    return demoted


@dataclasses.dataclass(frozen=True)
class VideoOptions:
    """How camera streams are encoded (LeRobot's `encode_video_frames` options).

    `codec` is an FFmpeg encoder name ("libsvtav1", "h264", "hevc", a hardware encoder) or "auto"
    (first available hardware encoder, else libsvtav1). `preset` applies to libsvtav1 only. For
    h264/hevc B-frames are disabled (unless `extra` sets "bf") so that decode and presentation order
    agree, which keeps stream-copy concatenation of episodes valid.
    """

    codec: str = "libsvtav1"
    pix_fmt: str = "yuv420p"
    g: int | None = 2
    crf: int | None = 30
    preset: int | None = 12
    fast_decode: int = 0
    encoder_threads: int | None = None
    extra: Mapping[str, str] = dataclasses.field(default_factory=dict)

    def resolved_codec(self) -> str:
        if self.codec != "auto":
            try:
                av.codec.Codec(self.codec, "w")
            except Exception as e:
                raise DatasetError(
                    f"video codec {self.codec!r} is not available in this FFmpeg build ({e})"
                ) from e
            return self.codec
        for name in HW_ENCODERS:
            with contextlib.suppress(Exception):
                av.codec.Codec(name, "w")
                return name
        return "libsvtav1"

    def pix_fmt_for(self, codec: str) -> str:
        if codec in ("libsvtav1", "hevc", "libx265") and self.pix_fmt == "yuv444p":
            return "yuv420p"  # as LeRobot: these encoders get 4:2:0
        return self.pix_fmt

    def codec_options(self, codec: str) -> dict[str, str]:
        """LeRobot's `_get_codec_options` plus the fast-decode and thread settings."""
        opts: dict[str, str] = {}
        if self.g is not None and (
            codec in ("h264_videotoolbox", "hevc_videotoolbox") or codec not in HW_ENCODERS
        ):
            opts["g"] = str(self.g)
        if self.crf is not None:
            if codec in ("h264", "hevc", "libsvtav1", "libx264", "libx265"):
                opts["crf"] = str(self.crf)
            elif codec in ("h264_videotoolbox", "hevc_videotoolbox"):
                opts["q:v"] = str(max(1, min(100, int(100 - self.crf * 2))))
            elif codec in ("h264_nvenc", "hevc_nvenc"):
                opts["rc"] = "constqp"
                opts["qp"] = str(self.crf)
            elif codec == "h264_vaapi":
                opts["qp"] = str(self.crf)
            elif codec == "h264_qsv":
                opts["global_quality"] = str(self.crf)
        if codec == "libsvtav1":
            opts["preset"] = str(self.preset if self.preset is not None else 12)
        svt_params = []
        if self.fast_decode:
            if codec == "libsvtav1":
                svt_params.append(f"fast-decode={self.fast_decode}")
            else:
                opts["tune"] = "fastdecode"
        if self.encoder_threads is not None:
            if codec == "libsvtav1":
                svt_params.append(f"lp={self.encoder_threads}")
            else:
                opts["threads"] = str(self.encoder_threads)
        if svt_params:
            opts["svtav1-params"] = ":".join(svt_params)
        if codec in ("h264", "hevc", "libx264", "libx265"):
            opts["bf"] = "0"
        opts.update({str(k): str(v) for k, v in self.extra.items()})
        return opts


@dataclasses.dataclass
class EncodedEpisode:
    path: Path
    num_frames: int
    channel_counts: list[np.ndarray]  # per frame (3, 256) pixel-value counts, for image stats


_STOP = object()


class CameraEncoder:
    """One camera's encoder thread for one episode: frames in through a bounded queue, an mp4 out.

    `put` copies the frame (camera drivers reuse buffers) and blocks while the queue is full, so a
    slow encoder slows the recording loop rather than silently losing frames. The thread also counts
    pixel values of each (downsampled) frame for the image statistics, off the caller's thread.
    """

    def __init__(
        self,
        path: Path,
        *,
        key: str,
        height: int,
        width: int,
        fps: int,
        options: VideoOptions,
        queue_size: int = 30,
        put_timeout_s: float = 120.0,
        durable: bool = True,
    ) -> None:
        self.path = path
        self.key = key
        self.height, self.width, self.fps = height, width, fps
        self.options = options
        self.durable = durable
        self.put_timeout_s = put_timeout_s
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=max(1, queue_size))
        self._error: BaseException | None = None
        self._counts: list[np.ndarray] = []
        self._frames = 0
        self._cancel = threading.Event()
        self._stop_sent = False
        self._thread = threading.Thread(target=self._run, name=f"jrobot-encoder[{key}]", daemon=True)
        self._thread.start()

    def put(self, frame: np.ndarray) -> None:
        item = np.array(frame, dtype=np.uint8, copy=True, order="C")
        deadline = time.monotonic() + self.put_timeout_s
        while True:
            if self._error is not None or not self._thread.is_alive():
                raise DatasetError(f"video encoder for {self.key!r} ({self.path}) failed: {self._error!r}")
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                if time.monotonic() > deadline:
                    raise DatasetError(
                        f"video encoder for {self.key!r} accepted no frame for {self.put_timeout_s:.0f} s; it is stuck"
                    ) from None

    def request_finish(self) -> None:
        """Ask the thread to flush and close after the queued frames, without waiting."""
        if self._stop_sent:
            return
        self._stop_sent = True
        while self._thread.is_alive():
            try:
                self._queue.put(_STOP, timeout=0.1)
                return
            except queue.Full:
                continue

    def finish(self) -> EncodedEpisode:
        """Flush the encoder and close the file; raises if encoding failed."""
        self.request_finish()
        self._thread.join()
        if self._error is not None:
            raise DatasetError(
                f"video encoder for {self.key!r} ({self.path}) failed: {self._error!r}"
            ) from self._error
        return EncodedEpisode(self.path, self._frames, self._counts)

    def cancel(self) -> None:
        self._cancel.set()
        with contextlib.suppress(queue.Empty):
            while True:
                self._queue.get_nowait()
        with contextlib.suppress(queue.Full):
            self._queue.put_nowait(_STOP)
        self._stop_sent = True
        self._thread.join()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    def pending(self) -> int:
        return self._queue.qsize()

    def _run(self) -> None:
        container = None
        nice = lower_this_threads_priority()
        threads_before = _thread_ids()
        try:
            codec = self.options.resolved_codec()
            container = av.open(str(self.path), "w", format="mp4")
            stream = container.add_stream(codec, rate=self.fps, options=self.options.codec_options(codec))
            stream.pix_fmt = self.options.pix_fmt_for(codec)
            stream.width, stream.height = self.width, self.height
            stream.time_base = Fraction(1, self.fps)
            while True:
                # A timed get: a wake-up lost in the queue (an exception raised inside the
                # producer's notify, e.g. a signal landing there) must not leave this thread, and
                # `cancel()` joining it, waiting forever; the queue is re-checked every 0.1 s.
                try:
                    item = self._queue.get(timeout=0.1)
                except queue.Empty:
                    if self._cancel.is_set():
                        break
                    continue
                if item is _STOP or self._cancel.is_set():
                    break
                vf = av.VideoFrame.from_ndarray(item, format="rgb24")
                vf.pts = self._frames
                vf.time_base = Fraction(1, self.fps)
                for packet in stream.encode(vf):
                    container.mux(packet)
                if self._frames == 0:  # the first encode opened the codec: its threads, and this one
                    new_threads = (_thread_ids() - threads_before) | {threading.get_native_id()}
                    demote_realtime_threads(new_threads, nice)
                self._counts.append(frame_channel_counts(item))
                self._frames += 1
            for packet in stream.encode(None):  # also on cancel: encoders want their end-of-stream
                if not self._cancel.is_set():
                    container.mux(packet)
            container.close()
            container = None
            if self.durable and not self._cancel.is_set():
                fd = os.open(self.path, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
        except BaseException as e:  # reported to the recording thread on its next call
            self._error = e
            if container is not None:
                with contextlib.suppress(Exception):
                    container.close()
            with contextlib.suppress(queue.Empty):  # unblock a producer waiting on a full queue
                while True:
                    self._queue.get_nowait()


def probe_video_info(path: Path) -> dict[str, Any]:
    """The `info` dict LeRobot stores per video feature (`get_video_info`), keys in its order."""
    c, s = open_video(path)
    try:
        with c:
            pix_fmt = s.codec_context.pix_fmt or "yuv420p"
            info: dict[str, Any] = {
                "video.height": s.height,
                "video.width": s.width,
                "video.codec": s.codec.canonical_name,
                "video.pix_fmt": pix_fmt,
                "video.is_depth_map": False,
                "video.fps": int(s.base_rate),
                "video.channels": 1
                if "gray" in pix_fmt
                else 4
                if ("rgba" in pix_fmt or "yuva" in pix_fmt)
                else 3,
            }
            if c.streams.audio:
                a = c.streams.audio[0]
                info.update(
                    {
                        "audio.channels": a.channels,
                        "audio.codec": a.codec.canonical_name,
                        "audio.bit_rate": a.bit_rate,
                        "audio.sample_rate": a.sample_rate,
                        "audio.bit_depth": a.format.bits,
                        "audio.channel_layout": a.layout.name,
                        "has_audio": True,
                    }
                )
            else:
                info["has_audio"] = False
            return info
    except av.error.FFmpegError as e:
        raise DatasetError(f"{path}: not a readable video ({e})") from e


@dataclasses.dataclass(frozen=True)
class Segment:
    """Where one input landed in a concatenated file: [start, end) in seconds (exact fractions)."""

    start: Fraction
    end: Fraction


def video_duration_s(path: Path) -> float:
    """LeRobot's `get_video_duration_in_s`: stream duration, falling back to the container's."""
    c, s = open_video(path)
    try:
        with c:
            if s.duration is not None:
                return float(s.duration * s.time_base)
            return float(c.duration / av.time_base)
    except (av.error.FFmpegError, IndexError) as e:
        raise DatasetError(f"{path}: not a readable video ({e})") from e


def concat_videos(
    inputs: Sequence[Path],
    output: Path,
    *,
    until: Sequence[Fraction | None] | None = None,
    since: Sequence[Fraction | None] | None = None,
    faststart: bool = True,
) -> list[Segment]:
    """Join mp4 files back to back by stream copy (no re-encode) and say where each one landed.

    Input i is shifted to start where input i-1 ended (its last pts + duration), so frame times
    stay exact multiples of the frame period. `until[i]` (seconds) drops packets of input i that
    start at or after that time (used to cut a file back to its last recorded episode); `since[i]`
    drops those that start before it (used to copy one episode out of a multi-episode file; the
    first packet kept must then be a keyframe, or the copy could not be decoded).
    """
    if not inputs:
        raise DatasetError("concat_videos: no input files")
    segments: list[Segment] = []
    out = av.open(str(output), "w", format="mp4", options={"movflags": "faststart"} if faststart else {})
    try:
        ost = None
        out_tb: Fraction | None = None
        offset = 0  # output ticks
        last_dts: int | None = None
        for i, path in enumerate(inputs):
            inp, ist = open_video(path)
            with inp:
                in_tb = ist.time_base
                if ost is None:
                    ost = out.add_stream_from_template(template=ist, opaque=True)
                    ost.time_base = in_tb
                    out_tb = in_tb
                limit = None
                if until is not None and until[i] is not None:
                    limit = until[i] / in_tb
                begin = since[i] / in_tb if since is not None and since[i] is not None else None
                if begin is not None and begin > 0:  # skip the earlier episodes of the file
                    inp.seek(int(begin), stream=ist, backward=True, any_frame=False)
                first: int | None = None
                end = offset
                for pkt in inp.demux(ist):
                    if pkt.dts is None and pkt.pts is None:
                        continue
                    pts = pkt.pts if pkt.pts is not None else pkt.dts
                    if limit is not None and pkt.dts is not None and pkt.dts >= limit:
                        break  # pts >= dts, and dts only grows: nothing later is wanted
                    if limit is not None and pts >= limit:
                        continue
                    if begin is not None and pts < begin:
                        continue
                    if begin is not None and first is None and not pkt.is_keyframe:
                        raise DatasetError(
                            f"{path}: the packet at {float(pts * in_tb):.6f} s is not a keyframe; "
                            "a stream copy cannot start there"
                        )
                    dts = pkt.dts if pkt.dts is not None else pts
                    dur = pkt.duration or 0
                    if in_tb != out_tb:
                        scale = in_tb / out_tb
                        pts, dts, dur = (round(pts * scale), round(dts * scale), round(dur * scale))
                    if first is None:
                        first = pts
                    new_pts, new_dts = pts - first + offset, dts - first + offset
                    if last_dts is not None and new_dts <= last_dts:
                        raise DatasetError(
                            f"cannot concatenate {path}: decode timestamps would go backwards (B-frames?)"
                        )
                    last_dts = new_dts
                    pkt.pts, pkt.dts, pkt.duration = new_pts, new_dts, dur
                    pkt.time_base = out_tb
                    pkt.stream = ost
                    out.mux(pkt)
                    end = max(end, new_pts + dur)
                segments.append(Segment(Fraction(offset) * out_tb, Fraction(end) * out_tb))
                offset = end
    finally:
        out.close()
    return segments

"""Copying episodes' video out of LeRobot mp4 files: stream copy where the file allows it.

An episode of camera K is the time range [from_timestamp, to_timestamp) of one mp4. A stream copy
(no re-encode, bit-exact frames) of that range is possible when the range's first packet is a
keyframe: LeRobot and jrobot encode every episode separately and join them by stream copy, so each
episode starts on a keyframe whatever the GOP (g=2 puts one every 2 frames, but an episode of odd
length still ends just before the next episode's own keyframe). Files encoded in one piece (LeRobot's
`batch_encoding_size > 1`, third-party tools) can start an episode in the middle of a GOP; such an
episode cannot be cut out by copying, and `probe_segment` reports it so the caller re-encodes
*that episode only*.

Segments copied into one output file must come from streams with identical codec parameters (codec,
size, pixel format, time base, codec extradata), or a decoder set up by the file's single stream
header could not decode the later ones; `StreamKey` captures that, and the caller starts a new file
when it changes (LeRobot's layout allows any episode to live in any file).
"""

from __future__ import annotations

import dataclasses
from fractions import Fraction
from pathlib import Path

import av

from jrobot.data.errors import DatasetError
from jrobot.data.video.container import open_video


@dataclasses.dataclass(frozen=True)
class StreamKey:
    """What two video streams must share for their packets to live in one mp4 stream."""

    codec: str
    width: int
    height: int
    pix_fmt: str
    time_base: Fraction
    extradata: bytes


@dataclasses.dataclass(frozen=True)
class SegmentProbe:
    """One episode's packets in a source mp4 (`since` <= pts < `until`, seconds), without decoding.

    `first_pts_s` is the presentation time of the first packet (None when the range is empty).
    `copyable` says whether a stream copy of exactly `expected_frames` frames is possible.
    """

    path: Path
    since: Fraction
    until: Fraction
    frames: int
    nbytes: int
    first_pts_s: Fraction | None
    starts_on_keyframe: bool
    decode_order_ok: bool
    key: StreamKey
    expected_frames: int

    @property
    def copyable(self) -> bool:
        return (
            self.frames == self.expected_frames
            and self.frames > 0
            and self.starts_on_keyframe
            and self.decode_order_ok
        )

    def why_not_copyable(self) -> str:
        if self.frames != self.expected_frames:
            return f"{self.frames} frames in the episode's time range, expected {self.expected_frames}"
        if not self.starts_on_keyframe:
            return "the episode does not start on a keyframe"
        if not self.decode_order_ok:
            return "packets are reordered across the episode boundary (B-frames)"
        return ""


def stream_key(path: Path) -> StreamKey:
    """The codec parameters of a file's first video stream."""
    c, s = open_video(path)
    try:
        with c:
            cc = s.codec_context
            return StreamKey(
                codec=s.codec.canonical_name if s.codec else str(cc.name),
                width=int(s.width),
                height=int(s.height),
                pix_fmt=str(cc.pix_fmt or ""),
                time_base=Fraction(s.time_base),
                extradata=bytes(cc.extradata or b""),
            )
    except av.error.FFmpegError as e:
        raise DatasetError(f"{path}: not a readable video ({e})") from e


def selection_range(from_s: float, to_s: float, fps: float, time_base: Fraction) -> tuple[Fraction, Fraction]:
    """[since, until) in seconds, on the stream's tick grid, half a frame before each span end.

    Half a frame of slack makes the selection immune to float rounding of the stored timestamps.
    """
    half = Fraction(1, 2) / Fraction(fps).limit_denominator(1001)
    since = Fraction(round((Fraction(from_s) - half) / time_base)) * time_base
    until = Fraction(round((Fraction(to_s) - half) / time_base)) * time_base
    return since, until


def probe_segment(path: Path, from_s: float, to_s: float, fps: float, expected_frames: int) -> SegmentProbe:
    """Inspect the packets of [from_s, to_s) of `path` (demux only, after a seek) for `copy_segments`."""
    key = stream_key(path)
    since, until = selection_range(from_s, to_s, fps, key.time_base)
    lo, hi = since / key.time_base, until / key.time_base
    frames = nbytes = 0
    first_pts: int | None = None
    first_key = False
    order_ok = True
    c, s = open_video(path)
    try:
        with c:
            if lo > 0:
                c.seek(int(lo), stream=s, backward=True, any_frame=False)
            for pkt in c.demux(s):
                if pkt.pts is None and pkt.dts is None:
                    continue
                pts = pkt.pts if pkt.pts is not None else pkt.dts
                dts = pkt.dts if pkt.dts is not None else pts
                if dts >= hi:
                    break
                inside = lo <= pts < hi
                if not inside:
                    if first_pts is not None and pts < lo:
                        order_ok = False  # an earlier frame decoded among ours
                    continue
                if first_pts is None:
                    first_pts, first_key = pts, bool(pkt.is_keyframe)
                elif pts < first_pts:
                    order_ok = False
                frames += 1
                nbytes += int(pkt.size)
    except av.error.FFmpegError as e:
        raise DatasetError(f"{path}: not a readable video ({e})") from e
    return SegmentProbe(
        path=Path(path),
        since=since,
        until=until,
        frames=frames,
        nbytes=nbytes,
        first_pts_s=None if first_pts is None else Fraction(first_pts) * key.time_base,
        starts_on_keyframe=first_key,
        decode_order_ok=order_ok,
        key=key,
        expected_frames=int(expected_frames),
    )


def count_frames(path: Path) -> list[int]:
    """Every packet's pts (stream ticks) in a file, sorted; demux only. For validation."""
    c, s = open_video(path)
    try:
        with c:
            out = [
                (p.pts if p.pts is not None else p.dts)
                for p in c.demux(s)
                if p.pts is not None or p.dts is not None
            ]
    except av.error.FFmpegError as e:
        raise DatasetError(f"{path}: truncated or corrupt video ({e})") from e
    return sorted(out)

"""The video of a rewritten dataset: each camera's episodes stream-copied into LeRobot's file layout.

Used by `rewrite.write_dataset`. For every output episode, `jrobot.data.video.segments.probe_segment` says
whether its time range in the source mp4 can be copied packet for packet (it starts on a keyframe
and holds exactly the episode's frames); if so the packets are copied (bit-exact frames), otherwise
that episode alone is decoded and re-encoded with LeRobot's default settings for the source's codec
(libsvtav1 for AV1, libx264 for H.264, HEVC for HEVC), and it lands in a file of its own because its
stream parameters differ. `from_timestamp` is where the episode's first packet landed, corrected by
any offset between the source's stored `from_timestamp` and its first packet, so every frame keeps
its time relative to the episode start.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from jrobot.data.edit.sources import EpisodeRef
from jrobot.data.errors import DatasetError
from jrobot.data.format.layout import next_chunk_file, video_path
from jrobot.data.video.encode import CameraEncoder, Segment, VideoOptions, concat_videos
from jrobot.data.video.segments import probe_segment, stream_key
from jrobot.data.write.fsio import WorkDir

_SNAP_S = 1e-6  # stored from_timestamp vs the first packet's pts: float noise below this
_ENCODER_FOR_CODEC = {"av1": "libsvtav1", "h264": "h264", "hevc": "hevc"}


@dataclasses.dataclass
class _Piece:
    """One episode's contribution to a camera file: packets [since, until) of `path`."""

    pos: int  # output episode position
    path: Path
    since: Fraction | None
    until: Fraction | None
    nbytes: int
    key: Any
    offset: Fraction  # add to where the first packet lands to get from_timestamp


def _reencode(ref: EpisodeRef, src_key: str, out: Path, fps: int, source_codec: str) -> list[np.ndarray]:
    """Decode one episode of one camera and encode it alone (LeRobot's defaults for the codec)."""
    ds = ref.dataset
    ep = ds.episode(ref.episode_index)
    ts = (
        ds.episode_columns(ref.episode_index, ["timestamp"])["timestamp"]
        if "timestamp" in ds.features
        else None
    )
    if ts is not None:
        off = np.abs(np.asarray(ts, dtype=np.float64) - np.arange(ep.length) / fps)
        if off.size and off.max() > 1e-4:
            raise DatasetError(
                f"{ds.root}: episode {ep.index} has timestamps off the 1/fps grid (by up to {off.max():.4f} s); "
                "its video cannot be re-encoded frame-exactly"
            )
    codec = _ENCODER_FOR_CODEC.get(source_codec, "libsvtav1")
    try:
        VideoOptions(codec=codec).resolved_codec()
    except DatasetError:
        codec = "libsvtav1"
    h, w, _ = ds.features[src_key].hwc_shape
    enc = CameraEncoder(
        out, key=src_key, height=h, width=w, fps=fps, options=VideoOptions(codec=codec), durable=False
    )
    try:
        for img in ds.iter_camera(ref.episode_index, src_key):
            enc.put(img)
        res = enc.finish()
    except BaseException:
        enc.cancel()
        raise
    if res.num_frames != ep.length:
        raise DatasetError(
            f"re-encoding {src_key!r} of episode {ep.index}: {res.num_frames} frames, expected {ep.length}"
        )
    return res.channel_counts


@dataclasses.dataclass
class CameraVideos:
    """Where one camera's episodes landed, and what had to be re-encoded."""

    spans: list[dict[str, Any]]  # per output episode: chunk_index, file_index, from/to_timestamp
    frame_counts: dict[int, list[np.ndarray]]  # re-encoded episodes: per-frame pixel counts (image stats)
    copied: int
    reencoded: list[str]


def write_camera(
    refs: Sequence[EpisodeRef],
    key: str,
    src_key: str,
    fps: int,
    root: Path,
    work: WorkDir,
    limit_mb: float,
    chunks_size: int,
) -> CameraVideos:
    """Write camera `key` (source feature `src_key`) of the output episodes `refs` under `root`.

    Episodes are taken in order; a new file starts when the stream parameters change (another
    encoder, a re-encoded episode) or when the file would reach `limit_mb` (LeRobot's rule).
    """
    spans: list[dict[str, Any]] = [{} for _ in refs]
    counts: dict[int, list[np.ndarray]] = {}
    reencoded: list[str] = []
    pieces: list[_Piece] = []
    for pos, ref in enumerate(refs):
        ep = ref.dataset.episode(ref.episode_index)
        span = ep.videos[src_key]
        if not span.path.is_file():
            raise DatasetError(f"missing video file: {span.path} (camera {src_key!r}, episode {ep.index})")
        probe = probe_segment(span.path, span.from_timestamp, span.to_timestamp, fps, ep.length)
        if probe.copyable:
            assert probe.first_pts_s is not None
            offset = Fraction(span.from_timestamp) - probe.first_pts_s
            if abs(offset) < _SNAP_S:
                offset = Fraction(0)
            pieces.append(_Piece(pos, span.path, probe.since, probe.until, probe.nbytes, probe.key, offset))
            continue
        tmp = work.tmp_path(".mp4")
        counts[pos] = _reencode(ref, src_key, tmp, fps, probe.key.codec)
        pieces.append(_Piece(pos, tmp, None, None, tmp.stat().st_size, stream_key(tmp), Fraction(0)))
        reencoded.append(
            f"{key} of output episode {pos} (source {ref.dataset.root} episode {ep.index}): {probe.why_not_copyable()}"
        )
    groups: list[list[_Piece]] = []
    size = 0
    for p in pieces:
        if not groups or p.key != groups[-1][0].key or (size + p.nbytes) / 1024**2 >= limit_mb:
            groups.append([])
            size = 0
        groups[-1].append(p)
        size += p.nbytes
    cf = (0, 0)
    try:
        for gi, group in enumerate(groups):
            if gi:
                cf = next_chunk_file(*cf, chunks_size)
            segments: list[Segment] = []
            work.write_with(
                video_path(root, key, *cf),
                ".mp4",
                lambda tmp, g=group, s=segments: s.extend(
                    concat_videos(
                        [p.path for p in g], tmp, since=[p.since for p in g], until=[p.until for p in g]
                    )
                ),
            )
            for p, seg in zip(group, segments, strict=True):
                start = seg.start + p.offset
                spans[p.pos] = {
                    "chunk_index": cf[0],
                    "file_index": cf[1],
                    "from_timestamp": float(start),
                    "to_timestamp": float(start + (seg.end - seg.start)),
                }
    finally:
        for p in pieces:
            if p.since is None and p.path.parent == work.tmp:
                p.path.unlink(missing_ok=True)
    return CameraVideos(spans, counts, len(pieces) - len(counts), reencoded)

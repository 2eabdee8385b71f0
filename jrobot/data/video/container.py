"""Opening an mp4 that a stranger may have written: the one place that checks a file is a video jrobot
can decode, of a sane size, before anything reads a packet or allocates a frame."""

from __future__ import annotations

from pathlib import Path

import av
from av.container import InputContainer
from av.video.stream import VideoStream

from jrobot.data.errors import DatasetError
from jrobot.features import MAX_IMAGE_PIXELS, MAX_IMAGE_SIDE


def sane_frame_size(height: int, width: int) -> bool:
    return 0 < height <= MAX_IMAGE_SIDE and 0 < width <= MAX_IMAGE_SIDE and height * width <= MAX_IMAGE_PIXELS


def open_video(path: Path) -> tuple[InputContainer, VideoStream]:
    """The file opened for reading and its first video stream; the caller closes the container.

    A DatasetError names the file when it is not a readable container, has no video stream, holds a
    codec ffmpeg cannot decode, or gives its frames an absurd size (refused before decoding).
    """
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, UnicodeDecodeError) as e:
        raise DatasetError(f"{path}: truncated or corrupt video ({e})") from e
    try:
        if not container.streams.video:
            raise DatasetError(f"{path}: truncated or corrupt video (no video stream found)")
        stream = container.streams.video[0]
        if stream.codec_context is None:
            raise DatasetError(f"{path}: no decoder for its video stream (an unknown or unsupported codec)")
        if not sane_frame_size(stream.height, stream.width):
            raise DatasetError(
                f"{path}: its header gives the video stream the absurd size {stream.height}x{stream.width}; refused"
            )
    except BaseException:
        container.close()
        raise
    return container, stream

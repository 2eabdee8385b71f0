"""The one exception type the episode store raises for bad datasets and bad input.

`DatasetError` subclasses `ValueError` so callers that already catch ValueError (LeRobot's convention
for bad frames) keep working; messages always name the file, key or value at fault.
"""

from __future__ import annotations

from jrobot.errors import InputError


class DatasetError(ValueError, InputError):
    """A dataset on disk is missing, corrupt or inconsistent, or a caller passed invalid data."""


class FrameTimestampError(DatasetError):
    """A requested time has no video frame within the tolerance (LeRobot's FrameTimestampError)."""

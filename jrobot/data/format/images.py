"""PNG bytes for `image` features (stored in the data parquet as the HF Image struct) and back."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from jrobot.data.errors import DatasetError


def encode_png(img_hwc: np.ndarray, compress_level: int = 6) -> bytes:
    """PNG as LeRobot writes image features (PIL, compress_level 6)."""
    buf = io.BytesIO()
    Image.fromarray(img_hwc).save(buf, format="PNG", compress_level=compress_level)
    return buf.getvalue()


def decode_image(data: bytes | None, *, where: str) -> np.ndarray:
    """HWC uint8 RGB from encoded image bytes (PNG/JPEG...)."""
    if data is None:
        raise DatasetError(f"{where}: image has no bytes")
    try:
        with Image.open(io.BytesIO(data)) as im:
            return np.asarray(im.convert("RGB"))
    except (OSError, ValueError) as e:
        raise DatasetError(f"{where}: corrupt image bytes ({e})") from e

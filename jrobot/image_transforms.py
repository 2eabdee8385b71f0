"""The one rule for turning a camera frame into the image a policy sees, shared by training and run time.

Training shards store images already resized (`data_tools.build_shards --resolution`), and the runtime
resizes each live camera frame to the bundle's image shape. If the two chose their interpolation by
different rules, a policy would see differently filtered pixels on the robot than in training (openpi's
"same transforms for training and inference"). Both call `resize_frame`, so they cannot drift apart.

numpy + cv2 only: the recording/data layer and the JAX-free parts of the runtime import it.
"""

from __future__ import annotations

import cv2
import numpy as np


def resize_interpolation(src_hw: tuple[int, int], dst_hw: tuple[int, int]) -> int:
    """cv2 interpolation for resizing `src_hw` to `dst_hw`: area when shrinking both axes, else linear.

    INTER_AREA averages every source pixel into the smaller image (no aliasing); it only makes sense
    when both axes shrink, so any axis that stays or grows selects bilinear.
    """
    (sh, sw), (dh, dw) = src_hw, dst_hw
    return cv2.INTER_AREA if (dh < sh and dw < sw) else cv2.INTER_LINEAR


def resize_frame(rgb: np.ndarray, size: tuple[int, int] | None) -> np.ndarray:
    """Resize an (H, W, C) uint8 frame to `size` = (H, W); None or the same size returns it unchanged.

    The aspect ratio is not preserved (the frame is stretched), as LeRobot's datasets and the shard
    builder have always done; a policy trained on stretched frames must see stretched frames.
    """
    if size is None or tuple(rgb.shape[:2]) == tuple(size):
        return rgb
    h, w = (int(size[0]), int(size[1]))
    if h <= 0 or w <= 0:
        raise ValueError(f"resize target {size} must be positive (H, W)")
    return cv2.resize(rgb, (w, h), interpolation=resize_interpolation(rgb.shape[:2], (h, w)))

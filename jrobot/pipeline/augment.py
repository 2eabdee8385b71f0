"""Image augmentation on uint8 frames, run inside grain's worker processes (off the training thread).

Ranges follow LeRobot's `ImageTransformsConfig` defaults (brightness/contrast 0.8–1.2, saturation
0.5–1.5, hue ±0.05) plus an optional random resized crop. Every frame of one sample's observation
history gets the same parameters so the history stays temporally consistent; cameras are augmented
independently. Images stay uint8: normalisation happens on the device.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import cv2
import grain
import numpy as np


@dataclasses.dataclass(frozen=True)
class AugmentConfig:
    crop_scale: tuple[float, float] = (1.0, 1.0)  # area fraction of the random crop; (1, 1) disables it
    crop_ratio: tuple[float, float] = (0.9, 1.1)  # aspect-ratio jitter of the crop, relative to the image
    brightness: tuple[float, float] = (1.0, 1.0)
    contrast: tuple[float, float] = (1.0, 1.0)
    saturation: tuple[float, float] = (1.0, 1.0)
    hue: tuple[float, float] = (0.0, 0.0)  # fraction of a full turn

    @classmethod
    def lerobot_default(cls, crop_scale: tuple[float, float] = (0.9, 1.0)) -> AugmentConfig:
        return cls(
            crop_scale=crop_scale,
            brightness=(0.8, 1.2),
            contrast=(0.8, 1.2),
            saturation=(0.5, 1.5),
            hue=(-0.05, 0.05),
        )

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> AugmentConfig | None:
        if not d:
            return None
        return cls(**{k: tuple(v) for k, v in d.items()})

    @property
    def enabled(self) -> bool:
        return (
            self.crop_scale != (1.0, 1.0)
            or self.brightness != (1.0, 1.0)
            or self.contrast != (1.0, 1.0)
            or self.saturation != (1.0, 1.0)
            or self.hue != (0.0, 0.0)
        )


def _crop_box(rng: np.random.Generator, h: int, w: int, cfg: AugmentConfig) -> tuple[int, int, int, int]:
    area = h * w
    for _ in range(10):
        target = area * rng.uniform(*cfg.crop_scale)
        ratio = math.exp(rng.uniform(math.log(cfg.crop_ratio[0]), math.log(cfg.crop_ratio[1]))) * (w / h)
        cw = round(math.sqrt(target * ratio))
        ch = round(math.sqrt(target / ratio))
        if 0 < cw <= w and 0 < ch <= h:
            return int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1)), ch, cw
    return 0, 0, h, w


def augment_frames(frames: np.ndarray, rng: np.random.Generator, cfg: AugmentConfig) -> np.ndarray:
    """Augment a (T, H, W, 3) uint8 stack with one set of random parameters."""
    t, h, w, _ = frames.shape
    do_crop = cfg.crop_scale != (1.0, 1.0)
    box = _crop_box(rng, h, w, cfg) if do_crop else None
    b = rng.uniform(*cfg.brightness)
    c = rng.uniform(*cfg.contrast)
    s = rng.uniform(*cfg.saturation)
    hue = rng.uniform(*cfg.hue)
    out = np.empty_like(frames)
    for i in range(t):
        img = frames[i]
        if box is not None:
            y, x, ch, cw = box
            img = cv2.resize(img[y : y + ch, x : x + cw], (w, h), interpolation=cv2.INTER_LINEAR)
        if hue != 0.0:
            hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV_FULL)
            hsv[..., 0] = (hsv[..., 0].astype(np.int16) + round(hue * 256)) % 256
            img = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB_FULL)
        f = img.astype(np.float32)
        if b != 1.0:
            f *= b
        if c != 1.0:
            gray_mean = float(cv2.cvtColor(np.clip(f, 0, 255).astype(np.uint8), cv2.COLOR_RGB2GRAY).mean())
            f = (f - gray_mean) * c + gray_mean
        if s != 1.0:
            gray = cv2.cvtColor(np.clip(f, 0, 255).astype(np.uint8), cv2.COLOR_RGB2GRAY).astype(np.float32)
            f = (f - gray[..., None]) * s + gray[..., None]
        out[i] = np.clip(f, 0, 255).astype(np.uint8)
    return out


class ImageAugment(grain.transforms.RandomMap):
    """grain transform: augments the camera keys of a batch of windows, each sample on its own draw."""

    def __init__(self, camera_keys: Sequence[str], cfg: AugmentConfig):
        self.camera_keys = tuple(camera_keys)
        self.cfg = cfg

    def random_map(self, batch: dict[str, np.ndarray], rng: np.random.Generator) -> dict[str, np.ndarray]:
        for key in self.camera_keys:
            if key in batch:
                frames = batch[key]  # (B, T, H, W, 3)
                for j in range(frames.shape[0]):
                    frames[j] = augment_frames(frames[j], rng, self.cfg)
        return batch

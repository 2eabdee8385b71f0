"""Tiny RLDS datasets written by tensorflow-datasets itself, shaped as Open X-Embodiment's are.

Each episode e has n steps; step i of episode e holds: a main camera whose pixel (y, x) is
(10e + i, y, x) mod 256, a wrist camera (e, i, 7), state = [e, i, i/2, -i], action = state + 0.5 (or a
dict of `world_vector` (3) and `gripper` (1) with the same numbers), the instruction "task <e mod 2>",
a per-step language embedding, reward 1 on the last step, is_terminal on the last step. Images go to
TFDS already PNG-encoded (by OpenCV), so writing ArrayRecord needs no TensorFlow; TFRecord does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np
import tensorflow_datasets as tfds


def main_image(e: int, i: int, h: int, w: int) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    return np.stack([np.full((h, w), (10 * e + i) % 256), yy % 256, xx % 256], -1).astype(np.uint8)


def wrist_image(e: int, i: int, h: int, w: int) -> np.ndarray:
    return np.broadcast_to(np.array([e, i, 7], np.uint8), (h, w, 3)).copy()


def state(e: int, i: int) -> np.ndarray:
    return np.array([e, i, i / 2, -i], np.float32)


def png(img: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", img[..., ::-1])  # OpenCV writes BGR: give it BGR, the file holds RGB
    assert ok
    return buf.tobytes()


def write_rlds(
    data_dir: Path,
    *,
    lengths: tuple[int, ...] = (5, 3, 4),
    size: tuple[int, int] = (8, 12),
    file_format: str = "array_record",
    action_dict: bool = False,
    fps: float | None = 10,
    sizes_per_episode: list[tuple[int, int]] | None = None,
    extra_after_last: int = 0,
    dataset_name: str = "TinyOpenX",
) -> Path:
    """Write the dataset with a GeneratorBasedBuilder; returns its version folder."""
    h, w = size
    variable = sizes_per_episode is not None
    image_shape = (None, None, 3) if variable else (h, w, 3)
    action = (
        tfds.features.FeaturesDict(
            {
                "world_vector": tfds.features.Tensor(shape=(3,), dtype=np.float32),
                "gripper": tfds.features.Tensor(shape=(1,), dtype=np.float32),
            }
        )
        if action_dict
        else tfds.features.Tensor(shape=(4,), dtype=np.float32)
    )
    features = tfds.features.FeaturesDict(
        {
            "steps": tfds.features.Dataset(
                {
                    "observation": tfds.features.FeaturesDict(
                        {
                            "image": tfds.features.Image(shape=image_shape),
                            "wrist": tfds.features.FeaturesDict(
                                {"image": tfds.features.Image(shape=image_shape)}
                            ),
                            "state": tfds.features.Tensor(shape=(4,), dtype=np.float32),
                        }
                    ),
                    "action": action,
                    "language_instruction": tfds.features.Text(),
                    "language_embedding": tfds.features.Tensor(shape=(8,), dtype=np.float32),
                    "reward": tfds.features.Scalar(dtype=np.float32),
                    "discount": tfds.features.Scalar(dtype=np.float32),
                    "is_first": np.bool_,
                    "is_last": np.bool_,
                    "is_terminal": np.bool_,
                }
            ),
            "episode_metadata": tfds.features.FeaturesDict({"file_path": tfds.features.Text()}),
        }
    )

    def episodes():
        for e, n in enumerate(lengths):
            eh, ew = sizes_per_episode[e] if variable else (h, w)
            steps = []
            for i in range(n + extra_after_last):
                a = state(e, i) + 0.5
                steps.append(
                    {
                        "observation": {
                            "image": png(main_image(e, i, eh, ew)),
                            "wrist": {"image": png(wrist_image(e, i, eh, ew))},
                            "state": state(e, i),
                        },
                        "action": {"world_vector": a[:3], "gripper": a[3:]} if action_dict else a,
                        "language_instruction": f"task {e % 2}",
                        "language_embedding": np.full(8, e, np.float32),
                        "reward": float(i == n - 1),
                        "discount": 1.0,
                        "is_first": i == 0,
                        "is_last": i == n - 1,
                        "is_terminal": i == n - 1,
                    }
                )
            yield f"episode_{e:03d}", {"steps": steps, "episode_metadata": {"file_path": f"ep{e}"}}

    metadata = tfds.core.MetadataDict({"fps": fps}) if fps is not None else None

    class LocalInfo(tfds.core.DatasetInfo):
        def initialize_from_bucket(self) -> None:  # (TFDS would leave an empty /tmp/tmp*tfds folder)
            return None

    class Builder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
        VERSION = tfds.core.Version("1.0.0")
        name = tfds.core.naming.camelcase_to_snakecase(dataset_name)

        def _info(self) -> tfds.core.DatasetInfo:
            return LocalInfo(builder=self, features=features, metadata=metadata, disable_shuffling=True)

        def _split_generators(self, dl_manager: Any):
            return {"train": episodes()}

        def _generate_examples(self):  # (the split generator above is the whole dataset)
            yield from episodes()

    builder = Builder(data_dir=str(data_dir), file_format=file_format)
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(verify_ssl=False))
    return Path(builder.data_dir)

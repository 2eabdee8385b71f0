"""Train/serve skew: the runtime resizes a live camera frame to exactly the pixels training read.

The shard builder resizes every stored frame to the training resolution; the runtime resizes each
camera frame to the bundle's image shape. Both go through `jrobot.image_transforms.resize_frame`; this
test holds them to it end to end, through the real shard builder and the real `ObservationBuilder`,
for shrinking, stretching, mixed (one axis shrinks, the other grows) and enlarging targets.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from jrobot.bundle import BundleInfo
from jrobot.data.read.reader import open_dataset
from jrobot.features import Feature
from jrobot.image_transforms import resize_frame
from jrobot.pipeline.windows import WindowSource, WindowSpec
from jrobot.policies.spec import FeatureType, PolicyFeature, PolicySpec
from jrobot.runtime.policy import ObservationBuilder
from jrobot.shards.builder import build_shards
from jrobot.shards.format import ShardSet

CAMS = ["observation.images.front", "observation.images.wrist"]


def _camera_only_info(h: int, w: int) -> BundleInfo:
    spec = PolicySpec(
        type="act",
        input_features={c: PolicyFeature(FeatureType.VISUAL, (3, h, w)) for c in CAMS},
        output_features={"action": PolicyFeature(FeatureType.ACTION, (6,))},
        normalization_mapping={},
        n_obs_steps=1,
        chunk_size=1,
        n_action_steps=1,
        observation_delta_indices=None,
        action_delta_indices=(0,),
        horizon=1,
    )
    return BundleInfo(
        spec=spec,
        stats={},
        features={"action": Feature(dtype="float32", shape=(6,))},
        fps=30,
        robot_type=None,
        image_shapes={c: (h, w, 3) for c in CAMS},
        variants=[],
        stochastic=False,
        source={},
        training_config=None,
    )


# The fixture's cameras are 96x128 (H x W).
@pytest.mark.parametrize(
    "size",
    [(48, 64), (64, 64), (40, 100), (80, 160), (120, 96), (96, 160), (192, 256)],
    ids=lambda s: f"{s[0]}x{s[1]}",
)
def test_runtime_frame_equals_the_shard_pixels(tmp_path, v30_dir, size):
    out = tmp_path / "shards"
    build_shards(v30_dir, out, resolution=size, image_format="raw", episodes=[0], workers=0, progress=False)
    shards = ShardSet(out)
    window = WindowSpec.for_policy(
        observation_deltas=[0], action_deltas=[0], camera_keys=CAMS, drop_last_frames=0
    )
    source = WindowSource(shards, window)
    builder = ObservationBuilder(_camera_only_info(*size))
    ds = open_dataset(v30_dir)
    try:
        for i in (0, len(source) // 2, len(source) - 1):
            frame = ds[i]
            robot_obs = {c[len("observation.images.") :]: frame[c] for c in CAMS}
            got = builder.convert(robot_obs)
            stored = source[i]
            for cam in CAMS:
                assert frame[cam].shape == (96, 128, 3)
                assert got[cam].shape == (*size, 3) and got[cam].dtype == np.uint8
                np.testing.assert_array_equal(got[cam], stored[cam][0], err_msg=f"{cam} frame {i} at {size}")
    finally:
        ds.close()


def test_one_interpolation_rule():
    """Area averaging only when both axes shrink; bilinear otherwise (the rule both sides share)."""
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (96, 128, 3), dtype=np.uint8)
    assert resize_frame(img, None) is img and resize_frame(img, (96, 128)) is img
    down = resize_frame(img, (48, 64))
    blocks = img.reshape(48, 2, 64, 2, 3).astype(np.float64).mean(axis=(1, 3))
    np.testing.assert_allclose(down, blocks, atol=0.51)  # INTER_AREA at 2x is the 2x2 block mean
    # H shrinks, W grows: bilinear (the runtime once chose area here by looking at H alone)
    mixed = resize_frame(img, (80, 160))
    np.testing.assert_array_equal(mixed, cv2.resize(img, (160, 80), interpolation=cv2.INTER_LINEAR))
    assert not np.array_equal(mixed, cv2.resize(img, (160, 80), interpolation=cv2.INTER_AREA))
    with pytest.raises(ValueError, match=r"\(0, 64\)"):
        resize_frame(img, (0, 64))

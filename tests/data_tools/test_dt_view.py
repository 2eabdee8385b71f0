"""`data_tools.view`: PNG plots of every low-dimensional dimension with camera frames, and an MP4."""

from __future__ import annotations

import av
import numpy as np
import pytest
from PIL import Image

from jrobot.data.view import render_episode


@pytest.mark.parametrize("name", ["so101_v30", "so101_v21"])
def test_view_writes_plots_and_a_side_by_side_video(tmp_path, shared_dir, run_cli, stripes, name):
    root = shared_dir / "fixtures/lerobot" / name
    proc = run_cli("data_tools.view", root, "--episode", "1", "--out", tmp_path)
    assert proc.returncode == 0, proc.stderr
    png = tmp_path / "episode_000001_observation.state+action.png"
    mp4 = tmp_path / "episode_000001.mp4"
    assert proc.stdout.split() == [str(mp4), str(png)]
    with Image.open(png) as im:
        assert im.format == "PNG" and im.width > 600 and im.height > 400
        pixels = np.asarray(im.convert("RGB"))
    assert pixels.std() > 10  # not blank: curves and frames were drawn
    with av.open(str(mp4)) as c:
        s = c.streams.video[0]
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(s)]
        assert float(s.average_rate) == 30
    assert len(frames) == 55  # episode 1 of the fixtures
    h, w, _ = frames[0].shape
    assert (h, w) == (240, 640)  # two 96x128 cameras scaled to 240 px high, side by side
    # each half shows its camera's own frame (stripes survive scaling; the burnt-in text is in the top rows)
    for i in (10, 40):
        left = np.asarray(Image.fromarray(frames[i][:, : w // 2]).resize((128, 96)))
        right = np.asarray(Image.fromarray(frames[i][:, w // 2 :]).resize((128, 96)))
        assert stripes(left)[1] == 1 and stripes(right)[1] == 1
        assert right[..., 2].mean() > left[..., 2].mean() + 20  # the wrist camera's blue tint is on the right


def test_view_library_call_without_cameras_or_video(tmp_path, v30_dir):
    from jrobot.data import edit

    edit.remove_features(
        v30_dir, tmp_path / "lowdim", ["observation.images.front", "observation.images.wrist"]
    )
    files = render_episode(tmp_path / "lowdim", 2, tmp_path / "view", video=True)
    assert [f.name for f in files] == ["episode_000002_observation.state+action.png"]
    files = render_episode(v30_dir, 0, tmp_path / "view2", video=False, thumbnails=3)
    assert [f.suffix for f in files] == [".png"]


def test_view_bad_episode(tmp_path, v30_dir, run_cli):
    proc = run_cli("data_tools.view", v30_dir, "--episode", "9", "--out", tmp_path)
    assert proc.returncode == 2 and "no episode 9" in proc.stderr

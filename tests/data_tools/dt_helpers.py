"""Helpers for the data_tools tests: episode-by-episode comparison of two datasets, unusual datasets
(a v2.0 port with every legacy variant, a video encoded in one piece, image features), and LeRobot."""

from __future__ import annotations

import json
import os
import shutil
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from jrobot.data import DatasetWriter, open_dataset
from jrobot.data.format.stats import to_jsonable
from jrobot.data.read.reader import Dataset
from jrobot.data.video.encode import probe_video_info

REPO = Path(__file__).resolve().parents[2]
BOOKKEEPING_RENUMBERED = ("index", "episode_index", "task_index")


def assert_same_episode(
    src: Dataset, src_ep: int, dst: Dataset, dst_ep: int, stripes, *, exact_frames: bool = True, rename=None
) -> None:
    """Episode `dst_ep` of `dst` holds exactly episode `src_ep` of `src`: values, tasks and frames.

    Frames are decoded from both; a stream copy must give identical pixels (`exact_frames`), a
    re-encode the same stripes and nearly the same pixels. `rename` maps dst feature -> src feature.
    """
    rename = rename or {}
    a, b = src.episode(src_ep), dst.episode(dst_ep)
    assert a.length == b.length
    b_cols = dst.episode_columns(dst_ep)
    a_cols = src.episode_columns(src_ep)
    for key, col in b_cols.items():
        if key in BOOKKEEPING_RENUMBERED:
            continue
        assert np.array_equal(col, a_cols[rename.get(key, key)]), (key, src_ep, dst_ep)
    assert np.array_equal(b_cols["index"], np.arange(b.dataset_from_index, b.dataset_to_index))
    assert np.all(b_cols["episode_index"] == dst_ep)
    assert [dst.tasks[t] for t in b_cols["task_index"]] == [src.tasks[t] for t in a_cols["task_index"]]
    for key in dst.camera_keys:
        n = 0
        for i, (x, y) in enumerate(
            zip(src.iter_camera(src_ep, rename.get(key, key)), dst.iter_camera(dst_ep, key), strict=True)
        ):
            n += 1
            assert stripes(y)[0] == i % 256, (key, dst_ep, i, stripes(y))
            assert stripes(y) == stripes(x), (key, dst_ep, i)
            if exact_frames:
                assert np.array_equal(x, y), (key, dst_ep, i)
            else:
                assert np.abs(x.astype(int) - y.astype(int)).mean() < 8, (key, dst_ep, i)
        assert n == b.length


def make_v20_port(v21_dir: Path, dst: Path) -> Path:
    """The v2.1 fixture dressed as a v2.0 dataset ported from v1.6: every legacy variant at once.

    `names: {"motors": [...]}`, `video_info` instead of `info`, singular "channel" image names, a
    channel-first camera shape, a float fps, robot_type "unknown", one global stats.json and no episodes_stats.jsonl.
    """
    shutil.copytree(v21_dir, dst)
    stats = open_dataset(v21_dir).stats
    info = json.loads((dst / "meta/info.json").read_text())
    info["codebase_version"] = "v2.0"
    info["fps"] = float(info["fps"])
    info["robot_type"] = "unknown"
    for key, feat in info["features"].items():
        if key in ("observation.state", "action"):
            feat["names"] = {"motors": feat["names"]}
        if key == "observation.images.wrist":  # channel-first, as some v1.6 ports describe cameras
            feat["shape"] = [feat["shape"][2], feat["shape"][0], feat["shape"][1]]
            feat["names"] = ["channels", "height", "width"]
        elif feat["dtype"] == "video":
            feat["names"] = ["height", "width", "channel"]
            vi = feat.pop("info")
            vi["video.fps"] = float(vi["video.fps"])
            feat["video_info"] = vi
    (dst / "meta/info.json").write_text(json.dumps(info, indent=4))
    (dst / "meta/episodes_stats.jsonl").unlink()
    (dst / "meta/stats.json").write_text(json.dumps(to_jsonable(stats), indent=4))
    return dst


def record_synthetic(
    root: Path,
    lengths: list[int],
    tasks: list[str],
    *,
    dtype: str = "video",
    h: int = 32,
    w: int = 48,
    cams=("front", "wrist"),
) -> Path:
    """A jrobot-written v3.0 dataset of stripes episodes (the store tests' conventions)."""
    from store_synth import features, record

    with DatasetWriter.create(
        root, fps=30, features=features(h, w, cams, dtype=dtype), robot_type="so_follower", durable=False
    ) as wr:
        for e, (n, t) in enumerate(zip(lengths, tasks, strict=True)):
            record(wr, e, n, t, h, w, cams)
    return root


def reencode_in_one_piece(root: Path, gop: int) -> None:
    """Re-encode every camera file of a v3.0 dataset as one continuous H.264 stream with a keyframe
    every `gop` frames (no scene-cut keyframes, no B-frames), keeping every frame's time: episodes no
    longer start on keyframes, as with LeRobot's batch encoding or third-party tools."""
    ds = open_dataset(root)
    fps = int(ds.fps)
    info = json.loads((root / "meta/info.json").read_text())
    for key in ds.video_keys:
        for path in sorted({e.videos[key].path for e in ds.episodes}):
            with av.open(str(path)) as c:
                frames = [
                    (f.pts * f.time_base, f.to_ndarray(format="rgb24")) for f in c.decode(c.streams.video[0])
                ]
            tmp = path.with_suffix(".tmp.mp4")
            with av.open(str(tmp), "w", format="mp4") as out:
                s = out.add_stream(
                    "libx264",
                    rate=fps,
                    options={"x264-params": f"keyint={gop}:min-keyint={gop}:scenecut=0:bframes=0"},
                )
                s.width, s.height, s.pix_fmt = frames[0][1].shape[1], frames[0][1].shape[0], "yuv420p"
                s.time_base = Fraction(1, fps)
                for t, img in frames:
                    vf = av.VideoFrame.from_ndarray(img, format="rgb24")
                    vf.pts = round(t * fps)
                    vf.time_base = Fraction(1, fps)
                    for pkt in s.encode(vf):
                        out.mux(pkt)
                for pkt in s.encode(None):
                    out.mux(pkt)
            os.replace(tmp, path)
        first = sorted({e.videos[key].path for e in ds.episodes})[0]
        info["features"][key]["info"] = probe_video_info(first)
    (root / "meta/info.json").write_text(json.dumps(info, indent=4))

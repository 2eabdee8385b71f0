"""Synthetic episodes for the episode-store tests, in the fixture's conventions.

Images carry the stripes pattern of ../shared/fixtures/lerobot (top half: frame index bits, bottom
half: episode index bits, white = 1) with a per-camera tint in channel 2, so a reader that returns a
neighbouring frame or the other camera is caught. state(e, i) is the fixture's formula and
action(e, i) = state(e, i + 1).
"""

from __future__ import annotations

import json
import os
import random
import re
import traceback
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from jrobot.data import DatasetWriter
from jrobot.features import SO101_JOINT_KEYS, Feature

TINTS = {0: (255, 0), 1: (195, 60)}  # channel-2 (bright, dark) per camera index, as in the fixture


def state(e: int, i: int) -> np.ndarray:
    return np.array([10 * np.sin(i / 30 + j + e) + j for j in range(6)], dtype=np.float64).astype(np.float32)


def stripes_image(i: int, e: int, cam: int, h: int, w: int) -> np.ndarray:
    img = np.zeros((h, w, 3), np.uint8)
    sw = w // 8
    bright, dark = TINTS[cam % 2]
    img[..., 2] = dark
    for b in range(8):
        cols = slice(b * sw, (b + 1) * sw)
        if ((i % 256) >> (7 - b)) & 1:
            img[: h // 2, cols, :2] = 255
            img[: h // 2, cols, 2] = bright
        if ((e % 256) >> (7 - b)) & 1:
            img[h // 2 :, cols, :2] = 255
            img[h // 2 :, cols, 2] = bright
    return img


def camera_of(img: np.ndarray) -> int:
    """Which camera tint an image carries (0 or 1), from channel 2 where channel 0 is dark."""
    dark = img[..., 0] < 64
    if not dark.any():
        return -1
    level = float(img[..., 2][dark].mean())
    return 0 if abs(level - TINTS[0][1]) < abs(level - TINTS[1][1]) else 1


def features(
    h: int, w: int, cams: tuple[str, ...] = ("front", "wrist"), dtype: str = "video"
) -> dict[str, Feature]:
    feats = {
        "observation.state": Feature("float32", (6,), list(SO101_JOINT_KEYS)),
        "action": Feature("float32", (6,), list(SO101_JOINT_KEYS)),
    }
    for c in cams:
        feats[f"observation.images.{c}"] = Feature(dtype, (h, w, 3), ["height", "width", "channels"])
    return feats


def frame(e: int, i: int, h: int, w: int, cams: tuple[str, ...] = ("front", "wrist")) -> dict:
    out = {"observation.state": state(e, i), "action": state(e, i + 1)}
    for k, c in enumerate(cams):
        out[f"observation.images.{c}"] = stripes_image(i, e, k, h, w)
    return out


def record(writer, e: int, length: int, tasks, h: int, w: int, cams=("front", "wrist")) -> int:
    """Add one episode's frames (task per frame from `tasks`, a str or a list) and save it."""
    for i in range(length):
        task = tasks if isinstance(tasks, str) else tasks[i % len(tasks)]
        writer.add_frame(frame(e, i, h, w, cams), task=task)
    return writer.save_episode()


def episode_problems(ds, e: int, decode, cams=None, sequential: bool = True) -> list[str]:
    """Everything wrong with episode `e` of a reader: values vs the formulas, frames vs their index."""
    problems = []
    ep = ds.episode(e)
    cols = ds.episode_columns(e, ["observation.state", "action", "frame_index", "episode_index", "index"])
    expect_state = np.stack([state(e, i) for i in range(ep.length)])
    expect_action = np.stack([state(e, i + 1) for i in range(ep.length)])
    if not np.array_equal(cols["observation.state"], expect_state):
        problems.append(f"episode {e}: state differs from the formula")
    if not np.array_equal(cols["action"], expect_action):
        problems.append(f"episode {e}: action differs from the formula")
    if not np.array_equal(cols["frame_index"], np.arange(ep.length)):
        problems.append(f"episode {e}: frame_index is not 0..{ep.length - 1}")
    if not np.array_equal(cols["index"], np.arange(ep.dataset_from_index, ep.dataset_to_index)):
        problems.append(f"episode {e}: index is not its global row range")
    if not np.all(cols["episode_index"] == e):
        problems.append(f"episode {e}: wrong episode_index values")
    cams = cams if cams is not None else ds.camera_keys
    for k, key in enumerate(cams):
        frames = (
            list(ds.iter_camera(e, key))
            if sequential
            else [ds[r][key] for r in range(ep.dataset_from_index, ep.dataset_to_index)]
        )
        if len(frames) != ep.length:
            problems.append(f"episode {e} {key}: {len(frames)} frames, expected {ep.length}")
        for i, img in enumerate(frames):
            if decode(img) != (i % 256, e % 256):
                problems.append(f"episode {e} {key} frame {i}: decodes to {decode(img)}")
                break
            if camera_of(img) != k:
                problems.append(f"episode {e} {key} frame {i}: shows camera {camera_of(img)}")
                break
    return problems


def check_invariants(root: Path) -> None:
    """What LeRobot's loader relies on, checked on the files themselves."""
    info = json.loads((root / "meta/info.json").read_text())
    data = pd.concat(
        [pd.read_parquet(p) for p in sorted((root / "data").glob("*/*.parquet"))], ignore_index=True
    )
    eps = pd.concat(
        [pd.read_parquet(p) for p in sorted((root / "meta/episodes").glob("*/*.parquet"))], ignore_index=True
    )
    tasks = pd.read_parquet(root / "meta/tasks.parquet")
    assert len(data) == info["total_frames"] and len(eps) == info["total_episodes"]
    assert info["total_tasks"] == len(tasks) and info["splits"] == {"train": f"0:{len(eps)}"}
    assert np.array_equal(data["index"].to_numpy(), np.arange(len(data)))  # row i has index i
    assert list(tasks["task_index"]) == list(range(len(tasks)))
    video_keys = [k for k, f in info["features"].items() if f["dtype"] == "video"]
    ends: dict = {}
    for _, r in eps.iterrows():
        e = int(r["episode_index"])
        lo, hi = int(r["dataset_from_index"]), int(r["dataset_to_index"])
        assert hi - lo == r["length"]
        rows = data.iloc[lo:hi]
        assert (rows["episode_index"] == e).all() and np.array_equal(rows["frame_index"], np.arange(hi - lo))
        assert set(tasks.index[rows["task_index"]]) == set(r["tasks"])
        dpath = root / info["data_path"].format(
            chunk_index=r["data/chunk_index"], file_index=r["data/file_index"]
        )
        assert e in set(
            pq.read_table(dpath, columns=["episode_index"]).column(0).to_pylist()
        )  # data/file_index is right
        for key in video_keys:
            cf = (int(r[f"videos/{key}/chunk_index"]), int(r[f"videos/{key}/file_index"]))
            frm, to = r[f"videos/{key}/from_timestamp"], r[f"videos/{key}/to_timestamp"]
            assert abs((to - frm) - r["length"] / info["fps"]) < 1e-9
            assert abs(frm - ends.get((key, cf), 0.0)) < 1e-9  # episodes back to back in a file
            ends[(key, cf)] = to
            assert (
                root / info["video_path"].format(video_key=key, chunk_index=cf[0], file_index=cf[1])
            ).is_file()
        rpath = (
            root
            / f"meta/episodes/chunk-{r['meta/episodes/chunk_index']:03d}/file-{r['meta/episodes/file_index']:03d}.parquet"
        )
        assert e in pq.read_table(rpath, columns=["episode_index"]).column(0).to_pylist()
    assert not (root / ".jrobot").exists()


def record_forever(root: str, progress: str, log: str, seed: int, h: int = 32, w: int = 48) -> None:
    """Child: resume (or create) and record episodes until killed; report each save to `progress`."""
    rng = random.Random(seed)
    try:
        if (Path(root) / "meta/info.json").exists():
            writer = DatasetWriter.resume(root)
            with open(log, "a") as f:
                for a in writer.recovery_actions:
                    f.write(re.sub(r"\d+(\.\d+)?", "N", a.split(": ", 1)[1]) + "\n")
        else:
            writer = DatasetWriter.create(root, fps=30, features=features(h, w), robot_type="so_follower")
        e = writer.num_episodes
        while True:
            n = rng.randint(1, 10)
            task = f"task {rng.randint(0, 40)}"
            for i in range(n):
                writer.add_frame(frame(e, i, h, w), task=task)
            if rng.random() < 0.1:
                writer.discard_episode()
                continue
            writer.save_episode()
            with open(progress, "a") as f:
                f.write(f"{e} {n}\n")
            e += 1
    except BaseException:
        with open(log + ".error", "a") as f:
            f.write(traceback.format_exc())
        os._exit(1)

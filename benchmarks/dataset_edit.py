"""Speed of the data tools on a synthetic dataset: convert, merge, delete, recompute image stats.

    .venv/bin/python benchmarks/dataset_edit.py [--episodes 20] [--frames 300] [--size 240x320]

Records a LeRobot v3.0 dataset with jrobot's writer (2 cameras, AV1 g=2 crf 30: LeRobot's defaults;
images are moving gradients with noise so the video has a realistic bitrate), then times each
operation and prints frames/s and MB/s of the source, and each operation's MB/s as a ratio of a plain
copy of the same folder (the physical ceiling for a rewrite). Video is stream-copied in all but the
recompute run, so those numbers measure I/O and parquet work; `--recompute-stats always` decodes
LeRobot's sampled frames of every episode.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from jrobot.data import DatasetWriter, edit, open_dataset
from jrobot.features import SO101_JOINT_KEYS, Feature


def _image(e: int, i: int, h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    base = (127 + 100 * np.sin((x + 3 * i) / 17.0 + e) * np.cos((y - 2 * i) / 23.0)).astype(np.int16)
    img = np.stack([base, np.roll(base, 7, axis=1), 255 - base], axis=-1)
    img += rng.integers(-12, 13, img.shape, dtype=np.int16)
    return np.clip(img, 0, 255).astype(np.uint8)


def record(root: Path, episodes: int, frames: int, h: int, w: int) -> float:
    feats = {
        "observation.state": Feature("float32", (6,), list(SO101_JOINT_KEYS)),
        "action": Feature("float32", (6,), list(SO101_JOINT_KEYS)),
        "observation.images.front": Feature("video", (h, w, 3), ["height", "width", "channels"]),
        "observation.images.wrist": Feature("video", (h, w, 3), ["height", "width", "channels"]),
    }
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    with DatasetWriter.create(root, fps=30, features=feats, robot_type="so_follower", durable=False) as wr:
        for e in range(episodes):
            for i in range(frames):
                q = np.sin(np.arange(6) + i / 30 + e).astype(np.float32)
                img = _image(e, i, h, w, rng)
                wr.add_frame(
                    {
                        "observation.state": q,
                        "action": q + np.float32(0.01),
                        "observation.images.front": img,
                        "observation.images.wrist": img[::-1].copy(),
                    },
                    task=f"task {e % 3}",
                )
            wr.save_episode()
    return time.perf_counter() - t0


def size_mb(root: Path) -> float:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file()) / 1024**2


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--episodes", type=int, default=20)
    p.add_argument("--frames", type=int, default=300)
    p.add_argument("--size", default="240x320", help="HxW of the cameras")
    p.add_argument("--workdir", default=None, help="where to build (default: a temp folder, removed after)")
    args = p.parse_args()
    h, w = (int(v) for v in args.size.split("x"))
    work = Path(args.workdir or tempfile.mkdtemp(prefix="jrobot-bench-"))
    try:
        src = work / "src"
        t = record(src, args.episodes, args.frames, h, w)
        n = args.episodes * args.frames
        mb = size_mb(src)
        print(
            f"source: {args.episodes} episodes x {args.frames} frames, 2 cameras {h}x{w}, {mb:.1f} MB (recorded in {t:.1f} s)"
        )

        t0 = time.perf_counter()
        shutil.copytree(src, work / "copy")
        copy_mbps = mb / (time.perf_counter() - t0)
        print(
            f"{'baseline: copy the folder':<28} {mb / copy_mbps:7.2f} s  {'':>9}           {copy_mbps:7.1f} MB/s"
        )
        results: dict[str, dict[str, float]] = {}

        def timed(name: str, fn, frames: int, megabytes: float) -> None:
            t0 = time.perf_counter()
            report = fn()
            dt = time.perf_counter() - t0
            extra = ""
            if hasattr(report, "rewrite"):
                report = report.rewrite
            if hasattr(report, "reencoded_videos"):
                extra = f"  ({report.copied_videos} segments copied, {len(report.reencoded_videos)} re-encoded, {len(report.recomputed_image_stats)} image stats decoded)"
            ratio = megabytes / dt / copy_mbps
            print(
                f"{name:<28} {dt:7.2f} s  {frames / dt:9.0f} frames/s  {megabytes / dt:7.1f} MB/s"
                f"  = {ratio:.2f}x a plain copy{extra}"
            )
            results[name] = {
                "seconds": dt,
                "frames_per_s": frames / dt,
                "mb_per_s": megabytes / dt,
                "vs_copy": ratio,
            }

        timed(
            "convert (v3.0 -> v3.0)", lambda: edit.convert_dataset(src, work / "conv", durable=False), n, mb
        )
        timed(
            "merge (2 copies)",
            lambda: edit.merge_datasets([src, work / "conv"], work / "merged", durable=False),
            2 * n,
            2 * mb,
        )
        timed(
            "delete 1 episode",
            lambda: edit.delete_episodes(src, work / "deleted", [0], durable=False),
            n - args.frames,
            mb,
        )
        timed(
            "convert + recompute stats",
            lambda: edit.convert_dataset(src, work / "recomputed", recompute_stats="always", durable=False),
            n,
            mb,
        )
        with open_dataset(src) as ds:
            t0 = time.perf_counter()
            count = sum(1 for e in ds.episodes for _ in ds.iter_camera(e.index, "observation.images.front"))
            dt = time.perf_counter() - t0
        print(f"{'(decode one camera, all)':<28} {dt:7.2f} s  {count / dt:9.0f} frames/s")
        print(json.dumps({"copy_mb_per_s": copy_mbps, "decode_frames_per_s": count / dt, **results}))
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

"""Speed of the data tools on a synthetic dataset: convert, merge, delete, recompute image stats.

    .venv/bin/python benchmarks/dataset_edit.py [--episodes 20] [--frames 300] [--size 240x320]

Records a LeRobot v3.0 dataset with jrobot's writer (2 cameras, AV1 g=2 crf 30: LeRobot's defaults;
images are moving gradients with noise so the video has a realistic bitrate), then times each
operation and prints frames/s and MB/s of the source, and each operation's MB/s as a ratio of a plain
copy of the same folder (the physical ceiling for a rewrite), timed in the same round; the median of
`--rounds` rounds is reported with each round's ratio. Video is stream-copied in all but the
recompute run, so those numbers measure I/O and parquet work; `--recompute-stats always` decodes
LeRobot's sampled frames of every episode.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from common import print_result, print_rounds

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
    p.add_argument(
        "--rounds", type=int, default=3, help="alternations of the copy baseline and the operations"
    )
    p.add_argument("--workdir", default=None, help="where to build (default: a temp folder, removed after)")
    args = p.parse_args()
    if args.rounds < 1:
        p.error(f"--rounds {args.rounds}: at least 1")
    result: dict = {"load_avg_start": os.getloadavg(), "cores": os.cpu_count()}
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

        # This VM's speed drifts by up to +-20% over minutes: each round times the copy baseline and
        # then every operation, the ratio to the copy is taken within the round, and the median round
        # is reported with the spread of the rounds.
        ops = [
            ("convert (v3.0 -> v3.0)", lambda out: edit.convert_dataset(src, out, durable=False), n, mb),
            (
                "merge (2 copies)",
                lambda out: edit.merge_datasets([src, work / "copy"], out, durable=False),
                2 * n,
                2 * mb,
            ),
            (
                "delete 1 episode",
                lambda out: edit.delete_episodes(src, out, [0], durable=False),
                n - args.frames,
                mb,
            ),
            (
                "convert + recompute stats",
                lambda out: edit.convert_dataset(src, out, recompute_stats="always", durable=False),
                n,
                mb,
            ),
        ]
        rounds: dict[str, list[dict[str, float]]] = {name: [] for name, *_ in ops}
        extras: dict[str, str] = {}
        copies = []
        for r in range(args.rounds):
            shutil.rmtree(work / "copy", ignore_errors=True)
            t0 = time.perf_counter()
            shutil.copytree(src, work / "copy")
            copy_mbps = mb / (time.perf_counter() - t0)
            copies.append(copy_mbps)
            for name, fn, frames, megabytes in ops:
                out = work / f"out_{r}"
                t0 = time.perf_counter()
                report = fn(out)
                dt = time.perf_counter() - t0
                shutil.rmtree(out, ignore_errors=True)
                report = getattr(report, "rewrite", report)
                if hasattr(report, "reencoded_videos"):
                    extras[name] = (
                        f"  ({report.copied_videos} segments copied, {len(report.reencoded_videos)} re-encoded, "
                        f"{len(report.recomputed_image_stats)} image stats decoded)"
                    )
                rounds[name].append(
                    {"seconds": dt, "frames_per_s": frames / dt, "mb_per_s": megabytes / dt,
                     "vs_copy": megabytes / dt / copy_mbps}
                )  # fmt: skip
        copy = print_rounds("baseline: copy the folder, MB/s", copies, spec=".0f")
        copy_mbps = copy["median"]
        results: dict[str, dict] = {}
        for name, *_ in ops:
            rs = sorted(rounds[name], key=lambda x: x["vs_copy"])
            med = rs[len(rs) // 2]
            print(
                f"{name:<28} {med['seconds']:7.2f} s  {med['frames_per_s']:9.0f} frames/s  {med['mb_per_s']:7.1f} MB/s"
                f"{extras.get(name, '')}"
            )
            ratio = print_rounds(
                f"  RATIO {name} MB/s / a plain copy's (same round)",
                [x["vs_copy"] for x in rounds[name]],
                spec=".3f",
            )
            results[name] = {**med, "rounds_vs_copy": ratio["rounds"], "spread_vs_copy": ratio["spread"]}
        with open_dataset(src) as ds:
            t0 = time.perf_counter()
            count = sum(1 for e in ds.episodes for _ in ds.iter_camera(e.index, "observation.images.front"))
            dt = time.perf_counter() - t0
        print(f"{'(decode one camera, all)':<28} {dt:7.2f} s  {count / dt:9.0f} frames/s")
        result.update(
            copy_mb_per_s=copy_mbps, copy_mb_per_s_rounds=copies, decode_frames_per_s=count / dt, **results
        )
        print_result(result)
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

"""List the cameras OpenCV can open, optionally saving one frame from each (`lerobot-find-cameras`).

    python -m jrobot.find_cameras [--save_dir=outputs/captured_images] [--targets="[0, /dev/video2]"]

On Linux every /dev/video* node is tried, elsewhere indices 0..59. Use the printed id as
`index_or_path` in `--robot.cameras`.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Sequence
from pathlib import Path

import cv2

from jrobot.cli import Binder, CliError, run_tool
from jrobot.hw.opencv_camera import OpenCVCamera, OpenCVCameraConfig

USAGE = __doc__ or ""


@dataclasses.dataclass
class FindCamerasOptions:
    save_dir: Path | None = None
    targets: list[str] | None = None  # explicit indices/paths instead of scanning


def main(argv: Sequence[str]) -> int:
    binder = Binder.from_argv(argv)
    opts = binder.build(FindCamerasOptions)
    binder.finish()
    targets = None
    if opts.targets is not None:
        targets = [int(t) if str(t).isdigit() else str(t) for t in opts.targets]
        for t in targets:
            if isinstance(t, str) and "://" not in t and not Path(t).exists():
                raise CliError(f"--targets: {t}: no such camera device or video file")
    cameras = OpenCVCamera.find_cameras(targets)
    if not cameras:
        print("No OpenCV cameras were detected.")
        return 0
    print("\n--- Detected Cameras ---")
    for i, info in enumerate(cameras):
        print(f"Camera #{i}:")
        for key, value in info.items():
            if isinstance(value, dict):
                print(f"  {key.replace('_', ' ').capitalize()}:")
                for k, v in value.items():
                    print(f"    {k.capitalize()}: {v}")
            else:
                print(f"  {key.replace('_', ' ').capitalize()}: {value}")
        print("-" * 20)
    if opts.save_dir is not None:
        opts.save_dir.mkdir(parents=True, exist_ok=True)
        for info in cameras:
            cam = OpenCVCamera(OpenCVCameraConfig(index_or_path=info["id"], warmup_s=0, color_mode="bgr"))
            cam.connect()
            try:
                frame = cam.read()
            finally:
                cam.disconnect()
            name = "opencv_" + str(info["id"]).replace("/", "_").replace("\\", "_") + ".png"
            cv2.imwrite(str(opts.save_dir / name), frame)
            print(f"saved {opts.save_dir / name} ({frame.shape[1]}x{frame.shape[0]})")
    return 0


if __name__ == "__main__":
    sys.exit(run_tool(main, usage=USAGE))

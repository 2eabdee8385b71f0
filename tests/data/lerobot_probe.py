"""Run inside a LeRobot 0.4.x environment: load datasets with `LeRobotDataset` and dump what it returns.

Usage: python lerobot_probe.py OUT_DIR ROOT [ROOT ...]. For each ROOT writes OUT_DIR/<n>.npz with,
per frame, the low-dim values, the task index and the camera images (HWC uint8, rounded from
LeRobot's float CHW), plus delta-timestamp windows for a few frames; errors go to <n>.error.
Prints a JSON summary line. No jrobot import: this is LeRobot's own view of the files.
"""

import json
import sys
import traceback
from pathlib import Path

import numpy as np


def probe(root: str, out: Path) -> dict:
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    ds = LeRobotDataset("jrobot/probe", root=root)
    cams = ds.meta.camera_keys
    n = len(ds)
    res = {"episode_index": [], "frame_index": [], "index": [], "task": [], "state": [], "action": []}
    imgs = {k: [] for k in cams}
    for i in range(n):
        it = ds[i]
        for k in ("episode_index", "frame_index", "index"):
            res[k].append(int(it[k]))
        res["task"].append(it["task"])
        res["state"].append(it["observation.state"].numpy())
        res["action"].append(it["action"].numpy())
        for k in cams:
            imgs[k].append(np.round(it[k].numpy().transpose(1, 2, 0) * 255).astype(np.uint8))
    fps = ds.fps
    deltas = {"action": [-2 / fps, 0.0, 1 / fps, 2 / fps], cams[0]: [-1 / fps, 0.0]}
    dds = LeRobotDataset("jrobot/probe", root=root, delta_timestamps=deltas)
    pick = sorted({0, 1, n // 2, n - 2, n - 1} & set(range(n)))
    windows = {"pick": np.asarray(pick)}
    for i in pick:
        it = dds[i]
        windows[f"action_{i}"] = it["action"].numpy()
        windows[f"action_is_pad_{i}"] = it["action_is_pad"].numpy()
        windows[f"cam_{i}"] = np.round(it[cams[0]].numpy().transpose(0, 2, 3, 1) * 255).astype(np.uint8)
        windows[f"cam_is_pad_{i}"] = it[f"{cams[0]}_is_pad"].numpy()
    arrays = {k: np.asarray(v) for k, v in res.items() if k != "task"}
    arrays.update({f"img:{k}": np.stack(v) for k, v in imgs.items()})
    arrays.update({f"win:{k}": v for k, v in windows.items()})
    np.savez(out, tasks=np.asarray(res["task"]), **arrays)
    return {"root": root, "frames": n, "episodes": ds.meta.total_episodes}


def main() -> None:
    out_dir = Path(sys.argv[1])
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = []
    for n, root in enumerate(sys.argv[2:]):
        try:
            summary.append(probe(root, out_dir / f"{n}.npz"))
        except Exception:
            (out_dir / f"{n}.error").write_text(traceback.format_exc())
            summary.append({"root": root, "error": True})
    print(json.dumps(summary))


if __name__ == "__main__":
    main()

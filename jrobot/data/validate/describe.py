"""What is in a dataset, as one JSON-able dict: format, robot, features, cameras, episodes, tasks, stats
and the validation problems. `python -m data_tools.inspect` prints it; notebooks display it.

A dataset the reader cannot open is still described as far as its meta/info.json allows, and the
problems say why it cannot be opened.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import av
import numpy as np

from jrobot.data.errors import DatasetError
from jrobot.data.format.layout import INFO_PATH
from jrobot.data.read.hub import resolve_dataset
from jrobot.data.read.reader import Dataset, open_dataset
from jrobot.data.validate import is_valid, validate_dataset
from jrobot.data.video.container import open_video
from jrobot.features import features_from_json


def _feature_rows(features: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for name, f in features.items():
        out.append({"name": name, "dtype": f.dtype, "shape": list(f.shape), "names": f.flat_names})
    return out


def camera_info(path: Path, max_packets: int = 600) -> dict[str, Any]:
    """Codec, size, pixel format, frame rate and keyframe spacing of an mp4 (demuxes a few packets)."""
    c, s = open_video(path)
    with c:
        keyframes, n = [], 0
        for pkt in c.demux(s):
            if pkt.pts is None and pkt.dts is None:
                continue
            if pkt.is_keyframe:
                keyframes.append(n)
            n += 1
            if n >= max_packets:
                break
        gop = float(np.mean(np.diff(keyframes))) if len(keyframes) > 1 else None
        return {
            "codec": s.codec.canonical_name if s.codec else s.codec_context.name,
            "height": s.height,
            "width": s.width,
            "pix_fmt": s.codec_context.pix_fmt,
            "fps": float(s.average_rate) if s.average_rate else None,
            "keyframe_interval": gop,
        }


def describe_dataset(
    source: str | os.PathLike[str], *, validate: bool = True, decode: bool = False
) -> dict[str, Any]:
    """Everything `inspect` shows, JSON-able. `validate` lists problems (`decode` also decodes every frame)."""
    root = resolve_dataset(source)
    problems = validate_dataset(root, decode=decode) if validate else []
    out: dict[str, Any] = {"root": str(root)}
    try:
        ds: Dataset | None = open_dataset(root)
    except DatasetError as e:
        ds = None
        out["open_error"] = str(e)
    if ds is None:
        try:
            info = json.loads((root / INFO_PATH).read_text(encoding="utf-8"))
            feats = features_from_json(info.get("features", {}))
            out.update(
                codebase_version=info.get("codebase_version"),
                robot_type=info.get("robot_type"),
                fps=info.get("fps"),
                total_episodes=info.get("total_episodes"),
                total_frames=info.get("total_frames"),
                features=_feature_rows(feats),
            )
        except (OSError, ValueError, AttributeError):
            pass
    else:
        with ds:
            out.update(_describe_open(ds))
    out["problems"] = [p.to_json() for p in problems]
    out["valid"] = is_valid(problems) and "open_error" not in out
    return out


def _describe_open(ds: Dataset) -> dict[str, Any]:
    cams = []
    for key in ds.camera_keys:
        f = ds.features[key]
        h, w, _ = f.hwc_shape
        entry: dict[str, Any] = {"key": key, "dtype": f.dtype, "height": h, "width": w}
        if f.is_video and ds.episodes:
            files = sorted({e.videos[key].path for e in ds.episodes})
            entry["files"] = len(files)
            try:
                entry.update(camera_info(files[0]))
            except (av.error.FFmpegError, DatasetError, IndexError, OSError) as e:
                entry["error"] = f"{files[0]}: {e}"
        elif f.dtype == "image":
            entry["codec"] = "png (in parquet)"
        cams.append(entry)
    task_col = ds.column("task_index") if "task_index" in ds.features else None
    tasks = []
    for i, t in enumerate(ds.tasks):
        rows = np.nonzero(task_col == i)[0] if task_col is not None else np.array([], dtype=np.int64)
        eps = sorted({int(e) for e in ds.column("episode_index")[rows]}) if rows.size else []
        tasks.append({"index": i, "task": t, "episodes": len(eps), "frames": int(rows.size)})
    episodes = [
        {
            "index": e.index,
            "length": e.length,
            "duration_s": round(e.length / float(ds.fps), 3),
            "tasks": list(e.tasks),
        }
        for e in ds.episodes
    ]
    lengths = np.asarray([e.length for e in ds.episodes]) if ds.episodes else np.zeros(0)
    stored = ds.stats or {}
    order = [k for k in ds.features if k in stored] + [k for k in stored if k not in ds.features]
    stats = {k: {s: np.asarray(v).reshape(-1).tolist() for s, v in stored[k].items()} for k in order}
    return {
        "codebase_version": ds.codebase_version,
        "robot_type": ds.robot_type,
        "fps": ds.fps,
        "total_episodes": ds.num_episodes,
        "total_frames": ds.num_frames,
        "duration_s": round(ds.num_frames / float(ds.fps), 3),
        "episode_length": {
            "min": int(lengths.min()) if lengths.size else 0,
            "mean": float(lengths.mean()) if lengths.size else 0.0,
            "max": int(lengths.max()) if lengths.size else 0,
        },
        "features": _feature_rows(ds.features),
        "cameras": cams,
        "episodes": episodes,
        "tasks": tasks,
        "stats": stats,
    }


def format_description(d: dict[str, Any], *, max_episodes: int = 20) -> str:
    """The dict of `describe_dataset` as text for a terminal."""
    lines = [f"dataset   {d['root']}"]
    if "open_error" in d:
        lines.append(f"CANNOT OPEN: {d['open_error']}")
    lines.append(
        f"format    {d.get('codebase_version')}   robot {d.get('robot_type')}   fps {d.get('fps')}   "
        f"episodes {d.get('total_episodes')}   frames {d.get('total_frames')}"
        + (f"   ({d['duration_s']} s)" if "duration_s" in d else "")
    )
    if d.get("features"):
        lines.append("features")
        width = max(len(f["name"]) for f in d["features"])
        for f in d["features"]:
            names = f["names"]
            shown = "" if names is None else f"  {names if len(names) <= 8 else [*names[:8], '...']}"
            lines.append(f"  {f['name']:<{width}}  {f['dtype']:<8} {f['shape']}{shown}")
    if d.get("cameras"):
        lines.append("cameras")
        for c in d["cameras"]:
            extra = ""
            if "codec" in c:
                extra = f"  {c['codec']}"
            if c.get("pix_fmt"):
                extra += f" {c['pix_fmt']}"
            if c.get("fps"):
                extra += f" {c['fps']:g} fps"
            if c.get("keyframe_interval"):
                extra += f"  keyframe every {c['keyframe_interval']:.3g} frames"
            if "files" in c:
                extra += f"  in {c['files']} file(s)"
            lines.append(f"  {c['key']}  {c['height']}x{c['width']} {c['dtype']}{extra}")
    if d.get("episodes") is not None and "episode_length" in d:
        el = d["episode_length"]
        lines.append(f"episodes  length min {el['min']} / mean {el['mean']:.1f} / max {el['max']}")
        for e in d["episodes"][:max_episodes]:
            lines.append(
                f"  {e['index']:>5}  {e['length']:>6} frames  {e['duration_s']:>8.2f} s  {e['tasks']}"
            )
        if len(d["episodes"]) > max_episodes:
            lines.append(f"  ... {len(d['episodes']) - max_episodes} more")
    if d.get("tasks"):
        lines.append("tasks")
        for t in d["tasks"]:
            lines.append(
                f"  {t['index']:>3}  {t['task']!r}  ({t['episodes']} episodes, {t['frames']} frames)"
            )
    if d.get("stats"):
        lines.append("stats (mean / std per dimension; images per channel in [0, 1])")
        for k, s in d["stats"].items():
            if "mean" in s and "std" in s:
                mean = np.round(np.asarray(s["mean"], dtype=float), 3).tolist()
                std = np.round(np.asarray(s["std"], dtype=float), 3).tolist()
                lines.append(f"  {k}: mean {mean}  std {std}  count {s.get('count')}")
    problems = d.get("problems", [])
    errors = [p for p in problems if p["severity"] == "error"]
    warnings = [p for p in problems if p["severity"] != "error"]
    lines.append(
        f"validation: {len(errors)} error(s), {len(warnings)} warning(s) -> {'VALID' if d['valid'] else 'INVALID'}"
    )
    for p in errors + warnings:
        lines.append(f"  {p['severity']}: {p['file'] or '.'}: {p['message']}")
    return "\n".join(lines)

"""Looking at one episode: plots of every low-dimensional feature with camera frames alongside, the
cameras side by side as one video (`render_episode`), or a rerun recording of it (`episode_to_rerun`,
the same layout as a live `--display_data` view). `python -m data_tools.view` is the command."""

from __future__ import annotations

import os
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

from jrobot.data.errors import DatasetError
from jrobot.data.read.reader import Dataset, open_dataset
from jrobot.features import DEFAULT_FEATURE_NAMES

_VIDEO_CODECS = ("libx264", "h264", "libsvtav1", "mpeg4")


def _plot_groups(ds: Dataset) -> list[list[str]]:
    """Low-dimensional features to plot; those with identical dimension names share a figure."""
    keys = [
        k
        for k, f in ds.features.items()
        if k not in DEFAULT_FEATURE_NAMES and not f.is_visual and f.dtype not in ("string", "bool")
    ]
    groups: list[list[str]] = []
    for k in keys:
        names = ds.features[k].flat_names
        for g in groups:
            if (
                names
                and ds.features[g[0]].flat_names == names
                and tuple(ds.features[g[0]].shape) == tuple(ds.features[k].shape)
            ):
                g.append(k)
                break
        else:
            groups.append([k])
    return groups


def _label(s: str, limit: int = 40) -> str:
    return s if len(s) <= limit else s[: limit - 1] + "…"


class _VideoSink:
    """H.264 (or the first available fallback) mp4 writer for RGB frames of a fixed size."""

    def __init__(self, path: Path, width: int, height: int, fps: float) -> None:
        self.container = av.open(str(path), "w", format="mp4")
        codec = next((c for c in _VIDEO_CODECS if c in av.codecs_available), None)
        if codec is None:
            raise DatasetError(f"no video encoder among {_VIDEO_CODECS} in this FFmpeg build")
        rate = Fraction(fps).limit_denominator(1001)
        self.stream = self.container.add_stream(codec, rate=rate)
        self.stream.width, self.stream.height = width, height
        self.stream.pix_fmt = "yuv420p"
        self.stream.time_base = 1 / rate
        self.n = 0

    def write(self, rgb: np.ndarray) -> None:
        frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
        frame.pts = self.n
        self.n += 1
        for pkt in self.stream.encode(frame):
            self.container.mux(pkt)

    def close(self) -> None:
        for pkt in self.stream.encode(None):
            self.container.mux(pkt)
        self.container.close()


def _side_by_side(frames: Sequence[np.ndarray], height: int) -> np.ndarray:
    scaled = []
    for f in frames:
        h, w = f.shape[:2]
        nw = max(2, round(w * height / h))
        scaled.append(
            f if (h, w) == (height, nw) else cv2.resize(f, (nw, height), interpolation=cv2.INTER_AREA)
        )
    img = np.concatenate(scaled, axis=1)
    pad_w = img.shape[1] % 2
    return np.pad(img, ((0, 0), (0, pad_w), (0, 0))) if pad_w else img


def render_episode(
    source: str | os.PathLike[str] | Dataset,
    episode: int,
    out_dir: str | os.PathLike[str],
    *,
    thumbnails: int = 5,
    video: bool = True,
    video_height: int | None = None,
) -> list[Path]:
    """Write the plots and the mp4 of `episode` into `out_dir`; returns the files written.

    Each camera is decoded once, front to back; `thumbnails` frames per camera are kept for the
    plots. `video_height` scales the mp4 (default: the tallest camera's height, at least 240 px).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ds = source if isinstance(source, Dataset) else open_dataset(source)
    try:
        ep = ds.episode(episode)
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        stem = f"episode_{ep.index:06d}"
        cams = ds.camera_keys
        n = ep.length
        picks = sorted({round(float(x)) for x in np.linspace(0, n - 1, max(1, min(thumbnails, n)))})
        thumbs: dict[str, dict[int, np.ndarray]] = {c: {} for c in cams}
        written: list[Path] = []
        if cams:
            sink = None
            height = video_height or max(240, max(ds.features[c].hwc_shape[0] for c in cams))
            height += height % 2
            try:
                for i, frame in enumerate(ds.iter_episode(ep.index, cams)):
                    imgs = [frame[c] for c in cams]
                    if i in picks:
                        for c, img in zip(cams, imgs, strict=True):
                            thumbs[c][i] = img
                    if video:
                        comp = _side_by_side(imgs, height)
                        if sink is None:
                            sink = _VideoSink(
                                out / f"{stem}.mp4", comp.shape[1], comp.shape[0], float(ds.fps)
                            )
                        text = f"ep {ep.index}  frame {i}  t={i / float(ds.fps):.2f}s"
                        cv2.putText(
                            comp, text, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 3, cv2.LINE_AA
                        )
                        cv2.putText(
                            comp,
                            text,
                            (6, 18),
                            cv2.FONT_HERSHEY_SIMPLEX,
                            0.5,
                            (255, 255, 255),
                            1,
                            cv2.LINE_AA,
                        )
                        sink.write(comp)
            finally:
                if sink is not None:
                    sink.close()
                    written.append(out / f"{stem}.mp4")
        cols = ds.episode_columns(ep.index)
        t = np.arange(n) / float(ds.fps)
        for group in _plot_groups(ds):
            data = {k: np.asarray(cols[k], dtype=np.float64).reshape(n, -1) for k in group}
            dims = data[group[0]].shape[1]
            names = ds.features[group[0]].flat_names or [f"{group[0]}[{j}]" for j in range(dims)]
            rows = max(dims, len(picks) if cams else 0, 1)
            ncols = 1 + len(cams)
            fig = plt.figure(figsize=(4.5 + 1.6 * len(cams), max(3.0, 1.25 * rows)), dpi=100)
            gs = fig.add_gridspec(
                rows, ncols, width_ratios=[3.0] + [1.0] * len(cams), hspace=0.45, wspace=0.15
            )
            for j in range(dims):
                ax = fig.add_subplot(gs[j * rows // dims : (j + 1) * rows // dims, 0])
                for k in group:
                    ax.plot(t, data[k][:, j], label=k, linewidth=1.2)
                for p in picks if cams else []:
                    ax.axvline(p / float(ds.fps), color="0.6", linestyle="--", linewidth=0.7)
                ax.set_ylabel(_label(str(names[j]) if j < len(names) else f"[{j}]", 18), fontsize=8)
                ax.tick_params(labelsize=7)
                if j < dims - 1:
                    ax.set_xticklabels([])
                else:
                    ax.set_xlabel("time [s]", fontsize=8)
                if j == 0 and len(group) > 1:
                    ax.legend(fontsize=7, loc="upper right")
            for ci, c in enumerate(cams):
                for r, p in enumerate(picks):
                    ax = fig.add_subplot(gs[r * rows // len(picks) : (r + 1) * rows // len(picks), 1 + ci])
                    ax.imshow(thumbs[c][p])
                    ax.set_xticks([])
                    ax.set_yticks([])
                    ax.set_title(
                        f"{_label(c.removeprefix('observation.images.'), 16)} t={p / float(ds.fps):.2f}s",
                        fontsize=7,
                    )
            title = " vs ".join(group)
            fig.suptitle(
                f"{Path(ds.root).name}  episode {ep.index}  ({n} frames, {list(ep.tasks)})\n{title}",
                fontsize=9,
            )
            path = out / f"{stem}_{'+'.join(group)}.png"
            fig.savefig(path, bbox_inches="tight")
            plt.close(fig)
            written.append(path)
        return written
    finally:
        if not isinstance(source, Dataset):
            ds.close()


def episode_to_rerun(
    source: str | os.PathLike[str] | Dataset,
    episode: int,
    *,
    save: str | os.PathLike[str] | None = None,
    url: str | None = None,
) -> int:
    """Log `episode` to rerun (an .rrd file `save`, or the viewer at `url`); returns the frames logged.

    Each low-dimensional feature dimension is one plot, named by its feature names (`observation.state`
    and `action` of an SO-101 share joint names, so each joint's command and measurement are side by
    side); cameras are images."""
    from jrobot.display import RerunDisplay

    ds = source if isinstance(source, Dataset) else open_dataset(source)
    try:
        ep = ds.episode(episode)
        lowdim = [k for k, f in ds.features.items() if not f.is_visual and k not in DEFAULT_FEATURE_NAMES]
        lowdim = [k for k in lowdim if ds.features[k].dtype not in ("string",)]
        names = {k: ds.features[k].flat_names for k in lowdim}
        frames = 0
        name = f"jrobot_view_{Path(str(ds.root)).name}_{ep.index}"
        with RerunDisplay(name, save=save, url=url, block=True) as view:
            for frame in ds.iter_episode(ep.index):
                observation: dict[str, object] = {k: frame[k] for k in ds.camera_keys}
                action: dict[str, float] = {}
                for key in lowdim:
                    values = np.asarray(frame[key], np.float64).reshape(-1)
                    labels = names[key] if names[key] and len(names[key]) == values.size else None
                    for i, v in enumerate(values):
                        label = labels[i] if labels else (key if values.size == 1 else f"{key}_{i}")
                        (action if key == "action" else observation)[
                            label if key in ("action", "observation.state") else f"{key}.{label}"
                        ] = float(v)
                view.log(frames, observation, action, fps=ds.fps)
                frames += 1
        return frames
    finally:
        if not isinstance(source, Dataset):
            ds.close()

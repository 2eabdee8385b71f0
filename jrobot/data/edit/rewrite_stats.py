"""Image statistics of a rewritten dataset: reused from the source where trustworthy, else recomputed.

Used by `rewrite.write_dataset`. A source episode's stored image stats are reused when they are
complete, have LeRobot's (3, 1, 1) shapes, count sampled frames (LeRobot 0.4.4's streaming encoder
stores a pixel count instead) and do not carry LeRobot 0.4.0–0.5.1's uint8-overflowed std
(`stats_check`, judged per episode and for the source's stats.json). Otherwise the episode is
decoded and LeRobot's sampled frames are counted (`stats.image_stats_from_counts`), in a thread pool.
When some episodes of a camera have quantiles and others do not (merging a v2.x dataset with a
newer one), the ones without are recomputed too, so every episode of the output agrees.
"""

from __future__ import annotations

import concurrent.futures
import os
from collections.abc import Mapping, Sequence

import numpy as np

from jrobot.data.edit.sources import EpisodeRef
from jrobot.data.errors import DatasetError
from jrobot.data.format.stats import (
    QUANTILE_KEYS,
    Stats,
    frame_channel_counts,
    image_stats_from_counts,
    sample_indices,
)
from jrobot.data.format.stats_check import corrupt_image_std_keys, image_std_is_corrupt


def _trusted(stats: Mapping[str, np.ndarray] | None, length: int) -> bool:
    if not stats or any(k not in stats for k in ("min", "max", "mean", "std", "count")):
        return False
    count = np.asarray(stats["count"]).reshape(-1)
    if count.size != 1 or not 0 < int(count[0]) <= length:  # pixel counts: LeRobot's streaming encoder
        return False
    if any(np.asarray(stats[k]).shape != (3, 1, 1) for k in ("min", "max", "mean", "std")):
        return False
    return not image_std_is_corrupt(stats)


def _decoded_image_stats(ref: EpisodeRef, src_key: str) -> Stats:
    ds = ref.dataset
    ep = ds.episode(ref.episode_index)
    chosen = set(sample_indices(ep.length))
    counts = [
        frame_channel_counts(img) for i, img in enumerate(ds.iter_camera(ep.index, src_key)) if i in chosen
    ]
    if len(counts) != len(chosen):
        raise DatasetError(f"{ds.root}: camera {src_key!r} of episode {ep.index} yielded too few frames")
    return image_stats_from_counts(np.sum(counts, axis=0, dtype=np.int64), len(counts))


def episode_image_stats(
    refs: Sequence[EpisodeRef],
    cameras: Mapping[str, str],
    mode: str,
    reencoded: Mapping[tuple[int, str], list[np.ndarray]],
    workers: int | None,
) -> tuple[list[dict[str, Stats]], list[str], list[str]]:
    """Per output episode, the stats of each camera (`cameras`: output key -> source key).

    Returns the stats, the (camera, episode) pairs that were decoded, and notes for the report.
    `reencoded[(pos, key)]` are per-frame pixel counts gathered while re-encoding (no decode needed).
    """
    out: list[dict[str, Stats]] = [{} for _ in refs]
    notes: list[str] = []
    corrupt: dict[int, set[str]] = {}
    for ref in refs:
        ds = ref.dataset
        if id(ds) not in corrupt:
            # one writer computed all of a dataset's stats: a camera whose std is impossible in
            # stats.json or in any episode is not trusted in any episode of that dataset
            bad = set(corrupt_image_std_keys(ds.stats, ds.camera_keys))
            for e in ds.episodes:
                bad |= set(corrupt_image_std_keys(ds.episode_stats(e.index), ds.camera_keys))
            bad &= set(cameras.values())
            corrupt[id(ds)] = bad
            if bad:
                notes.append(
                    f"{ds.root}: stored image std of {sorted(bad)} is corrupt (LeRobot 0.4.0-0.5.1 uint8 overflow); "
                    "recomputed from the decoded frames"
                )
    jobs: list[tuple[int, str]] = []
    for pos, ref in enumerate(refs):
        ep = ref.dataset.episode(ref.episode_index)
        stored = ref.dataset.episode_stats(ref.episode_index) or {}
        for key, src_key in cameras.items():
            if (pos, key) in reencoded:
                per_frame = reencoded[(pos, key)]
                chosen = sample_indices(len(per_frame))
                out[pos][key] = image_stats_from_counts(
                    np.sum([per_frame[i] for i in chosen], axis=0, dtype=np.int64), len(chosen)
                )
                continue
            s = stored.get(src_key)
            usable = s is not None and (
                mode == "never"
                or (mode == "auto" and src_key not in corrupt[id(ref.dataset)] and _trusted(s, ep.length))
            )
            if usable:
                out[pos][key] = {k: np.asarray(v) for k, v in s.items()}
            else:
                jobs.append((pos, key))
    # Mixed sources (v2.x stats have no quantiles, newer ones do): decode the episodes that lack
    # them rather than dropping every episode's quantiles.
    with_q = {key for _, key in jobs} | {
        key for st in out for key, s in st.items() if all(q in s for q in QUANTILE_KEYS)
    }
    if mode != "never":
        for pos, st in enumerate(out):
            for key in [k for k in st if k in with_q and not all(q in st[k] for q in QUANTILE_KEYS)]:
                del st[key]
                jobs.append((pos, key))
    if jobs:
        n = max(1, workers if workers is not None else min(4, os.cpu_count() or 1))
        with concurrent.futures.ThreadPoolExecutor(n, thread_name_prefix="jrobot-stats") as pool:
            futures = {
                pool.submit(_decoded_image_stats, refs[pos], cameras[key]): (pos, key) for pos, key in jobs
            }
            for fut in concurrent.futures.as_completed(futures):
                pos, key = futures[fut]
                out[pos][key] = fut.result()
    return out, [f"{key} of output episode {pos}" for pos, key in jobs], notes


def harmonize_quantiles(ep_stats: list[dict[str, Stats]]) -> list[str]:
    """Quantiles only where every episode has them (v2.1 sources have none), so the columns agree."""
    notes = []
    keys = {k for s in ep_stats for k in s}
    for key in sorted(keys):
        have = [all(q in s[key] for q in QUANTILE_KEYS) for s in ep_stats if key in s]
        if any(have) and not all(have):
            for s in ep_stats:
                if key in s:
                    for q in QUANTILE_KEYS:
                        s[key].pop(q, None)
            notes.append(
                f"{key}: some source episodes have no quantile stats (converted from v2.x); quantiles left out "
                "for this feature (recompute_image_stats='always' / --recompute-stats adds them)"
            )
    return notes

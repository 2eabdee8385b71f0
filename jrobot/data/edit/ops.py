"""Editing datasets: delete or select episodes, split by episodes, merge, remove or rename features.

Every operation reads its source(s) and writes a *new* LeRobot v3.0 dataset through
`rewrite.write_dataset`, so each output is a valid dataset LeRobot loads (renumbered rows, episode
ranges, video timestamps of stream-copied segments, re-indexed tasks, recomputed/aggregated stats).
Sources may be local folders or Hub ids (`open_dataset` resolves them; offline fails at once).
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from jrobot.data.edit.rewrite import RewriteReport, write_dataset
from jrobot.data.edit.sources import EpisodeRef, normalized_feature, same_feature
from jrobot.data.errors import DatasetError
from jrobot.data.format.info import validate_feature_specs
from jrobot.data.read.reader import Dataset, open_dataset
from jrobot.features import DEFAULT_FEATURE_NAMES

PathLike = str | os.PathLike[str]


def _user_keys(ds: Dataset) -> list[str]:
    return [k for k in ds.features if k not in DEFAULT_FEATURE_NAMES]


def _check_episodes(ds: Dataset, episodes: Iterable[int], what: str) -> list[int]:
    chosen = [int(e) for e in episodes]
    known = {e.index for e in ds.episodes}
    missing = sorted(set(chosen) - known)
    if missing:
        raise DatasetError(
            f"{ds.root}: {what}: no episode(s) {missing} (the dataset has episodes 0..{ds.num_episodes - 1})"
        )
    dupes = sorted({e for e in chosen if chosen.count(e) > 1})
    if dupes:
        raise DatasetError(f"{what}: episode(s) {dupes} listed more than once")
    return chosen


def delete_episodes(src: PathLike, dst: PathLike, episodes: Iterable[int], **kwargs: Any) -> RewriteReport:
    """A copy of `src` without `episodes`; the rest are renumbered 0..N-1 in their order."""
    with open_dataset(src) as ds:
        drop = set(_check_episodes(ds, episodes, "delete"))
        keep = [e.index for e in ds.episodes if e.index not in drop]
        if not keep:
            raise DatasetError(f"{ds.root}: deleting {sorted(drop)} would leave no episodes")
        return write_dataset(dst, [EpisodeRef(ds, e) for e in keep], robot_type=ds.robot_type, **kwargs)


def select_episodes(src: PathLike, dst: PathLike, episodes: Iterable[int], **kwargs: Any) -> RewriteReport:
    """A new dataset holding `episodes` of `src`, in the order given."""
    with open_dataset(src) as ds:
        chosen = _check_episodes(ds, episodes, "select")
        if not chosen:
            raise DatasetError("select: no episodes given")
        return write_dataset(dst, [EpisodeRef(ds, e) for e in chosen], robot_type=ds.robot_type, **kwargs)


def split_by_fraction(
    num_episodes: int, fractions: Mapping[str, float], *, seed: int | None = 0
) -> dict[str, list[int]]:
    """Episode indices per split, sizes proportional to `fractions` (which must sum to 1).

    Largest-remainder rounding, every split with a positive fraction gets at least one episode.
    `seed=None` keeps the episode order (the last episodes go to the last split); otherwise the
    episodes are shuffled with `random.Random(seed)` first. Each split's list is sorted.
    """
    if not fractions:
        raise DatasetError("split: no splits given")
    bad = {k: v for k, v in fractions.items() if not 0 < float(v) <= 1}
    if bad:
        raise DatasetError(f"split: fractions must be in (0, 1], got {bad}")
    total = sum(float(v) for v in fractions.values())
    if abs(total - 1.0) > 1e-6:
        raise DatasetError(f"split: fractions must sum to 1, got {total:g} ({dict(fractions)})")
    if num_episodes < len(fractions):
        raise DatasetError(f"split: {num_episodes} episodes cannot fill {len(fractions)} splits")
    order = list(range(num_episodes))
    if seed is not None:
        random.Random(seed).shuffle(order)
    exact = {k: float(v) * num_episodes for k, v in fractions.items()}
    sizes = {k: max(1, int(v)) for k, v in exact.items()}
    while sum(sizes.values()) > num_episodes:
        k = max(sizes, key=lambda n: (sizes[n] - exact[n], sizes[n]))
        sizes[k] -= 1
    for k in sorted(exact, key=lambda n: exact[n] - sizes[n], reverse=True):
        if sum(sizes.values()) >= num_episodes:
            break
        sizes[k] += 1
    out, i = {}, 0
    for k in fractions:
        out[k] = sorted(order[i : i + sizes[k]])
        i += sizes[k]
    return out


def split_dataset(
    src: PathLike, outputs: Mapping[str, PathLike], splits: Mapping[str, Sequence[int]], **kwargs: Any
) -> dict[str, RewriteReport]:
    """Write each split (name -> episodes of `src`) to `outputs[name]`; splits must not overlap."""
    if set(outputs) != set(splits):
        raise DatasetError(
            f"split: outputs {sorted(outputs)} and splits {sorted(splits)} name different splits"
        )
    with open_dataset(src) as ds:
        seen: dict[int, str] = {}
        for name, eps in splits.items():
            for e in _check_episodes(ds, eps, f"split {name!r}"):
                if e in seen:
                    raise DatasetError(f"split: episode {e} is in both {seen[e]!r} and {name!r}")
                seen[e] = name
            if not eps:
                raise DatasetError(f"split {name!r}: no episodes")
        for name, out in outputs.items():
            if Path(out).exists():
                raise DatasetError(f"{out}: already exists (output of split {name!r})")
        return {
            name: write_dataset(
                outputs[name],
                [EpisodeRef(ds, int(e)) for e in splits[name]],
                robot_type=ds.robot_type,
                **kwargs,
            )
            for name in splits
        }


def check_mergeable(datasets: Sequence[Dataset]) -> None:
    """Same fps and the same recorded features (dtype, shape, names; camera resolution), or a clear error."""
    first = datasets[0]
    want = {k: normalized_feature(first.features[k]) for k in _user_keys(first)}
    problems = []
    for ds in datasets[1:]:
        if float(ds.fps) != float(first.fps):
            problems.append(f"{ds.root}: fps {ds.fps} differs from {first.root}: fps {first.fps}")
        have = {k: normalized_feature(ds.features[k]) for k in _user_keys(ds)}
        missing, extra = sorted(set(want) - set(have)), sorted(set(have) - set(want))
        if missing:
            problems.append(f"{ds.root}: lacks feature(s) {missing} that {first.root} has")
        if extra:
            problems.append(f"{ds.root}: has feature(s) {extra} that {first.root} lacks")
        for k in sorted(set(want) & set(have)):
            a, b = want[k], have[k]
            if not same_feature(a, b):
                problems.append(
                    f"feature {k!r}: {first.root} has {a.dtype} {list(a.shape)} names={a.flat_names}, "
                    f"{ds.root} has {b.dtype} {list(b.shape)} names={b.flat_names}"
                )
    if problems:
        raise DatasetError("cannot merge: " + "; ".join(problems))


def merge_datasets(
    sources: Sequence[PathLike], dst: PathLike, *, robot_type: str | None = None, **kwargs: Any
) -> RewriteReport:
    """All episodes of `sources`, in order, as one dataset (features and fps must agree).

    The robot type must agree too unless `robot_type` is given for the result (LeRobot 0.4.3
    renamed "so101_follower" to "so_follower"; merging across that needs an explicit choice).
    """
    if len(sources) < 2:
        raise DatasetError("merge: give at least two datasets")
    opened: list[Dataset] = []
    try:
        for s in sources:
            opened.append(open_dataset(s))
        check_mergeable(opened)
        if robot_type is None:
            types = {str(ds.root): ds.robot_type for ds in opened}
            if len(set(types.values())) > 1:
                raise DatasetError(
                    f"cannot merge: robot types differ ({types}); pass robot_type= / --robot-type"
                )
            robot_type = opened[0].robot_type
        refs = [EpisodeRef(ds, e.index) for ds in opened for e in ds.episodes]
        return write_dataset(dst, refs, robot_type=robot_type, **kwargs)
    finally:
        for ds in opened:
            ds.close()


def remove_features(src: PathLike, dst: PathLike, features: Iterable[str], **kwargs: Any) -> RewriteReport:
    """A copy of `src` without the given recorded features (bookkeeping columns cannot be removed)."""
    drop = list(dict.fromkeys(features))
    with open_dataset(src) as ds:
        user = _user_keys(ds)
        booked = [k for k in drop if k in DEFAULT_FEATURE_NAMES]
        if booked:
            raise DatasetError(
                f"cannot remove {booked}: LeRobot's bookkeeping columns are part of every dataset"
            )
        unknown = [k for k in drop if k not in user]
        if unknown:
            raise DatasetError(f"{ds.root}: no feature(s) {unknown} to remove (features: {user})")
        keep = {k: k for k in user if k not in drop}
        if not keep:
            raise DatasetError(f"{ds.root}: removing {drop} would leave no recorded feature")
        refs = [EpisodeRef(ds, e.index) for e in ds.episodes]
        return write_dataset(dst, refs, features=keep, robot_type=ds.robot_type, **kwargs)


def rename_features(src: PathLike, dst: PathLike, mapping: Mapping[str, str], **kwargs: Any) -> RewriteReport:
    """A copy of `src` with features renamed (`old -> new`); video folders follow the new names."""
    with open_dataset(src) as ds:
        user = _user_keys(ds)
        unknown = [k for k in mapping if k not in user]
        if unknown:
            raise DatasetError(f"{ds.root}: no feature(s) {unknown} to rename (features: {user})")
        new_names = {k: mapping.get(k, k) for k in user}
        targets = list(new_names.values())
        clash = sorted({n for n in targets if targets.count(n) > 1})
        if clash:
            raise DatasetError(f"rename: more than one feature would be called {clash}")
        validate_feature_specs({new_names[k]: normalized_feature(ds.features[k]) for k in user})
        refs = [EpisodeRef(ds, e.index) for e in ds.episodes]
        return write_dataset(
            dst, refs, features={new_names[k]: k for k in user}, robot_type=ds.robot_type, **kwargs
        )

"""New datasets from existing ones: conversion of any LeRobot version to v3.0 (`convert`), deleting,
selecting, splitting, merging, removing and renaming (`ops`), all written by one engine
(`rewrite.write_dataset`, with its video and stats parts in `rewrite_video` and `rewrite_stats`, and
the episode references they share in `sources`). Sources are only read; every result is a new folder.

    from jrobot.data import edit
    edit.convert_dataset(src, dst); edit.delete_episodes(src, dst, [3, 7])
"""

from jrobot.data.edit.convert import ConvertReport, convert_dataset, legacy_findings, upgrade_dataset
from jrobot.data.edit.ops import (
    check_mergeable,
    delete_episodes,
    merge_datasets,
    remove_features,
    rename_features,
    select_episodes,
    split_by_fraction,
    split_dataset,
)
from jrobot.data.edit.rewrite import RewriteReport, write_dataset
from jrobot.data.edit.sources import EpisodeRef

__all__ = [
    "ConvertReport",
    "EpisodeRef",
    "RewriteReport",
    "check_mergeable",
    "convert_dataset",
    "delete_episodes",
    "legacy_findings",
    "merge_datasets",
    "remove_features",
    "rename_features",
    "select_episodes",
    "split_by_fraction",
    "split_dataset",
    "upgrade_dataset",
    "write_dataset",
]

"""A dataset read from the Hugging Face cache, as `huggingface_hub.snapshot_download` lays it out.

A snapshot folder (`<cache>/datasets--owner--name/snapshots/<commit>/`) holds only symlinks into the
repo's `blobs/`, so "resolves inside the dataset folder" must allow the repo's own blobs, and nothing
else: the cache is written by huggingface_hub, a link from a snapshot to anywhere but its blobs is not.
Here the cache is built by hand from a LeRobot-written fixture and opened offline through the real
`snapshot_download` (it returns the cached snapshot without a network call).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from hub_cache import fill_hub_cache
from hub_cache import offline_cache as offline_cache_at

from jrobot.data import DatasetError, open_dataset

REPO = "someone/so101_cached"
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def hub_cache_of(dataset: Path, cache: Path) -> Path:
    """`dataset` as huggingface_hub caches a dataset repo: blobs named by hash, relative symlinks."""
    return fill_hub_cache(dataset, cache, REPO, repo_type="dataset", commit=COMMIT)


@pytest.fixture
def offline_cache(tmp_path, monkeypatch):
    return offline_cache_at(monkeypatch, tmp_path / "hf" / "hub")


@pytest.mark.parametrize("version", ["v30", "v21"])
def test_a_cached_hub_dataset_reads_as_its_local_copy(version, v30_dir, v21_dir, offline_cache, stripes):
    local = {"v30": v30_dir, "v21": v21_dir}[version]
    snapshot = hub_cache_of(local, offline_cache)
    assert (snapshot / "meta" / "info.json").is_symlink()
    cached, direct = open_dataset(REPO), open_dataset(local)
    assert cached.meta.root.resolve() == snapshot.resolve()
    assert len(cached) == len(direct) > 0
    for i in (0, len(direct) // 2, len(direct) - 1):
        a, b = cached[i], direct[i]
        assert a.keys() == b.keys()
        for key in a:
            assert np.array_equal(np.asarray(a[key]), np.asarray(b[key])), key


def test_a_snapshot_link_leaving_the_repo_cache_is_refused(v30_dir, offline_cache, tmp_path):
    snapshot = hub_cache_of(v30_dir, offline_cache)
    outside = tmp_path / "outside.parquet"
    victim = next((snapshot / "data").rglob("*.parquet"))
    shutil.copyfile(victim, outside)
    victim.unlink()
    victim.symlink_to(outside)  # not huggingface_hub's doing: a link out of the repo's cache
    with pytest.raises(DatasetError, match=r"outside .*refused"):
        open_dataset(REPO)[0]


def test_a_template_climbing_from_the_snapshot_into_the_blobs_is_refused(v21_dir, offline_cache):
    """Blobs are reachable only through the snapshot's own links, never by a `..` in a template."""
    import json

    snapshot = hub_cache_of(v21_dir, offline_cache)
    info_link = snapshot / "meta" / "info.json"
    info = json.loads(info_link.read_text())
    data_file = next((snapshot / "data").rglob("*.parquet"))
    blob_name = Path(os.readlink(data_file)).name
    info["data_path"] = f"../../blobs/{blob_name}"
    info_link.unlink()
    info_link.write_text(json.dumps(info))
    with pytest.raises(DatasetError, match=r"data_path.*outside the dataset folder"):
        open_dataset(REPO)[0]

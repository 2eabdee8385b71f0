"""v2.0 datasets and the legacy feature spellings of v1.6 ports: dict `names`, `video_info`,
channel-first image shapes, float fps, a global stats.json instead of episodes_stats.jsonl."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from store_synth import episode_problems

from jrobot.data import open_dataset, upgrade_dataset
from jrobot.data.format.legacy import load_legacy_episode_stats
from jrobot.data.format.stats import aggregate_stats, to_jsonable

CAMS = ["observation.images.front", "observation.images.wrist"]


@pytest.fixture
def v20_port(tmp_path, v21_dir):
    """The v2.1 fixture rewritten the way a v1.6 -> v2.0 port looks."""
    root = tmp_path / "v20"
    shutil.copytree(v21_dir, root)
    for p in root.rglob("*"):
        p.chmod(0o755 if p.is_dir() else 0o644)
    info = json.loads((root / "meta/info.json").read_text())
    info["codebase_version"] = "v2.0"
    info["fps"] = 30.0
    info["robot_type"] = "unknown"
    for key in ("observation.state", "action"):
        info["features"][key]["names"] = {"motors": info["features"][key]["names"]}
    for key in CAMS:
        feat = info["features"][key]
        feat["shape"] = [3, 96, 128]
        feat["names"] = ["channel", "height", "width"]
        feat["video_info"] = {**feat.pop("info"), "video.fps": 30.0}
    (root / "meta/info.json").write_text(json.dumps(info, indent=4))
    stats = aggregate_stats(load_legacy_episode_stats(root).values())
    (root / "meta/stats.json").write_text(json.dumps(to_jsonable(stats)))
    (root / "meta/episodes_stats.jsonl").unlink()
    return root


def test_v20_port_reads_like_the_original(v20_port, v21_dir, stripes):
    ds, ref = open_dataset(v20_port), open_dataset(v21_dir)
    assert ds.codebase_version == "v2.0" and ds.fps == 30 and isinstance(ds.fps, int)
    assert ds.features["action"].flat_names == ref.features["action"].flat_names
    assert ds.features["observation.images.front"].channels_first
    assert ds.features["observation.images.front"].info["video.codec"] == "av1"
    assert ds.stats["action"]["count"].tolist() == [126] and ds.episode_stats(0) is None
    for e in range(3):
        assert episode_problems(ds, e, stripes) == []
    item = ds[60]
    assert item["observation.images.front"].shape == (96, 128, 3)  # HWC whatever the spec's order
    assert np.array_equal(item["action"], ref[60]["action"])


def test_v20_upgrade_computes_stats_with_quantiles(v20_port, tmp_path, stripes):
    out = upgrade_dataset(v20_port, tmp_path / "v30")
    ds = open_dataset(out)
    assert ds.codebase_version == "v3.0"
    for e in range(3):
        assert episode_problems(ds, e, stripes) == []
    st = ds.episode_stats(2)
    assert st["action"]["count"].tolist() == [31] and "q99" in st["action"]
    assert st["observation.images.wrist"]["mean"].shape == (3, 1, 1)
    info = json.loads((out / "meta/info.json").read_text())
    assert info["features"]["action"]["names"] == {"motors": ds.features["action"].flat_names}
    assert info["features"]["observation.images.front"]["info"]["video.codec"] == "av1"

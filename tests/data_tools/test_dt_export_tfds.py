"""`data_tools.export_tfds`: a LeRobot dataset -> RLDS (TFDS, ArrayRecord) that TFDS loads with every
value, task and frame equal, read back by `convert_rlds`, and written without TensorFlow, inside --out."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow_datasets as tfds
from rlds_helpers import write_rlds

from jrobot.data import DatasetError, open_dataset
from jrobot.data.rlds import export
from jrobot.data.rlds.convert import convert_rlds
from jrobot.data.rlds.export import export_tfds


def load(folder: Path) -> tuple[object, list[dict]]:
    """The builder and its train split's episodes, each {"steps": [...], "episode_metadata": {...}}."""
    builder = tfds.builder_from_directory(str(folder))
    source = builder.as_data_source(split="train")
    episodes = []
    for i in range(len(source)):
        ep = source[i]
        episodes.append({"steps": [ep["steps"][j] for j in range(len(ep["steps"]))], **ep})
    return builder, episodes


def text(value: object) -> str:
    value = value.item() if isinstance(value, np.ndarray) else value
    return value.decode() if isinstance(value, bytes) else str(value)


def fingerprint(folder: Path, skip: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): "dir" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if not p.is_relative_to(skip)
    }


def test_export_keeps_every_value_and_frame(tmp_path, v30_dir, monkeypatch):
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    out = tmp_path / "rlds"
    before = fingerprint(tmp_path, out)
    report = export_tfds(v30_dir, out)
    assert fingerprint(tmp_path, out) == before  # nothing beside --out, not even TFDS's build folder
    assert sorted(p.name for p in out.iterdir() if not p.name.endswith("-of-00001")) == [
        "dataset_info.json",
        "features.json",
        "metadata.json",
    ]
    assert (report.episodes, report.steps, report.cameras) == (3, 126, ["front", "wrist"])
    assert "3 episodes, 126 steps" in report.summary()

    builder, episodes = load(out)
    assert builder.info.name == "so101_v30" and str(builder.info.version) == "1.0.0"
    assert builder.info.metadata["fps"] == 30 and builder.info.metadata["source"] == "jrobot"
    src = open_dataset(v30_dir)
    assert builder.info.metadata["features"] == list(src.features)
    assert len(episodes) == src.num_episodes == 3
    for ep, episode in zip(src.episodes, episodes, strict=True):
        frames = list(src.iter_episode(ep.index))
        steps = episode["steps"]
        assert len(steps) == len(frames) == ep.length
        assert int(episode["episode_metadata"]["episode_index"]) == ep.index
        assert text(episode["episode_metadata"]["task"]) == frames[0]["task"]
        for j, (frame, step) in enumerate(zip(frames, steps, strict=True)):
            assert sorted(step["observation"]) == ["front", "state", "wrist"]
            for cam in ("front", "wrist"):
                img = step["observation"][cam]
                assert img.dtype == np.uint8 and img.shape == (96, 128, 3)
                assert np.array_equal(img, frame[f"observation.images.{cam}"]), (ep.index, j, cam)
            assert step["observation"]["state"].dtype == np.float32
            assert np.array_equal(step["observation"]["state"], frame["observation.state"])
            assert np.array_equal(step["action"], frame["action"])
            assert text(step["language_instruction"]) == frame["task"]
            assert (bool(step["is_first"]), bool(step["is_last"])) == (j == 0, j == ep.length - 1)
            assert bool(step["is_terminal"]) == (j == ep.length - 1)
            assert float(step["reward"]) == 0.0 and float(step["discount"]) == 1.0


def test_rlds_to_jrobot_to_rlds_keeps_every_value(tmp_path):
    src = write_rlds(tmp_path / "src")
    convert_rlds(src, tmp_path / "ds", video=False, durable=False)  # lossless PNG images
    report = export_tfds(tmp_path / "ds", tmp_path / "back", max_episodes=None)
    assert report.cameras == ["image", "wrist_image"]
    # ArrayRecord and PNG bytes: TFDS's writer needs no TensorFlow (checked in a fresh interpreter, as
    # another test of this process may have imported it)
    probe = (
        "import sys; from jrobot.data.rlds.export import export_tfds; "
        f"export_tfds({str(tmp_path / 'ds')!r}, {str(tmp_path / 'probe')!r}); print('tensorflow' in sys.modules)"
    )
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip().endswith("False"), proc.stderr[-2000:]

    _, original = load(src)
    builder, back = load(tmp_path / "back")
    assert builder.info.name == "ds" and builder.info.metadata["fps"] == 10
    assert [len(e["steps"]) for e in back] == [len(e["steps"]) for e in original] == [5, 3, 4]
    for e, (a, b) in enumerate(zip(original, back, strict=True)):
        assert int(b["episode_metadata"]["episode_index"]) == e
        assert text(b["episode_metadata"]["task"]) == f"task {e % 2}"
        for x, y in zip(a["steps"], b["steps"], strict=True):
            assert np.array_equal(x["observation"]["image"], y["observation"]["image"])
            assert np.array_equal(x["observation"]["wrist"]["image"], y["observation"]["wrist_image"])
            assert np.array_equal(x["observation"]["state"], y["observation"]["state"])
            assert np.array_equal(x["action"], y["action"])
            assert text(x["language_instruction"]) == text(y["language_instruction"])
            for key in ("reward", "is_first", "is_last", "is_terminal"):
                assert y[key] == x[key], key

    # and the export is RLDS as the converter reads it: back to jrobot, the same dataset again
    convert_rlds(tmp_path / "back", tmp_path / "again", video=False, durable=False)
    first, again = open_dataset(tmp_path / "ds"), open_dataset(tmp_path / "again")
    assert list(again.features) == list(first.features) and again.fps == first.fps
    for ep in first.episodes:
        for x, y in zip(first.iter_episode(ep.index), again.iter_episode(ep.index), strict=True):
            assert x.keys() == y.keys()
            for key in x:
                assert np.array_equal(x[key], y[key]), (ep.index, key)


def test_max_episodes_name_and_refusals(tmp_path, v30_dir, monkeypatch):
    report = export_tfds(v30_dir, tmp_path / "one", name="pick_cube", max_episodes=1)
    builder, episodes = load(tmp_path / "one")
    assert (
        builder.info.name == "pick_cube" and len(episodes) == 1 and report.steps == len(episodes[0]["steps"])
    )
    with pytest.raises(DatasetError, match="already exists"):
        export_tfds(v30_dir, tmp_path / "one")
    with pytest.raises(DatasetError, match="TFDS dataset name 'Pick-Cube'"):
        export_tfds(v30_dir, tmp_path / "bad", name="Pick-Cube")
    with pytest.raises(DatasetError, match="no such dataset folder"):
        export_tfds(tmp_path / "missing", tmp_path / "bad")
    with pytest.raises(DatasetError, match=r"no frames to export \(max_episodes=0\)"):
        export_tfds(v30_dir, tmp_path / "bad", max_episodes=0)
    assert not (tmp_path / "bad").exists()

    def bad_frame(*args, **kwargs):
        raise DatasetError("episode 1 frame 7: broken")

    monkeypatch.setattr(export, "_step", bad_frame)  # fails while TFDS writes: out goes again
    with pytest.raises(DatasetError, match="episode 1 frame 7: broken"):
        export_tfds(v30_dir, tmp_path / "bad")
    assert not (tmp_path / "bad").exists()


def test_cli(tmp_path, v30_dir, run_cli):
    out = tmp_path / "rlds"
    result = run_cli("data_tools.export_tfds", v30_dir, "--out", out, "--max_episodes", "2", "--quiet")
    assert result.returncode == 0, result.stderr
    assert f"wrote {out}: RLDS dataset 'so101_v30' 1.0.0 (ArrayRecord), 2 episodes" in result.stdout
    assert "cameras ['front', 'wrist']" in result.stdout
    assert len(load(out)[1]) == 2

    result = run_cli("data_tools.export_tfds", v30_dir, "--out", out)
    assert result.returncode == 2 and result.stderr.startswith(f"error: {out}: already exists")
    missing = tmp_path / "missing"
    result = run_cli("data_tools.export_tfds", missing, "--out", tmp_path / "new")
    assert result.returncode == 2 and f"error: {missing}: no such dataset folder" in result.stderr
    assert not (tmp_path / "new").exists()

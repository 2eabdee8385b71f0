"""The notebooks run top to bottom, unedited, against the shared LeRobot fixtures (papermill-style
parameters injected after their "parameters" cell), in a kernel of this very interpreter."""

from __future__ import annotations

from pathlib import Path

import pytest
from notebook_runner import run_notebook

from jrobot.data import open_dataset
from jrobot.data.validate import validate_dataset

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"


def _images(nb) -> int:
    return sum(
        1
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.get("outputs", [])
        if "image/png" in o.get("data", {})
    )


def _stdout(nb) -> str:
    return "".join(
        o.get("text", "")
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.get("outputs", [])
        if o.get("name") == "stdout"
    )


def test_convert_notebook_runs_end_to_end(tmp_path, v21_dir, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    work = tmp_path / "work"
    nb = run_notebook(
        NOTEBOOKS / "convert_lerobot_dataset.ipynb",
        {
            "DATASET": str(v21_dir),
            "WORK_DIR": str(work),
            "EPISODE": 1,
            "RESOLUTION": "32x32",
            "TRAIN_STEPS": 2,
        },
        tmp_path,
        output=tmp_path / "executed.ipynb",
    )
    out = _stdout(nb)
    assert "validation: 0 error(s)" in out
    assert "252/252 frames identical" in out
    assert "126 frames of 3 episodes" in out
    assert "2 steps in" in out
    assert _images(nb) >= 2  # trajectories and camera frames
    assert validate_dataset(work / "converted") == []
    assert open_dataset(work / "converted").num_frames == 126
    assert (work / "shards/manifest.json").is_file()
    assert (work / "run/checkpoints/2").is_dir()


@pytest.mark.parametrize("name", ["so101_v30", "so101_v21"])
def test_explore_notebook_runs(tmp_path, shared_dir, name):
    nb = run_notebook(
        NOTEBOOKS / "explore_dataset.ipynb",
        {"DATASET": str(shared_dir / "fixtures/lerobot" / name)},
        tmp_path,
    )
    out = _stdout(nb)
    assert "3 episodes, 126 frames" in out
    assert _images(nb) >= 4  # durations, action histograms, trajectories, frames
    if name == "so101_v30":
        assert "uint8 overflow" in out  # the notebook points out LeRobot 0.4.4's image std
    else:
        assert "image stats look plausible" in out


def test_convert_rlds_notebook_runs_end_to_end(tmp_path):
    from rlds_helpers import write_rlds

    src = write_rlds(tmp_path / "rlds")
    out = tmp_path / "out"
    nb = run_notebook(
        NOTEBOOKS / "convert_rlds_dataset.ipynb",
        {"RLDS_DIR": str(src), "OUT_DIR": str(out), "VIDEO": False},
        tmp_path,
        output=tmp_path / "executed.ipynb",
    )
    ds = open_dataset(out)
    assert (ds.num_episodes, ds.num_frames) == (3, 12)
    assert validate_dataset(out) == []
    assert _images(nb) >= 1  # a frame of each camera, next to its RLDS step
    text = _stdout(nb)
    assert any(line.startswith("wrote ") for line in text.splitlines()), text
    assert "validation: 0 problem(s)" in text
    assert "observation.images.wrist_image" in text and "<- observation/wrist/image" in text

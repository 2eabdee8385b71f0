"""`data_tools.convert_rlds`: RLDS datasets written by tensorflow-datasets itself (both file formats)
become LeRobot v3.0 datasets holding every step's values (rlds_helpers says what each step holds)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from rlds_helpers import main_image, state, wrist_image, write_rlds

from jrobot.data import DatasetError, open_dataset
from jrobot.data.rlds.convert import convert_rlds
from jrobot.data.rlds.source import open_rlds
from jrobot.data.validate import validate_dataset

LENGTHS = (5, 3, 4)
FRONT, WRIST = "observation.images.image", "observation.images.wrist_image"


@pytest.fixture(scope="module")
def array_record(tmp_path_factory):
    return write_rlds(tmp_path_factory.mktemp("rlds_ar"), lengths=LENGTHS)


# TensorFlow (the TFRecord path) runs in child processes only: loaded into a test process, its bundled
# LLVM clashes with Mesa's llvmpipe, and a later MuJoCo render in that process crashes.
def in_child(code: str) -> str:
    here = Path(__file__).resolve().parent
    proc = subprocess.run(
        [sys.executable, "-c", f"import sys; sys.path.insert(0, {str(here)!r}); {code}"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


@pytest.fixture(scope="module")
def tfrecord(tmp_path_factory):
    out = tmp_path_factory.mktemp("rlds_tfr")
    code = f"from rlds_helpers import write_rlds; print(write_rlds(__import__('pathlib').Path({str(out)!r}), lengths={LENGTHS!r}, file_format='tfrecord'))"
    return Path(in_child(code).strip().splitlines()[-1])


def check_every_value(ds, *, exact_images: bool, wrist_bgr: bool = False, size=(8, 12)) -> None:
    assert ds.num_episodes == len(LENGTHS) and ds.num_frames == sum(LENGTHS) and ds.fps == 10
    assert ds.tasks == ["task 0", "task 1"]
    for e, n in enumerate(LENGTHS):
        frames = list(ds.iter_episode(e))
        assert len(frames) == n
        for i, f in enumerate(frames):
            np.testing.assert_array_equal(f["observation.state"], state(e, i))
            np.testing.assert_array_equal(f["action"], state(e, i) + 0.5)
            assert f["task"] == f"task {e % 2}"
            assert f["next.reward"] == float(i == n - 1) and bool(f["next.done"]) == (i == n - 1)
            front, wrist = main_image(e, i, *size), wrist_image(e, i, *size)
            if wrist_bgr:
                wrist = wrist[..., ::-1]
            if exact_images:
                np.testing.assert_array_equal(f[FRONT], front)
                np.testing.assert_array_equal(f[WRIST], wrist)
            else:  # through the video codec: close, not equal
                assert np.abs(f[FRONT].astype(int) - front).mean() < 6
                assert np.abs(f[WRIST].astype(int) - wrist).mean() < 6


def test_array_record_rlds_keeps_every_value_without_tensorflow(array_record, tmp_path):
    report = convert_rlds(array_record, tmp_path / "out", video=False, durable=False)
    # ArrayRecord goes through TFDS's data sources only: a fresh interpreter never imports TensorFlow
    probe = (
        "import sys; from jrobot.data.rlds.convert import convert_rlds; "
        f"convert_rlds({str(array_record)!r}, {str(tmp_path / 'probe')!r}, durable=False); "
        "print('tensorflow' in sys.modules)"
    )
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip().endswith("False"), proc.stderr[-2000:]
    assert validate_dataset(tmp_path / "out") == []
    ds = open_dataset(tmp_path / "out")
    check_every_value(ds, exact_images=True)
    assert ds.features["action"].flat_names == ["action_0", "action_1", "action_2", "action_3"]
    assert ds.features["observation.state"].flat_names == [f"state_{i}" for i in range(4)]
    assert "language_embedding" in report.summary() and "wrote" in report.summary()


def test_tfrecord_rlds_through_tensorflow_and_to_video(tfrecord, tmp_path):
    code = (
        "from jrobot.data.rlds.convert import convert_rlds; "
        f"print(convert_rlds({str(tfrecord)!r}, {str(tmp_path / 'out')!r}, durable=False).file_format)"
    )
    assert in_child(code).strip().splitlines()[-1] == "tfrecord"
    assert "tensorflow" not in sys.modules
    assert validate_dataset(tmp_path / "out", decode=True) == []
    ds = open_dataset(tmp_path / "out")
    assert ds.features[FRONT].dtype == "video"
    check_every_value(ds, exact_images=False)


def test_tfrecord_without_tensorflow_is_a_clear_error(tfrecord, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorflow", None)  # import tensorflow -> ImportError
    with pytest.raises(
        DatasetError, match=r"TFRecord files, which only TensorFlow reads: pip install 'jrobot\[rlds\]'"
    ):
        open_rlds(tfrecord)


def test_flags_choose_cameras_state_action_and_fix_bgr(tmp_path):
    src = write_rlds(tmp_path / "rlds", lengths=LENGTHS, action_dict=True, fps=None)
    with pytest.raises(DatasetError, match="gives no frame rate"):
        convert_rlds(src, tmp_path / "no_fps", durable=False)
    assert not (tmp_path / "no_fps").exists()
    convert_rlds(
        src, tmp_path / "out", fps=10, image_keys=["wrist/image", "image"], bgr_keys=["wrist.image"],
        action_keys=["world_vector", "gripper"], video=False, durable=False,
    )  # fmt: skip
    ds = open_dataset(tmp_path / "out")
    assert list(ds.camera_keys) == [WRIST, FRONT]
    assert ds.features["action"].flat_names == [
        "world_vector_0",
        "world_vector_1",
        "world_vector_2",
        "gripper",
    ]
    check_every_value(ds, exact_images=True, wrist_bgr=True)
    with pytest.raises(DatasetError, match=r"no step field observation/nope \(there: \[.*observation/state"):
        convert_rlds(src, tmp_path / "bad", fps=10, image_keys=["nope"], durable=False)
    with pytest.raises(DatasetError, match="observation/state is not an RGB image"):
        convert_rlds(src, tmp_path / "bad", fps=10, image_keys=["state"], durable=False)


def test_episode_boundaries_and_image_sizes(tmp_path):
    src = write_rlds(
        tmp_path / "rlds", lengths=(3, 2), sizes_per_episode=[(8, 12), (6, 10)], extra_after_last=2
    )
    with pytest.raises(DatasetError, match=r"episode 1 step 0\): camera observation/image is 6x10, not 8x12"):
        convert_rlds(src, tmp_path / "a", video=False, durable=False)
    report = convert_rlds(src, tmp_path / "b", resolution=(4, 6), durable=False)
    assert "episode 0: 2 steps after is_last dropped" in report.summary()
    ds = open_dataset(tmp_path / "b")
    assert ds.num_frames == 5 and ds.features[FRONT].hwc_shape == (4, 6, 3)
    odd = write_rlds(tmp_path / "odd", lengths=(2,), size=(7, 12))
    with pytest.raises(DatasetError, match="is 7x12; video needs even sizes"):
        convert_rlds(odd, tmp_path / "c", durable=False)


def test_shard_names_that_leave_the_folder_are_refused(array_record, tmp_path):
    """The metadata's filepathTemplate builds the shard paths TFDS opens; one climbing out is refused."""
    import shutil

    src = tmp_path / "evil" / "1.0.0"
    shutil.copytree(array_record, src)
    info = json.loads((src / "dataset_info.json").read_text())
    info["splits"][0]["filepathTemplate"] = "../../outside/{DATASET}-{SPLIT}.{FILEFORMAT}-{SHARD_X_OF_Y}"
    (src / "dataset_info.json").write_text(json.dumps(info))
    with pytest.raises(
        DatasetError, match=r"filepathTemplate '\.\./\.\./outside/.*outside the dataset folder"
    ):
        open_rlds(src)
    (src / "dataset_info.json").write_text("[" * 100_000)
    with pytest.raises(DatasetError, match=r"dataset_info\.json: not readable JSON"):
        open_rlds(src)


def test_the_cli(array_record, tmp_path, run_cli):
    proc = run_cli(
        "data_tools.convert_rlds",
        array_record.parent,
        "--out",
        tmp_path / "out",
        "--video",
        "false",
        "--quiet",
    )
    assert proc.returncode == 0, proc.stderr
    assert "wrote" in proc.stdout and "observation.images.image <- observation/image" in proc.stdout
    assert open_dataset(tmp_path / "out").num_frames == sum(LENGTHS)
    proc = run_cli("data_tools.convert_rlds", tmp_path / "nope", "--out", tmp_path / "x")
    assert proc.returncode == 2 and "no such RLDS dataset folder" in proc.stderr
    proc = run_cli("data_tools.convert_rlds", tmp_path / "out", "--out", tmp_path / "x")
    assert proc.returncode == 2 and "not a TFDS dataset folder (no dataset_info.json)" in proc.stderr

"""Bad input and damaged datasets give a DatasetError that names the file/key and the problem."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from store_synth import features, frame, record

from jrobot.data import DatasetError, DatasetWriter, open_dataset
from jrobot.data.validate.checks import validate_dataset
from jrobot.features import Feature

H, W = 32, 48


@pytest.fixture
def writer(tmp_path):
    w = DatasetWriter.create(tmp_path / "ds", fps=30, features=features(H, W), durable=False)
    yield w
    w.close()


@pytest.fixture
def v30_copy(tmp_path, v30_dir):
    dst = tmp_path / "copy"
    shutil.copytree(v30_dir, dst)
    for p in dst.rglob("*"):
        p.chmod(0o755 if p.is_dir() else 0o644)
    return dst


def test_add_frame_rejects_bad_frames(writer):
    good = frame(0, 0, H, W)
    bad_shape = {**good, "observation.state": np.zeros(5, np.float32)}
    with pytest.raises(DatasetError, match=r"frame\['observation.state'\]: shape \(5,\)"):
        writer.add_frame(bad_shape, task="t")
    with pytest.raises(
        DatasetError, match=r"frame\['action'\]: dtype float64 does not match the feature's float32"
    ):
        writer.add_frame({**good, "action": np.zeros(6)}, task="t")
    with pytest.raises(DatasetError, match=r"unknown feature\(s\) \['gripper'\]"):
        writer.add_frame({**good, "gripper": 1.0}, task="t")
    missing = dict(good)
    del missing["observation.images.wrist"]
    with pytest.raises(DatasetError, match=r"missing feature\(s\) \['observation.images.wrist'\]"):
        writer.add_frame(missing, task="t")
    with pytest.raises(DatasetError, match=r"image shape \(32, 40, 3\)"):
        writer.add_frame({**good, "observation.images.front": np.zeros((H, 40, 3), np.uint8)}, task="t")
    with pytest.raises(DatasetError, match="float images must be in"):
        writer.add_frame({**good, "observation.images.front": np.full((H, W, 3), 2.0, np.float32)}, task="t")
    with pytest.raises(DatasetError, match="task"):
        writer.add_frame(good)
    with pytest.raises(DatasetError, match="multiples of 1/fps"):
        writer.add_frame({**good, "timestamp": 0.01}, task="t")
    with pytest.raises(DatasetError, match="no frames"):
        writer.save_episode()
    # nothing above entered the episode; CHW float input is accepted
    chw = {**good, "observation.images.front": good["observation.images.front"].transpose(2, 0, 1) / 255.0}
    writer.add_frame({**chw, "timestamp": 0.0}, task="t")
    assert writer.episode_length == 1


def test_create_rejects_bad_specs(tmp_path):
    with pytest.raises(DatasetError, match="must not contain '/'"):
        DatasetWriter.create(tmp_path / "a", fps=30, features={"a/b": Feature("float32", (2,))})
    with pytest.raises(DatasetError, match="even height and width"):
        DatasetWriter.create(tmp_path / "b", fps=30, features={"cam": Feature("video", (31, 48, 3))})
    with pytest.raises(DatasetError, match="unknown dtype"):
        DatasetWriter.create(tmp_path / "c", fps=30, features={"x": Feature("floaty", (2,))})
    with pytest.raises(DatasetError, match="fps"):
        DatasetWriter.create(tmp_path / "d", fps=0, features=features(H, W))
    (tmp_path / "e").mkdir()
    (tmp_path / "e" / "x").write_text("x")
    with pytest.raises(DatasetError, match="not empty"):
        DatasetWriter.create(tmp_path / "e", fps=30, features=features(H, W))
    with pytest.raises(DatasetError, match="not a LeRobot dataset"):
        DatasetWriter.resume(tmp_path / "e")


def test_create_starts_over_where_an_interrupted_create_left_only_folders(tmp_path):
    # A create killed after WorkDir.replace made meta/ but before info.json was renamed into it.
    root = tmp_path / "ds"
    (root / "meta").mkdir(parents=True)
    (root / ".jrobot" / "tmp").mkdir(parents=True)
    (root / ".jrobot" / "tmp" / "half.json").write_text("{")
    with DatasetWriter.create(root, fps=30, features=features(H, W), durable=False) as w:
        w.add_frame(frame(0, 0, H, W), task="t")
        w.save_episode()
    assert open_dataset(root).num_episodes == 1
    (tmp_path / "f" / "meta" / "episodes").mkdir(parents=True)
    (tmp_path / "f" / "meta" / "episodes" / "mine.parquet").write_bytes(b"x")
    with pytest.raises(DatasetError, match=r"not empty \(meta/episodes/mine.parquet"):
        DatasetWriter.create(tmp_path / "f", fps=30, features=features(H, W))
    assert (tmp_path / "f" / "meta" / "episodes" / "mine.parquet").read_bytes() == b"x"


def test_second_writer_is_refused(tmp_path):
    w = DatasetWriter.create(tmp_path / "ds", fps=30, features=features(H, W), durable=False)
    try:
        with pytest.raises(DatasetError, match="another process is writing"):
            DatasetWriter.resume(tmp_path / "ds")
    finally:
        w.close()


def test_truncated_parquet_is_named(v30_copy):
    path = v30_copy / "data/chunk-000/file-000.parquet"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(DatasetError, match=r"file-000\.parquet: truncated or corrupt parquet"):
        open_dataset(v30_copy)


def test_corrupt_episodes_metadata_is_named(v30_copy):
    (v30_copy / "meta/episodes/chunk-000/file-000.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(DatasetError, match=r"meta/episodes/chunk-000/file-000\.parquet"):
        open_dataset(v30_copy)


def test_truncated_video_is_named(v30_copy):
    path = v30_copy / "videos/observation.images.front/chunk-000/file-000.mp4"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 3])
    with pytest.raises(DatasetError, match=r"observation\.images\.front/chunk-000/file-000\.mp4"):
        ds = open_dataset(v30_copy)
        for i in range(len(ds)):
            ds[i]


def test_missing_files_are_named(v30_copy):
    (v30_copy / "videos/observation.images.wrist/chunk-000/file-000.mp4").unlink()
    with pytest.raises(DatasetError, match=r"missing video file: .*wrist/chunk-000/file-000\.mp4"):
        open_dataset(v30_copy)
    shutil.rmtree(v30_copy / "data")
    with pytest.raises(DatasetError, match=r"data files hold 0 frames but meta/info\.json says 126"):
        open_dataset(v30_copy)


def test_info_inconsistent_with_files(v30_copy, tmp_path):
    info_path = v30_copy / "meta/info.json"
    info = json.loads(info_path.read_text())
    info_path.write_text(json.dumps({**info, "total_episodes": 4}))
    with pytest.raises(DatasetError, match="says 4 episodes but meta/episodes holds 3 rows"):
        open_dataset(v30_copy)
    info_path.write_text(json.dumps({**info, "total_frames": 130}))
    with pytest.raises(DatasetError, match=r"covers 126 frames but meta/info\.json says 130"):
        open_dataset(v30_copy)
    info_path.write_text(json.dumps({**info, "codebase_version": "v9.9"}))
    with pytest.raises(DatasetError, match=r"v9\.9"):
        open_dataset(v30_copy)
    info_path.write_text("{not json")
    with pytest.raises(DatasetError, match=r"info\.json: unreadable or invalid JSON"):
        open_dataset(v30_copy)
    with pytest.raises(DatasetError, match="no such dataset folder"):
        open_dataset(tmp_path / "does-not-exist")


def test_timestamps_off_the_frame_grid(tmp_path):
    """A data file whose timestamps are not multiples of 1/fps: the video lookup says so."""
    root = tmp_path / "ds"
    with DatasetWriter.create(root, fps=30, features=features(H, W), durable=False) as w:
        record(w, 0, 6, "t", H, W)
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = root / "data/chunk-000/file-000.parquet"
    t = pq.read_table(path)
    ts = t.column("timestamp").to_numpy().copy()
    ts[3] += 0.01
    t = t.set_column(t.schema.get_field_index("timestamp"), "timestamp", pa.array(ts, pa.float32()))
    pq.write_table(t, path)
    ds = open_dataset(root)
    ds[2]
    with pytest.raises(DatasetError, match=r"no frame at 0\.11\d+ s within the tolerance"):
        ds[3]


def test_hub_id_offline_gives_clear_error(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    code = (
        "from jrobot.data import open_dataset, DatasetError\n"
        "try:\n    open_dataset('someone/some-dataset')\n"
        "except DatasetError as e:\n    print('ERR', e)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).parent,
    )
    assert "ERR someone/some-dataset: not a local folder" in out.stdout, out.stderr
    assert "offline (HF_HUB_OFFLINE=1)" in out.stdout


def _writable_copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    for p in dst.rglob("*"):
        p.chmod(0o755 if p.is_dir() else 0o644)
    return dst


@pytest.mark.parametrize(
    ("key", "template"),
    [
        ("data_path", "../outside/data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet"),
        (
            "video_path",
            "../outside/videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4",
        ),
    ],
)
def test_v21_templates_leading_outside_the_folder_are_refused(tmp_path, v21_dir, key, template):
    """A crafted info.json whose template climbs out of the dataset: refused, though the files exist there."""
    ds = _writable_copy(v21_dir, tmp_path / "ds")
    _writable_copy(v21_dir, tmp_path / "outside")  # the files the template points at are really there
    info = json.loads((ds / "meta" / "info.json").read_text())
    info[key] = template
    (ds / "meta" / "info.json").write_text(json.dumps(info))
    with pytest.raises(DatasetError, match=rf"info\.json: {key} .*outside the dataset folder"):
        open_dataset(ds)
    found = [
        p for p in validate_dataset(ds) if p.severity == "error" and "outside the dataset folder" in p.message
    ]
    assert found and found[0].file.endswith("info.json") and key in found[0].message  # inspect reports it
    info[key] = str(tmp_path / "outside" / template.removeprefix("../outside/"))  # absolute
    (ds / "meta" / "info.json").write_text(json.dumps(info))
    with pytest.raises(DatasetError, match=rf"{key} .*outside the dataset folder"):
        open_dataset(ds)


def test_v30_video_path_through_a_symlink_out_of_the_folder_is_refused(v30_copy, tmp_path):
    outside = tmp_path / "elsewhere"
    shutil.copytree(v30_copy / "videos", outside)
    shutil.rmtree(v30_copy / "videos")
    (v30_copy / "videos").symlink_to(outside, target_is_directory=True)
    with pytest.raises(DatasetError, match=r"video_path .*outside the dataset folder"):
        open_dataset(v30_copy)


def test_templates_inside_the_folder_still_read(v30_copy):
    """The check does not refuse a dataset whose files are where its own templates say."""
    info = json.loads((v30_copy / "meta" / "info.json").read_text())
    info["video_path"] = (
        "videos/./{video_key}/chunk-{chunk_index:03d}/../chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
    )
    (v30_copy / "meta" / "info.json").write_text(json.dumps(info))
    assert open_dataset(v30_copy).num_episodes == 3


def test_v30_data_path_outside_the_folder_is_reported_by_the_validator(v30_copy):
    info = json.loads((v30_copy / "meta" / "info.json").read_text())
    info["data_path"] = "../outside/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
    (v30_copy / "meta" / "info.json").write_text(json.dumps(info))
    found = [p for p in validate_dataset(v30_copy) if "outside the dataset folder" in p.message]
    assert found and found[0].severity == "error" and "data_path" in found[0].message


def _symlink_a_data_file_out(ds: Path, tmp_path: Path) -> Path:
    (data,) = list((ds / "data").glob("*/*.parquet"))[:1]
    outside = tmp_path / "elsewhere.parquet"
    shutil.move(data, outside)
    data.symlink_to(outside)
    return data


def test_a_data_file_symlinked_out_of_the_folder_is_refused_by_name(v30_copy, tmp_path):
    """Globbed files (data/*/*.parquet) obey the same rule as templates: no reading through a symlink out."""
    link = _symlink_a_data_file_out(v30_copy, tmp_path)
    with pytest.raises(DatasetError, match=rf"{link.name}: a symlink leading outside .*; refused"):
        open_dataset(v30_copy)
    found = [p for p in validate_dataset(v30_copy) if "symlink leading outside" in p.message]
    assert found and found[0].severity == "error"


def test_a_video_folder_symlinked_out_is_reported_by_the_validator(v30_copy, tmp_path):
    (cam,) = [p for p in (v30_copy / "videos").iterdir()][:1]
    (chunk,) = list(cam.iterdir())[:1]
    outside = tmp_path / "chunk"
    shutil.move(chunk, outside)
    chunk.symlink_to(outside, target_is_directory=True)
    found = [p for p in validate_dataset(v30_copy) if "outside" in p.message]
    assert found and all(p.severity == "error" for p in found)


def _image_rows_by_path(root: Path, pngs: list[bytes], name_of_row) -> None:
    """Rewrite the data file's front-camera column so each row names its PNG by path (no bytes), as
    a dataset whose images were never embedded does; the PNGs are written where `name_of_row` says."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    (data_file,) = sorted((root / "data").rglob("*.parquet"))
    table = pq.read_table(data_file)
    key = "observation.images.front"
    out = []
    for i, png in enumerate(pngs):
        name, target = name_of_row(i, data_file.parent)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(png)
        out.append({"bytes": None, "path": name})
    table = table.set_column(
        table.schema.get_field_index(key), key, pa.array(out, table.schema.field(key).type)
    )
    pq.write_table(table, data_file)


def test_images_stored_by_path_are_read_inside_the_dataset_only(tmp_path):
    root = tmp_path / "ds"
    with DatasetWriter.create(root, fps=30, features=features(H, W, dtype="image"), durable=False) as w:
        record(w, 0, 4, "t", H, W)
    embedded = open_dataset(root)
    expected = [embedded[i]["observation.images.front"] for i in range(4)]
    import pyarrow.parquet as pq

    (data_file,) = sorted((root / "data").rglob("*.parquet"))
    pngs = [row["bytes"] for row in pq.read_table(data_file).column("observation.images.front").to_pylist()]

    _image_rows_by_path(root, pngs, lambda i, folder: (f"frames/{i}.png", folder / "frames" / f"{i}.png"))
    ds = open_dataset(root)
    for i in range(4):
        assert np.array_equal(ds[i]["observation.images.front"], expected[i])

    outside = tmp_path / "outside"
    _image_rows_by_path(root, pngs, lambda i, folder: (f"../../../outside/{i}.png", outside / f"{i}.png"))
    with pytest.raises(
        DatasetError, match=r"row 0 column 'observation.images.front': image path .*outside/0\.png"
    ):
        open_dataset(root)[0]
    _image_rows_by_path(root, pngs, lambda i, folder: (str(outside / f"{i}.png"), outside / f"{i}.png"))
    with pytest.raises(DatasetError, match="leads outside the dataset folder"):
        open_dataset(root)[1]
    (root / "data" / "chunk-000" / "link").symlink_to(outside, target_is_directory=True)
    _image_rows_by_path(root, pngs, lambda i, folder: (f"link/{i}.png", outside / f"{i}.png"))
    with pytest.raises(DatasetError, match="leads outside the dataset folder"):
        open_dataset(root)[2]


def _set_feature_shape(root: Path, key: str, shape: list[int]) -> None:
    info_path = root / "meta" / "info.json"
    info = json.loads(info_path.read_text())
    info["features"][key]["shape"] = shape
    info_path.write_text(json.dumps(info, indent=4))


@pytest.mark.parametrize(
    ("key", "shape", "message"),
    [
        (
            "observation.images.front",
            [100_000, 100_000, 3],
            r"image size 100000x100000 is beyond what a camera",
        ),
        ("observation.images.front", [96, 128], r"an image shape has 3 sizes, got \[96, 128\]"),
        ("observation.images.front", [-96, 128, 3], r"negative size in shape \[-96, 128, 3\]"),
        ("observation.state", [1 << 20, 1 << 10], r"holds more than 16777216 values a frame"),
    ],
)
def test_a_feature_claiming_absurd_sizes_is_refused_before_anything_is_read(v30_copy, key, shape, message):
    _set_feature_shape(v30_copy, key, shape)
    with pytest.raises(DatasetError, match=message):
        open_dataset(v30_copy)
    assert any(re.search(message, str(p)) for p in validate_dataset(v30_copy)), validate_dataset(v30_copy)


def test_a_video_of_another_size_than_its_feature_is_refused(v30_copy):
    _set_feature_shape(v30_copy, "observation.images.front", [48, 64, 3])
    ds = open_dataset(v30_copy)
    message = (
        r"observation\.images\.front/chunk-000/file-000\.mp4: its header gives 96x128 frames but its feature"
    )
    with pytest.raises(DatasetError, match=message + r" in meta/info.json says 48x64"):
        ds[0]
    with pytest.raises(DatasetError, match=message):
        next(ds.iter_camera(0, "observation.images.front"))


def test_a_video_stream_of_absurd_size_is_refused_before_decoding(tmp_path):
    """ffmpeg accepts frames up to ~16k a side; a file that asks for such frames is refused by its header."""
    import av

    from jrobot.data.video.decode import VideoFile

    path = tmp_path / "wide.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("ffv1", rate=30)
        stream.width, stream.height, stream.pix_fmt = 17_000, 2, "yuv420p"
        frame = av.VideoFrame.from_ndarray(np.zeros((2, 17_000, 3), np.uint8), format="rgb24")
        for packet in [*stream.encode(frame), *stream.encode()]:
            container.mux(packet)
    with pytest.raises(
        DatasetError, match=re.escape(f"{path}: its header gives the video stream the absurd size 2x17000")
    ):
        VideoFile(path)

"""OpenCV cameras on real decoded frames: a video file and an image sequence stand in for a device."""

from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from hw_helpers import ScriptedPrompter, expected_calibration, write_lerobot_calibration

from jrobot.hw.opencv_camera import OpenCVCamera, OpenCVCameraConfig
from jrobot.hw.so101 import SO101Follower, SO101FollowerConfig
from jrobot.robot import DeviceNotConnectedError

W, H = 64, 48


def frame(i: int) -> np.ndarray:
    """BGR test frame: blue background, a white top-left marker, frame index in the green channel."""
    img = np.zeros((H, W, 3), np.uint8)
    img[:, :, 0] = 200  # blue (BGR)
    img[:, :, 1] = (i * 20) % 256
    img[: H // 4, : W // 4] = 255
    return img


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("cam") / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30.0, (W, H))
    assert writer.isOpened()
    for i in range(6):
        writer.write(frame(i))
    writer.release()
    return path


def open_cam(**kw) -> OpenCVCamera:
    cam = OpenCVCamera(OpenCVCameraConfig(**{"warmup_s": 0, **kw}))
    cam.connect()
    return cam


def test_rgb_frames_of_the_configured_size(video):
    cam = open_cam(index_or_path=str(video), width=W, height=H, fps=30)
    try:
        img = cam.read()
        assert img.shape == (H, W, 3) and img.dtype == np.uint8
        assert img[H - 1, W - 1, 2] > 180 and img[H - 1, W - 1, 0] < 40  # blue lands in channel 2 (RGB)
        assert cam.read_latest().shape == (H, W, 3)
        _, ts = cam.read_latest_with_timestamp()
        assert time.perf_counter() - ts < 0.5
    finally:
        cam.disconnect()
    with pytest.raises(DeviceNotConnectedError):
        cam.read_latest()


def test_bgr_mode_and_rotation(video):
    cam = open_cam(index_or_path=video, width=H, height=W, fps=30, rotation=90, color_mode="bgr")
    try:
        img = cam.read()
        assert img.shape == (W, H, 3)  # width/height are the output size, after rotation
        assert img[W - 1, 0, 0] > 180  # BGR kept
        # rotating 90 deg clockwise moves the top-left marker to the top-right
        assert img[0, H - 1].min() > 200 and img[0, 0].min() < 220
    finally:
        cam.disconnect()


def test_default_size_and_fps_come_from_the_source(video):
    cam = open_cam(index_or_path=video)
    try:
        assert (cam.width, cam.height, cam.fps) == (W, H, 30.0)
    finally:
        cam.disconnect()


def test_wrong_size_is_an_explicit_error(video):
    cam = OpenCVCamera(OpenCVCameraConfig(index_or_path=video, width=640, height=480, fps=30, warmup_s=0))
    with pytest.raises(RuntimeError, match="64x48 but 640x480"):
        cam.connect()
    assert not cam.is_connected


def test_missing_source_is_a_connection_error(tmp_path):
    with pytest.raises(ConnectionError, match="find_cameras"):
        open_cam(index_or_path=tmp_path / "nope.avi")


def test_file_is_paced_and_looped(video):
    cam = open_cam(index_or_path=video, width=W, height=H, fps=60)
    try:
        time.sleep(0.3)
        assert 7 <= cam.frames <= 25  # ~18 at 60 fps: looped past the 6 frames, yet paced (not free-running)
        assert cam.failures == 0
    finally:
        cam.disconnect()


def test_stale_frames_and_timeouts(video):
    cam = open_cam(index_or_path=video, width=W, height=H, fps=1)  # one frame per second
    try:
        cam.async_read(timeout_ms=100)  # the first frame
        with pytest.raises(TimeoutError, match="timed out"):
            cam.async_read(timeout_ms=100)
        time.sleep(0.25)
        with pytest.raises(TimeoutError, match="ms old"):
            cam.read_latest(max_age_ms=100)
        assert cam.read_latest(max_age_ms=2000).shape == (H, W, 3)
    finally:
        cam.disconnect()


def test_dead_thread_reports_its_cause(tmp_path):
    cv2.imwrite(str(tmp_path / "f_000.png"), frame(0))
    small = cv2.resize(frame(1), (W // 2, H // 2))
    for i in range(1, 14):
        cv2.imwrite(str(tmp_path / f"f_{i:03d}.png"), small)
    # OpenCV's IMAGES backend hands over each file as it is (FFMPEG would rescale them)
    cam = open_cam(
        index_or_path=str(tmp_path / "f_%03d.png"), width=W, height=H, fps=200, backend=cv2.CAP_IMAGES
    )
    try:
        deadline = time.monotonic() + 5
        while cam._thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.01)
        with pytest.raises(RuntimeError, match=r"consecutive read failures.*32x24, expected 64x48"):
            cam.read_latest(max_age_ms=10_000)
    finally:
        cam.disconnect()


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"rotation": 45}, "rotation"),
        ({"fourcc": "MJP"}, "fourcc"),
        ({"color_mode": "gray"}, "color_mode"),
        ({"width": -3}, "width"),
        ({"fps": 0}, "fps"),
        ({"type": "realsense"}, "type"),
    ],
)
def test_config_validation(kw, match):
    with pytest.raises(ValueError, match=match):
        OpenCVCameraConfig(index_or_path=0, **kw)


def test_find_cameras_reports_profiles(video, tmp_path):
    found = OpenCVCamera.find_cameras([str(video), str(tmp_path / "missing.avi")])
    assert len(found) == 1
    assert found[0]["id"] == str(video)
    assert found[0]["default_stream_profile"]["width"] == W
    assert found[0]["default_stream_profile"]["fps"] == 30.0


def test_follower_observation_includes_camera(arm, calib_root, video):
    write_lerobot_calibration(calib_root / "robots" / "so_follower" / "f.json", expected_calibration())
    cams = {"front": OpenCVCameraConfig(index_or_path=video, width=W, height=H, fps=30, warmup_s=0)}
    follower = SO101Follower(
        SO101FollowerConfig(port=arm.port, id="f", cameras=cams), prompter=ScriptedPrompter()
    )
    assert follower.observation_features["front"] == (H, W, 3)
    follower.connect()
    try:
        obs = follower.get_observation()
        assert obs["front"].shape == (H, W, 3)
        assert set(obs) == {*follower.action_features, "front"}
    finally:
        follower.disconnect()
    assert not follower.cameras["front"].is_connected

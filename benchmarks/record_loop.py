"""The real-arm record loop at 30 fps with two 480x640 cameras: loop period, dropped frames, save time.

    .venv/bin/python benchmarks/record_loop.py                     # three 60 s episodes, ~5 min (~12 min with LeRobot)
    .venv/bin/python benchmarks/record_loop.py --seconds 20 --rounds 1   # quicker
    JROBOT_LEROBOT_PYTHON=/work/lerobot-ref/bin/python .venv/bin/python benchmarks/record_loop.py

jrobot side (the code path of `python -m jrobot.record` with a real follower and leader):
- follower and leader: `SO101Follower` / `SO101Leader` from `jrobot.hw` over the real scservo_sdk,
  each talking to a virtual STS3215 bus (`python -m jrobot.virtual_arm`, one subprocess per arm,
  wire timing at 1 Mbps, rate-limited servo dynamics) as a USB bus would be served by hardware. A
  scripted "hand" moves the leader's shoulder and gripper through the virtual arm's control socket.
  Calibration files are LeRobot-format files matching the virtual arms (`jrobot.recording.devices.virtual_calibration`).
- cameras: two `OpenCVCamera`s (capture thread each) replaying MJPEG .avi files of rendered MuJoCo
  frames at 30 fps, 640x480, like a USB camera delivering MJPEG that OpenCV decodes.
- loop: `jrobot.recording.record.control_loop` (what `record()` runs per episode) with the writer of
  `jrobot.recording.record.open_writer` (streaming libsvtav1 encoding, LeRobot's default codec settings), paced
  in real time at 30 fps for one episode of `--seconds`, then `save_episode()`.
Reported: loop period p50/p99/max (between successive `get_observation` calls), dropped frames (missed
ticks, counted by the loop), achieved fps, repeated camera frames, per-call p50/p99 of
get_observation / send_action / add_frame, the encoder backlog at the end, and the save time.

LeRobot side (when `JROBOT_LEROBOT_PYTHON` names a LeRobot 0.4.x interpreter): the same camera frames
and joint values replayed at 30 fps into `LeRobotDataset.create(..., image_writer_threads=4 per camera)`
(LeRobot's record defaults: PNG files written by threads during the loop, video encoded in
`save_episode`), without robot I/O. Reported: add_frame p50/p99, loop period p50/p99, and the
`save_episode()` time for the same episode. `--lerobot-streaming` also measures LeRobot 0.4.4's
optional `streaming_encoding=True`. Ratio: LeRobot save time / jrobot save time.

This VM's spread between runs is wide when the recorder keeps ~1.9 of 2 cores busy, so `--rounds`
episodes (default 3) are recorded, alternating with LeRobot's when given: each target (0 dropped
ticks, loop period p99 <= 40 ms, save <= 0.5 s) is printed with every round's figure and is met only
if met in every round; the save-time ratio is taken within each round and its median round reported.
Without LeRobot the ratio is printed as n/a. One JSON line with every figure comes last.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from common import median_round, print_result, run_lerobot_script

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

H, W, FPS = 480, 640, 30
CAMERAS = ("front", "wrist")
TASK = "pick the cube"


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


# ---------------------------------------------------------------------------------------------------
# camera files


def make_camera_files(work: Path, n_frames: int) -> dict[str, Path]:
    """MJPEG .avi per camera with `n_frames` rendered sim frames (cached in `work`)."""
    import cv2

    paths = {c: work / f"{c}.avi" for c in CAMERAS}
    stamp = work / "cameras.json"
    want = {"frames": n_frames, "size": [H, W]}
    if all(p.is_file() for p in paths.values()) and stamp.is_file() and json.loads(stamp.read_text()) == want:
        return paths
    from jrobot.sim.robot import SimExpertTeleop, SimRobot, SimRobotConfig

    print(f"rendering {n_frames} sim frames per camera ({H}x{W}) for the camera files ...", flush=True)
    robot = SimRobot(SimRobotConfig(image_size=(H, W), cameras=CAMERAS))
    teleop = SimExpertTeleop(robot)
    robot.connect()
    teleop.connect()
    writers = {
        c: cv2.VideoWriter(str(p), cv2.VideoWriter_fourcc(*"MJPG"), FPS, (W, H)) for c, p in paths.items()
    }
    rng = np.random.default_rng(0)
    try:
        for _ in range(n_frames):
            obs = robot.get_observation()
            for c in CAMERAS:
                noisy = np.clip(
                    obs[c].astype(np.int16) + rng.normal(0, 2, (H, W, 3)).astype(np.int16), 0, 255
                )
                writers[c].write(cv2.cvtColor(noisy.astype(np.uint8), cv2.COLOR_RGB2BGR))
            robot.send_action(teleop.get_action())
    finally:
        for w in writers.values():
            w.release()
        robot.disconnect()
    stamp.write_text(json.dumps(want))
    return paths


# ---------------------------------------------------------------------------------------------------
# virtual arms in their own processes


class ArmProcess:
    """`python -m jrobot.virtual_arm` with a control socket; `.port` is its pty."""

    def __init__(self, control: Path):
        self.control = control
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "jrobot.virtual_arm", "--control", str(control)],
            stdout=subprocess.PIPE,
            text=True,
            cwd=str(REPO),
        )
        self.port = self.proc.stdout.readline().strip()
        if not self.port.startswith("/dev/"):
            self.close()
            raise RuntimeError(f"virtual arm did not start (printed {self.port!r})")

    def cpu_s(self) -> float:
        """User + system CPU seconds the emulator has used so far (Linux /proc)."""
        try:
            fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return float("nan")
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()


class Hand(threading.Thread):
    """A person moving the leader's shoulder pan and gripper back and forth (control socket)."""

    def __init__(self, control: Path):
        super().__init__(daemon=True)
        from jrobot.sim.virtual_arm import SO101_MECHANICS, VirtualArmClient

        self.client = VirtualArmClient(control)
        self.m1, self.m6 = SO101_MECHANICS[0], SO101_MECHANICS[5]
        self.stop = threading.Event()

    def run(self) -> None:
        k = 0
        while not self.stop.is_set():
            s = 0.5 + 0.4 * np.sin(k / 3)
            targets = {
                1: self.m1.zero + 300 * np.sin(k / 4),
                6: self.m6.lower + s * (self.m6.upper - self.m6.lower),
            }
            self.client.move(targets, duration_s=0.1, frame="actual")
            k += 1
            self.stop.wait(0.1)
        self.client.close()


# ---------------------------------------------------------------------------------------------------
# timing wrappers (they delegate everything; only the calls the loop makes are timed)


class TimedRobot:
    def __init__(self, robot):
        self._robot = robot
        self.obs_t: list[float] = []
        self.obs_s: list[float] = []
        self.send_s: list[float] = []
        self.repeated: dict[str, int] = dict.fromkeys(CAMERAS, 0)
        self._last: dict[str, int] = {}

    def __getattr__(self, name):
        return getattr(self._robot, name)

    def get_observation(self):
        t0 = time.perf_counter()
        obs = self._robot.get_observation()
        self.obs_t.append(t0)
        self.obs_s.append(time.perf_counter() - t0)
        for c in CAMERAS:
            if self._last.get(c) == id(obs[c]):
                self.repeated[c] += 1
            self._last[c] = id(obs[c])
        return obs

    def send_action(self, action):
        t0 = time.perf_counter()
        sent = self._robot.send_action(action)
        self.send_s.append(time.perf_counter() - t0)
        return sent


class TimedWriter:
    def __init__(self, writer):
        self._writer = writer
        self.add_s: list[float] = []

    def __getattr__(self, name):
        return getattr(self._writer, name)

    def add_frame(self, frame, task=None):
        t0 = time.perf_counter()
        self._writer.add_frame(frame, task=task)
        self.add_s.append(time.perf_counter() - t0)


def _self_cpu_s() -> float:
    import resource

    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def bench_jrobot(work: Path, videos: dict[str, Path], seconds: float) -> dict[str, Any]:
    from jrobot.data.read.reader import open_dataset
    from jrobot.hw.calibration import save_calibration
    from jrobot.hw.opencv_camera import OpenCVCameraConfig
    from jrobot.hw.prompts import AcceptCalibrationFile
    from jrobot.hw.safety import torque_safety
    from jrobot.hw.so101 import SO101Follower, SO101FollowerConfig, SO101Leader, SO101LeaderConfig
    from jrobot.recording.devices import virtual_calibration
    from jrobot.recording.keyboard import RecordEvents
    from jrobot.recording.record import DatasetRecordConfig, StatusLine, control_loop, open_writer

    cal_dir = work / "calibration"
    save_calibration(cal_dir / "f.json", virtual_calibration())
    save_calibration(cal_dir / "l.json", virtual_calibration())
    root = work / "jrobot_ds"
    shutil.rmtree(root, ignore_errors=True)
    follower_arm = ArmProcess(work / "follower.sock")
    leader_arm = ArmProcess(work / "leader.sock")
    hand = None
    try:
        cams = {
            c: OpenCVCameraConfig(index_or_path=str(p), fps=FPS, width=W, height=H) for c, p in videos.items()
        }
        follower = SO101Follower(
            SO101FollowerConfig(port=follower_arm.port, id="f", calibration_dir=cal_dir, cameras=cams),
            prompter=AcceptCalibrationFile(),
        )
        leader = SO101Leader(
            SO101LeaderConfig(port=leader_arm.port, id="l", calibration_dir=cal_dir),
            prompter=AcceptCalibrationFile(),
        )
        robot = TimedRobot(follower)
        cfg = DatasetRecordConfig(
            root=root, single_task=TASK, fps=FPS, episode_time_s=seconds, reset_time_s=0, num_episodes=1
        )
        with torque_safety(leader, follower):
            follower.connect()
            leader.connect()
            hand = Hand(work / "leader.sock")
            hand.start()
            writer = TimedWriter(open_writer(cfg, follower, FPS, resume=False))
            cpu0 = _self_cpu_s()
            arms0 = follower_arm.cpu_s() + leader_arm.cpu_s()
            try:
                result = control_loop(
                    robot,
                    leader,
                    fps=FPS,
                    duration_s=seconds,
                    events=RecordEvents(),
                    status=StatusLine(False),
                    label="bench",
                    realtime=True,
                    writer=writer,
                    features=writer.features,
                    task=TASK,
                )
                backlog = writer.encoder_backlog()
                recorder_cpu = _self_cpu_s() - cpu0
                arms_cpu = follower_arm.cpu_s() + leader_arm.cpu_s() - arms0
                t0 = time.perf_counter()
                writer.save_episode()
                save_s = time.perf_counter() - t0
            finally:
                writer.finalize()
    finally:
        if hand is not None:
            hand.stop.set()
            hand.join(timeout=2)
        follower_arm.close()
        leader_arm.close()
    periods = np.diff(robot.obs_t).tolist()
    ds = open_dataset(root)
    try:
        stored = len(ds)
        action = ds.column("action")
    finally:
        ds.close()
    return {
        "frames": result.frames,
        "stored_frames": stored,
        "duration_s": result.duration_s,
        "achieved_fps": result.achieved_fps,
        "dropped_frames": result.dropped_frames,
        "period_ms_p50": pct(periods, 50) * 1e3,
        "period_ms_p99": pct(periods, 99) * 1e3,
        "period_ms_max": max(periods) * 1e3,
        "periods_over_40ms": int(sum(p > 0.040 for p in periods)),
        "get_observation_ms_p50": pct(robot.obs_s, 50) * 1e3,
        "get_observation_ms_p99": pct(robot.obs_s, 99) * 1e3,
        "send_action_ms_p50": pct(robot.send_s, 50) * 1e3,
        "send_action_ms_p99": pct(robot.send_s, 99) * 1e3,
        "add_frame_ms_p50": pct(writer.add_s, 50) * 1e3,
        "add_frame_ms_p99": pct(writer.add_s, 99) * 1e3,
        "repeated_camera_frames": robot.repeated,
        "encoder_backlog_at_end": backlog,
        "save_s": save_s,
        "recorder_cpu_cores": recorder_cpu / result.duration_s,
        "bus_emulators_cpu_cores": arms_cpu / result.duration_s,
        "leader_shoulder_range_deg": float(np.ptp(action[:, 0])),
    }


# ---------------------------------------------------------------------------------------------------
# LeRobot


LEROBOT_SCRIPT = textwrap.dedent(
    """
    import json, shutil, sys, time
    import numpy as np

    def main():
        a = json.loads(sys.argv[1])
        from lerobot.datasets.lerobot_dataset import LeRobotDataset
        import cv2
        frames = {}
        for cam, path in a["videos"].items():
            cap = cv2.VideoCapture(path)
            fs = []
            while True:
                ok, bgr = cap.read()
                if not ok:
                    break
                fs.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
            frames[cam] = fs
        names = ["shoulder_pan.pos", "shoulder_lift.pos", "elbow_flex.pos", "wrist_flex.pos",
                 "wrist_roll.pos", "gripper.pos"]
        feats = {"action": {"dtype": "float32", "shape": (6,), "names": names},
                 "observation.state": {"dtype": "float32", "shape": (6,), "names": names}}
        for cam in frames:
            feats[f"observation.images.{cam}"] = {"dtype": "video", "shape": (a["h"], a["w"], 3),
                                                  "names": ["height", "width", "channels"]}
        shutil.rmtree(a["root"], ignore_errors=True)
        ds = LeRobotDataset.create("jrobot/bench_record", fps=a["fps"], features=feats, root=a["root"],
                                   robot_type="so101_follower", use_videos=True,
                                   image_writer_threads=4 * len(frames),
                                   streaming_encoding=a["streaming"])
        n = int(a["seconds"] * a["fps"])
        sys.path.insert(0, a["jrobot_root"])
        from jrobot.pacer import Pacer  # stdlib only: the same pacer as jrobot's loop, for a fair race
        add_s, starts = [], []
        pacer = Pacer(a["fps"])
        for i in range(n):
            starts.append(time.perf_counter())
            frame = {"action": np.full(6, i + 1, np.float32), "observation.state": np.full(6, i, np.float32),
                     "task": a["task"]}
            for cam, fs in frames.items():
                frame[f"observation.images.{cam}"] = fs[i % len(fs)]
            t0 = time.perf_counter()
            ds.add_frame(frame)
            add_s.append(time.perf_counter() - t0)
            pacer.tick()
        wall, dropped = pacer.wall_s, pacer.dropped
        t0 = time.perf_counter()
        ds.save_episode()
        save_s = time.perf_counter() - t0
        ds.finalize()
        import lerobot, torch
        per = np.diff(starts)
        print(json.dumps({
            "frames": n, "achieved_fps": n / wall, "dropped_frames": dropped,
            "add_frame_ms_p50": float(np.percentile(add_s, 50) * 1e3),
            "add_frame_ms_p99": float(np.percentile(add_s, 99) * 1e3),
            "period_ms_p50": float(np.percentile(per, 50) * 1e3),
            "period_ms_p99": float(np.percentile(per, 99) * 1e3),
            "save_s": save_s, "streaming_encoding": a["streaming"], "vcodec": ds.vcodec,
            "lerobot": lerobot.__version__, "torch": torch.__version__}))

    if __name__ == "__main__":
        main()
    """
)


def bench_lerobot(python: str, work: Path, videos: dict[str, Path], seconds: float, streaming: bool):
    args = {
        "videos": {c: str(p) for c, p in videos.items()},
        "root": str(work / ("lerobot_ds_streaming" if streaming else "lerobot_ds")),
        "fps": FPS, "h": H, "w": W, "seconds": seconds, "task": TASK, "streaming": streaming,
        "jrobot_root": str(REPO),
    }  # fmt: skip
    return run_lerobot_script(python, LEROBOT_SCRIPT, args, timeout=3600)


# The targets for this benchmark (two 640x480 cameras at 30 fps on a 2-core machine).
TARGETS = {"dropped_frames": 0, "period_ms_p99": 40.0, "save_s": 0.5}


def print_jrobot(j: dict[str, Any], label: str) -> None:
    print(
        f"{label}: {j['frames']} frames ({j['stored_frames']} stored), achieved {j['achieved_fps']:.2f} fps, "
        f"dropped {j['dropped_frames']}; loop period p50 {j['period_ms_p50']:.1f} ms / p99 "
        f"{j['period_ms_p99']:.1f} ms / max {j['period_ms_max']:.1f} ms ({j['periods_over_40ms']} over 40 ms)"
    )
    print(
        f"  per call p50/p99: get_observation {j['get_observation_ms_p50']:.1f}/{j['get_observation_ms_p99']:.1f} ms, "
        f"send_action {j['send_action_ms_p50']:.1f}/{j['send_action_ms_p99']:.1f} ms, "
        f"add_frame {j['add_frame_ms_p50']:.2f}/{j['add_frame_ms_p99']:.1f} ms; repeated camera frames "
        f"{j['repeated_camera_frames']}; encoder backlog at the end {j['encoder_backlog_at_end']} frames"
    )
    print(
        f"  CPU while recording: recorder process {j['recorder_cpu_cores']:.2f} cores (loop, camera threads, "
        f"encoders), virtual bus emulators {j['bus_emulators_cpu_cores']:.2f} cores (not present with real arms)"
    )
    print(f"  SAVE TIME {j['save_s'] * 1e3:.0f} ms (episode of {j['frames']} frames x 2 cameras)")


def summarize_rounds(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Every round's headline figures and the verdict on each target, met only if met in every round
    (a drop in any round is a drop a user would see)."""
    out: dict[str, Any] = {}
    for key, target in TARGETS.items():
        values = [r[key] for r in rounds]
        worst = max(values)
        out[key] = {
            "rounds": values,
            "median": float(np.median(values)),
            "worst": worst,
            "met": worst <= target,
        }
    fmt = {"dropped_frames": "{:.0f}", "period_ms_p99": "{:.1f} ms", "save_s": "{:.3f} s"}
    for key, target in TARGETS.items():
        v = out[key]
        each = " / ".join(fmt[key].format(x) for x in v["rounds"])
        print(
            f"TARGET {key} <= {fmt[key].format(target)}: rounds {each}; median {fmt[key].format(v['median'])} "
            f"[{'met' if v['met'] else 'NOT met'} in every round]"
        )
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=60.0, help="episode length")
    p.add_argument(
        "--rounds", type=int, default=3, help="jrobot episodes (alternating with LeRobot's, if given)"
    )
    p.add_argument("--camera-frames", type=int, default=90, help="frames in each looping camera file")
    p.add_argument("--work", type=Path, default=None, help="work dir (default: temp, removed)")
    p.add_argument("--lerobot-python", default=os.environ.get("JROBOT_LEROBOT_PYTHON"))
    p.add_argument("--lerobot-streaming", action="store_true", help="also LeRobot with streaming_encoding")
    args = p.parse_args()
    if args.rounds < 1:
        p.error(f"--rounds must be at least 1, got {args.rounds}")
    tmp = Path(tempfile.mkdtemp(prefix="jrobot-bench-record-")) if args.work is None else None
    work = (args.work or tmp).absolute()
    work.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {
        "cores": os.cpu_count(),
        "seconds": args.seconds,
        "rounds": args.rounds,
        "load_avg_start": os.getloadavg(),
    }
    try:
        videos = make_camera_files(work, args.camera_frames)
        print(
            f"record loop: {args.rounds} rounds of {args.seconds:.0f} s at {FPS} fps, 2 cameras {H}x{W} "
            "(MJPEG files), virtual buses ..."
        )
        rounds: list[dict[str, Any]] = []
        for i in range(args.rounds):
            j = bench_jrobot(work, videos, args.seconds)
            print_jrobot(j, f"jrobot round {i + 1}")
            lr_runs = {}
            for streaming in (
                ([False, True] if args.lerobot_streaming else [False]) if args.lerobot_python else []
            ):
                r = bench_lerobot(args.lerobot_python, work, videos, args.seconds, streaming)
                if r is not None:
                    lr_runs["streaming" if streaming else "default"] = r
                    print(
                        f"LeRobot {r['lerobot']} round {i + 1} ({'streaming_encoding=True' if streaming else 'default: PNG + encode at save'}"
                        f", {r['vcodec']}, replay without robot I/O): achieved {r['achieved_fps']:.2f} fps, dropped "
                        f"{r['dropped_frames']}; add_frame p50/p99 {r['add_frame_ms_p50']:.1f}/{r['add_frame_ms_p99']:.1f} ms; "
                        f"period p50/p99 {r['period_ms_p50']:.1f}/{r['period_ms_p99']:.1f} ms; SAVE TIME {r['save_s']:.1f} s"
                    )
            ratio = lr_runs["default"]["save_s"] / j["save_s"] if "default" in lr_runs else None
            rounds.append({"jrobot": j, "lerobot": lr_runs, "ratio": ratio})
        result["targets"] = summarize_rounds([r["jrobot"] for r in rounds])
        chosen = median_round(
            "record_loop", rounds, what="save time LeRobot (default) / jrobot",
            fallback=lambda r: r["jrobot"]["period_ms_p99"], target=None,
            lerobot_given=bool(args.lerobot_python),
        )  # fmt: skip
        result["jrobot"] = chosen["jrobot"]
        result["lerobot"] = chosen["lerobot"]
        result["ratio_save_time_lerobot_over_jrobot"] = chosen["ratio"]
        result["jrobot_rounds"] = [r["jrobot"] for r in rounds]
        ceiling = 1000.0 / FPS
        print(f"physical ceiling: period {ceiling:.1f} ms at {FPS} fps, 0 dropped frames")
        print_result(result)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()

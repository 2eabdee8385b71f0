"""train -> checkpoint -> SIGKILL -> resume -> export -> run, as the command-line tools do it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from conftest import REPO, run, train_cmd


def _metrics(workdir: Path) -> list[dict]:
    return [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]


def _params(workdir: Path, step: int) -> dict[str, np.ndarray]:
    from flax import nnx

    from jrobot.train.export import flatten_state, load_from_workdir

    model, _, meta = load_from_workdir(workdir, step, use_ema=False)
    assert meta["step"] == step
    return flatten_state(nnx.state(model))


def test_killed_run_resumes_with_the_same_batches_and_parameters(tmp_path, tiny_shards):
    ref = tmp_path / "uninterrupted"
    run(train_cmd(ref, tiny_shards))
    ref_losses = [m["loss"] for m in _metrics(ref)]
    assert len(ref_losses) == 6

    work = tmp_path / "killed"
    cmd = train_cmd(work, tiny_shards)
    proc = subprocess.Popen(
        cmd,
        cwd=REPO,
        env={**os.environ, "WANDB_MODE": "disabled"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 300
    ckpts = work / "checkpoints"
    while time.monotonic() < deadline:
        # orbax writes a checkpoint under a temporary name and renames it to its step when complete:
        # kill at the first complete one, most likely while the run computes or writes the next
        if ckpts.is_dir() and any(p.name.isdigit() for p in ckpts.iterdir()):
            break
        if proc.poll() is not None:
            break
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    completed = sorted(int(p.name) for p in ckpts.iterdir() if p.name.isdigit())
    assert completed and completed[-1] < 6, f"the run was not interrupted before its end: {completed}"
    run(cmd)  # restarts from the newest complete checkpoint
    resumed = _metrics(work)
    # every step after the resume point repeats the uninterrupted run's loss exactly (same batches, same RNG)
    last = {m["step"]: m["loss"] for m in resumed}
    for step in range(completed[-1] + 1, 7):
        assert last[step] == ref_losses[step - 1], (step, last[step], ref_losses[step - 1])
    a, b = _params(ref, 6), _params(work, 6)
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_export_then_run_on_the_simulated_robot_and_offline(tmp_path, tiny_shards):
    work = tmp_path / "run"
    run(train_cmd(work, tiny_shards, num_steps=2))
    bundle = tmp_path / "bundle"
    run([sys.executable, "-m", "jrobot.export", "--workdir", str(work), "--out", str(bundle)])
    info = json.loads((bundle / "policy.json").read_text())
    assert info["spec"]["type"] == "act" and info["fps"] == 30
    assert sorted(info["variants"]) == ["float32", "uint8"]

    # the real-time loop on the simulated arm, a few seconds of control, with a latency report
    report = tmp_path / "report.json"
    proc = run(
        [
            sys.executable,
            "-m",
            "jrobot.run",
            f"--policy={bundle}",
            "--robot.type=sim",
            "--robot.image_size=[32, 32]",
            "--episodes=1",
            "--max_steps=40",
            f"--report={report}",
        ]
    )
    assert "latency report" in proc.stdout
    rep = json.loads(report.read_text())
    assert rep["steps"] == 40 and rep["inference_ms_p50"] > 0 and "success_rate" in rep

    # evaluation: per-episode results, strict JSON (no NaN for what an unpaced eval cannot measure), videos
    ev = tmp_path / "eval"
    run(
        [
            sys.executable,
            "-m",
            "jrobot.eval",
            f"--policy={bundle}",
            "--episodes=2",
            "--max-steps=12",
            f"--out={ev}",
        ]
    )

    def no_nan(token):
        raise AssertionError(f"report.json holds {token}, which is not JSON")

    rep = json.loads((ev / "report.json").read_text(), parse_constant=no_nan)
    assert rep["num_episodes"] == 2 and len(rep["episodes"]) == 2
    assert all(isinstance(e["success"], bool) and 0 < e["steps"] <= 12 for e in rep["episodes"])
    assert rep["success_rate"] == np.mean([e["success"] for e in rep["episodes"]])
    assert [e["seed"] for e in rep["episodes"]] == [100_000, 100_001]
    assert rep["latency"]["steps"] == 24 and rep["latency"]["loop_period_ms_p50"] is None
    assert rep["latency"]["inference_calls"] >= 2 * (12 // 8)
    import av

    for e in rep["episodes"]:
        with av.open(str(ev / e["video"])) as container:
            frames = list(container.decode(video=0))
        assert len(frames) == e["steps"] + 1  # the reset frame, then one per step
        assert frames[0].width == 64 and frames[0].height == 32  # two 32x32 cameras side by side

    # a real-protocol follower (virtual STS3215 bus, real scservo_sdk) with OpenCV cameras, paced at 30 fps:
    # inference runs off the control thread, so the loop keeps its period
    import cv2

    video = tmp_path / "cam.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 30, (32, 32))
    for i in range(60):
        writer.write(np.full((32, 32, 3), 4 * i, np.uint8))
    writer.release()
    cam = f"{{type: opencv, index_or_path: {video}, width: 32, height: 32, fps: 30}}"
    report = tmp_path / "virtual.json"
    run(
        [
            sys.executable, "-m", "jrobot.run", f"--policy={bundle}", "--robot.type=virtual",
            f"--robot.cameras={{front: {cam}, wrist: {cam}}}", "--duration_s=3", f"--report={report}",
        ]
    )  # fmt: skip
    rep = json.loads(report.read_text())
    assert rep["steps"] >= 45  # ~90 at 30 fps; a loaded CI machine may miss some ticks
    assert rep["loop_period_ms_p50"] < 45

    # offline: observations in, chunks out, with LeRobot-style CHW float images accepted too
    rng = np.random.default_rng(0)
    obs = {
        "observation.state": rng.normal(size=(3, 6)).astype(np.float32),
        "observation.images.front": rng.integers(0, 256, (3, 32, 32, 3), dtype=np.uint8),
        "observation.images.wrist": rng.integers(0, 256, (3, 32, 32, 3), dtype=np.uint8),
    }
    np.savez(tmp_path / "in.npz", **obs)
    run(
        [
            sys.executable,
            "-m",
            "jrobot.run",
            f"--policy={bundle}",
            f"--observations={tmp_path / 'in.npz'}",
            f"--out={tmp_path / 'out.npz'}",
        ]
    )
    out_u8 = np.load(tmp_path / "out.npz")["action"]
    assert out_u8.shape == (3, 8, 6) and np.all(np.isfinite(out_u8))
    chw = dict(obs)
    for k in ("observation.images.front", "observation.images.wrist"):
        chw[k] = obs[k].transpose(0, 3, 1, 2).astype(np.float32) / 255.0
    np.savez(tmp_path / "in_chw.npz", **chw)
    run(
        [
            sys.executable,
            "-m",
            "jrobot.run",
            f"--policy={bundle}",
            f"--observations={tmp_path / 'in_chw.npz'}",
            f"--out={tmp_path / 'out2.npz'}",
        ]
    )
    np.testing.assert_allclose(np.load(tmp_path / "out2.npz")["action"], out_u8, atol=1e-4)

    # the exported chunk equals the training code's own sample_actions on the same weights
    from jrobot.policies import act
    from jrobot.train.export import load_from_workdir

    model, _, _ = load_from_workdir(work)
    batch = {k: v[:, None] for k, v in obs.items()}
    np.testing.assert_allclose(np.asarray(act.sample_actions(model, batch)), out_u8, atol=1e-5)

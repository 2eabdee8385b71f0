"""Every command, run as a user runs it (its console script, in a subprocess), answers a mistake with at
most three lines on stderr naming the path, key or value, exits 2, and shows no traceback (unless
asked with --debug); nothing is written where the output would have gone. A new command joins the
matrix: `test_every_command_is_in_the_matrix` fails until it does."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from jrobot.__main__ import COMMANDS

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
CONFIG = str(REPO / "configs" / "act_so101_sim_cpu.py")

# (command, arguments ({t}: this test's folder), what stderr must name)
MATRIX = [
    ("find-port", ["--dev_dir={t}/nodev"], "{t}/nodev"),
    ("find-cameras", ["--targets=[{t}/nocam.mp4]"], "{t}/nocam.mp4"),
    ("setup-motors", ["--robot.type=so101_follower", "--robot.port={t}/ttyACM9"], "{t}/ttyACM9"),
    ("calibrate", ["--robot.type=so101_follower", "--robot.port={t}/ttyACM9", "--robot.id=x"], "{t}/ttyACM9"),
    (
        "teleoperate",
        ["--robot.type=so101_follower", "--robot.port={t}/ttyACM9", "--teleop.type=so101_leader",
         "--teleop.port={t}/ttyACM8"],
        "ttyACM",
    ),
    ("teleoperate", ["--robot.type=sim", "--teleop.type=gamepad_ee", "--teleop.device={t}/js0"], "{t}/js0"),
    (
        "find-joint-limits",
        ["--robot.type=sim", "--teleop.type=sim_expert", "--teleop_tim_s=3"],
        "--teleop_tim_s; did you mean --teleop_time_s?",
    ),
    (
        "find-joint-limits",
        ["--robot.type=sim", "--robot.space=ee", "--teleop.type=sim_expert", "--teleop_time_s=1"],
        "drop --robot.space=ee",
    ),
    ("record", ["--robot.type=so101_folower", "--teleop.type=sim_expert"], "did you mean 'so101_follower'?"),
    ("record", ["--robot.type=sim", "--teleop.type=sim_expert", "--dataset.root={t}/afile"], "{t}/afile"),
    ("record", ["--robot.type=sim", "--teleop.type=sim_expert", "--teleop.regrasp_rate=2"], "regrasp_rate"),
    (
        "record",
        ["--robot.type=sim", "--robot.task=reach", "--teleop.type=sim_expert", "--teleop.regrasp_rate=0.5",
         "--dataset.root={t}/r"],
        "needs a pick-and-place task, not 'reach'",
    ),
    ("replay", ["--robot.type=sim", "--dataset.root={t}/nodata", "--dataset.episode=0"], "{t}/nodata"),
    ("virtual-arm", ["--ids=1,1"], "--ids has duplicates: 1,1"),
    ("virtual-arm", ["--bogus"], "--bogus"),
    ("inspect", ["{t}/nodata"], "{t}/nodata"),
    ("convert-lerobot", ["{t}/nodata", "--out", "{t}/out"], "{t}/nodata"),
    ("convert-rlds", ["{t}/nodata", "--out", "{t}/out"], "{t}/nodata"),
    ("export-tfds", ["{t}/nodata", "--out", "{t}/out"], "{t}/nodata"),
    ("push-dataset", ["{t}/nodata", "--repo_id", "me/x"], "{t}/nodata"),
    ("edit", ["delete", "{t}/nodata", "--episodes", "1", "--out", "{t}/out"], "{t}/nodata"),
    ("view", ["{t}/nodata", "--episode", "0", "--out", "{t}/out"], "{t}/nodata"),
    ("build-shards", ["{t}/nodata", "--out", "{t}/out"], "{t}/nodata"),
    ("train", ["--config", "{t}/nope.py", "--workdir", "{t}/out"], "{t}/nope.py: no such config file"),
    (
        "train",
        ["--config", CONFIG, "--workdir", "{t}/out", "--config.data.shardz=x"],
        "unknown config key --config.data.shardz",
    ),
    ("train", ["--config", CONFIG, "--workdir", "{t}/out", "--config.nonexistent=1"], "its keys: batch_size"),
    ("train", ["--config", CONFIG, "--workdir", "{t}/out", "--config.batch_size=abc"], "--config.batch_size=abc"),
    ("train", ["--config", CONFIG, "--workdir", "{t}/out", "--config.data.shards={t}/empty"], "{t}/empty"),
    ("export", ["--workdir", "{t}/empty", "--out", "{t}/out"], "{t}/empty: no checkpoints"),
    ("run", ["--policy", "{t}/empty", "--observations", "{t}/obs.npz", "--out", "{t}/out"], "{t}/empty"),
    ("eval", ["--policy", "{t}/empty", "--out", "{t}/out"], "{t}/empty: no policy.json"),
    ("serve", ["--policy", "{t}/empty", "--port=0"], "{t}/empty: no policy.json"),
    ("demo", ["--policy", "nope", "--out", "{t}/out"], "--policy 'nope'"),
]  # fmt: skip


def _run(script: str, args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess:
    import os

    return subprocess.run(
        [str(BIN / script), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
        env={**os.environ, **env},
    )


def test_every_command_is_in_the_matrix():
    assert {c.name for c in COMMANDS} == {name for name, _, _ in MATRIX}


@pytest.mark.parametrize(
    ("name", "args", "named"), MATRIX, ids=[f"{n}-{i}" for i, (n, _, _) in enumerate(MATRIX)]
)
def test_a_mistake_is_one_clear_line_and_exit_2(name, args, named, tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "afile").write_text("not a folder")
    args = [a.format(t=tmp_path) for a in args]
    proc = _run(f"jrobot-{name}", args, tmp_path)
    err = proc.stderr
    assert proc.returncode == 2, f"exit {proc.returncode}\n{err[-3000:]}"
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert 1 <= len(lines) <= 3, f"{len(lines)} lines on stderr:\n{err}"
    assert named.format(t=tmp_path) in err, err
    assert not (tmp_path / "out").exists(), "a failed command left output behind"


def test_debug_shows_the_traceback(tmp_path):
    for extra, env in ((["--debug"], {}), ([], {"JROBOT_DEBUG": "1"})):
        proc = _run("jrobot-inspect", [str(tmp_path / "nodata"), *extra], tmp_path, **env)
        assert proc.returncode == 2 and "Traceback" in proc.stderr, proc.stderr
        assert proc.stderr.strip().splitlines()[-1].startswith(f"error: {tmp_path / 'nodata'}")

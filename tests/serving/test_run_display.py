"""`jrobot.run --display_save`: the live view of a policy run holds the arm's steps and the policy's
predicted chunks (the serving tests' ACT bundle, on the simulated arm)."""

from __future__ import annotations

import subprocess
import sys

from rerun.chunk import RrdReader

JOINTS = ("shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll", "gripper")


def test_a_policy_run_shows_its_steps_and_predicted_chunks(act_bundle, tmp_path):
    path = tmp_path / "run.rrd"
    proc = subprocess.run(
        [
            sys.executable, "-m", "jrobot.run", f"--policy={act_bundle}", "--robot.type=sim",
            "--robot.image_size=[96,128]", "--episodes=1", "--max_steps=30", f"--display_save={path}",
        ],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows: dict[str, int] = {}
    for chunk in RrdReader(path).stream():
        rows[chunk.entity_path] = rows.get(chunk.entity_path, 0) + chunk.num_rows
    shown = rows["/action/shoulder_pan"]
    assert (
        0 < shown <= 30 and rows["/observation/images/front"] == shown == rows["/observation/state/gripper"]
    )
    chunk_lines = [k for k in rows if k.startswith("/policy/chunk/")]
    # every joint's line of the predicted chunk (the first chunk comes while the view's queue is empty;
    # later ones, like steps, may be dropped when a loaded machine's view falls behind)
    assert sorted(chunk_lines) == sorted(f"/policy/chunk/{j}" for j in JOINTS)

"""Make jrobot's SO-101 kinematic model and its reference numbers (run by hand, not by the tests).

    python tools/make_so101_kinematics.py SO-ARM100/Simulation/SO101/so101_new_calib.urdf      # the model
    PLACO_PYTHON=/path/venv/bin/python python tools/make_so101_kinematics.py URDF --reference    # + numbers

1. `jrobot/kinematics/so101_new_calib.urdf`: TheRobotStudio's `so101_new_calib.urdf` (SO-ARM100 repo,
   Apache-2.0) with its visual and collision meshes removed: the links, inertials and joints, i.e. the
   kinematic chain LeRobot's `lerobot.model.kinematics` loads, plus a `<mujoco>` element so MuJoCo keeps
   the fixed `gripper_frame_link` as a body of its own.
2. With --reference: `tests/fixtures/kinematics/so101_lerobot_fk.json`, forward kinematics of seeded
   random joint values computed exactly as LeRobot computes them (placo's `RobotWrapper` on the original
   URDF, joints in degrees -> radians, `get_T_world_frame("gripper_frame_link")`), in a separate Python
   that has placo (LeRobot pins placo >= 0.9.6, < 0.9.16).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MODEL = REPO / "jrobot" / "kinematics" / "so101_new_calib.urdf"
REFERENCE = REPO / "tests" / "fixtures" / "kinematics" / "so101_lerobot_fk.json"
JOINTS = ["shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll"]

PLACO_SCRIPT = r"""
import json, sys
import numpy as np
import placo
urdf, joints, n, seed = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
robot = placo.RobotWrapper(urdf)
rng = np.random.default_rng(seed)
cases = []
for i in range(n):
    q = []
    for name in joints:
        lo, hi = robot.get_joint_limits(name) if hasattr(robot, "get_joint_limits") else (-1.7, 1.7)
        q.append(float(rng.uniform(lo, hi)))
    if i == 0:
        q = [0.0] * len(joints)
    for name, v in zip(joints, q):
        robot.set_joint(name, v)
    robot.update_kinematics()
    T = robot.get_T_world_frame("gripper_frame_link")
    cases.append({"joints_deg": [float(np.rad2deg(v)) for v in q], "T_world_gripper_frame": np.asarray(T).tolist()})
from importlib.metadata import version
print(json.dumps({"placo": version("placo"), "cases": cases}))
"""


def strip(urdf: Path) -> str:
    text = urdf.read_text()
    text = re.sub(r"\s*<visual>.*?</visual>", "", text, flags=re.S)
    text = re.sub(r"\s*<collision>.*?</collision>", "", text, flags=re.S)
    text = re.sub(r"\s*<material name=\"[^\"]*\">.*?</material>", "", text, flags=re.S)
    header = (
        "<!-- jrobot: the kinematic chain of TheRobotStudio's so101_new_calib.urdf (SO-ARM100 repository,\n"
        "     Simulation/SO101, Apache-2.0), made by tools/make_so101_kinematics.py: visual and collision\n"
        "     meshes removed; the <mujoco> element keeps fixed links (gripper_frame_link) as bodies. -->\n"
    )
    text = text.replace(
        '<robot name="so101_new_calib">',
        header + '<robot name="so101_new_calib">\n  <mujoco>\n'
        '    <compiler fusestatic="false" discardvisual="true" angle="radian"/>\n  </mujoco>',
        1,
    )
    return re.sub(r"\n\s*\n+", "\n", text)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("urdf", type=Path, help="SO-ARM100's Simulation/SO101/so101_new_calib.urdf")
    parser.add_argument(
        "--reference", action="store_true", help="also compute LeRobot's FK numbers with placo"
    )
    parser.add_argument("--cases", type=int, default=24)
    parser.add_argument("--seed", type=int, default=101)
    args = parser.parse_args()
    MODEL.write_text(strip(args.urdf))
    print(f"wrote {MODEL}")
    if args.reference:
        python = os.environ.get("PLACO_PYTHON", sys.executable)
        out = subprocess.run(
            [python, "-c", PLACO_SCRIPT, str(args.urdf), json.dumps(JOINTS), str(args.cases), str(args.seed)],
            check=True, capture_output=True, text=True,
        )  # fmt: skip
        ref = json.loads(out.stdout.strip().splitlines()[-1])
        ref.update(joints=JOINTS, frame="gripper_frame_link", urdf="so101_new_calib.urdf", seed=args.seed)
        REFERENCE.parent.mkdir(parents=True, exist_ok=True)
        REFERENCE.write_text(json.dumps(ref, indent=1) + "\n")
        print(f"wrote {REFERENCE} ({len(ref['cases'])} cases, placo {ref['placo']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""What the shipped configs let a policy read: a real arm has cameras, joints and an instruction.

`observation.environment_state` (the cube's pose) exists only in the simulator. A policy trained on it
looks fine in the demo and can never drive an SO-101, so only configs named `*_privileged` may list it;
every other config names its inputs explicitly (None would mean "every feature of the shards", which
includes the pose whenever the dataset recorded it) and reads at least one camera.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from jrobot.policies.spec import ENV_STATE_KEY, IMAGE_PREFIX
from jrobot.train.config_util import load_config_file

REPO = Path(__file__).resolve().parents[1]
EXPERIMENTS = sorted(p for p in (REPO / "configs").glob("*.py") if p.stem not in ("__init__", "common"))


def test_there_are_configs_of_both_kinds():
    names = {p.stem for p in EXPERIMENTS}
    assert {"act_so101_sim_cpu", "act_so101_sim", "diffusion_so101_sim"} <= names
    assert any(n.endswith("_privileged") for n in names)


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.stem)
def test_only_privileged_configs_read_the_simulator_state(path):
    config = load_config_file(path)
    inputs = config.policy.input_features
    assert inputs is not None, f"{path.name}: list policy.input_features explicitly"
    inputs = tuple(inputs)
    if path.stem.endswith("_privileged"):
        assert ENV_STATE_KEY in inputs, f"{path.name} is named *_privileged but does not read {ENV_STATE_KEY}"
    else:
        assert ENV_STATE_KEY not in inputs, f"{path.name} reads the simulator-only {ENV_STATE_KEY}"
        assert any(k.startswith(IMAGE_PREFIX) for k in inputs), f"{path.name} reads no camera: {inputs}"


def test_the_demo_trains_the_camera_config():
    from jrobot import demo

    assert demo.DemoOptions().config == REPO / "configs" / "act_so101_sim_cpu.py"


def test_load_config_file_names_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nope\.py"):
        load_config_file(tmp_path / "nope.py")
    bad = tmp_path / "configs" / "bad.py"
    bad.parent.mkdir()
    bad.write_text("x = 1\n")
    with pytest.raises(AttributeError, match=r"bad\.py.*get_config"):
        load_config_file(bad)

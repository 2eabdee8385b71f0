"""`python -m jrobot.demo` end to end at toy size: every stage runs, and the policies read cameras.

The real figures (success rates, minutes) come from `make demo` / `make demo-vla` and
`benchmarks/demo_recipes.py`; here a few episodes and steps check that the stages fit together and
that what the bundle reads is what a real arm has.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from jrobot.policies.spec import ENV_STATE_KEY, IMAGE_PREFIX

REPO = Path(__file__).resolve().parents[1]
CAMERAS = {"observation.images.front", "observation.images.wrist"}


def _demo(out: Path, *flags: str) -> dict:
    cmd = [sys.executable, "-m", "jrobot.demo", "--out", str(out), "--episodes", "2", *flags]
    env = {**os.environ, "WANDB_MODE": "disabled"}
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=900, env=env)
    assert proc.returncode == 0, proc.stderr[-4000:]
    report = json.loads((out / "report.json").read_text())
    policy = json.loads((out / "bundle" / "policy.json").read_text())
    bundle_inputs = set(policy["spec"]["input_features"])
    assert set(report["stages"]["export"]["policy_inputs"]) == bundle_inputs
    assert ENV_STATE_KEY not in bundle_inputs and bundle_inputs >= CAMERAS
    assert any(k.startswith(IMAGE_PREFIX) for k in bundle_inputs)
    assert 0.0 <= report["success_rate"] <= 1.0 and report["stages"]["eval"]["episodes"] == 1
    return report


def test_demo_bundle_reads_a_camera(tmp_path):
    """The ACT demo: record, shards, train, export, eval; the bundle reads the cameras and the joints."""
    report = _demo(tmp_path / "demo", "--train-steps", "3", "--eval-episodes", "1", "--regrasp-rate", "1")
    assert report["policy"] == "act" and report["env"] == "jrobot/SO101PickPlace-v0"
    rec = report["stages"]["record"]
    assert rec["regrasp_rate"] == 1.0 and rec["expert_successes"] == 2  # each first grasp missed, then made
    assert rec["frames"] >= 2 * 8 * 30  # the recovery takes ~3 s more than the plain ~5.5 s


@pytest.mark.slow
def test_vla_demo_reads_cameras_and_the_instruction(tmp_path):
    """The VLA demo on the instruction-conditioned task: per-episode instructions are recorded, the bundle
    reads the cameras and the tokenized instruction, and both evaluations report wrong objects."""
    out = tmp_path / "demo_vla"
    report = _demo(out, "--policy", "smolvla", "--train-steps", "2", "--eval-episodes", "1")
    assert report["policy"] == "smolvla" and report["env"] == "jrobot/SO101PickColor-v0"
    policy = json.loads((out / "bundle" / "policy.json").read_text())
    assert "observation.language.tokens" in policy["spec"]["input_features"]
    (ep,) = report["stages"]["eval"]["per_episode"]
    (sw,) = report["stages"]["eval_swapped"]["per_episode"]
    (colour,) = colours_of(ep["task"])
    assert colours_of(sw["task"]) and colour not in colours_of(sw["task"])
    assert "wrong_object_rate" in report and "swapped_instruction_success_rate" in report
    import pyarrow.parquet as pq

    tasks = pq.read_table(out / "dataset" / "meta" / "tasks.parquet").to_pandas().index.tolist()
    assert 1 <= len(tasks) <= 2 and all(len(colours_of(t)) == 1 for t in tasks)


def colours_of(text: str) -> list[str]:
    return [c for c in ("red", "green", "blue") if c in text.lower()]


def test_every_demo_recipe_sets_existing_keys_to_a_valid_policy_config():
    """A recipe of benchmarks/demo_recipes.py runs for minutes before its config is used: a misspelt
    override (ConfigDict would add it silently) or a value the policy refuses fails here instead."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        import demo_recipes
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    from jrobot.pipeline.augment import AugmentConfig
    from jrobot.policies.base import load_policy_module
    from jrobot.train.config_util import as_plain_dict, load_config_file
    from jrobot.train.trainer import policy_config_dict

    for name, recipe in demo_recipes.RECIPES.items():
        base = load_config_file(recipe.config)
        for key in recipe.overrides:
            node = base
            for part in key.split("."):
                assert part in node, f"recipe {name!r}: {key!r} is not a key of {recipe.config.name}"
                node = node[part]
        config = demo_recipes.recipe_config(name, 100)
        module = load_policy_module(config.policy.type)
        module.Config.from_dict(policy_config_dict(config))  # raises on a value the policy refuses
        augment = config.data.augment
        if augment is not None:  # the pipeline's augmentation takes it (a misspelt field raises)
            cfg = AugmentConfig.from_dict(as_plain_dict(augment))
            assert cfg is not None and cfg.enabled, f"recipe {name!r}: its augmentation does nothing"

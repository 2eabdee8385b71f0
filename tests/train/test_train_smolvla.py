"""SmolVLA through the trainer: each episode's task reaches the batch as the policy's LANGUAGE inputs, a
tiny SmolVLA trains from configs/smolvla_so101_sim_cpu.py (validation loss and sim eval included), and
exports to a bundle that carries its tokenizer and tokenizes a task exactly as training did.

The VLM is the tiny SmolVLM of the parity fixtures (config + tokenizer, no weights: random init).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import run, train_cmd

from jrobot.language import LANGUAGE_MASK_KEY, LANGUAGE_TOKENS_KEY, TaskTokenizer, language_inputs
from jrobot.shards.builder import build_shards
from jrobot.shards.format import MANIFEST, ShardSet

KEYS = (LANGUAGE_TOKENS_KEY, LANGUAGE_MASK_KEY)
CONFIG = "configs/smolvla_so101_sim_cpu.py"
L = 16  # the config's tokenizer_max_length


@pytest.fixture(scope="module")
def tiny_vlm(shared_dir) -> Path:
    return shared_dir / "fixtures/parity/smolvla_so101_tiny/vlm"


def tiny_smolvla(vlm: Path) -> dict:
    """Policy config fields for a tiny SmolVLA on the fixture VLM (64x64 images, 2 text layers)."""
    return {
        "vlm_model_name": str(vlm),
        "load_vlm_weights": False,  # the fixture VLM has no weights
        "resize_imgs_with_padding": "(64, 64)",
        "num_vlm_layers": 2,
        "chunk_size": 4,
        "n_action_steps": 4,
        "num_steps": 3,
    }


def tiny_config(shards: Path, vlm: Path, **over):
    from configs import smolvla_so101_sim_cpu

    c = smolvla_so101_sim_cpu.get_config()
    c.data.shards = str(shards)
    c.data.read_threads = 1
    c.batch_size = 4
    c.num_steps = 2
    c.wandb.mode = "disabled"
    c.policy.config.update({**tiny_smolvla(vlm), "resize_imgs_with_padding": (64, 64)})
    for k, v in over.items():
        node = c
        *path, last = k.split(".")
        for p in path:
            node = node[p]
        node[last] = v
    return c


def _episode_task(shards: ShardSet, episode: int) -> str:
    return str(shards.episodes["task"][list(shards.episodes["episode_index"]).index(int(episode))])


def test_task_table_gives_each_sample_the_tokens_of_its_episode_task(
    tmp_path, tiny_shards, tiny_vlm, v30_dir
):
    from jrobot.pipeline.loader import PipelineConfig, make_eval_dataset
    from jrobot.pipeline.windows import WindowSpec
    from jrobot.train.task_tokens import TaskTokenTable

    one = tmp_path / "episode1"  # numbers its only task 0, the full set's task 1
    build_shards(v30_dir, one, resolution=(32, 32), episodes=[1], workers=0, progress=False)
    paths = [str(tiny_shards), str(one)]
    sets = [ShardSet(p) for p in paths]
    tok = TaskTokenizer.from_dir(tiny_vlm, max_length=L)
    table = TaskTokenTable(tok, KEYS, [s.manifest.tasks for s in sets])
    assert table.tasks == ["pick the cube", "place the cube in the bin"]  # tokenized once each
    window = WindowSpec.for_policy(observation_deltas=[0], action_deltas=range(4))
    cfg = PipelineConfig(shards=paths, window=window, batch_size=8, read_threads=1)
    n = 0
    for batch in make_eval_dataset(cfg, split="train"):
        out = table(batch)
        assert out[LANGUAGE_TOKENS_KEY].shape == out[LANGUAGE_MASK_KEY].shape == (8, L)
        assert out[LANGUAGE_TOKENS_KEY].dtype == np.int32 and out[LANGUAGE_MASK_KEY].dtype == np.bool_
        for j, (d, e) in enumerate(zip(batch["dataset_index"], batch["episode_index"], strict=True)):
            want, want_mask = tok.encode([_episode_task(sets[int(d)], e)], padding="max_length")
            np.testing.assert_array_equal(out[LANGUAGE_TOKENS_KEY][j], want[0])
            np.testing.assert_array_equal(out[LANGUAGE_MASK_KEY][j], want_mask[0])
        n += 1
    assert n == (126 + 55) // 8
    with pytest.raises(ValueError, match="task_index 1 of shard set 1 is outside its 1 tasks"):
        table.lookup([1], [1])


def test_a_dataset_without_tasks_is_a_clear_error(tmp_path, tiny_shards, tiny_vlm):
    from jrobot.train.config_util import ConfigError
    from jrobot.train.trainer import train

    bare = tmp_path / "no_tasks"
    shutil.copytree(tiny_shards, bare)
    manifest = json.loads((bare / MANIFEST).read_text())
    manifest["tasks"] = []
    (bare / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(ConfigError, match=r"language-conditioned .* holds no task instructions"):
        train(tiny_config(bare, tiny_vlm), tmp_path / "run")


def test_train_validate_eval_then_export_with_the_tokenizer(tmp_path, tiny_shards, tiny_vlm):
    from jrobot.runtime.policy import BundlePolicy
    from jrobot.train.task_tokens import TaskTokenTable

    work = tmp_path / "run"
    vlm = tmp_path / "vlm"  # a copy, so the test can move it away after training
    shutil.copytree(tiny_vlm, vlm)
    overrides = {
        "num_steps": 30,
        "batch_size": 8,
        "checkpoint.every": 30,
        "optimizer.lr": 1e-3,
        "optimizer.scheduler.name": "constant",
        "data.val_episodes": "(2,)",
        "validation.every": 30,
        "eval.every": 30,
        "eval.episodes": 1,
    }
    policy_fields = {**tiny_smolvla(vlm), "ema_decay": 0.9}  # the EMA reaches export
    run(train_cmd(work, tiny_shards, config=CONFIG, policy=policy_fields, **overrides))
    records = [json.loads(line) for line in (work / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in records if "loss" in r]
    assert len(losses) == 30 and np.all(np.isfinite(losses))
    assert np.mean(losses[-5:]) < 0.9 * np.mean(losses[:5]), losses  # flow matching: noisy, but learning
    final = [r for r in records if "val/loss" in r or "eval/success_rate" in r]
    assert np.isfinite(final[0]["val/loss"]) and final[-1]["eval/success_rate"] in (0.0, 1.0)
    assert (work / "checkpoints" / "30").is_dir()
    from flax import nnx

    from jrobot.train.export import load_from_workdir

    weights = {}
    for use_ema in (True, False):
        model, _, meta = load_from_workdir(work, use_ema=use_ema)
        weights[meta["params"]] = nnx.to_flat_state(nnx.state(model, nnx.Param))
    assert len(weights["ema"]) == len(weights["params"])
    moved = [
        not np.allclose(a[1].get_value(), b[1].get_value()) for a, b in zip(weights["ema"], weights["params"])
    ]
    assert sum(moved) > len(moved) // 2  # an average of the last ~10 steps' weights, not the last

    bundle = tmp_path / "bundle"
    run([sys.executable, "-m", "jrobot.export", "--workdir", str(work), "--out", str(bundle)])
    info = json.loads((bundle / "policy.json").read_text())
    assert info["spec"]["type"] == "smolvla"
    assert info["language"] == {"tokenizer_dir": "tokenizer", "max_length": L}
    assert (bundle / "tokenizer" / "tokenizer.json").is_file()
    assert info["spec"]["config"]["vlm_path"] == str(vlm.absolute())  # recorded when built
    for k in KEYS:
        assert info["spec"]["input_features"][k]["shape"] == [L]

    # the robot's tokens for a task are the ones training fed for that task
    policy = BundlePolicy(bundle)
    train_tok = TaskTokenizer.from_dir(tiny_vlm, max_length=L)
    trained = TaskTokenTable(train_tok, KEYS, [ShardSet(tiny_shards).manifest.tasks])
    for task_index, task in enumerate(trained.tasks):
        served = language_inputs(policy.tokenizer, KEYS, task)
        row = trained.lookup([0], [task_index])
        for k in KEYS:
            np.testing.assert_array_equal(served[k], row[k])
    obs = {
        "observation.state": np.zeros((1, 1, 6), np.float32),
        "observation.images.front": np.zeros((1, 1, 32, 32, 3), np.uint8),
        "observation.images.wrist": np.zeros((1, 1, 32, 32, 3), np.uint8),
    }
    actions = policy.predict(obs, task="pick the cube")
    assert actions.shape == (1, 4, 6) and np.all(np.isfinite(actions))

    # the run's VLM folder moved (or the run was copied to another machine): a clear error naming the
    # folder the checkpoint recorded, and --vlm points the exporter at the new place
    moved = tmp_path / "vlm_moved"
    vlm.rename(moved)
    err = subprocess.run(
        [sys.executable, "-m", "jrobot.export", "--workdir", str(work), "--out", str(tmp_path / "b2")],
        capture_output=True,
        text=True,
    )
    assert err.returncode != 0 and str(vlm.absolute()) in err.stderr and "--vlm" in err.stderr, err.stderr
    run(
        [
            sys.executable,
            "-m",
            "jrobot.export",
            "--workdir",
            str(work),
            "--out",
            str(tmp_path / "b2"),
            "--vlm",
            str(moved),
        ]
    )
    assert (tmp_path / "b2" / "tokenizer" / "tokenizer.json").is_file()

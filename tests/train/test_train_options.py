"""Training options: gradient accumulation, bf16 compute, the time budget, periodic sim evaluation,
policy input selection, and the optimizer presets' numerics."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import TINY_ACT

from configs import act_so101_sim
from jrobot.policies.base import OptimizerPreset
from jrobot.train.optim import make_optimizer, schedule_factor
from jrobot.train.trainer import train


def tiny_config(shards, **over):
    c = act_so101_sim.get_config()
    c.data.shards = str(shards)
    c.data.num_workers = 0
    c.data.read_threads = 1
    c.batch_size = 4
    c.num_steps = 3
    c.log_every = 1
    c.checkpoint.every = 3
    c.wandb.mode = "disabled"
    c.policy.config.update({**TINY_ACT, "use_vae": False})
    for k, v in over.items():
        node = c
        *path, last = k.split(".")
        for p in path:
            node = node[p]
        node[last] = v
    return c


def losses(workdir):
    return [
        json.loads(line)["loss"]
        for line in (workdir / "metrics.jsonl").read_text().splitlines()
        if "loss" in line
    ]


def test_gradient_accumulation_matches_the_full_batch(tmp_path, tiny_shards):
    train(tiny_config(tiny_shards), tmp_path / "full")
    train(tiny_config(tiny_shards, grad_accum_steps=2), tmp_path / "accum")
    np.testing.assert_allclose(losses(tmp_path / "accum"), losses(tmp_path / "full"), rtol=1e-5)


def test_bf16_compute_trains_like_float32(tmp_path, tiny_shards):
    train(tiny_config(tiny_shards), tmp_path / "f32")
    train(tiny_config(tiny_shards, **{"policy.config.compute_dtype": "bfloat16"}), tmp_path / "bf16")
    got, ref = losses(tmp_path / "bf16"), losses(tmp_path / "f32")
    assert len(got) == len(ref) == 3 and all(np.isfinite(got))
    # same batches, same initial weights: bf16 matmuls (8-bit mantissa) move the loss by well under 5%,
    # and do move it (the compute dtype really took effect)
    np.testing.assert_allclose(got, ref, rtol=5e-2)
    assert got != ref


def test_time_budget_stops_with_a_checkpoint_and_sim_eval_runs(tmp_path, tiny_shards):
    cfg = tiny_config(
        tiny_shards,
        num_steps=1000,
        max_train_seconds=1.0,
        **{"eval.every": 10, "eval.episodes": 1},
    )
    metrics = train(cfg, tmp_path / "budget")
    ckpts = sorted(int(p.name) for p in (tmp_path / "budget" / "checkpoints").iterdir() if p.name.isdigit())
    assert ckpts and ckpts[-1] < 1000  # stopped early, and saved where it stopped
    # one episode was rolled out in the simulator at every eval step: a rate of exactly 0 or 1, logged
    assert metrics["eval/success_rate"] in (0.0, 1.0)
    records = [json.loads(line) for line in (tmp_path / "budget" / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in records if "eval/success_rate" in r]
    assert evals and evals[-1]["step"] == ckpts[-1] and all(r["step"] % 10 == 0 for r in evals[:-1])
    assert evals[-1]["eval/success_rate"] == metrics["eval/success_rate"]


def test_unknown_input_feature_is_a_clear_error(tmp_path, tiny_shards):
    cfg = tiny_config(
        tiny_shards, **{"policy.input_features": ("observation.state", "observation.images.top")}
    )
    with pytest.raises(ValueError, match=r"observation\.images\.top"):
        train(cfg, tmp_path / "bad")


def test_torch_adam_l2_and_clipping_numerics():
    """One step of our 'adam' preset equals torch's Adam(weight_decay) after clip_grad_norm_."""
    params = {"w": jnp.array([1.0, -2.0, 3.0])}
    grads = {"w": jnp.array([30.0, 40.0, 0.0])}  # norm 50 -> clipped to 10
    preset = OptimizerPreset(
        name="adam", lr=0.1, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01, grad_clip_norm=10.0
    )
    tx, _ = make_optimizer(preset, params, lambda p: "default", total_steps=10)
    updates, _ = tx.update(grads, tx.init(params), params)
    new = optax.apply_updates(params, updates)
    # torch: g = clip(g) (factor 10/(50+1e-6)); g += wd * p; m = 0.1 g; v = 0.001 g^2;
    # p -= lr * (m / 0.1) / (sqrt(v / 0.001) + eps) = p - lr * sign-ish(g)
    g = np.array([30.0, 40.0, 0.0]) * (10.0 / (50.0 + 1e-6)) + 0.01 * np.array([1.0, -2.0, 3.0])
    want = np.array([1.0, -2.0, 3.0]) - 0.1 * g / (np.abs(g) + 1e-8)
    np.testing.assert_allclose(np.asarray(new["w"]), want, rtol=1e-6)


def test_schedules_match_lerobot_formulas():
    cos = schedule_factor({"name": "cosine", "num_warmup_steps": 10}, total_steps=110)
    assert float(cos(0)) == 0.0 and abs(float(cos(5)) - 0.5) < 1e-6
    assert abs(float(cos(10)) - 1.0) < 1e-6 and abs(float(cos(60)) - 0.5) < 1e-6 and float(cos(110)) < 1e-6
    lr = schedule_factor(
        {"name": "cosine_decay_with_warmup", "peak_lr": 1e-4, "decay_lr": 2.5e-6, "num_warmup_steps": 1000,
         "num_decay_steps": 30000},
        total_steps=30000,
    )  # fmt: skip
    assert abs(float(lr(0)) - 1 / 1001) < 1e-6  # LeRobot: 1/(W+1) at step 0
    assert abs(float(lr(30000)) - 0.025) < 1e-6  # decays to decay_lr / peak_lr
    assert jax.numpy.isfinite(lr(15000))


def test_validation_loss_on_held_out_episodes(tmp_path, tiny_shards):
    """val/loss is the training objective on the held-out episodes, recomputable from the checkpoint."""
    from jrobot.pipeline.loader import make_eval_dataset
    from jrobot.policies import act
    from jrobot.train.export import load_from_workdir
    from jrobot.train.trainer import pipeline_config

    cfg = tiny_config(
        tiny_shards,
        num_steps=4,
        **{"checkpoint.every": 4, "data.val_episodes": (1,), "validation.every": 2, "ema": False},
    )
    train(cfg, tmp_path / "val")
    records = [json.loads(line) for line in (tmp_path / "val" / "metrics.jsonl").read_text().splitlines()]
    val = {r["step"]: r for r in records if "val/loss" in r}
    assert sorted(val) == [2, 4] and all(np.isfinite(r["val/loss"]) for r in val.values())
    assert val[2]["val/loss"] != val[4]["val/loss"]  # the parameters changed in between

    model, _, _ = load_from_workdir(tmp_path / "val", step=4)
    pcfg = pipeline_config(cfg, model.spec)
    pcfg.num_workers, pcfg.augment = 0, None
    held_out, losses_ = [], []
    for batch in make_eval_dataset(pcfg, split="val"):
        held_out.extend(np.unique(batch["episode_index"]).tolist())
        batch = {
            k: v
            for k, v in batch.items()
            if k not in ("index", "dataset_index", "episode_index", "task_index")
        }
        losses_.append(float(act.loss(model, batch, jax.random.PRNGKey(0))[0]))
    assert set(held_out) == {1} and losses_
    np.testing.assert_allclose(val[4]["val/loss"], np.mean(losses_), rtol=1e-5)


def test_a_missing_setting_is_named_with_the_closest_keys(tmp_path, tiny_shards):
    from jrobot.train.config_util import ConfigError

    cfg = tiny_config(tiny_shards)
    del cfg["validation"]
    with pytest.raises(ConfigError, match=r"no 'validation.every'.*configs/common.py"):
        train(cfg, tmp_path / "missing")
    cfg = tiny_config(tiny_shards)
    cfg.data.prefetch_batches = cfg.data.prefetch
    del cfg.data["prefetch"]
    with pytest.raises(ConfigError, match=r"no 'data.prefetch'.*did you mean data.prefetch_batches\?"):
        train(cfg, tmp_path / "renamed")

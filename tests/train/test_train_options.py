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


def test_bf16_compute_trains(tmp_path, tiny_shards):
    train(tiny_config(tiny_shards, **{"policy.config.compute_dtype": "bfloat16"}), tmp_path / "bf16")
    got = losses(tmp_path / "bf16")
    assert len(got) == 3 and all(np.isfinite(got))


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
    assert 0.0 <= metrics["eval/success_rate"] <= 1.0  # the policy was rolled out in the simulator


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

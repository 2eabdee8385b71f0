"""fit_steps_to_time: a run with a time budget lays its learning-rate schedule over the steps that fit
(jrobot.train.time_fit), ends at the schedule's end with a checkpoint, and keeps the fit on resume."""

from __future__ import annotations

import json

import pytest
from test_train_options import tiny_config

from jrobot.train import time_fit
from jrobot.train.time_fit import StepFitter, saved_fit
from jrobot.train.trainer import train


def test_fitter_plans_the_remaining_time_at_the_measured_rate(tmp_path):
    # clock: run started at 0, first step called at 2 s and done at 5 s (3 s of compilation), then 0.1 s a step
    f = StepFitter(tmp_path, start_step=0, num_steps=100_000, limit_s=100.0, t_start=0.0, t_loop=2.0)
    now, fitted = 5.0, None
    for step in range(1, f.probe_to + 1):
        if step > 1:
            now += 0.1
        fitted = f.after_step(step, now)
        assert (fitted is None) == (step < f.probe_to)
    # what is left after this step and one more compilation, at 10 steps/s, with the margin
    expected = f.probe_to + int((100.0 - now - 3.0) * time_fit.MARGIN * 10.0)
    assert fitted == pytest.approx(expected, abs=1)
    assert f.after_step(f.probe_to + 1, now + 0.1) is None  # decided once
    assert saved_fit(tmp_path, 100_000) == fitted and saved_fit(tmp_path, 5) is None
    (tmp_path / time_fit.FILE).write_text("{not json")
    with pytest.raises(ValueError, match=r"fitted_num_steps\.json: not a fitted step count"):
        saved_fit(tmp_path, 100_000)

    # a run whose steps all fit keeps its num_steps and saves nothing
    g = StepFitter(tmp_path / "g", start_step=0, num_steps=500, limit_s=100.0, t_start=0.0, t_loop=0.0)
    assert all(g.after_step(s, 0.01 * s) is None for s in range(1, g.probe_to + 5))
    assert g.done and not (tmp_path / "g").exists()


@pytest.mark.slow  # ~1 min: setup, two compilations and the probe must leave steps to fit
def test_training_fits_the_schedule_to_the_time_budget_and_keeps_it_on_resume(
    tmp_path, tiny_shards, monkeypatch
):
    # a short probe: this run's ~45 s of setup and compilation (twice) leave ~20 s of steps
    monkeypatch.setattr(time_fit, "PROBE_SKIP", 2)
    monkeypatch.setattr(time_fit, "PROBE_STEPS", 20)
    peak = 1e-3
    cfg = tiny_config(
        tiny_shards,
        num_steps=1_000_000,
        max_train_seconds=70.0,
        fit_steps_to_time=True,
        log_every=5,
        **{
            "checkpoint.every": 1_000_000,
            "optimizer.lr": peak,
            "optimizer.scheduler": {"name": "cosine", "num_warmup_steps": 0},
        },
    )
    workdir = tmp_path / "run"
    metrics = train(cfg, workdir)
    fitted = json.loads((workdir / time_fit.FILE).read_text())
    assert fitted["configured_num_steps"] == 1_000_000
    assert 2 + 20 < fitted["num_steps"] < 1_000_000
    ckpts = sorted(int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit())
    assert ckpts[-1] == metrics["steps"]
    # the schedule spanned the fitted steps: the run ended near its end, at a small fraction of the peak
    assert metrics["steps"] >= 0.9 * fitted["num_steps"]
    records = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    lrs = [r["lr"] for r in records if "lr" in r]
    assert max(lrs) > 0.5 * peak and lrs[-1] < 0.05 * peak
    # a resumed try keeps the fitted schedule (here: already complete, nothing more to train)
    again = train(cfg, workdir)
    assert again["steps"] == metrics["steps"]

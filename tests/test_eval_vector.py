"""Vectorized evaluation (`python -m jrobot.eval --num_envs N`): N = 1's per-episode results, N at a time.

Real bundles exported from the LeRobot parity checkpoints: ACT (deterministic; 2 cameras 96x128,
chunk 10) and Diffusion DDIM (stochastic: its initial noise per episode). Batched XLA calls round
differently from calls of one row (~1e-5 degrees for ACT), so the batched runs are held to the same
per-episode outcomes and to executed actions within a tolerance; `exact=True` (one call per env) to
N = 1's very bits.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from jrobot.runtime.evaluate import evaluate, plot_success_vs_time, wilson_interval

REPO = Path(__file__).resolve().parents[1]
PICK_COLOR = "jrobot/SO101PickColor-v0"


def _export(shared_dir: Path, name: str, out: Path, *flags: str) -> Path:
    from jrobot.commands.export import main as export_main

    fixture = shared_dir / "fixtures" / "parity" / name / "pretrained_model"
    assert export_main(["--from-lerobot", str(fixture), "--out", str(out), *flags]) == 0
    return out


@pytest.fixture(scope="module")
def act_dir(shared_dir, tmp_path_factory) -> Path:
    return _export(shared_dir, "act_so101_tiny", tmp_path_factory.mktemp("eval_vector") / "act")


@pytest.fixture(scope="module")
def act(act_dir):
    from jrobot.runtime.policy import BundlePolicy

    return BundlePolicy(act_dir)


@pytest.fixture(scope="module")
def diffusion(shared_dir, tmp_path_factory):
    from jrobot.runtime.policy import BundlePolicy

    out = tmp_path_factory.mktemp("eval_vector") / "diffusion"
    return BundlePolicy(_export(shared_dir, "diffusion_so101_tiny_ddim", out))


@pytest.fixture(scope="module")
def vla(shared_dir, tmp_path_factory):
    """SmolVLA (the tiny parity checkpoint and its VLM): language-conditioned and stochastic."""
    from jrobot.runtime.policy import BundlePolicy

    fixture = shared_dir / "fixtures" / "parity" / "smolvla_so101_tiny"
    out = tmp_path_factory.mktemp("eval_vector") / "vla"
    return BundlePolicy(_export(shared_dir, "smolvla_so101_tiny", out, "--vlm", str(fixture / "vlm")))


def _run(policy, num_envs: int, **kwargs) -> tuple[dict, dict[int, np.ndarray]]:
    """The report, and the actions each episode executed (episode -> (steps, 6))."""
    actions: dict[int, list[np.ndarray]] = {}
    report = evaluate(
        policy,
        seed=100_000,
        videos=False,
        num_envs=num_envs,
        on_action=lambda ep, step, a: actions.setdefault(ep, []).append(a),
        **kwargs,
    )
    for ep, rows in actions.items():
        assert len(rows) == report["episodes"][ep]["steps"]
    return report, {ep: np.stack(rows) for ep, rows in actions.items()}


def _outcomes(report: dict) -> list[tuple]:
    keys = ("episode", "seed", "success", "steps", "success_step", "wrong_object", "task")
    return [tuple(e.get(k) for k in keys) for e in report["episodes"]]


def _max_diff(a: dict[int, np.ndarray], b: dict[int, np.ndarray]) -> float:
    assert a.keys() == b.keys()
    return max(float(np.abs(a[e] - b[e]).max()) for e in a)


def test_act_on_three_envs_gives_the_episodes_of_one(act):
    """Four episodes on three envs (one env is handed a second episode), one batched call per chunk."""
    kw = {"env_id": PICK_COLOR, "episodes": 4, "max_steps": 12}
    one, a1 = _run(act, 1, **kw)
    three, a3 = _run(act, 3, **kw)
    assert _outcomes(three) == _outcomes(one)
    assert [e["seed"] for e in three["episodes"]] == [100_000, 100_001, 100_002, 100_003]
    assert all("wrong_object" in e for e in three["episodes"])  # pick-color reports it
    # batched rows round differently from calls of one (~1e-5 degrees); the same first observations give
    # the same first chunk to that, and the trajectories stay within rounding amplified by the sim
    first = act.spec.n_action_steps
    assert _max_diff({e: a[:first] for e, a in a1.items()}, {e: a[:first] for e, a in a3.items()}) < 1e-3
    assert _max_diff(a1, a3) < 0.05
    assert one["num_envs"] == 1 and three["num_envs"] == 3
    # the first three episodes share each call: 2 chunks of 3 rows, then the fourth alone
    assert three["latency"]["inference_calls"] == 4 and three["latency"]["inference_rows"] == 8
    assert one["latency"]["inference_calls"] == 8 and one["latency"]["steps"] == three["latency"]["steps"]
    # one call per env: bit for bit N = 1's actions
    exact, ae = _run(act, 3, exact=True, **kw)
    assert _outcomes(exact) == _outcomes(one) and exact["exact"] is True
    assert all(np.array_equal(ae[e], a1[e]) for e in a1)


def test_a_stochastic_policy_draws_each_episodes_noise_whichever_env_runs_it(diffusion):
    kw = {"episodes": 2, "max_steps": 8}
    one, a1 = _run(diffusion, 1, **kw)
    two, a2 = _run(diffusion, 2, **kw)
    assert _outcomes(two) == _outcomes(one)
    assert two["latency"]["batch_size_mean"] == 2.0  # both episodes' chunks in each call
    # each noise row follows its episode: the first chunk (same observations, same noise) is N = 1's to
    # rounding, where another episode's noise moves the actions by degrees. (Later chunks see states
    # that differ by that rounding; this untrained policy can turn a pixel's flip into a fraction of a
    # degree, so only `exact` is held to the whole trajectory.)
    first = diffusion.spec.n_action_steps
    assert _max_diff({e: a[:first] for e, a in a1.items()}, {e: a[:first] for e, a in a2.items()}) < 1e-3
    assert np.abs(a1[0][:first] - a1[1][:first]).max() > 1.0
    exact, ae = _run(diffusion, 2, exact=True, **kw)
    assert _outcomes(exact) == _outcomes(one)
    assert all(np.array_equal(ae[e], a1[e]) for e in a1)


def test_a_language_policy_gets_each_envs_own_instruction_in_its_row(vla):
    """Pick-color: each episode has its own instruction; a batched call carries one per row."""
    calls = []
    predict = vla.predict

    def spy(observation, **kw):
        calls.append(observation.get("task"))
        return predict(observation, **kw)

    kw = {"env_id": PICK_COLOR, "episodes": 3, "max_steps": 8}  # one chunk of 8 each
    vla.predict = spy
    try:
        one, a1 = _run(vla, 1, **kw)
        alone = list(calls)
        calls.clear()
        two, a2 = _run(vla, 2, **kw)
    finally:
        del vla.predict
    assert _outcomes(two) == _outcomes(one)
    tasks = [e["task"] for e in one["episodes"]]
    assert alone == tasks and calls == [tasks[:2], tasks[2]]  # episodes 0 and 1 together, then 2
    assert _max_diff(a1, a2) < 1e-3  # the first chunk of each: the same observations and noise


def test_a_batched_call_gives_each_row_what_a_call_of_its_own_gives(act, diffusion):
    """The equality criterion behind batching: each row of a batched call equals a call of that row alone
    within 1e-4 (dataset units); the same row anywhere in a batch of the same size is bitwise equal."""
    rng = np.random.default_rng(0)
    for policy, b, atol in ((act, 3, 1e-4), (diffusion, 2, 1e-3)):  # batch sizes the runs above compiled
        spec = policy.spec
        obs = {}
        for key, feat in spec.input_features.items():
            if key in spec.image_keys:
                shape = (b, spec.n_obs_steps, *policy.info.image_shapes[key])
                obs[key] = rng.integers(0, 256, shape, dtype=np.uint8)
            else:
                obs[key] = (30 * rng.standard_normal((b, spec.n_obs_steps, *feat.shape))).astype(np.float32)
        kw = {}
        if spec.noise_shape is not None:
            kw["noise"] = rng.standard_normal((b, *spec.noise_shape)).astype(np.float32)

        def rows(idx, obs=obs, kw=kw, policy=policy):
            return policy.predict({k: v[idx] for k, v in obs.items()}, **{k: v[idx] for k, v in kw.items()})

        batched = rows(list(range(b)))
        alone = np.concatenate([rows([i]) for i in range(b)])
        np.testing.assert_allclose(batched, alone, rtol=0, atol=atol)
        turned = [*range(1, b), 0]  # the rows rotated: each row's bits, wherever it sits
        assert np.array_equal(rows(turned)[np.argsort(turned)], batched)


def test_the_command_writes_the_report_the_plot_and_the_videos(act_dir, tmp_path):
    out = tmp_path / "ev"
    # --exact: one call per env, so the command compiles no batch of 3 (the test's time)
    argv = [f"--policy={act_dir}", "--episodes=3", "--max-steps=6", "--num_envs=3", "--exact", f"--out={out}"]
    proc = subprocess.run(
        [sys.executable, "-m", "jrobot.eval", *argv], capture_output=True, text=True, cwd=REPO, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    assert "success rate 0.0% over 3 episodes (95% CI 0.0%-56.1%" in proc.stdout
    rep = json.loads((out / "report.json").read_text())
    assert (
        rep["num_envs"] == 3 and rep["exact"] is True and rep["num_episodes"] == 3 and rep["successes"] == 0
    )
    assert rep["success_ci95"] == [0.0, round(wilson_interval(0, 3)[1], 4)]
    assert rep["episodes_per_minute"] > 0 and rep["plot"] == "success_vs_time.png"
    assert (out / "success_vs_time.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    import av

    for e in rep["episodes"]:
        assert e["video"] == f"videos/episode_{e['episode']:03d}.mp4" and e["success_step"] is None
        with av.open(str(out / e["video"])) as container:
            frames = list(container.decode(video=0))
        assert len(frames) == e["steps"] + 1 == 7  # the reset frame, then one per step
        assert (frames[0].width, frames[0].height) == (256, 96)  # two 96x128 cameras side by side


def test_a_workers_error_reaches_the_caller_as_it_was_raised(act):
    with pytest.raises(ValueError, match="several"):
        evaluate(act, episodes=2, max_steps=2, videos=False, swap_instruction=True, num_envs=2)


@pytest.mark.parametrize(
    ("k", "n", "lo", "hi"),
    [  # Wilson score intervals at 95% (e.g. Newcombe 1998, Brown, Cai & DasGupta 2001)
        (8, 10, 0.4902, 0.9433),
        (5, 10, 0.2366, 0.7634),
        (0, 10, 0.0, 0.2775),
        (10, 10, 0.7225, 1.0),
        (48, 50, 0.8654, 0.9890),
        (0, 0, 0.0, 1.0),
    ],
)
def test_wilson_interval(k, n, lo, hi):
    got = wilson_interval(k, n)
    assert got == pytest.approx((lo, hi), abs=5e-5)
    if n:
        stats = pytest.importorskip("scipy.stats")
        ci = stats.binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
        assert got == pytest.approx((ci.low, ci.high), abs=1e-9)


def test_the_success_plot_is_the_fraction_solved_by_each_time(tmp_path):
    results = [
        {"success": True, "success_step": 30, "steps": 30},
        {"success": True, "success_step": 90, "steps": 90},
        {"success": False, "success_step": None, "steps": 150},
    ]
    path = plot_success_vs_time(results, tmp_path / "p.png", fps=30, max_steps=150, title="t")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

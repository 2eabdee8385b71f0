"""Temporal ensembling against its offline definition; the schedule as an action queue; numpy-only imports."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from jrobot.policies.ensemble import ActionSchedule, TemporalEnsembler


def offline_ensemble(chunks: np.ndarray, t: int, coeff: float) -> np.ndarray:
    """Action at step t from all chunks predicted at steps <= t that cover t; w_i = exp(-coeff i), i=0 oldest."""
    k = chunks.shape[2]
    preds = [chunks[s][:, t - s] for s in range(t + 1) if t - s < k]  # oldest first
    w = np.exp(-coeff * np.arange(len(preds)))
    return sum(wi * p for wi, p in zip(w, preds, strict=True)) / w.sum()


@pytest.mark.parametrize("coeff", [0.01, 0.0, -0.5, 1.0])
def test_online_update_equals_offline_weighting(coeff):
    rng = np.random.default_rng(0)
    steps, batch, k, a = 12, 2, 5, 3
    chunks = rng.normal(size=(steps, batch, k, a)).astype(np.float32)
    ens = TemporalEnsembler(coeff, k)
    for t in range(steps):
        got = ens.update(chunks[t])
        np.testing.assert_allclose(got, offline_ensemble(chunks, t, coeff), rtol=1e-5, atol=1e-6)
    ens.reset()
    np.testing.assert_array_equal(ens.update(chunks[3]), chunks[3][:, 0])


def test_ensembler_checks_shapes():
    ens = TemporalEnsembler(0.01, 4)
    with pytest.raises(ValueError, match=r"\(B, 4, A\)"):
        ens.update(np.zeros((1, 5, 2)))


def test_schedule_in_sync_use_is_lerobots_action_queue():
    """Refilled only when empty, with the first n_action_steps of a chunk: select_action's queue."""
    s = ActionSchedule("latest")
    chunk = np.arange(5 * 2, dtype=np.float64).reshape(5, 2)
    s.add(chunk[:3], start=0, now=0)
    assert s.ahead(0) == 3
    for i in range(3):
        np.testing.assert_array_equal(s.pop(i), chunk[i])
    assert s.ahead(3) == 0 and s.pop(3) is None


def test_runtime_imports_stay_light():
    code = (
        "import sys, jrobot.policies.ensemble, jrobot.policies.spec; "
        "heavy = [m for m in sys.modules if m.split('.')[0] in ('jax', 'flax', 'optax', 'torch')]; "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)

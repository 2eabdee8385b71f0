"""ActionSchedule: chunks that arrive late and overlap, merged by LeRobot's and ACT's rules."""

from __future__ import annotations

import numpy as np
import pytest

from jrobot.policies.ensemble import ActionSchedule, TemporalEnsembler


def chunk(values, dim=2):
    return np.repeat(np.asarray(values, np.float64)[:, None], dim, axis=1)


def test_late_chunks_drop_executed_timesteps_and_line_up_with_now():
    s = ActionSchedule("latest")
    assert s.add(chunk([10, 11, 12, 13]), start=5, now=7) == 2  # timesteps 5 and 6 already ran
    assert s.ahead(7) == 2 and s.ahead(6) == 0
    np.testing.assert_array_equal(s.pop(7), [12, 12])
    assert s.pop(7) is None  # popped once
    np.testing.assert_array_equal(s.pop(8), [13, 13])
    assert s.pop(9) is None and s.ahead(9) == 0


def test_pop_forgets_everything_before_it():
    s = ActionSchedule("latest")
    s.add(chunk([1, 2, 3, 4]), start=0, now=0)
    np.testing.assert_array_equal(s.pop(2), [3, 3])
    assert s.pop(1) is None and s.ahead(0) == 0 and s.ahead(3) == 1


@pytest.mark.parametrize(
    ("merge", "expected"),
    [("latest", 20.0), ("average", 15.0), ("weighted", 0.3 * 10 + 0.7 * 20)],
)
def test_overlapping_chunks_merge_by_rule(merge, expected):
    s = ActionSchedule(merge)
    s.add(chunk([10, 10, 10]), start=0, now=0)
    s.add(chunk([20, 20, 20]), start=1, now=1)
    assert s.pop(0)[0] == 10  # only the first chunk covers timestep 0
    assert s.pop(1)[0] == pytest.approx(expected)
    assert s.pop(3)[0] == 20  # only the second covers timestep 3


def test_weighted_folds_each_new_chunk_into_the_running_value():
    s = ActionSchedule("weighted", new_weight=0.5)
    for v in (0.0, 8.0, 4.0):
        s.add(chunk([v]), start=0, now=0)
    assert s.pop(0)[0] == pytest.approx(((0 + 8) / 2 + 4) / 2)


@pytest.mark.parametrize("coeff", [0.01, 0.5, 0.0, -0.2])
def test_ensemble_rule_equals_acts_temporal_ensembler_when_queried_every_step(coeff):
    rng = np.random.default_rng(0)
    n, dim = 6, 3
    chunks = rng.normal(size=(15, n, dim))
    ens = TemporalEnsembler(coeff, n)
    sched = ActionSchedule("ensemble", ensemble_coeff=coeff)
    for t, c in enumerate(chunks):
        want = ens.update(c[None].astype(np.float32))[0]
        sched.add(c, start=t, now=t)
        np.testing.assert_allclose(sched.pop(t), want, rtol=1e-5, atol=1e-5)


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="merge must be one of"):
        ActionSchedule("median")
    with pytest.raises(ValueError, match="new_weight"):
        ActionSchedule("weighted", new_weight=0.0)
    with pytest.raises(ValueError, match=r"\(n, A\) chunk"):
        ActionSchedule().add(np.zeros((1, 2, 3)), start=0, now=0)

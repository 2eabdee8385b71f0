"""Fit a run's step count to its time budget (`fit_steps_to_time` with `max_train_seconds`).

`max_train_seconds` alone stops a run where the budget ends, which on a machine slower than the one a
config was tuned on cuts the learning-rate schedule off while the rate is still high (a demo recorded
at 12,000 cosine steps on one 2-core VM stopped at step 7,220 on another, its rate at half its peak).
With `fit_steps_to_time` the trainer instead times the first steps after compilation and, if the
configured `num_steps` would not fit, lays the schedule over the steps that do: a slower machine trains
fewer steps of the same schedule shape, ending at the schedule's low rate. The fitted count is saved in
the workdir, so a resumed run keeps its schedule; process 0 decides for every host.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import jax

log = logging.getLogger("jrobot.train")

FILE = "fitted_num_steps.json"
PROBE_SKIP = 10  # steps after the first (compiled) one before timing starts
PROBE_STEPS = 100  # steps timed
MARGIN = 0.95  # share of the remaining time planned for steps (checkpoints, logging, stragglers)


def saved_fit(workdir: Path, num_steps: int) -> int | None:
    """The fitted step count of an earlier try of this run (same configured `num_steps`), if any."""
    path = Path(workdir) / FILE
    if not path.exists():
        return None
    try:
        saved = json.loads(path.read_text())
        if int(saved.get("configured_num_steps", -1)) != num_steps:
            return None
        return int(saved["num_steps"])
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise ValueError(
            f"{path}: not a fitted step count ({e}); delete it to fit the schedule to the time again"
        ) from e


class StepFitter:
    """Times steps `start + PROBE_SKIP + 1 .. + PROBE_STEPS` and then proposes the run's step count.

    The first step's time (compilation included) is charged once more: refitting the schedule compiles
    the step again. `t_start` is when the run's clock started, `t_loop` when its first step was called.
    """

    def __init__(
        self, workdir: Path, start_step: int, num_steps: int, limit_s: float, t_start: float, t_loop: float
    ) -> None:
        self.workdir = Path(workdir)
        self.num_steps = num_steps
        self.limit_s = float(limit_s)
        self.t_start = t_start
        self.t_loop = t_loop
        self.probe_from = start_step + 1 + PROBE_SKIP
        self.probe_to = self.probe_from + PROBE_STEPS
        self.compile_s: float | None = None
        self._t_probe: float | None = None
        self.done = False

    def after_step(self, step: int, now: float) -> int | None:
        """Call after each step (`now` once its result is ready); a new (smaller) step count, or None."""
        if self.done:
            return None
        if self.compile_s is None:
            self.compile_s = now - self.t_loop
        if step == self.probe_from:
            self._t_probe = now
        if step < self.probe_to or self._t_probe is None:
            return None
        self.done = True
        rate = (step - self.probe_from) / max(now - self._t_probe, 1e-9)
        remaining = self.limit_s - (now - self.t_start) - self.compile_s
        fit = step + int(max(0.0, remaining) * MARGIN * rate)
        fit = _agree(fit)
        if fit >= self.num_steps:
            log.info(
                "fit_steps_to_time: %.2f steps/s, all %d steps fit in max_train_seconds=%s",
                rate, self.num_steps, self.limit_s,
            )  # fmt: skip
            return None
        fit = max(fit, step + 1)
        log.warning(
            "fit_steps_to_time: %.2f steps/s here; %d of the configured %d steps fit in "
            "max_train_seconds=%s, so the learning-rate schedule now spans %d steps",
            rate, fit, self.num_steps, self.limit_s, fit,
        )  # fmt: skip
        if jax.process_index() == 0:
            (self.workdir / FILE).write_text(
                json.dumps({"num_steps": fit, "configured_num_steps": self.num_steps, "steps_per_s": rate})
            )
        return fit


def _agree(value: int) -> int:
    """Process 0's value on every host (one schedule for all)."""
    if jax.process_count() == 1:
        return value
    import numpy as np
    from jax.experimental import multihost_utils

    return int(multihost_utils.broadcast_one_to_all(np.asarray(value, np.int64)))

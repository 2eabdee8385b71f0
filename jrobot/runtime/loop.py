"""The real-time control loop: observation -> (background) inference -> safe action -> robot.

Two ways to turn chunks into per-step actions, as LeRobot does:
- action queue: execute the first `n_action_steps` of a chunk, then ask again;
- temporal ensembling (ACT with `temporal_ensemble_coeff`): query every step, average overlapping chunks.

Inference runs on a worker thread so the control thread never stalls on it (`mode="async"`): when the
queue runs low, the next chunk is requested from the newest observation; when it arrives, the actions
for the steps that passed meanwhile are dropped so the chunk lines up with "now". `mode="sync"`
computes a chunk when the queue is empty and waits for it (LeRobot's `select_action`; deterministic,
used by evaluation in the simulator, whose clock only advances when an action is sent).

A language-conditioned policy follows `task`, the instruction the controller's `ObservationBuilder`
adds to every observation; setting `controller.task` changes it from the next step on.

Safety: every action is clamped to the joint limits, non-finite values are never sent (the arm holds
its last safe position and the loop stops), and the robot's own `max_relative_target` applies.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from jrobot.features import ACTION_KEY
from jrobot.pacer import Pacer
from jrobot.policies.ensemble import ActionQueue, TemporalEnsembler
from jrobot.robot import Robot
from jrobot.runtime.policy import BundlePolicy, ObservationBuilder

log = logging.getLogger("jrobot.run")


class UnsafeActionError(RuntimeError):
    """The policy produced an action that must not reach the motors (NaN/inf)."""


@dataclasses.dataclass
class SafetyLimits:
    """Per-joint limits in dataset units; actions are clamped into [lower, upper]."""

    names: list[str]
    lower: np.ndarray
    upper: np.ndarray

    @classmethod
    def from_stats(cls, names: list[str], stats: Mapping[str, Any], margin: float = 0.1) -> SafetyLimits:
        """The action range seen in the training data, widened by `margin` of its span on each side."""
        lo = np.asarray(stats["min"], np.float64).reshape(-1)
        hi = np.asarray(stats["max"], np.float64).reshape(-1)
        span = np.maximum(hi - lo, 1e-6)
        return cls(list(names), lo - margin * span, hi + margin * span)

    def apply(self, action: np.ndarray) -> np.ndarray:
        a = np.asarray(action, np.float64)
        if not np.all(np.isfinite(a)):
            bad = [n for n, v in zip(self.names, a, strict=True) if not math.isfinite(v)]
            raise UnsafeActionError(f"policy produced non-finite values for {bad}")
        return np.clip(a, self.lower, self.upper)


@dataclasses.dataclass
class LoopStats:
    inference_s: list[float] = dataclasses.field(default_factory=list)
    period_s: list[float] = dataclasses.field(default_factory=list)
    overruns: int = 0
    dropped_actions: int = 0
    steps: int = 0

    def report(self) -> dict[str, float | None]:
        """Milliseconds; None where nothing was measured (e.g. no loop period in an unpaced eval)."""

        def pct(x, q):
            return float(np.percentile(x, q) * 1000) if x else None

        return {
            "steps": self.steps,
            "inference_calls": len(self.inference_s),
            "inference_ms_p50": pct(self.inference_s, 50),
            "inference_ms_p99": pct(self.inference_s, 99),
            "loop_period_ms_p50": pct(self.period_s, 50),
            "loop_period_ms_p99": pct(self.period_s, 99),
            "overruns": self.overruns,
            "stale_actions_dropped": self.dropped_actions,
        }


class _InferenceWorker:
    """One background thread computing chunks; at most one request in flight."""

    def __init__(self, policy: BundlePolicy):
        self.policy = policy
        self._lock = threading.Lock()
        self._cv = threading.Condition(self._lock)
        self._request: tuple[dict, int] | None = None
        self._result: tuple[np.ndarray, int, float] | None = None
        self._error: BaseException | None = None
        self._busy = False
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="jrobot-inference", daemon=True)
        self._thread.start()

    @property
    def busy(self) -> bool:
        with self._lock:
            return self._busy or self._request is not None

    def submit(self, observation: dict, step: int) -> None:
        with self._cv:
            self._request = (observation, step)
            self._cv.notify_all()

    def take(self, wait: bool = False, timeout: float | None = None) -> tuple[np.ndarray, int, float] | None:
        with self._cv:
            if wait:
                self._cv.wait_for(lambda: self._result is not None or self._error is not None, timeout)
            if self._error is not None:
                err, self._error = self._error, None
                raise err
            res, self._result = self._result, None
            return res

    def _run(self) -> None:
        while True:
            with self._cv:
                self._cv.wait_for(lambda: self._request is not None or self._stop)
                if self._stop:
                    return
                obs, step = self._request
                self._request = None
                self._busy = True
            try:
                t0 = time.perf_counter()
                chunk = self.policy.predict(obs)
                dt = time.perf_counter() - t0
                with self._cv:
                    self._result = (chunk, step, dt)
                    self._busy = False
                    self._cv.notify_all()
            except BaseException as e:  # surfaced on the control thread
                with self._cv:
                    self._error = e
                    self._busy = False
                    self._cv.notify_all()

    def close(self) -> None:
        with self._cv:
            self._stop = True
            self._cv.notify_all()
        self._thread.join(timeout=5)


class PolicyController:
    """Per-step actions from a bundle for one robot; see the module docstring for the two modes."""

    def __init__(
        self,
        policy: BundlePolicy,
        *,
        mode: str = "async",
        n_action_steps: int | None = None,
        temporal_ensemble_coeff: float | None = None,
        safety: SafetyLimits | None = None,
        task: str | None = None,
    ):
        """`n_action_steps` / `temporal_ensemble_coeff` override the bundle's settings (e.g. to
        ensemble a policy trained with an action queue; ensembling queries the policy every step).
        `task`: the instruction of a language-conditioned policy (ignored by others)."""
        if mode not in ("async", "sync"):
            raise ValueError(f"mode must be 'async' or 'sync', got {mode!r}")
        self.policy = policy
        self.mode = mode
        spec = policy.spec
        names = policy.info.features[ACTION_KEY].flat_names
        if names is None:
            raise ValueError("policy.json: the action feature has no joint names")
        self.action_names = names
        if safety is None and ACTION_KEY in policy.info.stats and "min" in policy.info.stats[ACTION_KEY]:
            safety = SafetyLimits.from_stats(names, policy.info.stats[ACTION_KEY])
        self.safety = safety
        coeff = spec.temporal_ensemble_coeff if temporal_ensemble_coeff is None else temporal_ensemble_coeff
        self.ensembler = TemporalEnsembler(coeff, spec.chunk_size) if coeff is not None else None
        self.n_action_steps = int(n_action_steps or spec.n_action_steps)
        self.queue = ActionQueue(self.n_action_steps)
        self.observations = ObservationBuilder(policy.info, task=task)
        self.stats = LoopStats()
        self._worker = _InferenceWorker(policy) if mode == "async" else None
        self._step = 0
        self._refill_at = 1
        self.last_safe: np.ndarray | None = None

    @property
    def task(self) -> str | None:
        """The instruction every observation carries to the policy (None: none)."""
        return self.observations.task

    @task.setter
    def task(self, task: str | None) -> None:
        self.observations.task = task

    def reset(self) -> None:
        self.queue.reset()
        if self.ensembler is not None:
            self.ensembler.reset()
        self.observations.reset()
        self._step = 0
        if self._worker is not None:
            self._worker.take(wait=self._worker.busy, timeout=30)

    def _latency_steps(self, period_s: float) -> int:
        lat = self.stats.inference_s[-20:]
        return 1 + (math.ceil(max(lat) / period_s) if lat else 1)

    def act(self, robot_obs: Mapping[str, Any], period_s: float) -> dict[str, float]:
        """The next action for this observation, as a robot action dict (clamped, finite)."""
        obs = self.observations.push(robot_obs)
        step = self._step
        self._step += 1
        self.stats.steps += 1
        if self.ensembler is not None:
            chunk = self._infer_now(obs)
            action = self.ensembler.update(chunk)[0]
        elif self.mode == "sync" or self._worker is None:
            if self.queue.empty:
                self.queue.push(self._infer_now(obs))
            action = self.queue.pop()[0]
        else:
            action = self._async_action(obs, step, period_s)
        safe = self.safety.apply(action) if self.safety is not None else np.asarray(action, np.float64)
        if not np.all(np.isfinite(safe)):
            raise UnsafeActionError("policy produced a non-finite action")
        self.last_safe = safe
        return {n: float(v) for n, v in zip(self.action_names, safe, strict=True)}

    def _infer_now(self, obs: dict) -> np.ndarray:
        t0 = time.perf_counter()
        chunk = self.policy.predict(obs)
        self.stats.inference_s.append(time.perf_counter() - t0)
        return chunk

    def _async_action(self, obs: dict, step: int, period_s: float) -> np.ndarray:
        worker = self._worker
        result = worker.take()
        if result is None and self.queue.empty:
            if not worker.busy:
                worker.submit(obs, step)
            result = worker.take(wait=True)  # only at the start or after a long stall
        if result is not None:
            chunk, obs_step, dt = result
            self.stats.inference_s.append(dt)
            age = step - obs_step
            self.queue.reset()
            self.queue.push(chunk)
            for _ in range(min(age, len(self.queue) - 1)):
                self.queue.pop()
                self.stats.dropped_actions += 1
        if len(self.queue) <= self._latency_steps(period_s) and not worker.busy:
            worker.submit(obs, step)
        return self.queue.pop()[0]

    def close(self) -> None:
        if self._worker is not None:
            self._worker.close()


def run_episode(
    robot: Robot,
    controller: PolicyController,
    *,
    fps: int,
    max_steps: int | None = None,
    duration_s: float | None = None,
    realtime: bool = True,
    on_step: Callable[[dict, dict], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> LoopStats:
    """Drive `robot` with `controller` until max_steps / duration / should_stop(); returns timing stats.

    `realtime` paces the loop at `fps` with `jrobot.pacer.Pacer` (a real arm; loop periods and
    overruns are measured); the simulator advances one period per action and can run as fast as the
    CPU allows (`realtime=False`, no periods recorded). A stop signal deferred by
    `jrobot.hw.safety.graceful_stop` is raised between steps.
    """
    pacer = Pacer(fps, realtime=realtime)
    period = pacer.period
    stats = controller.stats
    t_prev = pacer.t_start
    step = 0
    try:
        while True:
            if max_steps is not None and step >= max_steps:
                break
            if duration_s is not None and pacer.wall_s >= duration_s:
                break
            if should_stop is not None and should_stop():
                break
            obs = robot.get_observation()
            try:
                action = controller.act(obs, period)
            except UnsafeActionError:
                if controller.last_safe is not None:
                    hold = {
                        n: float(v)
                        for n, v in zip(controller.action_names, controller.last_safe, strict=True)
                    }
                    robot.send_action(hold)
                log.error("unsafe action: holding the last safe position and stopping")
                raise
            sent = robot.send_action(action)
            if on_step is not None:
                on_step(obs, sent)
            step += 1
            pacer.tick()
            if realtime:  # an unpaced loop has no control period, only compute time
                now = time.perf_counter()
                stats.period_s.append(now - t_prev)
                t_prev = now
    finally:
        stats.overruns += pacer.overruns
    return stats

"""The real-time control loop: observation -> (background) inference -> safe action -> robot.

Chunks become per-step actions as LeRobot's policies make them:
- a schedule of actions by timestep (`ActionSchedule`): execute the first `n_action_steps` of a chunk,
  asking for the next one in time; LeRobot's `select_action` queue is its synchronous case;
- temporal ensembling (ACT with `temporal_ensemble_coeff`): query every step, average overlapping chunks.

Inference runs on a worker thread so the control thread never stalls on it (`mode="async"`): when the
actions left fall to the threshold, the next chunk is requested from the newest observation, tagged
with its timestep; when it arrives, the actions for timesteps already executed are dropped and the rest
merged with those still scheduled (`merge`: latest, average, weighted, ensemble). `mode="sync"`
computes a chunk when none is left and waits for it (LeRobot's select_action; deterministic, used by
evaluation in the simulator, whose clock only advances when an action is sent).

The policy is a local bundle or a remote one (`jrobot.serving.client`): the same loop, safety path
and reports. When no fresh action is there for a tick (a late or vanished server), the arm holds its
last safe position, never an extrapolation; after `timeout_s` without one the loop stops
(`PolicyTimeoutError`). An unpaced simulator waits for the policy instead (its clock stands still).
A policy that cannot come back (`PolicyGone`: a lost connection with reconnecting off) ends a wait with
the arm not yet moving at once; a moving arm still holds for the timeout before the loop stops.

A language-conditioned policy follows `task`, the instruction the controller's observation builder
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

from jrobot.pacer import Pacer
from jrobot.policies.ensemble import ActionSchedule, TemporalEnsembler
from jrobot.robot import Robot
from jrobot.runtime.errors import PolicyGone, PolicyTimeoutError, PolicyUnavailable
from jrobot.runtime.observations import TIMESTEP_KEY

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
    inference_s: list[float] = dataclasses.field(
        default_factory=list
    )  # request -> chunk (remote: round trip)
    period_s: list[float] = dataclasses.field(default_factory=list)
    overruns: int = 0
    dropped_actions: int = 0
    steps: int = 0
    starved_ticks: int = 0  # ticks with no fresh action (the arm held its last safe position)
    hold_gaps_s: list[float] = dataclasses.field(default_factory=list)  # each such stretch, in seconds

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
            "ticks_without_fresh_action": self.starved_ticks,
            "hold_gaps": len(self.hold_gaps_s),
            "longest_hold_ms": float(max(self.hold_gaps_s) * 1000) if self.hold_gaps_s else 0.0,
        }


class _InferenceWorker:
    """One background thread computing chunks; at most one request in flight.

    A policy that is unavailable for now (`PolicyUnavailable`: a remote server gone or reconnecting)
    yields no result and no error: `unavailable` says why, and the next `submit` tries again.
    """

    def __init__(self, policy: Any):
        self.policy = policy
        self._lock = threading.Lock()
        self._cv = threading.Condition(self._lock)
        self._request: tuple[dict, int] | None = None
        self._result: tuple[np.ndarray, int, float] | None = None
        self._error: BaseException | None = None
        self.unavailable: str | None = None
        self.gone = False  # the last failure cannot pass (`PolicyGone`)
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
                self._cv.wait_for(
                    lambda: self._result is not None or self._error is not None or not self._busy_locked(),
                    timeout,
                )
            if self._error is not None:
                err, self._error = self._error, None
                raise err
            res, self._result = self._result, None
            return res

    def _busy_locked(self) -> bool:
        return self._busy or self._request is not None

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
                chunk = self.policy.predict({**obs, TIMESTEP_KEY: step})
                dt = time.perf_counter() - t0
                with self._cv:
                    self._result = (chunk, step, dt)
                    self.unavailable = None
                    self.gone = False
                    self._busy = False
                    self._cv.notify_all()
            except PolicyUnavailable as e:
                with self._cv:
                    self.unavailable = str(e)
                    self.gone = isinstance(e, PolicyGone)
                    self._busy = False
                    self._cv.notify_all()
            except BaseException as e:  # surfaced on the control thread
                with self._cv:
                    self._error = e
                    self._busy = False
                    self._cv.notify_all()

    def close(self, timeout: float = 1.0) -> None:
        with self._cv:
            self._stop = True
            self._cv.notify_all()
        self._thread.join(timeout=timeout)


class PolicyController:
    """Per-step actions from a policy for one robot; see the module docstring for the two modes.

    `policy` is a local `BundlePolicy`, or a remote one (`jrobot.serving.client`): anything with
    `predict`, `action_names`, `action_stats`, `n_action_steps`, `chunk_size`,
    `temporal_ensemble_coeff` and `observation_builder(task)`.
    """

    def __init__(
        self,
        policy: Any,
        *,
        mode: str = "async",
        n_action_steps: int | None = None,
        temporal_ensemble_coeff: float | None = None,
        safety: SafetyLimits | None = None,
        task: str | None = None,
        merge: str | None = None,
        chunk_threshold: float | None = None,
        timeout_s: float | None = None,
        first_chunk_timeout_s: float | None = 60.0,
    ):
        """`n_action_steps` / `temporal_ensemble_coeff` override the bundle's settings (e.g. to
        ensemble a policy trained with an action queue; ensembling queries the policy every step).
        `task`: the instruction of a language-conditioned policy (ignored by others).

        `merge` (asynchronous mode): how a chunk that arrives while actions are still scheduled is
        merged with them (`ActionSchedule`: latest, average, weighted, ensemble); None keeps LeRobot's
        behaviour (ensembling every step when the policy has a temporal_ensemble_coeff, else the
        newest chunk). `chunk_threshold`: ask for the next chunk when the actions left, as a fraction
        of n_action_steps, fall to it (LeRobot's chunk_size_threshold); None asks as late as the
        measured inference latency allows. `timeout_s`: after this long without a fresh action (a
        remote policy gone or slow) the controller gives up (`PolicyTimeoutError`); None waits on.
        """
        if mode not in ("async", "sync"):
            raise ValueError(f"mode must be 'async' or 'sync', got {mode!r}")
        if chunk_threshold is not None and not 0.0 <= chunk_threshold <= 1.0:
            raise ValueError(f"chunk_threshold must be in [0, 1], got {chunk_threshold}")
        self.policy = policy
        self.mode = mode
        names = policy.action_names
        self.action_names = list(names)
        if safety is None and policy.action_stats is not None:
            safety = SafetyLimits.from_stats(names, policy.action_stats)
        self.safety = safety
        coeff = policy.temporal_ensemble_coeff if temporal_ensemble_coeff is None else temporal_ensemble_coeff
        self.ensembler = None
        if merge is None:
            merge = "latest"
            if coeff is not None and policy.chunk_size:
                self.ensembler = TemporalEnsembler(coeff, policy.chunk_size)
            elif coeff is not None:  # a chunk size known only from the replies (an openpi server)
                merge = "ensemble"
        self.schedule = ActionSchedule(merge, ensemble_coeff=0.01 if coeff is None else coeff)
        n = n_action_steps or policy.n_action_steps
        self.n_action_steps = int(n) if n else None  # None: all of each chunk
        self.chunk_threshold = chunk_threshold
        self.timeout_s = timeout_s
        self.first_chunk_timeout_s = first_chunk_timeout_s
        self.hold_when_starved = True  # False: wait for the policy instead (an unpaced simulator)
        self.observations = policy.observation_builder(task)
        self.stats = LoopStats()
        # sees each chunk as scheduled (rows, the timestep of its observation): the live view shows it
        self.on_chunk: Callable[[np.ndarray, int], None] | None = None
        self._worker = _InferenceWorker(policy) if mode == "async" else None
        self._step = 0
        self._chunk_len = 0
        self._starved_since: float | None = None
        self._last_request = -1  # the newest timestep a chunk was asked for (each is asked once)
        self.last_safe: np.ndarray | None = None

    @property
    def task(self) -> str | None:
        """The instruction every observation carries to the policy (None: none)."""
        return self.observations.task

    @task.setter
    def task(self, task: str | None) -> None:
        self.observations.task = task

    def reset(self) -> None:
        self.schedule.reset()
        if self.ensembler is not None:
            self.ensembler.reset()
        self.observations.reset()
        self._step = 0
        self._chunk_len = 0
        self._starved_since = None
        self._last_request = -1
        if self._worker is not None:
            self._worker.take(wait=self._worker.busy, timeout=30)

    def _latency_steps(self, period_s: float) -> int:
        lat = self.stats.inference_s[-20:]
        return 1 + (math.ceil(max(lat) / period_s) if lat else 1)

    def act(self, robot_obs: Mapping[str, Any], period_s: float) -> dict[str, float]:
        """The next action for this observation, as a robot action dict (clamped, finite).

        With no fresh action for this step (asynchronous mode, a late remote policy), the arm holds
        its last safe position until `timeout_s` runs out.
        """
        obs = self.observations.push(robot_obs)
        step = self._step
        self._step += 1
        if self.ensembler is not None:
            action = self.ensembler.update(self._infer_now(obs, step))[0]
        elif self.mode == "sync" or self._worker is None:
            if self.schedule.ahead(step) == 0:
                self._absorb((self._infer_now(obs, step), step, None), step)
            action = self.schedule.pop(step)
        else:
            action = self._async_action(obs, step, period_s)
        if action is None:
            return self._hold(step)
        if self._starved_since is not None:
            gap = time.monotonic() - self._starved_since
            self.stats.hold_gaps_s.append(gap)
            log.info("fresh actions again after holding for %.0f ms", gap * 1000)
            self._starved_since = None
        safe = self.safety.apply(action) if self.safety is not None else np.asarray(action, np.float64)
        if not np.all(np.isfinite(safe)):
            raise UnsafeActionError("policy produced a non-finite action")
        if self.last_safe is None:
            log.info("step %d: first action from the policy; the arm starts moving", step)
        self.last_safe = safe
        self.stats.steps += 1
        return {n: float(v) for n, v in zip(self.action_names, safe, strict=True)}

    def _hold(self, step: int) -> dict[str, float]:
        """No fresh action: the last safe position again (never an extrapolation); stop after timeout_s."""
        now = time.monotonic()
        why = (self._worker.unavailable if self._worker is not None else None) or "no chunk back yet"
        if self._starved_since is None:
            self._starved_since = now
            log.warning("step %d: no fresh action (%s); holding the last safe position", step, why)
        if self.timeout_s is not None and now - self._starved_since > self.timeout_s:
            self.stats.hold_gaps_s.append(now - self._starved_since)
            raise PolicyTimeoutError(f"no fresh action for {self.timeout_s:g} s ({why}); stopping")
        assert self.last_safe is not None  # the first chunk is always waited for
        self.stats.starved_ticks += 1
        self.stats.steps += 1
        return {n: float(v) for n, v in zip(self.action_names, self.last_safe, strict=True)}

    def _infer_now(self, obs: dict, step: int) -> np.ndarray:
        """A chunk for this observation, waited for; an unavailable policy is retried until timeout_s."""
        deadline = None if self.timeout_s is None else time.monotonic() + self.timeout_s
        while True:
            t0 = time.perf_counter()
            try:
                chunk = self.policy.predict({**obs, TIMESTEP_KEY: step})
            except PolicyUnavailable as e:
                if isinstance(e, PolicyGone) or deadline is None or time.monotonic() >= deadline:
                    raise PolicyTimeoutError(f"the policy did not answer ({e}); stopping") from e
                time.sleep(min(0.1, max(0.0, deadline - time.monotonic())))
                continue
            self.stats.inference_s.append(time.perf_counter() - t0)
            return chunk

    def _absorb(self, result: tuple[np.ndarray, int, float | None] | None, now: int) -> None:
        """Schedule a chunk computed from the observation of timestep `obs_step`."""
        if result is None:
            return
        chunk, obs_step, dt = result
        if dt is not None:
            self.stats.inference_s.append(dt)
        rows = np.asarray(chunk)[0]
        if self.n_action_steps is not None:
            rows = rows[: self.n_action_steps]
        self._chunk_len = len(rows)
        self.stats.dropped_actions += self.schedule.add(rows, obs_step, now)
        if self.on_chunk is not None:
            self.on_chunk(rows, obs_step)

    def _wants_chunk(self, step: int, period_s: float) -> bool:
        ahead = self.schedule.ahead(step)
        if self.chunk_threshold is not None:
            return ahead <= self.chunk_threshold * (self.n_action_steps or self._chunk_len or 1)
        return ahead <= self._latency_steps(period_s)

    def _wait_for_action(self, obs: dict, step: int, timeout_s: float | None) -> None:
        """Block until an action for `step` is scheduled (asking for one as needed), or time out."""
        worker = self._worker
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while self.schedule.ahead(step) == 0:
            self._request(obs, step)
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                why = worker.unavailable or "no answer"
                raise PolicyTimeoutError(
                    f"no action from the policy within {timeout_s:g} s ({why}); stopping"
                )
            self._absorb(worker.take(wait=True, timeout=0.1 if left is None else min(0.1, left)), step)
            if worker.gone and not worker.busy and self.schedule.ahead(step) == 0:
                raise PolicyTimeoutError(f"the policy is gone ({worker.unavailable}); stopping")
            if worker.unavailable is not None and not worker.busy:
                time.sleep(0.05)

    def _async_action(self, obs: dict, step: int, period_s: float) -> np.ndarray | None:
        worker = self._worker
        self._absorb(worker.take(), step)
        if self.last_safe is None or not self.hold_when_starved:
            # the first chunk (the arm is still), or an unpaced simulator whose clock waits for the policy
            first = self.last_safe is None
            self._wait_for_action(obs, step, self.first_chunk_timeout_s if first else self.timeout_s)
        if self._wants_chunk(step, period_s):
            self._request(obs, step)
        return self.schedule.pop(step)

    def _request(self, obs: dict, step: int) -> None:
        """Ask for a chunk from this observation, unless one is in flight or was asked for it already;
        after a transient failure the same timestep is asked again (the server never answered it)."""
        worker = self._worker
        if worker.busy or (step <= self._last_request and worker.unavailable is None):
            return
        self._last_request = step
        worker.submit(obs, step)

    def end_hold(self) -> None:
        """Count a hold still going when the episode ends (its stretch so far)."""
        if self._starved_since is not None:
            self.stats.hold_gaps_s.append(time.monotonic() - self._starved_since)
            self._starved_since = None

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
    controller.hold_when_starved = realtime
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
                if step > 1:  # the first tick waited for the first chunk: no control period yet
                    stats.period_s.append(now - t_prev)
                t_prev = now
    finally:
        stats.overruns += pacer.overruns
        controller.end_hold()
    return stats

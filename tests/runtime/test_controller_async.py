"""The asynchronous controller with a policy slower than a control period: each timestep is asked for
once, late chunks line up with "now", and a policy that stops answering makes the arm hold, then stop."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from jrobot.runtime.errors import PolicyGone, PolicyTimeoutError, PolicyUnavailable
from jrobot.runtime.loop import PolicyController, run_episode
from jrobot.runtime.observations import TIMESTEP_KEY

NAMES = ["a", "b"]


class _Builder:
    task = None

    def reset(self):
        pass

    def push(self, robot_obs):
        return {"tick": robot_obs["tick"]}


class SlowPolicy:
    """Answers after `latency_s` with a chunk whose row i is (timestep + i): what a sent action was for
    is readable from its value. `fail_after` requests: `fail_with` (PolicyUnavailable) from then on."""

    action_names = NAMES
    action_stats = None
    temporal_ensemble_coeff = None

    def __init__(
        self, latency_s: float, chunk: int, fail_after: int | None = None, fail_with=PolicyUnavailable
    ):
        self.latency_s, self.n_action_steps, self.chunk_size = latency_s, chunk, chunk
        self.fail_after, self.fail_with = fail_after, fail_with
        self.asked: list[int] = []
        self.lock = threading.Lock()

    def observation_builder(self, task=None):
        return _Builder()

    def predict(self, obs):
        with self.lock:
            if self.fail_after is not None and len(self.asked) >= self.fail_after:
                raise self.fail_with("server gone")
            self.asked.append(obs[TIMESTEP_KEY])
        time.sleep(self.latency_s)
        rows = obs[TIMESTEP_KEY] + np.arange(self.chunk_size, dtype=np.float64)
        return np.repeat(rows[None, :, None], len(NAMES), axis=2)


class TickRobot:
    def __init__(self):
        self.tick = 0
        self.sent: list[float] = []

    def get_observation(self):
        return {"tick": self.tick}

    def send_action(self, action):
        self.sent.append(action["a"])
        self.tick += 1
        return action


@pytest.mark.parametrize("realtime", [True, False])
def test_a_slow_policy_is_asked_once_per_timestep_and_its_chunks_line_up(realtime):
    # a round trip of ~8 periods against chunks of 10: LeRobot-style repeats would be refused by a server
    policy = SlowPolicy(latency_s=0.27, chunk=10)
    robot = TickRobot()
    controller = PolicyController(policy, mode="async")
    try:
        controller.reset()
        run_episode(robot, controller, fps=30, max_steps=60, realtime=realtime)
    finally:
        controller.close()
    assert policy.asked == sorted(set(policy.asked))  # strictly increasing: never the same timestep twice
    sent = np.asarray(robot.sent)
    fresh = ~np.r_[False, sent[1:] == sent[:-1]]  # a repeated value is a hold
    ticks = np.arange(len(sent))
    np.testing.assert_array_equal(sent[fresh], ticks[fresh])  # every fresh action is the one for its tick
    if not realtime:  # an unpaced simulator waits for the policy: never a hold
        assert fresh.all() and controller.stats.starved_ticks == 0


def test_a_policy_that_stops_answering_makes_the_arm_hold_then_stop():
    policy = SlowPolicy(latency_s=0.01, chunk=10, fail_after=2)
    robot = TickRobot()
    controller = PolicyController(policy, mode="async", timeout_s=0.5)
    t0 = time.monotonic()
    try:
        controller.reset()
        with pytest.raises(PolicyTimeoutError, match=r"no fresh action for 0\.5 s"):
            run_episode(robot, controller, fps=30, max_steps=1000, realtime=True)
    finally:
        controller.close()
    assert time.monotonic() - t0 < 0.5 + 20 / 30 + 1.0  # two chunks' worth of ticks, then the timeout
    sent = np.asarray(robot.sent)
    last_fresh = int(np.flatnonzero(np.r_[True, sent[1:] != sent[:-1]])[-1])
    assert (sent[last_fresh:] == sent[last_fresh]).all()  # held the last safe position, unchanged
    held = len(sent) - last_fresh - 1
    assert held == controller.stats.starved_ticks >= 10 and controller.stats.hold_gaps_s


@pytest.mark.parametrize("mode", ["async", "sync"])
@pytest.mark.parametrize("error", [PolicyUnavailable, PolicyGone])
def test_before_the_first_chunk_a_gone_policy_stops_at_once_an_unavailable_one_is_waited_for(mode, error):
    policy = SlowPolicy(latency_s=0.01, chunk=10, fail_after=0, fail_with=error)
    robot = TickRobot()
    controller = PolicyController(policy, mode=mode, timeout_s=1.0, first_chunk_timeout_s=1.0)
    t0 = time.monotonic()
    try:
        controller.reset()
        with pytest.raises(PolicyTimeoutError, match=r"gone|within 1 s|did not answer"):
            run_episode(robot, controller, fps=30, max_steps=100, realtime=True)
    finally:
        controller.close()
    waited = time.monotonic() - t0
    assert robot.sent == []  # the arm was never sent anything
    assert waited < 0.5 if error is PolicyGone else waited >= 1.0, waited

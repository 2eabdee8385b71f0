"""Torque is switched off however a program using the follower ends (checked on the virtual bus)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from hw_helpers import eventually, expected_calibration, write_lerobot_calibration

from jrobot.hw import safety

SCRIPT = textwrap.dedent(
    """
    import sys, time
    from jrobot.hw.so101 import SO101Follower, SO101FollowerConfig
    mode, port, calib_dir = sys.argv[1:4]
    follower = SO101Follower(SO101FollowerConfig(port=port, id="f", calibration_dir=calib_dir))
    follower.connect()
    follower.send_action({"shoulder_pan.pos": 5.0})
    print("ready", flush=True)
    sys.stdin.readline()  # the test checks that torque is on, then lets us go on
    if mode == "exception":
        raise RuntimeError("boom: an unhandled error in user code")
    if mode == "exit":
        sys.exit(0)  # never calls disconnect()
    while True:
        follower.send_action({"shoulder_pan.pos": 5.0})  # a control loop, interrupted mid-packet
        follower.get_observation()
    """
)


def run_follower(arm, tmp_path, mode: str) -> subprocess.Popen:
    write_lerobot_calibration(tmp_path / "cal" / "f.json", expected_calibration())
    proc = subprocess.Popen(
        [sys.executable, "-c", SCRIPT, mode, arm.port, str(tmp_path / "cal")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    proc.stdin.write("\n")  # ENTER: use the calibration file
    proc.stdin.flush()
    lines = [proc.stdout.readline(), proc.stdout.readline()]  # the ENTER prompt, then "ready"
    if lines[1].strip() != "ready":
        proc.kill()
        raise AssertionError(f"{lines}\n{proc.communicate()[1]}")
    assert set(arm.registers("Torque_Enable").values()) == {1}
    proc.stdin.write("go\n")
    proc.stdin.flush()
    return proc


@pytest.mark.parametrize(
    ("sig", "code"), [(signal.SIGINT, None), (signal.SIGTERM, 128 + 15), (signal.SIGHUP, 128 + 1)]
)
def test_signal_turns_torque_off(arm, tmp_path, sig, code):
    proc = run_follower(arm, tmp_path, "loop")
    proc.send_signal(sig)
    rc = proc.wait(timeout=20)
    if code is not None:
        assert rc == code, proc.stderr.read()
    assert eventually(lambda: set(arm.registers("Torque_Enable").values()) == {0})


@pytest.mark.parametrize("mode", ["exception", "exit"])
def test_exit_without_disconnect_turns_torque_off(arm, tmp_path, mode):
    proc = run_follower(arm, tmp_path, mode)
    rc = proc.wait(timeout=20)
    assert rc == (1 if mode == "exception" else 0)
    if mode == "exception":
        assert "boom" in proc.stderr.read()
    assert set(arm.registers("Torque_Enable").values()) == {0}


class FakeDevice:
    """A device whose disconnect records the signal mask (to see that signals are held back)."""

    def __init__(self) -> None:
        self.is_connected = True
        self.blocked: set[int] = set()

    def disconnect(self) -> None:
        self.blocked = set(signal.pthread_sigmask(signal.SIG_BLOCK, []))
        self.is_connected = False


def test_torque_safety_disconnects_on_error_with_signals_deferred():
    dev = FakeDevice()
    with pytest.raises(ZeroDivisionError), safety.torque_safety(dev):
        1 / 0  # noqa: B018
    assert not dev.is_connected
    assert {signal.SIGINT, signal.SIGTERM} <= dev.blocked
    assert signal.SIGINT not in signal.pthread_sigmask(signal.SIG_BLOCK, [])


def test_graceful_stop_raises_at_the_next_check_not_where_the_signal_lands():
    steps_after_signal = 0
    with pytest.raises(KeyboardInterrupt), safety.graceful_stop():
        os.kill(os.getpid(), signal.SIGINT)
        for _ in range(3):  # the handler only records the stop: this code runs on undisturbed
            time.sleep(0.01)
            steps_after_signal += 1
        assert safety.stop_requested() == signal.SIGINT
        safety.check_stop()
    assert steps_after_signal == 3
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handlers restored


def test_graceful_stop_interrupts_a_loop_stuck_past_the_grace_period():
    t0 = time.monotonic()
    with pytest.raises(KeyboardInterrupt), safety.graceful_stop(grace_s=0.2):
        os.kill(os.getpid(), signal.SIGINT)
        while time.monotonic() - t0 < 10:  # never reaches a check_stop()
            time.sleep(0.01)
    assert 0.15 < time.monotonic() - t0 < 5


DEADLINE_SCRIPT = textwrap.dedent(
    """
    import signal, sys, time
    from jrobot.hw import safety

    class Bus:
        is_connected = True
        def disable_torque(self, motors=None, num_retry=None, *, raise_on_failure=True):
            print("torque off", flush=True)

    bus = Bus()
    safety.register_bus(bus)
    safety.exit_deadline(1.5)
    with safety.graceful_stop(grace_s=0.2):
        print("ready", flush=True)
        while True:  # a shutdown that never ends: swallows every interrupt
            try:
                time.sleep(0.05)
            except KeyboardInterrupt:
                pass
    """
)


def test_exit_deadline_switches_torque_off_and_ends_a_stuck_shutdown():
    proc = subprocess.Popen(
        [sys.executable, "-c", DEADLINE_SCRIPT], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline().strip() == "ready"
    t0 = time.monotonic()
    proc.send_signal(signal.SIGINT)
    rc = proc.wait(timeout=30)
    assert rc == 130
    assert time.monotonic() - t0 < 1.5 + 3.0  # the deadline, plus process start-up slack
    assert "torque off" in proc.stdout.read()
    assert "shutdown took longer than 1.5 s" in proc.stderr.read()

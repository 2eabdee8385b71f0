"""Torque goes off however the program ends: disconnect, Ctrl-C, SIGTERM/SIGHUP, or a crash.

Three layers, from the most to the least orderly:
1. `torque_safety(*devices)`: a context manager for control loops (teleoperate, record, run). On any
   exit from the block, normal or not, it disconnects every device (which switches torque off), with
   SIGINT/SIGTERM/SIGHUP held back until that is done so a second Ctrl-C cannot interrupt it.
2. `install_termination_handlers()`: SIGTERM and SIGHUP (terminal closed, `kill`) normally end Python
   without running `finally` blocks; this makes them raise `SystemExit` in the main thread instead,
   so they unwind like Ctrl-C. Only signals still at their default action are taken over.
3. An `atexit` hook: every bus registered with `register_bus` (the SO-101 classes do it on connect)
   gets torque off if the interpreter exits while it is still connected, e.g. after an unhandled
   exception in user code that never called `disconnect()`.

Control loops (record, teleoperate, run) add a fourth: `graceful_stop()`. Inside it a signal does
not raise where it lands (it used to, and under CPU load it landed inside the camera encoder's
queue hand-off often enough to lose a wake-up and leave Ctrl-C waiting forever on the encoder
thread); it is recorded, and the loop raises it at its next step (`check_stop()`, called by
`jrobot.pacer.Pacer`). A second signal, or a loop that has not reached a step within `grace_s`,
raises it where it lands after all. Whatever happens then, `deadline_s` after the signal the process
switches torque off on every registered bus and exits (saved episodes are committed atomically, so
they survive this), so shutdown is bounded however loaded the machine is.

Nothing can help after SIGKILL or a power cut; the servos then keep their last goal.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import signal
import sys
import threading
import time
import weakref
from collections.abc import Iterator
from typing import Any, Protocol

logger = logging.getLogger(__name__)

_TERMINATION_SIGNALS = tuple(
    s for s in (getattr(signal, "SIGTERM", None), getattr(signal, "SIGHUP", None)) if s
)
_DEFERRED_SIGNALS = (signal.SIGINT, *_TERMINATION_SIGNALS)


class _TorqueBus(Protocol):
    @property
    def is_connected(self) -> bool: ...

    def disable_torque(
        self, motors: Any = None, num_retry: int | None = None, *, raise_on_failure: bool = True
    ) -> None: ...


class _Disconnectable(Protocol):
    @property
    def is_connected(self) -> bool: ...

    def disconnect(self) -> None: ...


_buses: weakref.WeakSet[Any] = weakref.WeakSet()
_registry_lock = threading.Lock()


def register_bus(bus: _TorqueBus) -> None:
    """Have `bus`'s torque switched off at interpreter exit if it is still connected then."""
    with _registry_lock:
        _buses.add(bus)


def unregister_bus(bus: _TorqueBus) -> None:
    with _registry_lock:
        _buses.discard(bus)


def torque_off_all() -> int:
    """Switch torque off on every registered, still-connected bus; returns how many were handled."""
    with _registry_lock:
        buses = list(_buses)
    n = 0
    for bus in buses:
        if not bus.is_connected:
            continue
        try:
            bus.disable_torque(num_retry=5, raise_on_failure=False)
            n += 1
        except Exception as e:  # keep going: the next bus must still be switched off
            logger.error("torque off failed on %r: %s", bus, e)
    return n


atexit.register(torque_off_all)


def _raise_system_exit(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def install_termination_handlers() -> bool:
    """Make SIGTERM/SIGHUP raise SystemExit in the main thread; returns whether anything changed.

    Handlers the application installed itself are left alone, and nothing happens outside the main
    thread (where Python does not allow installing handlers).
    """
    if threading.current_thread() is not threading.main_thread():
        return False
    changed = False
    for sig in _TERMINATION_SIGNALS:
        if signal.getsignal(sig) is signal.SIG_DFL:
            signal.signal(sig, _raise_system_exit)
            changed = True
    return changed


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """Hold SIGINT/SIGTERM/SIGHUP until the block ends (they are delivered afterwards)."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "pthread_sigmask"):
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, _DEFERRED_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def shutdown(*devices: _Disconnectable) -> None:
    """Disconnect every connected device, logging (not raising) failures so each one gets its turn."""
    with signals_deferred():
        for dev in devices:
            try:
                if dev.is_connected:
                    dev.disconnect()
            except Exception as e:
                logger.error("disconnecting %s failed: %s", dev, e)


@contextlib.contextmanager
def torque_safety(*devices: _Disconnectable) -> Iterator[None]:
    """Run a control loop; whatever ends it, disconnect `devices` (torque off) before leaving."""
    install_termination_handlers()
    try:
        yield
    finally:
        shutdown(*devices)


# -- stop requests: signals turned into a stop at the control loop's next step -------------------

GRACE_S = 1.0  # a loop step longer than this (a stuck driver call) is interrupted where it is
DEADLINE_S = 6.0  # command-line tools: signal -> process gone, whatever the load (see exit_deadline)


class _StopState:
    """A pending stop: which signal, and whether a loop has raised it yet."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self.raised = False
        self.lock = threading.Lock()


_stop = _StopState()
_grace_s = GRACE_S
_exit_deadline_s: float | None = None


def exit_code_for(signum: int) -> int:
    """The shell's exit status for a program ended by `signum` (130 for Ctrl-C)."""
    return 128 + signum


def _exception_for(signum: int) -> BaseException:
    if signum == signal.SIGINT:
        return KeyboardInterrupt()
    return SystemExit(exit_code_for(signum))


def stop_requested() -> int | None:
    """The signal that asked this process to stop (and was not handled yet), or None."""
    return _stop.signum


def check_stop() -> None:
    """Raise the pending stop here (KeyboardInterrupt for SIGINT, SystemExit(128+n) otherwise).

    Control loops call this once per step (`jrobot.pacer.Pacer.tick` does), at a point where no
    lock, queue or bus packet is half done, so the unwinding that follows (torque off, episode
    discarded, dataset closed) starts from a consistent state.
    """
    state = _stop
    if state.signum is not None and not state.raised:
        state.raised = True
        raise _exception_for(state.signum)


def exit_deadline(seconds: float | None = DEADLINE_S) -> None:
    """Declare this process a command-line tool: `seconds` after a stop signal it must be gone.

    Past the deadline a watchdog switches torque off on every registered bus (waiting at most 2 s
    for a bus another thread holds) and ends the process. Saved episodes are committed atomically,
    so they survive this; only the episode in progress (discarded on Ctrl-C anyway) is lost. Library
    callers (a notebook running `record()`) never get this: there a stop only unwinds. None disarms.
    """
    global _exit_deadline_s
    _exit_deadline_s = seconds


def _hard_exit(signum: int, deadline_s: float) -> None:
    sys.stderr.write(
        f"\nshutdown took longer than {deadline_s:g} s after the signal: switching torque off "
        "and exiting now (saved episodes are kept)\n"
    )
    worker = threading.Thread(target=torque_off_all, name="jrobot-torque-off", daemon=True)
    worker.start()
    worker.join(timeout=2.0)
    with contextlib.suppress(Exception):
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(exit_code_for(signum))


def _watchdog(state: _StopState, signum: int, main_ident: int, grace_s: float) -> None:
    t0 = time.monotonic()
    time.sleep(grace_s)
    if not state.raised:  # the loop is stuck inside a call: interrupt it where it is
        with contextlib.suppress(Exception):
            signal.pthread_kill(main_ident, signum)
    deadline = _exit_deadline_s
    if deadline is None:
        return
    time.sleep(max(0.0, deadline - (time.monotonic() - t0)))
    if _exit_deadline_s is not None:
        _hard_exit(signum, deadline)


def _on_signal(signum: int, frame: object) -> None:
    state = _stop
    with state.lock:
        first = state.signum is None
        if first:
            state.signum = signum
    if first:
        threading.Thread(
            target=_watchdog,
            args=(state, signum, threading.main_thread().ident, _grace_s),
            name="jrobot-stop-watchdog",
            daemon=True,
        ).start()
        return
    if not state.raised:  # a second signal (or the watchdog): the user insists, unwind now
        state.raised = True
        raise _exception_for(state.signum or signum)


@contextlib.contextmanager
def graceful_stop(grace_s: float = GRACE_S) -> Iterator[None]:
    """Within the block, SIGINT/SIGTERM/SIGHUP stop the control loop at its next `check_stop()`.

    See the module docstring. A stop that arrived but was not raised by the time the block ends is
    raised when it ends, so the program still stops. Outside the main thread this does nothing.
    """
    global _stop, _grace_s
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    if _stop.raised:  # an earlier stop in this process was handled (library use): start afresh
        _stop = _StopState()
    _grace_s = grace_s
    old = {sig: signal.getsignal(sig) for sig in _DEFERRED_SIGNALS}
    for sig in _DEFERRED_SIGNALS:
        signal.signal(sig, _on_signal)
    try:
        yield
        check_stop()
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)


def exit_after_stop(code: int) -> None:
    """After a signal-requested stop has unwound: flush and end the process without teardown.

    By then torque is off and the dataset closed; what is left is the interpreter's teardown of the
    GL, codec and arrow libraries, which took seconds on a loaded machine (about 3 s of a 3.4 s
    shutdown with 12 busy processes on 2 cores) and has nothing to save. Does nothing when no
    signal asked for the stop: a normal exit keeps the full teardown.
    """
    if _stop.signum is None:
        return
    torque_off_all()
    logging.shutdown()
    with contextlib.suppress(Exception):
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(code)

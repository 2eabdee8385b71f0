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

Nothing can help after SIGKILL or a power cut; the servos then keep their last goal.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import signal
import threading
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

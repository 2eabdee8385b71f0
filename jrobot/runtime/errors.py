"""Errors of the control loop's policy side, shared by local and remote policies (no jax here)."""

from __future__ import annotations


class PolicyUnavailable(ConnectionError):
    """A policy cannot answer now, but may later: a remote server is gone, slow or being reconnected.

    The controller holds the arm's last safe position while it persists, and gives up after its timeout
    (`PolicyTimeoutError`). Errors that retrying cannot fix (a refused request) are other exceptions.
    """


class PolicyGone(PolicyUnavailable):
    """A policy that cannot come back: its connection was lost and reconnecting is off.

    A running arm still holds, then stops after the timeout, as for any unavailable policy; a wait
    with the arm not yet moving (the first chunk) gives up at once instead of waiting the timeout out.
    """


class PolicyTimeoutError(ConnectionError):
    """No fresh action for longer than the controller's timeout: the run stops (torque as on Ctrl-C)."""

"""Errors of the control loop's policy side, shared by local and remote policies (no jax here)."""

from __future__ import annotations


class PolicyUnavailable(ConnectionError):
    """A policy cannot answer now, but may later: a remote server is gone, slow or being reconnected.

    The controller holds the arm's last safe position while it persists, and gives up after its timeout
    (`PolicyTimeoutError`). Errors that retrying cannot fix (a refused request) are other exceptions.
    """


class PolicyTimeoutError(ConnectionError):
    """No fresh action for longer than the controller's timeout: the run stops (torque as on Ctrl-C)."""

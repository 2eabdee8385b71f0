"""Errors the hardware layer raises, each saying what went wrong and what to do about it.

They subclass the builtin exceptions LeRobot raises in the same situations (`ConnectionError` for
port and communication failures, `RuntimeError` for motor-side problems, `ValueError` for bad
calibration data), so code written against LeRobot's contract still catches them.
"""

from __future__ import annotations

from jrobot.errors import InputError


class PortError(ConnectionError, InputError):
    """The serial port could not be opened."""


class PortNotFoundError(PortError):
    """No device at the given port path."""


class PortPermissionError(PortError):
    """The port exists but this user may not open it."""


class PortBusyError(PortError):
    """Another process holds the port."""


class CommunicationError(ConnectionError):
    """A motor did not answer (or answered garbage) after every retry."""


class MotorError(RuntimeError):
    """A motor answered with fault bits set in its status (overload, overheat, voltage...)."""


class MotorNotFoundError(RuntimeError):
    """Expected motors are missing from the bus."""


class WrongMotorModelError(RuntimeError):
    """A motor answered with an unexpected model number."""


class FirmwareMismatchError(RuntimeError):
    """The motors on one bus run different firmware versions."""


class CalibrationError(ValueError, InputError):
    """A calibration file or calibration value is invalid or missing."""

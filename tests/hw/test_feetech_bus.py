"""`FeetechBus` against the virtual SO-101 through the real scservo_sdk and a pty."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
import time

import pytest

from jrobot.features import SO101_MOTORS
from jrobot.hw.calibration import MotorCalibration
from jrobot.hw.errors import (
    CalibrationError,
    CommunicationError,
    FirmwareMismatchError,
    MotorError,
    MotorNotFoundError,
    PortBusyError,
    PortNotFoundError,
    WrongMotorModelError,
)
from jrobot.hw.feetech import FeetechBus, Motor
from jrobot.robot import DeviceNotConnectedError
from jrobot.sim.sts3215 import Sts3215
from jrobot.sim.virtual_arm import VirtualArm

MOTORS = {name: Motor(i + 1) for i, name in enumerate(SO101_MOTORS)}


@pytest.fixture
def bus(arm):
    b = FeetechBus(arm.port, MOTORS)
    b.connect()
    yield b
    if b.is_connected:
        b.disconnect(disable_torque=False)


def test_handshake_and_raw_access(bus, arm):
    assert bus.read_firmware_versions() == dict.fromkeys(range(1, 7), "3.10")
    assert bus.read("Model_Number", "elbow_flex") == 777
    assert bus.sync_read("Present_Position", normalize=False) == {
        "shoulder_pan": 2100, "shoulder_lift": 1950, "elbow_flex": 2230,
        "wrist_flex": 1870, "wrist_roll": 2048, "gripper": 1400,
    }  # fmt: skip
    bus.write("Lock", "gripper", 0)
    bus.write("Homing_Offset", "gripper", -710, normalize=False)
    assert arm.register(6, "Homing_Offset") == -710
    assert bus.read("Homing_Offset", "gripper") == -710
    bus.sync_write("Goal_Position", {"shoulder_pan": 1500, "wrist_roll": 2500}, normalize=False)
    bus.read("ID", "gripper")  # a round trip: the broadcast before it has been processed
    assert arm.register(1, "Goal_Position") == 1500 and arm.register(5, "Goal_Position") == 2500


def test_waiting_for_a_reply_sleeps_instead_of_spinning(bus, arm):
    # The SDK polls readPort until a reply is complete; our port waits in select, so a slow reply
    # costs the waiting thread (and the GIL) next to nothing. 40 ms of delay before servo 4 answers.
    arm.faults.delay_s, arm.faults.delay_ids = 0.04, frozenset({4})
    wall0, cpu0 = time.perf_counter(), time.thread_time()
    got = bus.sync_read("Present_Position", normalize=False)
    wall, cpu = time.perf_counter() - wall0, time.thread_time() - cpu0
    arm.faults.clear()
    assert got["wrist_flex"] == 1870 and wall >= 0.04
    assert cpu < 0.25 * wall, (cpu, wall)  # the SDK's own loop with timeout=0 spends all of it


def test_normalized_access_uses_calibration(bus, arm):
    bus.calibration = {m: MotorCalibration(MOTORS[m].id, 0, 0, 1000, 3000) for m in MOTORS}
    pos = bus.sync_read("Present_Position")
    assert pos["elbow_flex"] == pytest.approx((2230 - 2000) * 360 / 4095)
    bus.write("Goal_Position", "elbow_flex", 87.9)
    assert arm.register(3, "Goal_Position") == 2999


def test_missing_calibration_is_a_clear_error(bus):
    with pytest.raises(CalibrationError, match=r"jrobot.calibrate"):
        bus.sync_read("Present_Position")


def test_non_finite_and_unencodable_writes_are_refused(bus):
    with pytest.raises(ValueError, match="non-finite"):
        bus.write("Goal_Position", "gripper", float("nan"), normalize=False)
    with pytest.raises(ValueError, match="cannot be encoded"):
        bus.write("Homing_Offset", "gripper", 3000, normalize=False)
    with pytest.raises(ValueError, match="negative"):
        bus.write("Min_Position_Limit", "gripper", -1, normalize=False)
    with pytest.raises(KeyError, match="unknown Feetech register 'Goal_Pos'"):
        bus.read("Goal_Pos", "gripper")
    with pytest.raises(KeyError, match="unknown motor 'hand'"):
        bus.read("ID", "hand")


def test_dropped_replies_are_retried(bus, arm):
    arm.faults.drop_next(2, ids=[3])
    assert bus.read("ID", "elbow_flex") == 3  # third try succeeds (num_retry=2)
    arm.faults.corrupt_next(2)
    assert bus.sync_read("ID", normalize=False)["gripper"] == 6


def test_persistent_failure_is_reported_clearly(bus, arm):
    arm.faults.drop_next(3, ids=[3])
    with pytest.raises(CommunicationError) as exc:
        bus.read("Present_Position", "elbow_flex", normalize=False)
    text = str(exc.value)
    assert "reading Present_Position from motor 'elbow_flex' (id 3)" in text
    assert "3 tries" in text and "There is no status packet" in text
    arm.unplug(4)
    with pytest.raises(CommunicationError, match=r"first failure at motor 'wrist_flex' \(id 4\)"):
        bus.sync_read("Present_Position", normalize=False, num_retry=1)


def test_status_error_bits(bus, arm, caplog):
    arm.set_error_bits(6, 32)
    with pytest.raises(MotorError, match=r"motor 'gripper' \(id 6\) reports overload"):
        bus.read("Present_Position", "gripper", normalize=False)
    with caplog.at_level(logging.WARNING):
        values = bus.sync_read("Present_Position", normalize=False)  # logged, not raised
    assert values["gripper"] == 1400 and "overload" in caplog.text


def test_torque_off_reaches_every_motor_even_if_one_is_missing(bus, arm):
    bus.enable_torque()
    arm.unplug(2)
    with pytest.raises(CommunicationError, match=r"(?s)could not confirm torque off.*id 2"):
        bus.disable_torque(num_retry=0)
    torque = arm.registers("Torque_Enable")
    assert [torque[i] for i in (1, 3, 4, 5, 6)] == [0] * 5


def test_disconnect_disables_torque_and_closes(bus, arm):
    bus.enable_torque()
    assert set(arm.registers("Torque_Enable").values()) == {1}
    bus.disconnect()
    assert set(arm.registers("Torque_Enable").values()) == {0}
    assert set(arm.registers("Lock").values()) == {0}
    with pytest.raises(DeviceNotConnectedError):
        bus.read("ID", "gripper")


def test_half_turn_homing_reference_example():
    # the reference: raw positions {1337, 42, 3672} give offsets {-710, -2005, 1625}
    servos = [Sts3215(i + 1, actual_position=p) for i, p in enumerate((1337, 42, 3672))]
    motors = {"a": Motor(1), "b": Motor(2), "c": Motor(3)}
    with VirtualArm(servos, wire_timing=False) as bench:
        bench.trace = []
        bus = FeetechBus(bench.port, motors)
        bus.connect()
        bus.disable_torque()
        assert bus.set_half_turn_homings() == {"a": -710, "b": -2005, "c": 1625}
        assert bench.present_positions() == {1: 2047, 2: 2047, 3: 2047}
        writes = [bytes(p) for d, p in bench.trace if d == "rx" and p[4] == 3 and p[5] == 31]
        # the last three Homing_Offset writes carry the sign-magnitude values, low byte first
        payloads = [w[6:8] for w in writes[-3:]]
        assert payloads == [
            (2758).to_bytes(2, "little"),
            (0x800 | 2005).to_bytes(2, "little"),
            (1625).to_bytes(2, "little"),
        ]
        bus.disconnect()


def test_half_turn_homing_refuses_the_seam():
    with VirtualArm([Sts3215(1, actual_position=4095)], wire_timing=False) as bench:
        bus = FeetechBus(bench.port, {"a": Motor(1)})
        bus.connect()
        with pytest.raises(CalibrationError, match="homing offset 2048"):
            bus.set_half_turn_homings()
        bus.disconnect()


def test_missing_motor_handshake(arm):
    arm.unplug(5)
    with pytest.raises(MotorNotFoundError, match=r"missing: motor 'wrist_roll' \(id 5\)"):
        FeetechBus(arm.port, MOTORS, broadcast_timeout_ms=150).connect()


def test_no_motor_answers(arm):
    for i in range(1, 7):
        arm.unplug(i)
    with pytest.raises(MotorNotFoundError, match=r"(?s)No motor answered at all.*power supply"):
        FeetechBus(arm.port, MOTORS, num_retry=0, broadcast_timeout_ms=150).connect()


def test_unconfigured_motors_point_to_setup(arm):
    arm.set_register(4, "ID", 1)  # two motors with factory id 1... and id 4 missing
    arm.servos[3].set("ID", 17)
    with pytest.raises(MotorNotFoundError, match="setup_motors"):
        FeetechBus(arm.port, MOTORS, num_retry=0, broadcast_timeout_ms=150).connect()


def test_wrong_model():
    servos = [Sts3215(1), Sts3215(2, model_number=2825)]
    with VirtualArm(servos, wire_timing=False) as bench:
        bus = FeetechBus(bench.port, {"a": Motor(1), "b": Motor(2)})
        with pytest.raises(
            WrongMotorModelError,
            match=r"id 2\): expected model number 777 \(sts3215\), found 2825 \(sts3250\)",
        ):
            bus.connect()
        assert not bus.is_connected


def test_firmware_mismatch():
    servos = [Sts3215(1), Sts3215(2, firmware=(3, 9))]
    with (
        VirtualArm(servos, wire_timing=False) as bench,
        pytest.raises(FirmwareMismatchError, match=r"3\.10.*3\.9"),
    ):
        FeetechBus(bench.port, {"a": Motor(1), "b": Motor(2)}).connect()


def test_port_missing(tmp_path):
    with pytest.raises(PortNotFoundError, match=r"(?s)does not exist.*jrobot.find_port"):
        FeetechBus(str(tmp_path / "ttyACM9"), MOTORS).connect()


def test_port_busy(bus, arm):
    with pytest.raises(PortBusyError, match="in use by another program"):
        FeetechBus(arm.port, MOTORS).connect()


def test_permission_denied_explains_dialout(arm):
    # Run the open as an unprivileged user: the pty is root's, mode 0600.
    script = textwrap.dedent(
        f"""
        import os, sys
        from jrobot.hw.feetech import FeetechBus, Motor
        from jrobot.hw.errors import PortPermissionError
        os.setgid(65534); os.setuid(65534)
        try:
            FeetechBus({arm.port!r}, {{"a": Motor(1)}}).connect()
        except PortPermissionError as e:
            print(e); sys.exit(3)
        """
    )
    if os.geteuid() != 0:
        pytest.skip("needs root to drop to an unprivileged user")
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert r.returncode == 3, r.stderr
    assert "permission denied" in r.stdout and "usermod -aG" in r.stdout and "udev" in r.stdout


def test_scan_port_finds_each_baud_rate():
    servos = [Sts3215(1), Sts3215(2, baudrate=500_000), Sts3215(7, baudrate=500_000)]
    with VirtualArm(servos, wire_timing=False) as bench:
        found = FeetechBus.scan_port(
            bench.port, baudrates=(115_200, 500_000, 1_000_000), broadcast_timeout_ms=150
        )
    assert found == {500_000: {2: 777, 7: 777}, 1_000_000: {1: 777}}


def test_setup_motor_assigns_id_and_baud():
    loose = Sts3215(1, baudrate=500_000)  # factory id, wrong speed
    with VirtualArm([loose], wire_timing=False) as bench:
        bus = FeetechBus(bench.port, MOTORS, broadcast_timeout_ms=150)
        bus.setup_motor("gripper")
        assert (loose.id, loose.baudrate) == (6, 1_000_000)
        assert bus.get_baudrate() == 1_000_000
        bus.close()
        bench.power_cycle()  # the new id and baud rate were saved (EPROM unlocked)
        assert (loose.id, loose.baudrate) == (6, 1_000_000)


def test_setup_motor_refuses_two_motors_and_wrong_models():
    with VirtualArm([Sts3215(1), Sts3215(2)], wire_timing=False) as bench:
        bus = FeetechBus(bench.port, MOTORS, broadcast_timeout_ms=150)
        with pytest.raises(RuntimeError, match=r"several motors answer.*connect only the 'gripper' motor"):
            bus.setup_motor("gripper")
        bus.close()
    with VirtualArm([Sts3215(1, model_number=2825)], wire_timing=False) as bench:
        bus = FeetechBus(bench.port, MOTORS, broadcast_timeout_ms=150)
        with pytest.raises(WrongMotorModelError, match="model number 2825"):
            bus.setup_motor("gripper")
        bus.close()


def test_retry_bound_is_validated(arm):
    with pytest.raises(ValueError, match="num_retry"):
        FeetechBus(arm.port, MOTORS, num_retry=50)
    with pytest.raises(ValueError, match="share an id"):
        FeetechBus(arm.port, {"a": Motor(1), "b": Motor(1)})

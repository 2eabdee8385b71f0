"""Fault injection on the virtual servo bus, the subprocess CLI and its control socket."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
import scservo_sdk as scs

from jrobot.sim.sts3215 import Sts3215
from jrobot.sim.virtual_arm import Faults, VirtualArm, VirtualArmClient


class PatientPortHandler(scs.PortHandler):
    """The SDK's PortHandler with LeRobot's timeout rule and the 250 ms margin jrobot uses on a pty.

    A loaded test machine can leave the virtual arm's thread unscheduled for longer than the SDK's
    own ~34 ms, which would turn scheduling noise into lost packets.
    """

    def setPacketTimeout(self, packet_length):
        self.packet_start_time = self.getCurrentTime()
        self.packet_timeout = self.tx_time_per_byte * (packet_length + 3) + 250.0


@pytest.fixture
def arm():
    with VirtualArm(wire_timing=False) as a:
        yield a


@pytest.fixture
def sdk(arm):
    ph = PatientPortHandler(arm.port)
    assert ph.openPort()
    yield ph, scs.PacketHandler(0)
    ph.closePort()


def test_dropped_reply_times_out_then_recovers(sdk, arm):
    ph, pk = sdk
    arm.faults.drop_next(1)
    assert pk.read2ByteTxRx(ph, 1, 56)[1] == scs.COMM_RX_TIMEOUT
    assert pk.read2ByteTxRx(ph, 1, 56)[1] == scs.COMM_SUCCESS
    assert arm.faults.dropped == 1


def test_corrupted_checksum_is_reported_as_corrupt(sdk, arm):
    ph, pk = sdk
    arm.faults.corrupt_next(1)
    assert pk.ping(ph, 2)[1] == scs.COMM_RX_CORRUPT
    assert pk.ping(ph, 2)[1] == scs.COMM_SUCCESS


def test_faults_can_target_one_servo(sdk, arm):
    ph, pk = sdk
    arm.faults.drop_next(5, ids=[3])
    assert pk.ping(ph, 1)[1] == scs.COMM_SUCCESS
    assert pk.ping(ph, 3)[1] == scs.COMM_RX_TIMEOUT


def test_delay_beyond_the_packet_timeout(sdk, arm):
    ph, pk = sdk
    arm.faults.delay_s = 0.3  # beyond the 250 ms margin
    t = time.perf_counter()
    assert pk.read1ByteTxRx(ph, 1, 5)[1] == scs.COMM_RX_TIMEOUT
    assert time.perf_counter() - t < 0.3
    arm.faults.delay_s = 0.0
    time.sleep(0.15)  # let the late reply land, then flush it as a careful host does
    ph.ser.reset_input_buffer()
    assert pk.read1ByteTxRx(ph, 1, 5)[:2] == (1, scs.COMM_SUCCESS)


def test_drop_rate_is_seeded_and_repeatable():
    def run() -> list[bool]:
        faults = Faults(drop_rate=0.5, seed=7)
        return [faults.apply(1, b"x") is None for _ in range(40)]

    first = run()
    assert first == run()
    assert 5 < sum(first) < 35


def test_fault_settings_are_validated():
    with pytest.raises(ValueError, match="drop_rate"):
        Faults(drop_rate=1.5)
    with pytest.raises(ValueError, match="delay_s"):
        Faults(delay_s=-1)


def test_motor_disappears_and_comes_back_power_cycled(sdk, arm):
    ph, pk = sdk
    pk.write1ByteTxRx(ph, 4, 40, 1)  # torque on
    arm.unplug(4)
    assert pk.ping(ph, 4)[1] == scs.COMM_RX_TIMEOUT
    gsr = scs.GroupSyncRead(ph, pk, 56, 2)
    for i in range(1, 7):
        gsr.addParam(i)
    assert gsr.txRxPacket() != scs.COMM_SUCCESS  # a missing motor breaks the sync read
    arm.plug(4)
    assert pk.ping(ph, 4) == (777, scs.COMM_SUCCESS, 0)
    assert arm.register(4, "Torque_Enable") == 0  # it came back from a power cycle
    assert gsr.txRxPacket() == scs.COMM_SUCCESS


def test_cli_prints_port_first_and_applies_flags(tmp_path):
    sock = tmp_path / "ctl.sock"
    state = tmp_path / "state.json"
    link = tmp_path / "ttyVARM"
    cmd = [
        sys.executable, "-m", "jrobot.virtual_arm",
        "--control", str(sock), "--state", str(state), "--link", str(link),
        "--absent-ids", "5", "--error-bits", "6:32", "--firmware-per-id", "3:309",
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        port = proc.stdout.readline().strip()
        assert port.startswith("/dev/pts/")
        assert os.path.realpath(link) == port
        ph = PatientPortHandler(str(link))
        assert ph.openPort()
        pk = scs.PacketHandler(0)
        assert pk.ping(ph, 5)[1] == scs.COMM_RX_TIMEOUT
        assert pk.ping(ph, 6) == (777, scs.COMM_SUCCESS, 32)
        assert pk.read1ByteTxRx(ph, 3, 1)[0] == 9  # firmware 3.9 on servo 3
        assert pk.read1ByteTxRx(ph, 2, 1)[0] == 10
        deadline = time.monotonic() + 5
        while not sock.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        with VirtualArmClient(sock) as client:
            client.call("plug", id=5)
            assert pk.ping(ph, 5)[1] == scs.COMM_SUCCESS
            client.call("faults", drop_next=1)
            assert pk.ping(ph, 1)[1] == scs.COMM_RX_TIMEOUT
            client.move({2: 1000}, duration_s=0.0)
            assert pk.read2ByteTxRx(ph, 2, 56)[0] == 1000
            # an EPROM write with Lock=0 is saved to the state file
            pk.write1ByteTxRx(ph, 2, 55, 0)
            pk.write1ByteTxRx(ph, 2, 21, 16)
            assert client.register(2, "P_Coefficient") == 16
            with pytest.raises(RuntimeError, match="unknown command"):
                client.call("fly")
        ph.closePort()
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert proc.returncode == 0
    saved = json.loads(state.read_text())["servos"]
    assert bytes.fromhex(saved[1]["saved"])[21] == 16
    assert not link.exists()
    # a new run from the same state file keeps the saved EPROM (like a real servo after power-off)
    with VirtualArm(state_file=state, wire_timing=False) as again:
        assert again.register(2, "P_Coefficient") == 16
        assert again.register(2, "Present_Position") == 1000


def test_factory_servos_all_answer_as_id_1():
    servos = [Sts3215(1) for _ in range(3)]
    with VirtualArm(servos, wire_timing=False) as bench:
        bench.unplug(servos[1])
        bench.unplug(servos[2])
        ph = PatientPortHandler(bench.port)
        assert ph.openPort()
        assert scs.PacketHandler(0).ping(ph, 1) == (777, scs.COMM_SUCCESS, 0)
        ph.closePort()


def test_cli_factory_mode_plugs_loose_servos_by_slot(tmp_path):
    sock = tmp_path / "ctl.sock"
    cmd = [
        sys.executable,
        "-m",
        "jrobot.virtual_arm",
        "--factory",
        "--control",
        str(sock),
        "--no-wire-timing",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        port = proc.stdout.readline().strip()
        deadline = time.monotonic() + 5
        while not sock.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        ph = PatientPortHandler(port)
        assert ph.openPort()
        pk = scs.PacketHandler(0)
        assert pk.ping(ph, 1)[1] == scs.COMM_RX_TIMEOUT  # nothing plugged in yet
        with VirtualArmClient(sock) as client:
            client.call("plug", slot=5)
            assert pk.ping(ph, 1) == (777, scs.COMM_SUCCESS, 0)
            pk.write1ByteTxRx(ph, 1, 55, 0)
            pk.write1ByteTxRx(ph, 1, 5, 6)  # becomes the gripper
            client.call("plug", slot=0)  # a second loose servo, still id 1
            assert pk.ping(ph, 6)[1] == scs.COMM_SUCCESS and pk.ping(ph, 1)[1] == scs.COMM_SUCCESS
        ph.closePort()
    finally:
        proc.terminate()
        proc.wait(timeout=10)

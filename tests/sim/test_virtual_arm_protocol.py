"""The virtual servo bus answers the Feetech protocol byte for byte like six STS3215s.

Every packet here is written out by hand (checksums worked out in the comments) and sent either raw
through pyserial or by the unmodified scservo_sdk, over the pty the virtual arm opens.
"""

from __future__ import annotations

import itertools
import time

import pytest
import scservo_sdk as scs
import serial

from jrobot.hw.tables import STS_SMS_CONTROL_TABLE
from jrobot.sim.sts3215 import CONTROL_TABLE, EpromLockPolicy, PacketParser, Sts3215, build_packet
from jrobot.sim.virtual_arm import VirtualArm

# Start pose of the virtual SO-101: each joint at its zero (actual encoder ticks).
ZEROS = {1: 2100, 2: 1950, 3: 2230, 4: 1870, 5: 2048, 6: 1400}


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
        a.trace = []
        yield a


@pytest.fixture
def line(arm):
    ser = serial.Serial(arm.port, baudrate=1_000_000, timeout=0)
    yield ser
    ser.close()


@pytest.fixture
def sdk(arm):
    ph = PatientPortHandler(arm.port)
    assert ph.openPort()
    yield ph, scs.PacketHandler(0)
    ph.closePort()


def transact(ser: serial.Serial, packet: bytes, n_reply: int, quiet_s: float = 0.05) -> bytes:
    """Send `packet`, collect `n_reply` bytes, then make sure nothing more arrives for `quiet_s`."""
    ser.reset_input_buffer()
    ser.write(packet)
    got = b""
    deadline = time.monotonic() + 2.0
    while len(got) < n_reply and time.monotonic() < deadline:
        got += ser.read(n_reply - len(got))
        time.sleep(0.0005)
    end = time.monotonic() + quiet_s
    while time.monotonic() < end:
        got += ser.read(64)
        time.sleep(0.002)
    return got


def h(text: str) -> bytes:
    return bytes.fromhex(text)


# ---------------------------------------------------------------- byte-exact answers
def test_ping_byte_exact(line):
    # PING id 1: chk = ~(01+02+01) = FB. Status: chk = ~(01+02+00) = FC.
    assert transact(line, h("FF FF 01 02 01 FB"), 6) == h("FF FF 01 02 00 FC")


def test_read_model_number_byte_exact(line):
    # READ id 1 addr 3 len 2: chk = ~(01+04+02+03+02) = F3. Model 777 = 0x0309, low byte first:
    # status chk = ~(01+04+00+09+03) = EE.
    assert transact(line, h("FF FF 01 04 02 03 02 F3"), 8) == h("FF FF 01 04 00 09 03 EE")


def test_write_byte_exact_and_applied(line, arm):
    # WRITE id 2 Goal_Position (0x2A) = 2000 (D0 07): chk = ~(02+05+03+2A+D0+07) = F4; ack chk = ~(02+02+00) = FB.
    assert transact(line, h("FF FF 02 05 03 2A D0 07 F4"), 6) == h("FF FF 02 02 00 FB")
    assert arm.register(2, "Goal_Position") == 2000


def test_sync_read_byte_exact(line):
    # SYNC_READ addr 0x38 (Present_Position) len 2 ids 1,2: chk = ~(FE+06+82+38+02+01+02) = 3C.
    # Replies in request order: 2100 = 0x0834 (chk ~(01+04+00+34+08) = BE), 1950 = 0x079E (chk 54).
    reply = transact(line, h("FF FF FE 06 82 38 02 01 02 3C"), 16)
    assert reply == h("FF FF 01 04 00 34 08 BE") + h("FF FF 02 04 00 9E 07 54")


def test_sync_read_follows_request_order(line):
    # ids 2,1: chk = ~(FE+06+82+38+02+02+01) = 3C as well (same sum), replies come 2 then 1.
    reply = transact(line, h("FF FF FE 06 82 38 02 02 01 3C"), 16)
    assert reply == h("FF FF 02 04 00 9E 07 54") + h("FF FF 01 04 00 34 08 BE")


def test_sync_write_byte_exact_no_reply(line, arm):
    # SYNC_WRITE addr 0x2A len 2: id1 <- 2048 (00 08), id2 <- 1000 (E8 03); LEN = 8 params + 2 = 0A;
    # chk = ~(FE+0A+83+2A+02+01+00+08+02+E8+03) = 52. Broadcast: no status packet.
    assert transact(line, h("FF FF FE 0A 83 2A 02 01 00 08 02 E8 03 52"), 0) == b""
    assert transact(line, h("FF FF 01 02 01 FB"), 6)  # a round trip: the broadcast was processed
    assert arm.register(1, "Goal_Position") == 2048
    assert arm.register(2, "Goal_Position") == 1000


def test_broadcast_ping_answers_every_servo_in_id_order(line):
    # PING to FE: chk = ~(FE+02+01) = FE. Each servo answers FF FF id 02 00 ~(id+2).
    reply = transact(line, h("FF FF FE 02 01 FE"), 36)
    expected = b"".join(bytes([0xFF, 0xFF, i, 2, 0, (~(i + 2)) & 0xFF]) for i in range(1, 7))
    assert reply == expected


def test_bad_checksum_gets_no_answer(line, arm):
    assert transact(line, h("FF FF 01 02 01 FA"), 0) == b""
    # ...and the bus is still in sync for the next, valid packet
    assert transact(line, h("FF FF 01 02 01 FB"), 6) == h("FF FF 01 02 00 FC")
    assert arm.stats.bad_checksums == 1


def test_garbage_before_header_is_skipped(line):
    assert transact(line, h("00 13 FF 42 FF FF FF 01 02 01 FB"), 6) == h("FF FF 01 02 00 FC")


def test_unknown_id_and_unknown_instruction_are_silent(line):
    assert transact(line, bytes(build_packet(9, 1)), 0) == b""  # nobody has id 9
    assert transact(line, bytes(build_packet(1, 0x42)), 0) == b""  # no such instruction


def test_status_carries_error_bits(line, arm):
    arm.set_error_bits(3, 32)  # overload
    # PING id 3: chk = ~(03+02+01) = F9; status error 0x20: chk = ~(03+02+20) = DA.
    assert transact(line, h("FF FF 03 02 01 F9"), 6) == h("FF FF 03 02 20 DA")
    assert arm.register(3, "Status") == 32


def test_voltage_out_of_range_sets_error_bit(sdk, arm):
    ph, pk = sdk
    arm.set_register(4, "Present_Voltage", 30)  # below Min_Voltage_Limit (40 = 4.0 V)
    _, comm, error = pk.read1ByteTxRx(ph, 4, 62)
    assert comm == scs.COMM_SUCCESS and error == 1
    assert "voltage" in pk.getRxPacketError(error).lower()


def test_response_status_level_zero_only_answers_reads(line, sdk, arm):
    ph, pk = sdk
    arm.set_register(1, "Response_Status_Level", 0)
    comm, _ = pk.write1ByteTxRx(ph, 1, 41, 10)  # write: no status packet
    assert comm == scs.COMM_RX_TIMEOUT
    assert arm.register(1, "Acceleration") == 10  # but it was applied
    value, comm, _ = pk.read1ByteTxRx(ph, 1, 41)
    assert (value, comm) == (10, scs.COMM_SUCCESS)


def test_return_delay_time_delays_the_reply(sdk):
    _, pk = sdk

    def reply_gaps(arm: VirtualArm, port_handler: scs.PortHandler) -> list[float]:
        arm.trace = []
        for _ in range(20):
            pk.ping(port_handler, 1)
        events = arm.trace
        return [b.t - a.t for a, b in itertools.pairwise(events) if a[0] == "rx" and b[0] == "tx"]

    # The `arm` fixture answers without wire timing, so use an arm that models it.
    with VirtualArm() as timed:
        ph2 = PatientPortHandler(timed.port)
        assert ph2.openPort()
        slow = reply_gaps(timed, ph2)  # factory Return_Delay_Time 250 x 2 us = 0.5 ms
        timed.set_register(1, "Return_Delay_Time", 0)
        fast = reply_gaps(timed, ph2)
        ph2.closePort()
    assert len(slow) == len(fast) == 40
    # receipt -> reply >= 0.5 ms (+ the reply's wire time), less the 0.1 ms early-send tolerance
    assert min(slow) >= 0.0004
    assert min(fast) < 0.0005


# ---------------------------------------------------------------- through the SDK
def test_sdk_sends_the_same_bytes(sdk, arm):
    ph, pk = sdk
    assert pk.read2ByteTxRx(ph, 1, 56) == (ZEROS[1], scs.COMM_SUCCESS, 0)
    # READ id 1 addr 0x38 len 2: chk = ~(01+04+02+38+02) = BE
    assert arm.trace[-2:] == [("rx", h("FF FF 01 04 02 38 02 BE")), ("tx", h("FF FF 01 04 00 34 08 BE"))]


def test_sdk_group_sync_read_and_write(sdk, arm):
    ph, pk = sdk
    gsw = scs.GroupSyncWrite(ph, pk, 42, 2)
    for i in range(1, 7):
        assert gsw.addParam(i, [scs.SCS_LOBYTE(1000 + i), scs.SCS_HIBYTE(1000 + i)])
    assert gsw.txPacket() == scs.COMM_SUCCESS
    gsr = scs.GroupSyncRead(ph, pk, 42, 2)
    for i in range(1, 7):
        gsr.addParam(i)
    assert gsr.txRxPacket() == scs.COMM_SUCCESS
    assert [gsr.getData(i, 42, 2) for i in range(1, 7)] == [1000 + i for i in range(1, 7)]


def test_reg_write_then_action(sdk, arm):
    ph, pk = sdk
    result, error = pk.regWriteTxRx(ph, 2, 41, 1, [77])
    assert (result, error) == (scs.COMM_SUCCESS, 0)
    assert arm.register(2, "Acceleration") == 0  # registered, not applied yet
    pk.action(ph, scs.BROADCAST_ID)
    pk.ping(ph, 2)  # a round trip: the broadcast ACTION was processed
    assert arm.register(2, "Acceleration") == 77


# ---------------------------------------------------------------- control-table semantics
def test_control_table_matches_the_host_table():
    servo = {r.name: (r.address, r.size) for r in CONTROL_TABLE}
    host = {k: v for k, v in STS_SMS_CONTROL_TABLE.items() if k != "Moving_Velocity_Threshold"}
    assert servo == host


def test_identity_registers(sdk):
    ph, pk = sdk
    assert pk.ping(ph, 5) == (777, scs.COMM_SUCCESS, 0)
    assert pk.read1ByteTxRx(ph, 5, 0)[0] == 3  # firmware major
    assert pk.read1ByteTxRx(ph, 5, 1)[0] == 10  # firmware minor
    assert pk.read1ByteTxRx(ph, 5, 5)[0] == 5  # ID


def test_read_only_registers_ignore_writes(sdk, arm):
    ph, pk = sdk
    pk.write1ByteTxRx(ph, 1, 55, 0)  # unlock, to show it is not the lock that protects them
    assert pk.write2ByteTxRx(ph, 1, 3, 1234) == (scs.COMM_SUCCESS, 0)
    assert pk.write2ByteTxRx(ph, 1, 56, 10) == (scs.COMM_SUCCESS, 0)
    assert arm.register(1, "Model_Number") == 777
    assert arm.register(1, "Present_Position") == ZEROS[1]


def test_homing_offset_is_sign_magnitude_and_shifts_present_position(sdk, arm):
    ph, pk = sdk
    pk.write1ByteTxRx(ph, 1, 55, 0)  # Lock=0
    # -710 on bit 11 = 0x800 | 710 = 2758 (0x0AC6)
    assert pk.write2ByteTxRx(ph, 1, 31, 2758) == (scs.COMM_SUCCESS, 0)
    assert arm.register(1, "Homing_Offset") == -710
    assert arm.trace[-2][1] == h("FF FF 01 05 03 1F C6 0A") + bytes(
        [(~(1 + 5 + 3 + 0x1F + 0xC6 + 0x0A)) & 0xFF]
    )
    # Present = (Actual - Homing_Offset) mod 4096 = 2100 + 710
    assert pk.read2ByteTxRx(ph, 1, 56)[0] == 2810
    pk.write2ByteTxRx(ph, 1, 31, 1625)  # positive offset
    assert pk.read2ByteTxRx(ph, 1, 56)[0] == 2100 - 1625


def test_present_position_wraps_modulo_4096(arm):
    arm.set_register(2, "Homing_Offset", 2000)
    assert arm.register(2, "Present_Position") == (1950 - 2000) % 4096


def test_eprom_writes_need_lock_zero_to_survive_power_cycle(sdk, arm):
    ph, pk = sdk
    assert arm.register(1, "Lock") == 1  # power-on value
    pk.write1ByteTxRx(ph, 1, 21, 16)  # P_Coefficient while locked: applied, not saved (VOLATILE)
    assert arm.register(1, "P_Coefficient") == 16
    arm.power_cycle()
    assert arm.register(1, "P_Coefficient") == 32
    pk.write1ByteTxRx(ph, 1, 55, 0)
    pk.write1ByteTxRx(ph, 1, 21, 16)
    arm.power_cycle()
    assert arm.register(1, "P_Coefficient") == 16
    assert arm.register(1, "Lock") == 1 and arm.register(1, "Torque_Enable") == 0


def test_ignore_policy_drops_locked_eprom_writes(sdk):
    _, pk = sdk
    servo = Sts3215(1, eprom_lock_policy=EpromLockPolicy.IGNORE)
    with VirtualArm([servo], wire_timing=False) as strict:
        ph2 = PatientPortHandler(strict.port)
        assert ph2.openPort()
        assert pk.write1ByteTxRx(ph2, 1, 21, 16) == (scs.COMM_SUCCESS, 0)  # acknowledged...
        assert strict.register(1, "P_Coefficient") == 32  # ...but dropped
        pk.write1ByteTxRx(ph2, 1, 55, 0)
        pk.write1ByteTxRx(ph2, 1, 21, 16)
        assert strict.register(1, "P_Coefficient") == 16
        ph2.closePort()


def test_goal_clamped_to_position_limits(sdk, arm):
    ph, pk = sdk
    pk.write1ByteTxRx(ph, 1, 55, 0)
    pk.write2ByteTxRx(ph, 1, 9, 2000)  # Min_Position_Limit
    pk.write2ByteTxRx(ph, 1, 11, 2200)  # Max_Position_Limit
    pk.write2ByteTxRx(ph, 1, 42, 3000)  # goal beyond the max
    pk.write1ByteTxRx(ph, 1, 40, 1)  # torque on: the goal becomes the present position (2100)
    pk.write2ByteTxRx(ph, 1, 42, 3000)
    deadline = time.monotonic() + 2
    while arm.register(1, "Present_Position") != 2200 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert arm.register(1, "Present_Position") == 2200
    assert arm.register(1, "Goal_Position") == 3000  # the register keeps what was written


def test_torque_enable_holds_current_position(sdk, arm):
    ph, pk = sdk
    pk.write2ByteTxRx(ph, 3, 42, 100)  # stale goal written while torque is off
    arm.move_by_hand({3: 2000})
    pk.write1ByteTxRx(ph, 3, 40, 1)
    assert arm.register(3, "Goal_Position") == 2000
    time.sleep(0.1)
    assert arm.register(3, "Present_Position") == 2000


def test_torque_enable_128_sets_middle(sdk, arm):
    ph, pk = sdk
    pk.write1ByteTxRx(ph, 4, 40, 128)
    assert arm.register(4, "Present_Position") == 2048
    assert arm.register(4, "Homing_Offset") == ZEROS[4] - 2048
    assert arm.register(4, "Torque_Enable") == 0


def test_id_change_acknowledged_with_old_id(sdk, arm):
    ph, pk = sdk
    pk.write1ByteTxRx(ph, 6, 55, 0)
    assert pk.write1ByteTxRx(ph, 6, 5, 9) == (scs.COMM_SUCCESS, 0)
    # the ack came from id 6: chk = ~(06+02+00) = F7
    assert arm.trace[-1] == ("tx", h("FF FF 06 02 00 F7"))
    assert pk.ping(ph, 9)[1] == scs.COMM_SUCCESS
    assert pk.ping(ph, 6)[1] == scs.COMM_RX_TIMEOUT


def test_baud_rate_change_takes_effect_after_the_ack(sdk, arm):
    ph, pk = sdk
    pk.write1ByteTxRx(ph, 2, 55, 0)
    assert pk.write1ByteTxRx(ph, 2, 6, 1) == (scs.COMM_SUCCESS, 0)  # 500 kbps, acked at 1 Mbps
    assert pk.ping(ph, 2)[1] == scs.COMM_RX_TIMEOUT  # no longer answers at 1 Mbps
    assert pk.ping(ph, 1)[1] == scs.COMM_SUCCESS
    assert ph.setBaudRate(500_000)
    assert arm.line_baudrate == 500_000
    assert pk.ping(ph, 2) == (777, scs.COMM_SUCCESS, 0)
    assert pk.ping(ph, 1)[1] == scs.COMM_RX_TIMEOUT


def test_two_servos_with_one_id_garble_the_reply():
    a, b = Sts3215(1, actual_position=100), Sts3215(1, actual_position=3000)
    with VirtualArm([a, b], wire_timing=False) as bench:
        ph = PatientPortHandler(bench.port)
        assert ph.openPort()
        _, comm, _ = scs.PacketHandler(0).read2ByteTxRx(ph, 1, 56)
        ph.closePort()
    assert comm in (scs.COMM_RX_CORRUPT, scs.COMM_RX_TIMEOUT)


def test_packet_parser_handles_split_and_joined_packets():
    parser = PacketParser()
    ping = build_packet(1, 1)
    read = build_packet(2, 2, [56, 2])
    assert parser.feed(ping[:3]) == []
    out = parser.feed(ping[3:] + read + read[:2])
    assert [p.raw for p in out] == [ping, read]
    assert parser.pending
    assert [p.raw for p in parser.feed(read[2:])] == [read]

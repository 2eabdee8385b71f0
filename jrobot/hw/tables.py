"""Host-side description of Feetech STS/SMS motors: control table, models, baud rates, sign bits.

Mirrors LeRobot 0.4.4's `lerobot/motors/feetech/tables.py` for the models an SO arm can carry. The
virtual servo (`jrobot.sim.sts3215`) keeps its own copy of the register map on purpose, so tests
comparing the two catch a wrong address on either side.
"""

from __future__ import annotations

# data_name: (address, size in bytes)
STS_SMS_CONTROL_TABLE: dict[str, tuple[int, int]] = {
    # EPROM
    "Firmware_Major_Version": (0, 1),
    "Firmware_Minor_Version": (1, 1),
    "Model_Number": (3, 2),
    "ID": (5, 1),
    "Baud_Rate": (6, 1),
    "Return_Delay_Time": (7, 1),
    "Response_Status_Level": (8, 1),
    "Min_Position_Limit": (9, 2),
    "Max_Position_Limit": (11, 2),
    "Max_Temperature_Limit": (13, 1),
    "Max_Voltage_Limit": (14, 1),
    "Min_Voltage_Limit": (15, 1),
    "Max_Torque_Limit": (16, 2),
    "Phase": (18, 1),
    "Unloading_Condition": (19, 1),
    "LED_Alarm_Condition": (20, 1),
    "P_Coefficient": (21, 1),
    "D_Coefficient": (22, 1),
    "I_Coefficient": (23, 1),
    "Minimum_Startup_Force": (24, 2),
    "CW_Dead_Zone": (26, 1),
    "CCW_Dead_Zone": (27, 1),
    "Protection_Current": (28, 2),
    "Angular_Resolution": (30, 1),
    "Homing_Offset": (31, 2),
    "Operating_Mode": (33, 1),
    "Protective_Torque": (34, 1),
    "Protection_Time": (35, 1),
    "Overload_Torque": (36, 1),
    "Velocity_closed_loop_P_proportional_coefficient": (37, 1),
    "Over_Current_Protection_Time": (38, 1),
    "Velocity_closed_loop_I_integral_coefficient": (39, 1),
    # SRAM
    "Torque_Enable": (40, 1),
    "Acceleration": (41, 1),
    "Goal_Position": (42, 2),
    "Goal_Time": (44, 2),
    "Goal_Velocity": (46, 2),
    "Torque_Limit": (48, 2),
    "Lock": (55, 1),
    "Present_Position": (56, 2),
    "Present_Velocity": (58, 2),
    "Present_Load": (60, 2),
    "Present_Voltage": (62, 1),
    "Present_Temperature": (63, 1),
    "Status": (65, 1),
    "Moving": (66, 1),
    "Present_Current": (69, 2),
    "Goal_Position_2": (71, 2),
    # Factory
    "Moving_Velocity": (80, 1),
    "Moving_Velocity_Threshold": (80, 1),
    "DTs": (81, 1),
    "Velocity_Unit_factor": (82, 1),
    "Hts": (83, 1),
    "Maximum_Velocity_Limit": (84, 1),
    "Maximum_Acceleration": (85, 1),
    "Acceleration_Multiplier ": (86, 1),  # LeRobot's name has the trailing space
}

# Sign-magnitude registers and the index of their sign bit.
STS_SMS_SIGN_BITS: dict[str, int] = {
    "Homing_Offset": 11,
    "Goal_Position": 15,
    "Goal_Velocity": 15,
    "Goal_Speed": 15,
    "Present_Position": 15,
    "Present_Velocity": 15,
    "Present_Speed": 15,
    "Present_Load": 10,
}

# Baud rate (bits/s) -> Baud_Rate register value.
STS_SMS_BAUDRATE_TABLE: dict[int, int] = {
    1_000_000: 0,
    500_000: 1,
    250_000: 2,
    128_000: 3,
    115_200: 4,
    57_600: 5,
    38_400: 6,
    19_200: 7,
}

SCAN_BAUDRATES: tuple[int, ...] = (
    4_800,
    9_600,
    14_400,
    19_200,
    38_400,
    57_600,
    115_200,
    128_000,
    250_000,
    500_000,
    1_000_000,
)

MODEL_NUMBER_TABLE: dict[str, int] = {
    "sts3215": 777,
    "sts3250": 2825,
    "sm8512bl": 11272,
}
MODEL_BY_NUMBER: dict[int, str] = {v: k for k, v in MODEL_NUMBER_TABLE.items()}
MODEL_RESOLUTION: dict[str, int] = {"sts3215": 4096, "sts3250": 4096, "sm8512bl": 4096}
MODEL_PROTOCOL: dict[str, int] = {"sts3215": 0, "sts3250": 0, "sm8512bl": 0}

DEFAULT_BAUDRATE = 1_000_000
DEFAULT_PROTOCOL = 0
# Only these are scaled by the calibration; every other register is read and written raw.
NORMALIZED_DATA: tuple[str, ...] = ("Goal_Position", "Present_Position")

# Status error bits (scservo_sdk's ERRBIT_*).
ERROR_BITS: dict[int, str] = {
    1: "input voltage out of range",
    2: "angle sensor error",
    4: "overheating",
    8: "over-current",
    32: "overload",
}

# Operating_Mode values.
POSITION_MODE = 0


def address(data_name: str) -> tuple[int, int]:
    """(address, size) of a register, with an error listing the valid names."""
    try:
        return STS_SMS_CONTROL_TABLE[data_name]
    except KeyError:
        raise KeyError(
            f"unknown Feetech register {data_name!r}; known registers: {', '.join(STS_SMS_CONTROL_TABLE)}"
        ) from None


def describe_error_bits(bits: int) -> str:
    names = [text for bit, text in ERROR_BITS.items() if bits & bit]
    unknown = bits & ~sum(ERROR_BITS)
    if unknown:
        names.append(f"unknown bits 0x{unknown:02x}")
    return ", ".join(names) if names else "no error"

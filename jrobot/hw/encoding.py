"""Value encodings on the Feetech wire: sign-magnitude registers and little-endian byte splitting."""

from __future__ import annotations

from jrobot.hw.tables import STS_SMS_SIGN_BITS


def encode_sign_magnitude(value: int, sign_bit: int) -> int:
    """`value` as sign-magnitude with the sign at bit `sign_bit` (e.g. -710 on bit 11 -> 2758).

    Raises ValueError if |value| does not fit in the `sign_bit` magnitude bits, as LeRobot does.
    """
    max_magnitude = (1 << sign_bit) - 1
    magnitude = abs(int(value))
    if magnitude > max_magnitude:
        raise ValueError(f"magnitude {magnitude} exceeds {max_magnitude} (max for sign bit {sign_bit})")
    return ((1 if value < 0 else 0) << sign_bit) | magnitude


def decode_sign_magnitude(encoded: int, sign_bit: int) -> int:
    """Inverse of `encode_sign_magnitude`: bit `sign_bit` is the sign, the bits below the magnitude."""
    magnitude = encoded & ((1 << sign_bit) - 1)
    return -magnitude if (encoded >> sign_bit) & 1 else magnitude


def encode_register(data_name: str, value: int) -> int:
    """Host value -> raw register value (sign-magnitude where the register is signed)."""
    bit = STS_SMS_SIGN_BITS.get(data_name)
    return encode_sign_magnitude(value, bit) if bit is not None else int(value)


def decode_register(data_name: str, raw: int) -> int:
    """Raw register value -> host value."""
    bit = STS_SMS_SIGN_BITS.get(data_name)
    return decode_sign_magnitude(raw, bit) if bit is not None else int(raw)


def split_bytes(value: int, length: int) -> list[int]:
    """Unsigned `value` as `length` little-endian bytes (protocol 0); rejects negatives and overflow."""
    if length not in (1, 2, 4):
        raise ValueError(f"unsupported register size {length} (expected 1, 2 or 4)")
    if value < 0:
        raise ValueError(f"negative values cannot be written raw: {value}")
    if value >= 1 << (8 * length):
        raise ValueError(f"value {value} does not fit in {length} byte(s)")
    return list(int(value).to_bytes(length, "little"))


def join_bytes(data: list[int] | bytes) -> int:
    return int.from_bytes(bytes(data), "little")

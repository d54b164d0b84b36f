"""Protobuf's wire format by hand, for encodings assembled from cached pieces (a snapshot, a
checkpoint): the bytes are exactly those protobuf's deterministic serialisation gives when
the pieces come in field-number order."""

from __future__ import annotations


def varint(v: int) -> bytes:
    """``v`` (>= 0) as a protobuf varint."""
    out = bytearray()
    while v > 0x7F:
        out.append(v & 0x7F | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


def field_header(number: int, size: int) -> bytes:
    """Tag and length of a length-delimited field ``number`` holding ``size`` bytes."""
    return varint(number << 3 | 2) + varint(size)


def length_delimited(number: int, payload: bytes) -> bytes:
    """One length-delimited protobuf field: tag, length, payload."""
    return field_header(number, len(payload)) + payload

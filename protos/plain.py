"""Protobuf messages as plain JSON-able values for ``--json`` output: field names as in the
.proto (snake_case), integers as numbers (``json_format`` writes 64-bit ones as strings),
enums by name, bytes as hex, every field present (defaults included)."""

from __future__ import annotations

from typing import Any

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message


def plain(msg: Message) -> dict[str, Any]:
    return {fd.name: _field(fd, getattr(msg, fd.name)) for fd in msg.DESCRIPTOR.fields}


def _field(fd: FieldDescriptor, value: Any) -> Any:
    if fd.message_type is not None and fd.message_type.GetOptions().map_entry:
        vfd = fd.message_type.fields_by_name["value"]
        return {str(k): _one(vfd, v) for k, v in value.items()}
    if fd.is_repeated:
        return [_one(fd, v) for v in value]
    return _one(fd, value)


def _one(fd: FieldDescriptor, value: Any) -> Any:
    if fd.type == FieldDescriptor.TYPE_MESSAGE:
        return plain(value)
    if fd.type == FieldDescriptor.TYPE_ENUM:
        ev = fd.enum_type.values_by_number.get(value)
        return ev.name if ev is not None else value
    if fd.type == FieldDescriptor.TYPE_BYTES:
        return value.hex()
    return value

# ruff: noqa
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class SiteCode(_message.Message):
    __slots__ = ("site", "round", "code", "epoch")
    SITE_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    site: str
    round: int
    code: bytes
    epoch: int
    def __init__(self, site: _Optional[str] = ..., round: _Optional[int] = ..., code: _Optional[bytes] = ..., epoch: _Optional[int] = ...) -> None: ...

class CodeReceipt(_message.Message):
    __slots__ = ("accepted", "refused", "reason")
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    REFUSED_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    accepted: int
    refused: int
    reason: str
    def __init__(self, accepted: _Optional[int] = ..., refused: _Optional[int] = ..., reason: _Optional[str] = ...) -> None: ...

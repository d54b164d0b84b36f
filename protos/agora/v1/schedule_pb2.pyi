# ruff: noqa
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Allocation(_message.Message):
    __slots__ = ("job_id", "task_id", "instance_begin", "instance_end", "site", "node", "version", "round")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_BEGIN_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_END_FIELD_NUMBER: _ClassVar[int]
    SITE_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    task_id: str
    instance_begin: int
    instance_end: int
    site: str
    node: str
    version: int
    round: int
    def __init__(self, job_id: _Optional[str] = ..., task_id: _Optional[str] = ..., instance_begin: _Optional[int] = ..., instance_end: _Optional[int] = ..., site: _Optional[str] = ..., node: _Optional[str] = ..., version: _Optional[int] = ..., round: _Optional[int] = ...) -> None: ...

class Schedule(_message.Message):
    __slots__ = ("version", "allocations")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    ALLOCATIONS_FIELD_NUMBER: _ClassVar[int]
    version: int
    allocations: _containers.RepeatedCompositeFieldContainer[Allocation]
    def __init__(self, version: _Optional[int] = ..., allocations: _Optional[_Iterable[_Union[Allocation, _Mapping]]] = ...) -> None: ...

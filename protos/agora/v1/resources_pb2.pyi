# ruff: noqa
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Resources(_message.Message):
    __slots__ = ("cpu_milli", "mem_mib", "gpu_milli")
    CPU_MILLI_FIELD_NUMBER: _ClassVar[int]
    MEM_MIB_FIELD_NUMBER: _ClassVar[int]
    GPU_MILLI_FIELD_NUMBER: _ClassVar[int]
    cpu_milli: int
    mem_mib: int
    gpu_milli: int
    def __init__(self, cpu_milli: _Optional[int] = ..., mem_mib: _Optional[int] = ..., gpu_milli: _Optional[int] = ...) -> None: ...

class Demand(_message.Message):
    __slots__ = ("resources", "gpu_models")
    RESOURCES_FIELD_NUMBER: _ClassVar[int]
    GPU_MODELS_FIELD_NUMBER: _ClassVar[int]
    resources: Resources
    gpu_models: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, resources: _Optional[_Union[Resources, _Mapping]] = ..., gpu_models: _Optional[_Iterable[str]] = ...) -> None: ...

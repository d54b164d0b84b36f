# ruff: noqa
from agora.protos.agora.v1 import resources_pb2 as _resources_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Task(_message.Message):
    __slots__ = ("id", "duration_s", "demand", "instances", "after", "data_mb", "run")
    ID_FIELD_NUMBER: _ClassVar[int]
    DURATION_S_FIELD_NUMBER: _ClassVar[int]
    DEMAND_FIELD_NUMBER: _ClassVar[int]
    INSTANCES_FIELD_NUMBER: _ClassVar[int]
    AFTER_FIELD_NUMBER: _ClassVar[int]
    DATA_MB_FIELD_NUMBER: _ClassVar[int]
    RUN_FIELD_NUMBER: _ClassVar[int]
    id: str
    duration_s: float
    demand: _resources_pb2.Demand
    instances: int
    after: _containers.RepeatedScalarFieldContainer[str]
    data_mb: float
    run: TaskRun
    def __init__(self, id: _Optional[str] = ..., duration_s: _Optional[float] = ..., demand: _Optional[_Union[_resources_pb2.Demand, _Mapping]] = ..., instances: _Optional[int] = ..., after: _Optional[_Iterable[str]] = ..., data_mb: _Optional[float] = ..., run: _Optional[_Union[TaskRun, _Mapping]] = ...) -> None: ...

class TaskRun(_message.Message):
    __slots__ = ("argv", "env", "cwd", "timeout_s")
    ARGV_FIELD_NUMBER: _ClassVar[int]
    ENV_FIELD_NUMBER: _ClassVar[int]
    CWD_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_S_FIELD_NUMBER: _ClassVar[int]
    argv: _containers.RepeatedScalarFieldContainer[str]
    env: _containers.RepeatedCompositeFieldContainer[EnvVar]
    cwd: str
    timeout_s: float
    def __init__(self, argv: _Optional[_Iterable[str]] = ..., env: _Optional[_Iterable[_Union[EnvVar, _Mapping]]] = ..., cwd: _Optional[str] = ..., timeout_s: _Optional[float] = ...) -> None: ...

class EnvVar(_message.Message):
    __slots__ = ("name", "value")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    name: str
    value: str
    def __init__(self, name: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...

class Job(_message.Message):
    __slots__ = ("id", "arrival_s", "origin", "tasks", "weight", "deadline_s")
    ID_FIELD_NUMBER: _ClassVar[int]
    ARRIVAL_S_FIELD_NUMBER: _ClassVar[int]
    ORIGIN_FIELD_NUMBER: _ClassVar[int]
    TASKS_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_FIELD_NUMBER: _ClassVar[int]
    DEADLINE_S_FIELD_NUMBER: _ClassVar[int]
    id: str
    arrival_s: float
    origin: str
    tasks: _containers.RepeatedCompositeFieldContainer[Task]
    weight: float
    deadline_s: float
    def __init__(self, id: _Optional[str] = ..., arrival_s: _Optional[float] = ..., origin: _Optional[str] = ..., tasks: _Optional[_Iterable[_Union[Task, _Mapping]]] = ..., weight: _Optional[float] = ..., deadline_s: _Optional[float] = ...) -> None: ...

class Workload(_message.Message):
    __slots__ = ("jobs", "source", "seed")
    JOBS_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    jobs: _containers.RepeatedCompositeFieldContainer[Job]
    source: str
    seed: int
    def __init__(self, jobs: _Optional[_Iterable[_Union[Job, _Mapping]]] = ..., source: _Optional[str] = ..., seed: _Optional[int] = ...) -> None: ...

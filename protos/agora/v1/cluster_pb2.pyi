# ruff: noqa
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class PowerModel(_message.Message):
    __slots__ = ("node_idle_w", "node_peak_w", "gpu_idle_w", "gpu_peak_w", "pue")
    NODE_IDLE_W_FIELD_NUMBER: _ClassVar[int]
    NODE_PEAK_W_FIELD_NUMBER: _ClassVar[int]
    GPU_IDLE_W_FIELD_NUMBER: _ClassVar[int]
    GPU_PEAK_W_FIELD_NUMBER: _ClassVar[int]
    PUE_FIELD_NUMBER: _ClassVar[int]
    node_idle_w: float
    node_peak_w: float
    gpu_idle_w: float
    gpu_peak_w: float
    pue: float
    def __init__(self, node_idle_w: _Optional[float] = ..., node_peak_w: _Optional[float] = ..., gpu_idle_w: _Optional[float] = ..., gpu_peak_w: _Optional[float] = ..., pue: _Optional[float] = ...) -> None: ...

class Node(_message.Message):
    __slots__ = ("name", "site", "cpu_milli", "mem_mib", "gpus", "gpu_model")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SITE_FIELD_NUMBER: _ClassVar[int]
    CPU_MILLI_FIELD_NUMBER: _ClassVar[int]
    MEM_MIB_FIELD_NUMBER: _ClassVar[int]
    GPUS_FIELD_NUMBER: _ClassVar[int]
    GPU_MODEL_FIELD_NUMBER: _ClassVar[int]
    name: str
    site: str
    cpu_milli: int
    mem_mib: int
    gpus: int
    gpu_model: str
    def __init__(self, name: _Optional[str] = ..., site: _Optional[str] = ..., cpu_milli: _Optional[int] = ..., mem_mib: _Optional[int] = ..., gpus: _Optional[int] = ..., gpu_model: _Optional[str] = ...) -> None: ...

class Link(_message.Message):
    __slots__ = ("site_a", "site_b", "latency_ms", "bandwidth_mbps")
    SITE_A_FIELD_NUMBER: _ClassVar[int]
    SITE_B_FIELD_NUMBER: _ClassVar[int]
    LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    BANDWIDTH_MBPS_FIELD_NUMBER: _ClassVar[int]
    site_a: str
    site_b: str
    latency_ms: float
    bandwidth_mbps: float
    def __init__(self, site_a: _Optional[str] = ..., site_b: _Optional[str] = ..., latency_ms: _Optional[float] = ..., bandwidth_mbps: _Optional[float] = ...) -> None: ...

class Site(_message.Message):
    __slots__ = ("name", "nodes", "power")
    NAME_FIELD_NUMBER: _ClassVar[int]
    NODES_FIELD_NUMBER: _ClassVar[int]
    POWER_FIELD_NUMBER: _ClassVar[int]
    name: str
    nodes: _containers.RepeatedCompositeFieldContainer[Node]
    power: PowerModel
    def __init__(self, name: _Optional[str] = ..., nodes: _Optional[_Iterable[_Union[Node, _Mapping]]] = ..., power: _Optional[_Union[PowerModel, _Mapping]] = ...) -> None: ...

class NodeOutage(_message.Message):
    __slots__ = ("at_s", "until_s", "node", "site")
    AT_S_FIELD_NUMBER: _ClassVar[int]
    UNTIL_S_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    SITE_FIELD_NUMBER: _ClassVar[int]
    at_s: float
    until_s: float
    node: str
    site: str
    def __init__(self, at_s: _Optional[float] = ..., until_s: _Optional[float] = ..., node: _Optional[str] = ..., site: _Optional[str] = ...) -> None: ...

class Faults(_message.Message):
    __slots__ = ("seed", "task_failure_prob", "overrun_prob", "overrun_factor", "max_attempts", "outages")
    SEED_FIELD_NUMBER: _ClassVar[int]
    TASK_FAILURE_PROB_FIELD_NUMBER: _ClassVar[int]
    OVERRUN_PROB_FIELD_NUMBER: _ClassVar[int]
    OVERRUN_FACTOR_FIELD_NUMBER: _ClassVar[int]
    MAX_ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    OUTAGES_FIELD_NUMBER: _ClassVar[int]
    seed: int
    task_failure_prob: float
    overrun_prob: float
    overrun_factor: float
    max_attempts: int
    outages: _containers.RepeatedCompositeFieldContainer[NodeOutage]
    def __init__(self, seed: _Optional[int] = ..., task_failure_prob: _Optional[float] = ..., overrun_prob: _Optional[float] = ..., overrun_factor: _Optional[float] = ..., max_attempts: _Optional[int] = ..., outages: _Optional[_Iterable[_Union[NodeOutage, _Mapping]]] = ...) -> None: ...

class Cluster(_message.Message):
    __slots__ = ("sites", "links", "default_link", "faults", "source")
    SITES_FIELD_NUMBER: _ClassVar[int]
    LINKS_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_LINK_FIELD_NUMBER: _ClassVar[int]
    FAULTS_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    sites: _containers.RepeatedCompositeFieldContainer[Site]
    links: _containers.RepeatedCompositeFieldContainer[Link]
    default_link: Link
    faults: Faults
    source: str
    def __init__(self, sites: _Optional[_Iterable[_Union[Site, _Mapping]]] = ..., links: _Optional[_Iterable[_Union[Link, _Mapping]]] = ..., default_link: _Optional[_Union[Link, _Mapping]] = ..., faults: _Optional[_Union[Faults, _Mapping]] = ..., source: _Optional[str] = ...) -> None: ...

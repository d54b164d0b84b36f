# ruff: noqa
from protos.agora.v1 import schedule_pb2 as _schedule_pb2
from protos.agora.v1 import workload_pb2 as _workload_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SubmitJobs(_message.Message):
    __slots__ = ("jobs",)
    JOBS_FIELD_NUMBER: _ClassVar[int]
    jobs: _containers.RepeatedCompositeFieldContainer[_workload_pb2.Job]
    def __init__(self, jobs: _Optional[_Iterable[_Union[_workload_pb2.Job, _Mapping]]] = ...) -> None: ...

class Bid(_message.Message):
    __slots__ = ("job_id", "task_id", "instances", "price")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    INSTANCES_FIELD_NUMBER: _ClassVar[int]
    PRICE_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    task_id: str
    instances: int
    price: int
    def __init__(self, job_id: _Optional[str] = ..., task_id: _Optional[str] = ..., instances: _Optional[int] = ..., price: _Optional[int] = ...) -> None: ...

class BidBatch(_message.Message):
    __slots__ = ("site", "round", "bids")
    SITE_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    BIDS_FIELD_NUMBER: _ClassVar[int]
    site: str
    round: int
    bids: _containers.RepeatedCompositeFieldContainer[Bid]
    def __init__(self, site: _Optional[str] = ..., round: _Optional[int] = ..., bids: _Optional[_Iterable[_Union[Bid, _Mapping]]] = ...) -> None: ...

class Completion(_message.Message):
    __slots__ = ("job_id", "task_id", "instance_begin", "instance_end", "site")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_BEGIN_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_END_FIELD_NUMBER: _ClassVar[int]
    SITE_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    task_id: str
    instance_begin: int
    instance_end: int
    site: str
    def __init__(self, job_id: _Optional[str] = ..., task_id: _Optional[str] = ..., instance_begin: _Optional[int] = ..., instance_end: _Optional[int] = ..., site: _Optional[str] = ...) -> None: ...

class Failure(_message.Message):
    __slots__ = ("job_id", "task_id", "instance_begin", "instance_end", "site", "reason")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_BEGIN_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_END_FIELD_NUMBER: _ClassVar[int]
    SITE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    task_id: str
    instance_begin: int
    instance_end: int
    site: str
    reason: str
    def __init__(self, job_id: _Optional[str] = ..., task_id: _Optional[str] = ..., instance_begin: _Optional[int] = ..., instance_end: _Optional[int] = ..., site: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class Tick(_message.Message):
    __slots__ = ("round", "at_s")
    ROUND_FIELD_NUMBER: _ClassVar[int]
    AT_S_FIELD_NUMBER: _ClassVar[int]
    round: int
    at_s: float
    def __init__(self, round: _Optional[int] = ..., at_s: _Optional[float] = ...) -> None: ...

class SiteRound(_message.Message):
    __slots__ = ("site", "round", "completions", "failures", "bids")
    SITE_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    COMPLETIONS_FIELD_NUMBER: _ClassVar[int]
    FAILURES_FIELD_NUMBER: _ClassVar[int]
    BIDS_FIELD_NUMBER: _ClassVar[int]
    site: str
    round: int
    completions: _containers.RepeatedCompositeFieldContainer[Completion]
    failures: _containers.RepeatedCompositeFieldContainer[Failure]
    bids: _containers.RepeatedCompositeFieldContainer[Bid]
    def __init__(self, site: _Optional[str] = ..., round: _Optional[int] = ..., completions: _Optional[_Iterable[_Union[Completion, _Mapping]]] = ..., failures: _Optional[_Iterable[_Union[Failure, _Mapping]]] = ..., bids: _Optional[_Iterable[_Union[Bid, _Mapping]]] = ...) -> None: ...

class SignedSiteRound(_message.Message):
    __slots__ = ("client_id", "report", "signature")
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    REPORT_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    client_id: str
    report: bytes
    signature: bytes
    def __init__(self, client_id: _Optional[str] = ..., report: _Optional[bytes] = ..., signature: _Optional[bytes] = ...) -> None: ...

class Round(_message.Message):
    __slots__ = ("round", "at_s", "sites")
    ROUND_FIELD_NUMBER: _ClassVar[int]
    AT_S_FIELD_NUMBER: _ClassVar[int]
    SITES_FIELD_NUMBER: _ClassVar[int]
    round: int
    at_s: float
    sites: _containers.RepeatedCompositeFieldContainer[SignedSiteRound]
    def __init__(self, round: _Optional[int] = ..., at_s: _Optional[float] = ..., sites: _Optional[_Iterable[_Union[SignedSiteRound, _Mapping]]] = ...) -> None: ...

class TaskRef(_message.Message):
    __slots__ = ("job_id", "task_id")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    task_id: str
    def __init__(self, job_id: _Optional[str] = ..., task_id: _Optional[str] = ...) -> None: ...

class ScheduleQuery(_message.Message):
    __slots__ = ("all", "site", "job_id", "task", "since_version")
    ALL_FIELD_NUMBER: _ClassVar[int]
    SITE_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    SINCE_VERSION_FIELD_NUMBER: _ClassVar[int]
    all: bool
    site: str
    job_id: str
    task: TaskRef
    since_version: int
    def __init__(self, all: _Optional[bool] = ..., site: _Optional[str] = ..., job_id: _Optional[str] = ..., task: _Optional[_Union[TaskRef, _Mapping]] = ..., since_version: _Optional[int] = ...) -> None: ...

class JobStatusQuery(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class Query(_message.Message):
    __slots__ = ("schedule", "job_status")
    SCHEDULE_FIELD_NUMBER: _ClassVar[int]
    JOB_STATUS_FIELD_NUMBER: _ClassVar[int]
    schedule: ScheduleQuery
    job_status: JobStatusQuery
    def __init__(self, schedule: _Optional[_Union[ScheduleQuery, _Mapping]] = ..., job_status: _Optional[_Union[JobStatusQuery, _Mapping]] = ...) -> None: ...

class Command(_message.Message):
    __slots__ = ("submit_jobs", "bid_batch", "completion", "failure", "tick", "query", "round")
    SUBMIT_JOBS_FIELD_NUMBER: _ClassVar[int]
    BID_BATCH_FIELD_NUMBER: _ClassVar[int]
    COMPLETION_FIELD_NUMBER: _ClassVar[int]
    FAILURE_FIELD_NUMBER: _ClassVar[int]
    TICK_FIELD_NUMBER: _ClassVar[int]
    QUERY_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    submit_jobs: SubmitJobs
    bid_batch: BidBatch
    completion: Completion
    failure: Failure
    tick: Tick
    query: Query
    round: Round
    def __init__(self, submit_jobs: _Optional[_Union[SubmitJobs, _Mapping]] = ..., bid_batch: _Optional[_Union[BidBatch, _Mapping]] = ..., completion: _Optional[_Union[Completion, _Mapping]] = ..., failure: _Optional[_Union[Failure, _Mapping]] = ..., tick: _Optional[_Union[Tick, _Mapping]] = ..., query: _Optional[_Union[Query, _Mapping]] = ..., round: _Optional[_Union[Round, _Mapping]] = ...) -> None: ...

class Rejection(_message.Message):
    __slots__ = ("field", "reason")
    FIELD_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    field: str
    reason: str
    def __init__(self, field: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class TaskStatus(_message.Message):
    __slots__ = ("task_id", "instances", "waiting", "open", "running", "done", "failures")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    INSTANCES_FIELD_NUMBER: _ClassVar[int]
    WAITING_FIELD_NUMBER: _ClassVar[int]
    OPEN_FIELD_NUMBER: _ClassVar[int]
    RUNNING_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    FAILURES_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    instances: int
    waiting: int
    open: int
    running: int
    done: int
    failures: int
    def __init__(self, task_id: _Optional[str] = ..., instances: _Optional[int] = ..., waiting: _Optional[int] = ..., open: _Optional[int] = ..., running: _Optional[int] = ..., done: _Optional[int] = ..., failures: _Optional[int] = ...) -> None: ...

class JobStatus(_message.Message):
    __slots__ = ("job_id", "origin", "tasks", "complete")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    ORIGIN_FIELD_NUMBER: _ClassVar[int]
    TASKS_FIELD_NUMBER: _ClassVar[int]
    COMPLETE_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    origin: str
    tasks: _containers.RepeatedCompositeFieldContainer[TaskStatus]
    complete: bool
    def __init__(self, job_id: _Optional[str] = ..., origin: _Optional[str] = ..., tasks: _Optional[_Iterable[_Union[TaskStatus, _Mapping]]] = ..., complete: _Optional[bool] = ...) -> None: ...

class QueryResult(_message.Message):
    __slots__ = ("version", "schedule", "job_status", "error")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    SCHEDULE_FIELD_NUMBER: _ClassVar[int]
    JOB_STATUS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    version: int
    schedule: _schedule_pb2.Schedule
    job_status: JobStatus
    error: Rejection
    def __init__(self, version: _Optional[int] = ..., schedule: _Optional[_Union[_schedule_pb2.Schedule, _Mapping]] = ..., job_status: _Optional[_Union[JobStatus, _Mapping]] = ..., error: _Optional[_Union[Rejection, _Mapping]] = ...) -> None: ...

class Result(_message.Message):
    __slots__ = ("version", "kind", "accepted", "rejections", "allocations", "round", "query")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    REJECTIONS_FIELD_NUMBER: _ClassVar[int]
    ALLOCATIONS_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    QUERY_FIELD_NUMBER: _ClassVar[int]
    version: int
    kind: str
    accepted: int
    rejections: _containers.RepeatedCompositeFieldContainer[Rejection]
    allocations: _containers.RepeatedCompositeFieldContainer[_schedule_pb2.Allocation]
    round: int
    query: QueryResult
    def __init__(self, version: _Optional[int] = ..., kind: _Optional[str] = ..., accepted: _Optional[int] = ..., rejections: _Optional[_Iterable[_Union[Rejection, _Mapping]]] = ..., allocations: _Optional[_Iterable[_Union[_schedule_pb2.Allocation, _Mapping]]] = ..., round: _Optional[int] = ..., query: _Optional[_Union[QueryResult, _Mapping]] = ...) -> None: ...

class Placement(_message.Message):
    __slots__ = ("instance", "node", "gpu_index", "gpu_milli")
    INSTANCE_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    GPU_INDEX_FIELD_NUMBER: _ClassVar[int]
    GPU_MILLI_FIELD_NUMBER: _ClassVar[int]
    instance: int
    node: int
    gpu_index: _containers.RepeatedScalarFieldContainer[int]
    gpu_milli: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, instance: _Optional[int] = ..., node: _Optional[int] = ..., gpu_index: _Optional[_Iterable[int]] = ..., gpu_milli: _Optional[_Iterable[int]] = ...) -> None: ...

class TaskRecord(_message.Message):
    __slots__ = ("states", "failures", "running")
    STATES_FIELD_NUMBER: _ClassVar[int]
    FAILURES_FIELD_NUMBER: _ClassVar[int]
    RUNNING_FIELD_NUMBER: _ClassVar[int]
    states: bytes
    failures: int
    running: _containers.RepeatedCompositeFieldContainer[Placement]
    def __init__(self, states: _Optional[bytes] = ..., failures: _Optional[int] = ..., running: _Optional[_Iterable[_Union[Placement, _Mapping]]] = ...) -> None: ...

class JobRecord(_message.Message):
    __slots__ = ("job", "tasks")
    JOB_FIELD_NUMBER: _ClassVar[int]
    TASKS_FIELD_NUMBER: _ClassVar[int]
    job: _workload_pb2.Job
    tasks: _containers.RepeatedCompositeFieldContainer[TaskRecord]
    def __init__(self, job: _Optional[_Union[_workload_pb2.Job, _Mapping]] = ..., tasks: _Optional[_Iterable[_Union[TaskRecord, _Mapping]]] = ...) -> None: ...

class PendingBid(_message.Message):
    __slots__ = ("site", "job_id", "task_id", "instances", "price")
    SITE_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    INSTANCES_FIELD_NUMBER: _ClassVar[int]
    PRICE_FIELD_NUMBER: _ClassVar[int]
    site: str
    job_id: str
    task_id: str
    instances: int
    price: int
    def __init__(self, site: _Optional[str] = ..., job_id: _Optional[str] = ..., task_id: _Optional[str] = ..., instances: _Optional[int] = ..., price: _Optional[int] = ...) -> None: ...

class Counter(_message.Message):
    __slots__ = ("name", "count")
    NAME_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    name: str
    count: int
    def __init__(self, name: _Optional[str] = ..., count: _Optional[int] = ...) -> None: ...

class ScheduleSnapshot(_message.Message):
    __slots__ = ("cluster_digest", "version", "round", "jobs", "pending", "allocations", "rejected", "changes", "allocation_rounds", "clock_s")
    CLUSTER_DIGEST_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    JOBS_FIELD_NUMBER: _ClassVar[int]
    PENDING_FIELD_NUMBER: _ClassVar[int]
    ALLOCATIONS_FIELD_NUMBER: _ClassVar[int]
    REJECTED_FIELD_NUMBER: _ClassVar[int]
    CHANGES_FIELD_NUMBER: _ClassVar[int]
    ALLOCATION_ROUNDS_FIELD_NUMBER: _ClassVar[int]
    CLOCK_S_FIELD_NUMBER: _ClassVar[int]
    cluster_digest: bytes
    version: int
    round: int
    jobs: _containers.RepeatedCompositeFieldContainer[JobRecord]
    pending: _containers.RepeatedCompositeFieldContainer[PendingBid]
    allocations: _containers.RepeatedCompositeFieldContainer[_schedule_pb2.Allocation]
    rejected: _containers.RepeatedCompositeFieldContainer[Counter]
    changes: _containers.RepeatedCompositeFieldContainer[InstanceChange]
    allocation_rounds: _containers.RepeatedScalarFieldContainer[int]
    clock_s: float
    def __init__(self, cluster_digest: _Optional[bytes] = ..., version: _Optional[int] = ..., round: _Optional[int] = ..., jobs: _Optional[_Iterable[_Union[JobRecord, _Mapping]]] = ..., pending: _Optional[_Iterable[_Union[PendingBid, _Mapping]]] = ..., allocations: _Optional[_Iterable[_Union[_schedule_pb2.Allocation, _Mapping]]] = ..., rejected: _Optional[_Iterable[_Union[Counter, _Mapping]]] = ..., changes: _Optional[_Iterable[_Union[InstanceChange, _Mapping]]] = ..., allocation_rounds: _Optional[_Iterable[int]] = ..., clock_s: _Optional[float] = ...) -> None: ...

class ClientRequest(_message.Message):
    __slots__ = ("envelope",)
    ENVELOPE_FIELD_NUMBER: _ClassVar[int]
    envelope: bytes
    def __init__(self, envelope: _Optional[bytes] = ...) -> None: ...

class ClientReply(_message.Message):
    __slots__ = ("envelope", "replica")
    ENVELOPE_FIELD_NUMBER: _ClassVar[int]
    REPLICA_FIELD_NUMBER: _ClassVar[int]
    envelope: bytes
    replica: int
    def __init__(self, envelope: _Optional[bytes] = ..., replica: _Optional[int] = ...) -> None: ...

class InstanceChange(_message.Message):
    __slots__ = ("version", "job_id", "task_id", "instance_begin", "instance_end", "site", "kind")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_BEGIN_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_END_FIELD_NUMBER: _ClassVar[int]
    SITE_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    version: int
    job_id: str
    task_id: str
    instance_begin: int
    instance_end: int
    site: str
    kind: str
    def __init__(self, version: _Optional[int] = ..., job_id: _Optional[str] = ..., task_id: _Optional[str] = ..., instance_begin: _Optional[int] = ..., instance_end: _Optional[int] = ..., site: _Optional[str] = ..., kind: _Optional[str] = ...) -> None: ...

class WatchRequest(_message.Message):
    __slots__ = ("since_version",)
    SINCE_VERSION_FIELD_NUMBER: _ClassVar[int]
    since_version: int
    def __init__(self, since_version: _Optional[int] = ...) -> None: ...

class ScheduleUpdate(_message.Message):
    __slots__ = ("version", "allocations", "changes", "replica")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    ALLOCATIONS_FIELD_NUMBER: _ClassVar[int]
    CHANGES_FIELD_NUMBER: _ClassVar[int]
    REPLICA_FIELD_NUMBER: _ClassVar[int]
    version: int
    allocations: _containers.RepeatedCompositeFieldContainer[_schedule_pb2.Allocation]
    changes: _containers.RepeatedCompositeFieldContainer[InstanceChange]
    replica: int
    def __init__(self, version: _Optional[int] = ..., allocations: _Optional[_Iterable[_Union[_schedule_pb2.Allocation, _Mapping]]] = ..., changes: _Optional[_Iterable[_Union[InstanceChange, _Mapping]]] = ..., replica: _Optional[int] = ...) -> None: ...

class StatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ReplicaStatus(_message.Message):
    __slots__ = ("replica", "n", "f", "view", "primary", "last_executed", "last_committed", "stable_checkpoint", "low_water_mark", "high_water_mark", "replicas_seen", "rejected", "round", "allocations", "schedule_rejected")
    REPLICA_FIELD_NUMBER: _ClassVar[int]
    N_FIELD_NUMBER: _ClassVar[int]
    F_FIELD_NUMBER: _ClassVar[int]
    VIEW_FIELD_NUMBER: _ClassVar[int]
    PRIMARY_FIELD_NUMBER: _ClassVar[int]
    LAST_EXECUTED_FIELD_NUMBER: _ClassVar[int]
    LAST_COMMITTED_FIELD_NUMBER: _ClassVar[int]
    STABLE_CHECKPOINT_FIELD_NUMBER: _ClassVar[int]
    LOW_WATER_MARK_FIELD_NUMBER: _ClassVar[int]
    HIGH_WATER_MARK_FIELD_NUMBER: _ClassVar[int]
    REPLICAS_SEEN_FIELD_NUMBER: _ClassVar[int]
    REJECTED_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    ALLOCATIONS_FIELD_NUMBER: _ClassVar[int]
    SCHEDULE_REJECTED_FIELD_NUMBER: _ClassVar[int]
    replica: int
    n: int
    f: int
    view: int
    primary: int
    last_executed: int
    last_committed: int
    stable_checkpoint: int
    low_water_mark: int
    high_water_mark: int
    replicas_seen: _containers.RepeatedScalarFieldContainer[int]
    rejected: _containers.RepeatedCompositeFieldContainer[Counter]
    round: int
    allocations: int
    schedule_rejected: _containers.RepeatedCompositeFieldContainer[Counter]
    def __init__(self, replica: _Optional[int] = ..., n: _Optional[int] = ..., f: _Optional[int] = ..., view: _Optional[int] = ..., primary: _Optional[int] = ..., last_executed: _Optional[int] = ..., last_committed: _Optional[int] = ..., stable_checkpoint: _Optional[int] = ..., low_water_mark: _Optional[int] = ..., high_water_mark: _Optional[int] = ..., replicas_seen: _Optional[_Iterable[int]] = ..., rejected: _Optional[_Iterable[_Union[Counter, _Mapping]]] = ..., round: _Optional[int] = ..., allocations: _Optional[int] = ..., schedule_rejected: _Optional[_Iterable[_Union[Counter, _Mapping]]] = ...) -> None: ...

class PeerBatch(_message.Message):
    __slots__ = ("sender", "envelopes")
    SENDER_FIELD_NUMBER: _ClassVar[int]
    ENVELOPES_FIELD_NUMBER: _ClassVar[int]
    sender: int
    envelopes: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, sender: _Optional[int] = ..., envelopes: _Optional[_Iterable[bytes]] = ...) -> None: ...

class PeerAck(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

# ruff: noqa
from agora.protos.agora.v1 import schedule_pb2 as _schedule_pb2
from agora.protos.agora.v1 import workload_pb2 as _workload_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class EndKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    END_KIND_UNSPECIFIED: _ClassVar[EndKind]
    END_COMPLETED: _ClassVar[EndKind]
    END_FAILED: _ClassVar[EndKind]
    END_LOST: _ClassVar[EndKind]
END_KIND_UNSPECIFIED: EndKind
END_COMPLETED: EndKind
END_FAILED: EndKind
END_LOST: EndKind

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

class End(_message.Message):
    __slots__ = ("job_id", "task_id", "instance", "kind", "start_s", "end_s", "exit_code", "reason", "run")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    START_S_FIELD_NUMBER: _ClassVar[int]
    END_S_FIELD_NUMBER: _ClassVar[int]
    EXIT_CODE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    RUN_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    task_id: str
    instance: int
    kind: EndKind
    start_s: float
    end_s: float
    exit_code: int
    reason: str
    run: int
    def __init__(self, job_id: _Optional[str] = ..., task_id: _Optional[str] = ..., instance: _Optional[int] = ..., kind: _Optional[_Union[EndKind, str]] = ..., start_s: _Optional[float] = ..., end_s: _Optional[float] = ..., exit_code: _Optional[int] = ..., reason: _Optional[str] = ..., run: _Optional[int] = ...) -> None: ...

class NodeState(_message.Message):
    __slots__ = ("node", "up")
    NODE_FIELD_NUMBER: _ClassVar[int]
    UP_FIELD_NUMBER: _ClassVar[int]
    node: str
    up: bool
    def __init__(self, node: _Optional[str] = ..., up: _Optional[bool] = ...) -> None: ...

class SiteRound(_message.Message):
    __slots__ = ("site", "round", "ends", "bids", "seen_version", "bidding", "nodes")
    SITE_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    ENDS_FIELD_NUMBER: _ClassVar[int]
    BIDS_FIELD_NUMBER: _ClassVar[int]
    SEEN_VERSION_FIELD_NUMBER: _ClassVar[int]
    BIDDING_FIELD_NUMBER: _ClassVar[int]
    NODES_FIELD_NUMBER: _ClassVar[int]
    site: str
    round: int
    ends: _containers.RepeatedCompositeFieldContainer[End]
    bids: _containers.RepeatedCompositeFieldContainer[Bid]
    seen_version: int
    bidding: bool
    nodes: _containers.RepeatedCompositeFieldContainer[NodeState]
    def __init__(self, site: _Optional[str] = ..., round: _Optional[int] = ..., ends: _Optional[_Iterable[_Union[End, _Mapping]]] = ..., bids: _Optional[_Iterable[_Union[Bid, _Mapping]]] = ..., seen_version: _Optional[int] = ..., bidding: _Optional[bool] = ..., nodes: _Optional[_Iterable[_Union[NodeState, _Mapping]]] = ...) -> None: ...

class CloseRound(_message.Message):
    __slots__ = ("round",)
    ROUND_FIELD_NUMBER: _ClassVar[int]
    round: int
    def __init__(self, round: _Optional[int] = ...) -> None: ...

class SiteLapsed(_message.Message):
    __slots__ = ("site", "last_heard", "withdraw")
    SITE_FIELD_NUMBER: _ClassVar[int]
    LAST_HEARD_FIELD_NUMBER: _ClassVar[int]
    WITHDRAW_FIELD_NUMBER: _ClassVar[int]
    site: str
    last_heard: int
    withdraw: bool
    def __init__(self, site: _Optional[str] = ..., last_heard: _Optional[int] = ..., withdraw: _Optional[bool] = ...) -> None: ...

class CancelJob(_message.Message):
    __slots__ = ("job_id", "reason")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    reason: str
    def __init__(self, job_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class AdmitSite(_message.Message):
    __slots__ = ("site", "verify_key")
    SITE_FIELD_NUMBER: _ClassVar[int]
    VERIFY_KEY_FIELD_NUMBER: _ClassVar[int]
    site: str
    verify_key: bytes
    def __init__(self, site: _Optional[str] = ..., verify_key: _Optional[bytes] = ...) -> None: ...

class RemoveSite(_message.Message):
    __slots__ = ("site", "reason")
    SITE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    site: str
    reason: str
    def __init__(self, site: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

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

class LedgerQuery(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Query(_message.Message):
    __slots__ = ("schedule", "job_status", "ledger")
    SCHEDULE_FIELD_NUMBER: _ClassVar[int]
    JOB_STATUS_FIELD_NUMBER: _ClassVar[int]
    LEDGER_FIELD_NUMBER: _ClassVar[int]
    schedule: ScheduleQuery
    job_status: JobStatusQuery
    ledger: LedgerQuery
    def __init__(self, schedule: _Optional[_Union[ScheduleQuery, _Mapping]] = ..., job_status: _Optional[_Union[JobStatusQuery, _Mapping]] = ..., ledger: _Optional[_Union[LedgerQuery, _Mapping]] = ...) -> None: ...

class Command(_message.Message):
    __slots__ = ("submit_jobs", "query", "site_round", "close_round", "site_lapsed", "cancel_job", "admit_site", "remove_site")
    SUBMIT_JOBS_FIELD_NUMBER: _ClassVar[int]
    QUERY_FIELD_NUMBER: _ClassVar[int]
    SITE_ROUND_FIELD_NUMBER: _ClassVar[int]
    CLOSE_ROUND_FIELD_NUMBER: _ClassVar[int]
    SITE_LAPSED_FIELD_NUMBER: _ClassVar[int]
    CANCEL_JOB_FIELD_NUMBER: _ClassVar[int]
    ADMIT_SITE_FIELD_NUMBER: _ClassVar[int]
    REMOVE_SITE_FIELD_NUMBER: _ClassVar[int]
    submit_jobs: SubmitJobs
    query: Query
    site_round: SiteRound
    close_round: CloseRound
    site_lapsed: SiteLapsed
    cancel_job: CancelJob
    admit_site: AdmitSite
    remove_site: RemoveSite
    def __init__(self, submit_jobs: _Optional[_Union[SubmitJobs, _Mapping]] = ..., query: _Optional[_Union[Query, _Mapping]] = ..., site_round: _Optional[_Union[SiteRound, _Mapping]] = ..., close_round: _Optional[_Union[CloseRound, _Mapping]] = ..., site_lapsed: _Optional[_Union[SiteLapsed, _Mapping]] = ..., cancel_job: _Optional[_Union[CancelJob, _Mapping]] = ..., admit_site: _Optional[_Union[AdmitSite, _Mapping]] = ..., remove_site: _Optional[_Union[RemoveSite, _Mapping]] = ...) -> None: ...

class Rejection(_message.Message):
    __slots__ = ("field", "reason")
    FIELD_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    field: str
    reason: str
    def __init__(self, field: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class TaskStatus(_message.Message):
    __slots__ = ("task_id", "instances", "waiting", "open", "running", "done", "failures", "gave_up", "outcome", "reason")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    INSTANCES_FIELD_NUMBER: _ClassVar[int]
    WAITING_FIELD_NUMBER: _ClassVar[int]
    OPEN_FIELD_NUMBER: _ClassVar[int]
    RUNNING_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    FAILURES_FIELD_NUMBER: _ClassVar[int]
    GAVE_UP_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    instances: int
    waiting: int
    open: int
    running: int
    done: int
    failures: int
    gave_up: int
    outcome: str
    reason: str
    def __init__(self, task_id: _Optional[str] = ..., instances: _Optional[int] = ..., waiting: _Optional[int] = ..., open: _Optional[int] = ..., running: _Optional[int] = ..., done: _Optional[int] = ..., failures: _Optional[int] = ..., gave_up: _Optional[int] = ..., outcome: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class JobStatus(_message.Message):
    __slots__ = ("job_id", "origin", "tasks", "complete", "outcome", "reason")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    ORIGIN_FIELD_NUMBER: _ClassVar[int]
    TASKS_FIELD_NUMBER: _ClassVar[int]
    COMPLETE_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    origin: str
    tasks: _containers.RepeatedCompositeFieldContainer[TaskStatus]
    complete: bool
    outcome: str
    reason: str
    def __init__(self, job_id: _Optional[str] = ..., origin: _Optional[str] = ..., tasks: _Optional[_Iterable[_Union[TaskStatus, _Mapping]]] = ..., complete: _Optional[bool] = ..., outcome: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class QueryResult(_message.Message):
    __slots__ = ("version", "schedule", "job_status", "error", "ledger")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    SCHEDULE_FIELD_NUMBER: _ClassVar[int]
    JOB_STATUS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    LEDGER_FIELD_NUMBER: _ClassVar[int]
    version: int
    schedule: _schedule_pb2.Schedule
    job_status: JobStatus
    error: Rejection
    ledger: LedgerView
    def __init__(self, version: _Optional[int] = ..., schedule: _Optional[_Union[_schedule_pb2.Schedule, _Mapping]] = ..., job_status: _Optional[_Union[JobStatus, _Mapping]] = ..., error: _Optional[_Union[Rejection, _Mapping]] = ..., ledger: _Optional[_Union[LedgerView, _Mapping]] = ...) -> None: ...

class LedgerView(_message.Message):
    __slots__ = ("version", "jobs", "round", "sites", "nodes_down", "compaction", "subs")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    JOBS_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    SITES_FIELD_NUMBER: _ClassVar[int]
    NODES_DOWN_FIELD_NUMBER: _ClassVar[int]
    COMPACTION_FIELD_NUMBER: _ClassVar[int]
    SUBS_FIELD_NUMBER: _ClassVar[int]
    version: int
    jobs: _containers.RepeatedCompositeFieldContainer[JobRecord]
    round: RoundInfo
    sites: _containers.RepeatedCompositeFieldContainer[SiteStatus]
    nodes_down: _containers.RepeatedScalarFieldContainer[str]
    compaction: Compaction
    subs: int
    def __init__(self, version: _Optional[int] = ..., jobs: _Optional[_Iterable[_Union[JobRecord, _Mapping]]] = ..., round: _Optional[_Union[RoundInfo, _Mapping]] = ..., sites: _Optional[_Iterable[_Union[SiteStatus, _Mapping]]] = ..., nodes_down: _Optional[_Iterable[str]] = ..., compaction: _Optional[_Union[Compaction, _Mapping]] = ..., subs: _Optional[int] = ...) -> None: ...

class Result(_message.Message):
    __slots__ = ("version", "kind", "accepted", "rejections", "allocations", "round", "query", "decided")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    REJECTIONS_FIELD_NUMBER: _ClassVar[int]
    ALLOCATIONS_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    QUERY_FIELD_NUMBER: _ClassVar[int]
    DECIDED_FIELD_NUMBER: _ClassVar[int]
    version: int
    kind: str
    accepted: int
    rejections: _containers.RepeatedCompositeFieldContainer[Rejection]
    allocations: _containers.RepeatedCompositeFieldContainer[_schedule_pb2.Allocation]
    round: int
    query: QueryResult
    decided: bool
    def __init__(self, version: _Optional[int] = ..., kind: _Optional[str] = ..., accepted: _Optional[int] = ..., rejections: _Optional[_Iterable[_Union[Rejection, _Mapping]]] = ..., allocations: _Optional[_Iterable[_Union[_schedule_pb2.Allocation, _Mapping]]] = ..., round: _Optional[int] = ..., query: _Optional[_Union[QueryResult, _Mapping]] = ..., decided: _Optional[bool] = ...) -> None: ...

class Placement(_message.Message):
    __slots__ = ("instance", "node", "gpu_index", "gpu_milli", "version")
    INSTANCE_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    GPU_INDEX_FIELD_NUMBER: _ClassVar[int]
    GPU_MILLI_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    instance: int
    node: int
    gpu_index: _containers.RepeatedScalarFieldContainer[int]
    gpu_milli: _containers.RepeatedScalarFieldContainer[int]
    version: int
    def __init__(self, instance: _Optional[int] = ..., node: _Optional[int] = ..., gpu_index: _Optional[_Iterable[int]] = ..., gpu_milli: _Optional[_Iterable[int]] = ..., version: _Optional[int] = ...) -> None: ...

class TaskRecord(_message.Message):
    __slots__ = ("states", "running", "failed_instance", "failed_attempts", "outcome", "reason", "ready_at", "failed_nodes", "turns")
    STATES_FIELD_NUMBER: _ClassVar[int]
    RUNNING_FIELD_NUMBER: _ClassVar[int]
    FAILED_INSTANCE_FIELD_NUMBER: _ClassVar[int]
    FAILED_ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    READY_AT_FIELD_NUMBER: _ClassVar[int]
    FAILED_NODES_FIELD_NUMBER: _ClassVar[int]
    TURNS_FIELD_NUMBER: _ClassVar[int]
    states: bytes
    running: _containers.RepeatedCompositeFieldContainer[Placement]
    failed_instance: _containers.RepeatedScalarFieldContainer[int]
    failed_attempts: _containers.RepeatedScalarFieldContainer[int]
    outcome: str
    reason: str
    ready_at: float
    failed_nodes: _containers.RepeatedScalarFieldContainer[int]
    turns: int
    def __init__(self, states: _Optional[bytes] = ..., running: _Optional[_Iterable[_Union[Placement, _Mapping]]] = ..., failed_instance: _Optional[_Iterable[int]] = ..., failed_attempts: _Optional[_Iterable[int]] = ..., outcome: _Optional[str] = ..., reason: _Optional[str] = ..., ready_at: _Optional[float] = ..., failed_nodes: _Optional[_Iterable[int]] = ..., turns: _Optional[int] = ...) -> None: ...

class JobRecord(_message.Message):
    __slots__ = ("job", "tasks", "outcome", "reason", "completion", "version")
    JOB_FIELD_NUMBER: _ClassVar[int]
    TASKS_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    COMPLETION_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    job: _workload_pb2.Job
    tasks: _containers.RepeatedCompositeFieldContainer[TaskRecord]
    outcome: str
    reason: str
    completion: float
    version: int
    def __init__(self, job: _Optional[_Union[_workload_pb2.Job, _Mapping]] = ..., tasks: _Optional[_Iterable[_Union[TaskRecord, _Mapping]]] = ..., outcome: _Optional[str] = ..., reason: _Optional[str] = ..., completion: _Optional[float] = ..., version: _Optional[int] = ...) -> None: ...

class SitePart(_message.Message):
    __slots__ = ("site", "seen_version", "bids", "counts")
    SITE_FIELD_NUMBER: _ClassVar[int]
    SEEN_VERSION_FIELD_NUMBER: _ClassVar[int]
    BIDS_FIELD_NUMBER: _ClassVar[int]
    COUNTS_FIELD_NUMBER: _ClassVar[int]
    site: str
    seen_version: int
    bids: _containers.RepeatedCompositeFieldContainer[Bid]
    counts: bool
    def __init__(self, site: _Optional[str] = ..., seen_version: _Optional[int] = ..., bids: _Optional[_Iterable[_Union[Bid, _Mapping]]] = ..., counts: _Optional[bool] = ...) -> None: ...

class SiteState(_message.Message):
    __slots__ = ("site", "last_heard", "lapsed", "lapse_votes")
    SITE_FIELD_NUMBER: _ClassVar[int]
    LAST_HEARD_FIELD_NUMBER: _ClassVar[int]
    LAPSED_FIELD_NUMBER: _ClassVar[int]
    LAPSE_VOTES_FIELD_NUMBER: _ClassVar[int]
    site: str
    last_heard: int
    lapsed: bool
    lapse_votes: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, site: _Optional[str] = ..., last_heard: _Optional[int] = ..., lapsed: _Optional[bool] = ..., lapse_votes: _Optional[_Iterable[int]] = ...) -> None: ...

class Counter(_message.Message):
    __slots__ = ("name", "count")
    NAME_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    name: str
    count: int
    def __init__(self, name: _Optional[str] = ..., count: _Optional[int] = ...) -> None: ...

class ScheduleSnapshot(_message.Message):
    __slots__ = ("cluster_digest", "version", "round", "jobs", "allocations", "rejected", "changes", "allocation_rounds", "armed", "armed_version", "parts", "close_votes", "sites", "nodes_down", "members", "compaction", "rearm", "reopened")
    CLUSTER_DIGEST_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    JOBS_FIELD_NUMBER: _ClassVar[int]
    ALLOCATIONS_FIELD_NUMBER: _ClassVar[int]
    REJECTED_FIELD_NUMBER: _ClassVar[int]
    CHANGES_FIELD_NUMBER: _ClassVar[int]
    ALLOCATION_ROUNDS_FIELD_NUMBER: _ClassVar[int]
    ARMED_FIELD_NUMBER: _ClassVar[int]
    ARMED_VERSION_FIELD_NUMBER: _ClassVar[int]
    PARTS_FIELD_NUMBER: _ClassVar[int]
    CLOSE_VOTES_FIELD_NUMBER: _ClassVar[int]
    SITES_FIELD_NUMBER: _ClassVar[int]
    NODES_DOWN_FIELD_NUMBER: _ClassVar[int]
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    COMPACTION_FIELD_NUMBER: _ClassVar[int]
    REARM_FIELD_NUMBER: _ClassVar[int]
    REOPENED_FIELD_NUMBER: _ClassVar[int]
    cluster_digest: bytes
    version: int
    round: int
    jobs: _containers.RepeatedCompositeFieldContainer[JobRecord]
    allocations: _containers.RepeatedCompositeFieldContainer[_schedule_pb2.Allocation]
    rejected: _containers.RepeatedCompositeFieldContainer[Counter]
    changes: _containers.RepeatedCompositeFieldContainer[InstanceChange]
    allocation_rounds: _containers.RepeatedScalarFieldContainer[int]
    armed: bool
    armed_version: int
    parts: _containers.RepeatedCompositeFieldContainer[SitePart]
    close_votes: _containers.RepeatedScalarFieldContainer[int]
    sites: _containers.RepeatedCompositeFieldContainer[SiteState]
    nodes_down: _containers.RepeatedScalarFieldContainer[int]
    members: _containers.RepeatedCompositeFieldContainer[AdmitSite]
    compaction: Compaction
    rearm: bool
    reopened: _containers.RepeatedCompositeFieldContainer[TaskRef]
    def __init__(self, cluster_digest: _Optional[bytes] = ..., version: _Optional[int] = ..., round: _Optional[int] = ..., jobs: _Optional[_Iterable[_Union[JobRecord, _Mapping]]] = ..., allocations: _Optional[_Iterable[_Union[_schedule_pb2.Allocation, _Mapping]]] = ..., rejected: _Optional[_Iterable[_Union[Counter, _Mapping]]] = ..., changes: _Optional[_Iterable[_Union[InstanceChange, _Mapping]]] = ..., allocation_rounds: _Optional[_Iterable[int]] = ..., armed: _Optional[bool] = ..., armed_version: _Optional[int] = ..., parts: _Optional[_Iterable[_Union[SitePart, _Mapping]]] = ..., close_votes: _Optional[_Iterable[int]] = ..., sites: _Optional[_Iterable[_Union[SiteState, _Mapping]]] = ..., nodes_down: _Optional[_Iterable[int]] = ..., members: _Optional[_Iterable[_Union[AdmitSite, _Mapping]]] = ..., compaction: _Optional[_Union[Compaction, _Mapping]] = ..., rearm: _Optional[bool] = ..., reopened: _Optional[_Iterable[_Union[TaskRef, _Mapping]]] = ...) -> None: ...

class Compaction(_message.Message):
    __slots__ = ("jobs", "history_floor", "dropped")
    JOBS_FIELD_NUMBER: _ClassVar[int]
    HISTORY_FLOOR_FIELD_NUMBER: _ClassVar[int]
    DROPPED_FIELD_NUMBER: _ClassVar[int]
    jobs: _containers.RepeatedCompositeFieldContainer[Counter]
    history_floor: int
    dropped: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, jobs: _Optional[_Iterable[_Union[Counter, _Mapping]]] = ..., history_floor: _Optional[int] = ..., dropped: _Optional[_Iterable[int]] = ...) -> None: ...

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

class StreamRequest(_message.Message):
    __slots__ = ("id", "rpc", "envelope")
    ID_FIELD_NUMBER: _ClassVar[int]
    RPC_FIELD_NUMBER: _ClassVar[int]
    ENVELOPE_FIELD_NUMBER: _ClassVar[int]
    id: int
    rpc: str
    envelope: bytes
    def __init__(self, id: _Optional[int] = ..., rpc: _Optional[str] = ..., envelope: _Optional[bytes] = ...) -> None: ...

class StreamReply(_message.Message):
    __slots__ = ("id", "reply", "code", "details")
    ID_FIELD_NUMBER: _ClassVar[int]
    REPLY_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    DETAILS_FIELD_NUMBER: _ClassVar[int]
    id: int
    reply: ClientReply
    code: str
    details: str
    def __init__(self, id: _Optional[int] = ..., reply: _Optional[_Union[ClientReply, _Mapping]] = ..., code: _Optional[str] = ..., details: _Optional[str] = ...) -> None: ...

class StreamRequests(_message.Message):
    __slots__ = ("requests",)
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    requests: _containers.RepeatedCompositeFieldContainer[StreamRequest]
    def __init__(self, requests: _Optional[_Iterable[_Union[StreamRequest, _Mapping]]] = ...) -> None: ...

class StreamReplies(_message.Message):
    __slots__ = ("replies",)
    REPLIES_FIELD_NUMBER: _ClassVar[int]
    replies: _containers.RepeatedCompositeFieldContainer[StreamReply]
    def __init__(self, replies: _Optional[_Iterable[_Union[StreamReply, _Mapping]]] = ...) -> None: ...

class InstanceChange(_message.Message):
    __slots__ = ("version", "job_id", "task_id", "instance_begin", "instance_end", "site", "kind", "start_s", "end_s", "exit_code", "reason")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_BEGIN_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_END_FIELD_NUMBER: _ClassVar[int]
    SITE_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    START_S_FIELD_NUMBER: _ClassVar[int]
    END_S_FIELD_NUMBER: _ClassVar[int]
    EXIT_CODE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    version: int
    job_id: str
    task_id: str
    instance_begin: int
    instance_end: int
    site: str
    kind: str
    start_s: float
    end_s: float
    exit_code: int
    reason: str
    def __init__(self, version: _Optional[int] = ..., job_id: _Optional[str] = ..., task_id: _Optional[str] = ..., instance_begin: _Optional[int] = ..., instance_end: _Optional[int] = ..., site: _Optional[str] = ..., kind: _Optional[str] = ..., start_s: _Optional[float] = ..., end_s: _Optional[float] = ..., exit_code: _Optional[int] = ..., reason: _Optional[str] = ...) -> None: ...

class RoundInfo(_message.Message):
    __slots__ = ("round", "armed", "armed_version")
    ROUND_FIELD_NUMBER: _ClassVar[int]
    ARMED_FIELD_NUMBER: _ClassVar[int]
    ARMED_VERSION_FIELD_NUMBER: _ClassVar[int]
    round: int
    armed: bool
    armed_version: int
    def __init__(self, round: _Optional[int] = ..., armed: _Optional[bool] = ..., armed_version: _Optional[int] = ...) -> None: ...

class SiteStatus(_message.Message):
    __slots__ = ("site", "lapsed", "key", "removed")
    SITE_FIELD_NUMBER: _ClassVar[int]
    LAPSED_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    REMOVED_FIELD_NUMBER: _ClassVar[int]
    site: str
    lapsed: bool
    key: bytes
    removed: bool
    def __init__(self, site: _Optional[str] = ..., lapsed: _Optional[bool] = ..., key: _Optional[bytes] = ..., removed: _Optional[bool] = ...) -> None: ...

class WatchRequest(_message.Message):
    __slots__ = ("since_version", "auth")
    SINCE_VERSION_FIELD_NUMBER: _ClassVar[int]
    AUTH_FIELD_NUMBER: _ClassVar[int]
    since_version: int
    auth: ReadAuth
    def __init__(self, since_version: _Optional[int] = ..., auth: _Optional[_Union[ReadAuth, _Mapping]] = ...) -> None: ...

class ReadAuth(_message.Message):
    __slots__ = ("client_id", "timestamp_ms", "signature", "replica")
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_MS_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    REPLICA_FIELD_NUMBER: _ClassVar[int]
    client_id: str
    timestamp_ms: int
    signature: bytes
    replica: int
    def __init__(self, client_id: _Optional[str] = ..., timestamp_ms: _Optional[int] = ..., signature: _Optional[bytes] = ..., replica: _Optional[int] = ...) -> None: ...

class ScheduleUpdate(_message.Message):
    __slots__ = ("version", "allocations", "changes", "replica", "jobs", "round", "nodes", "sites", "sub", "cancelled", "compacted", "job_origins")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    ALLOCATIONS_FIELD_NUMBER: _ClassVar[int]
    CHANGES_FIELD_NUMBER: _ClassVar[int]
    REPLICA_FIELD_NUMBER: _ClassVar[int]
    JOBS_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    NODES_FIELD_NUMBER: _ClassVar[int]
    SITES_FIELD_NUMBER: _ClassVar[int]
    SUB_FIELD_NUMBER: _ClassVar[int]
    CANCELLED_FIELD_NUMBER: _ClassVar[int]
    COMPACTED_FIELD_NUMBER: _ClassVar[int]
    JOB_ORIGINS_FIELD_NUMBER: _ClassVar[int]
    version: int
    allocations: _containers.RepeatedCompositeFieldContainer[_schedule_pb2.Allocation]
    changes: _containers.RepeatedCompositeFieldContainer[InstanceChange]
    replica: int
    jobs: _containers.RepeatedCompositeFieldContainer[_workload_pb2.Job]
    round: RoundInfo
    nodes: _containers.RepeatedCompositeFieldContainer[NodeState]
    sites: _containers.RepeatedCompositeFieldContainer[SiteStatus]
    sub: int
    cancelled: _containers.RepeatedCompositeFieldContainer[CancelJob]
    compacted: _containers.RepeatedScalarFieldContainer[str]
    job_origins: _containers.RepeatedCompositeFieldContainer[JobOrigin]
    def __init__(self, version: _Optional[int] = ..., allocations: _Optional[_Iterable[_Union[_schedule_pb2.Allocation, _Mapping]]] = ..., changes: _Optional[_Iterable[_Union[InstanceChange, _Mapping]]] = ..., replica: _Optional[int] = ..., jobs: _Optional[_Iterable[_Union[_workload_pb2.Job, _Mapping]]] = ..., round: _Optional[_Union[RoundInfo, _Mapping]] = ..., nodes: _Optional[_Iterable[_Union[NodeState, _Mapping]]] = ..., sites: _Optional[_Iterable[_Union[SiteStatus, _Mapping]]] = ..., sub: _Optional[int] = ..., cancelled: _Optional[_Iterable[_Union[CancelJob, _Mapping]]] = ..., compacted: _Optional[_Iterable[str]] = ..., job_origins: _Optional[_Iterable[_Union[JobOrigin, _Mapping]]] = ...) -> None: ...

class JobOrigin(_message.Message):
    __slots__ = ("job_id", "site")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    SITE_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    site: str
    def __init__(self, job_id: _Optional[str] = ..., site: _Optional[str] = ...) -> None: ...

class UpdateKey(_message.Message):
    __slots__ = ("version", "sub")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    SUB_FIELD_NUMBER: _ClassVar[int]
    version: int
    sub: int
    def __init__(self, version: _Optional[int] = ..., sub: _Optional[int] = ...) -> None: ...

class StatusRequest(_message.Message):
    __slots__ = ("auth",)
    AUTH_FIELD_NUMBER: _ClassVar[int]
    auth: ReadAuth
    def __init__(self, auth: _Optional[_Union[ReadAuth, _Mapping]] = ...) -> None: ...

class ReplicaStatus(_message.Message):
    __slots__ = ("replica", "n", "f", "view", "primary", "last_executed", "last_committed", "stable_checkpoint", "low_water_mark", "high_water_mark", "replicas_seen", "rejected", "round", "allocations", "schedule_rejected", "armed", "decided_sites", "lapsed_sites", "decision_latency_ms_p50", "decision_latency_ms_p99", "decision_latency_samples", "silent_sites", "decision_latency_ready_ms_p50", "decision_latency_ready_ms_p99")
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
    ARMED_FIELD_NUMBER: _ClassVar[int]
    DECIDED_SITES_FIELD_NUMBER: _ClassVar[int]
    LAPSED_SITES_FIELD_NUMBER: _ClassVar[int]
    DECISION_LATENCY_MS_P50_FIELD_NUMBER: _ClassVar[int]
    DECISION_LATENCY_MS_P99_FIELD_NUMBER: _ClassVar[int]
    DECISION_LATENCY_SAMPLES_FIELD_NUMBER: _ClassVar[int]
    SILENT_SITES_FIELD_NUMBER: _ClassVar[int]
    DECISION_LATENCY_READY_MS_P50_FIELD_NUMBER: _ClassVar[int]
    DECISION_LATENCY_READY_MS_P99_FIELD_NUMBER: _ClassVar[int]
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
    armed: bool
    decided_sites: _containers.RepeatedScalarFieldContainer[str]
    lapsed_sites: _containers.RepeatedScalarFieldContainer[str]
    decision_latency_ms_p50: float
    decision_latency_ms_p99: float
    decision_latency_samples: int
    silent_sites: _containers.RepeatedScalarFieldContainer[str]
    decision_latency_ready_ms_p50: float
    decision_latency_ready_ms_p99: float
    def __init__(self, replica: _Optional[int] = ..., n: _Optional[int] = ..., f: _Optional[int] = ..., view: _Optional[int] = ..., primary: _Optional[int] = ..., last_executed: _Optional[int] = ..., last_committed: _Optional[int] = ..., stable_checkpoint: _Optional[int] = ..., low_water_mark: _Optional[int] = ..., high_water_mark: _Optional[int] = ..., replicas_seen: _Optional[_Iterable[int]] = ..., rejected: _Optional[_Iterable[_Union[Counter, _Mapping]]] = ..., round: _Optional[int] = ..., allocations: _Optional[int] = ..., schedule_rejected: _Optional[_Iterable[_Union[Counter, _Mapping]]] = ..., armed: _Optional[bool] = ..., decided_sites: _Optional[_Iterable[str]] = ..., lapsed_sites: _Optional[_Iterable[str]] = ..., decision_latency_ms_p50: _Optional[float] = ..., decision_latency_ms_p99: _Optional[float] = ..., decision_latency_samples: _Optional[int] = ..., silent_sites: _Optional[_Iterable[str]] = ..., decision_latency_ready_ms_p50: _Optional[float] = ..., decision_latency_ready_ms_p99: _Optional[float] = ...) -> None: ...

class HeartbeatRequest(_message.Message):
    __slots__ = ("client_id", "timestamp_us", "signature")
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_US_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    client_id: str
    timestamp_us: int
    signature: bytes
    def __init__(self, client_id: _Optional[str] = ..., timestamp_us: _Optional[int] = ..., signature: _Optional[bytes] = ...) -> None: ...

class HeartbeatReply(_message.Message):
    __slots__ = ("version",)
    VERSION_FIELD_NUMBER: _ClassVar[int]
    version: int
    def __init__(self, version: _Optional[int] = ...) -> None: ...

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

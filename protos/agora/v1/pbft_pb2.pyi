# ruff: noqa
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class PbftEnvelope(_message.Message):
    __slots__ = ("sender", "payload", "macs", "signature")
    SENDER_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    MACS_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    sender: int
    payload: bytes
    macs: _containers.RepeatedScalarFieldContainer[bytes]
    signature: bytes
    def __init__(self, sender: _Optional[int] = ..., payload: _Optional[bytes] = ..., macs: _Optional[_Iterable[bytes]] = ..., signature: _Optional[bytes] = ...) -> None: ...

class PbftMessage(_message.Message):
    __slots__ = ("request", "pre_prepare", "prepare", "commit", "checkpoint", "view_change", "new_view", "fetch_state", "state", "reply", "status")
    REQUEST_FIELD_NUMBER: _ClassVar[int]
    PRE_PREPARE_FIELD_NUMBER: _ClassVar[int]
    PREPARE_FIELD_NUMBER: _ClassVar[int]
    COMMIT_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_FIELD_NUMBER: _ClassVar[int]
    VIEW_CHANGE_FIELD_NUMBER: _ClassVar[int]
    NEW_VIEW_FIELD_NUMBER: _ClassVar[int]
    FETCH_STATE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    REPLY_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    request: PbftRequest
    pre_prepare: PrePrepare
    prepare: Prepare
    commit: Commit
    checkpoint: Checkpoint
    view_change: ViewChange
    new_view: NewView
    fetch_state: FetchState
    state: StateTransfer
    reply: PbftReply
    status: PbftStatus
    def __init__(self, request: _Optional[_Union[PbftRequest, _Mapping]] = ..., pre_prepare: _Optional[_Union[PrePrepare, _Mapping]] = ..., prepare: _Optional[_Union[Prepare, _Mapping]] = ..., commit: _Optional[_Union[Commit, _Mapping]] = ..., checkpoint: _Optional[_Union[Checkpoint, _Mapping]] = ..., view_change: _Optional[_Union[ViewChange, _Mapping]] = ..., new_view: _Optional[_Union[NewView, _Mapping]] = ..., fetch_state: _Optional[_Union[FetchState, _Mapping]] = ..., state: _Optional[_Union[StateTransfer, _Mapping]] = ..., reply: _Optional[_Union[PbftReply, _Mapping]] = ..., status: _Optional[_Union[PbftStatus, _Mapping]] = ...) -> None: ...

class PbftRequest(_message.Message):
    __slots__ = ("client_id", "timestamp", "op", "read_only", "signature")
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    OP_FIELD_NUMBER: _ClassVar[int]
    READ_ONLY_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    client_id: str
    timestamp: int
    op: bytes
    read_only: bool
    signature: bytes
    def __init__(self, client_id: _Optional[str] = ..., timestamp: _Optional[int] = ..., op: _Optional[bytes] = ..., read_only: _Optional[bool] = ..., signature: _Optional[bytes] = ...) -> None: ...

class PrePrepare(_message.Message):
    __slots__ = ("view", "seq", "digest", "requests")
    VIEW_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    view: int
    seq: int
    digest: bytes
    requests: _containers.RepeatedCompositeFieldContainer[PbftRequest]
    def __init__(self, view: _Optional[int] = ..., seq: _Optional[int] = ..., digest: _Optional[bytes] = ..., requests: _Optional[_Iterable[_Union[PbftRequest, _Mapping]]] = ...) -> None: ...

class Prepare(_message.Message):
    __slots__ = ("view", "seq", "digest", "replica")
    VIEW_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    REPLICA_FIELD_NUMBER: _ClassVar[int]
    view: int
    seq: int
    digest: bytes
    replica: int
    def __init__(self, view: _Optional[int] = ..., seq: _Optional[int] = ..., digest: _Optional[bytes] = ..., replica: _Optional[int] = ...) -> None: ...

class Commit(_message.Message):
    __slots__ = ("view", "seq", "digest", "replica")
    VIEW_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    REPLICA_FIELD_NUMBER: _ClassVar[int]
    view: int
    seq: int
    digest: bytes
    replica: int
    def __init__(self, view: _Optional[int] = ..., seq: _Optional[int] = ..., digest: _Optional[bytes] = ..., replica: _Optional[int] = ...) -> None: ...

class Checkpoint(_message.Message):
    __slots__ = ("seq", "digest", "replica")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    REPLICA_FIELD_NUMBER: _ClassVar[int]
    seq: int
    digest: bytes
    replica: int
    def __init__(self, seq: _Optional[int] = ..., digest: _Optional[bytes] = ..., replica: _Optional[int] = ...) -> None: ...

class PreparedCert(_message.Message):
    __slots__ = ("view", "seq", "digest", "requests", "prepares")
    VIEW_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    PREPARES_FIELD_NUMBER: _ClassVar[int]
    view: int
    seq: int
    digest: bytes
    requests: _containers.RepeatedCompositeFieldContainer[PbftRequest]
    prepares: _containers.RepeatedCompositeFieldContainer[PbftEnvelope]
    def __init__(self, view: _Optional[int] = ..., seq: _Optional[int] = ..., digest: _Optional[bytes] = ..., requests: _Optional[_Iterable[_Union[PbftRequest, _Mapping]]] = ..., prepares: _Optional[_Iterable[_Union[PbftEnvelope, _Mapping]]] = ...) -> None: ...

class ViewChange(_message.Message):
    __slots__ = ("new_view", "replica", "stable_seq", "stable_digest", "checkpoint_proof", "prepared")
    NEW_VIEW_FIELD_NUMBER: _ClassVar[int]
    REPLICA_FIELD_NUMBER: _ClassVar[int]
    STABLE_SEQ_FIELD_NUMBER: _ClassVar[int]
    STABLE_DIGEST_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_PROOF_FIELD_NUMBER: _ClassVar[int]
    PREPARED_FIELD_NUMBER: _ClassVar[int]
    new_view: int
    replica: int
    stable_seq: int
    stable_digest: bytes
    checkpoint_proof: _containers.RepeatedCompositeFieldContainer[PbftEnvelope]
    prepared: _containers.RepeatedCompositeFieldContainer[PreparedCert]
    def __init__(self, new_view: _Optional[int] = ..., replica: _Optional[int] = ..., stable_seq: _Optional[int] = ..., stable_digest: _Optional[bytes] = ..., checkpoint_proof: _Optional[_Iterable[_Union[PbftEnvelope, _Mapping]]] = ..., prepared: _Optional[_Iterable[_Union[PreparedCert, _Mapping]]] = ...) -> None: ...

class NewView(_message.Message):
    __slots__ = ("view", "view_changes", "pre_prepares")
    VIEW_FIELD_NUMBER: _ClassVar[int]
    VIEW_CHANGES_FIELD_NUMBER: _ClassVar[int]
    PRE_PREPARES_FIELD_NUMBER: _ClassVar[int]
    view: int
    view_changes: _containers.RepeatedCompositeFieldContainer[PbftEnvelope]
    pre_prepares: _containers.RepeatedCompositeFieldContainer[PrePrepare]
    def __init__(self, view: _Optional[int] = ..., view_changes: _Optional[_Iterable[_Union[PbftEnvelope, _Mapping]]] = ..., pre_prepares: _Optional[_Iterable[_Union[PrePrepare, _Mapping]]] = ...) -> None: ...

class FetchState(_message.Message):
    __slots__ = ("seq", "replica")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    REPLICA_FIELD_NUMBER: _ClassVar[int]
    seq: int
    replica: int
    def __init__(self, seq: _Optional[int] = ..., replica: _Optional[int] = ...) -> None: ...

class StateTransfer(_message.Message):
    __slots__ = ("seq", "state", "proof", "replica")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    PROOF_FIELD_NUMBER: _ClassVar[int]
    REPLICA_FIELD_NUMBER: _ClassVar[int]
    seq: int
    state: bytes
    proof: _containers.RepeatedCompositeFieldContainer[PbftEnvelope]
    replica: int
    def __init__(self, seq: _Optional[int] = ..., state: _Optional[bytes] = ..., proof: _Optional[_Iterable[_Union[PbftEnvelope, _Mapping]]] = ..., replica: _Optional[int] = ...) -> None: ...

class PbftReply(_message.Message):
    __slots__ = ("view", "timestamp", "client_id", "replica", "result", "read_only")
    VIEW_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    REPLICA_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    READ_ONLY_FIELD_NUMBER: _ClassVar[int]
    view: int
    timestamp: int
    client_id: str
    replica: int
    result: bytes
    read_only: bool
    def __init__(self, view: _Optional[int] = ..., timestamp: _Optional[int] = ..., client_id: _Optional[str] = ..., replica: _Optional[int] = ..., result: _Optional[bytes] = ..., read_only: _Optional[bool] = ...) -> None: ...

class PbftStatus(_message.Message):
    __slots__ = ("view", "view_active", "last_executed", "stable_seq", "replica", "suspects")
    VIEW_FIELD_NUMBER: _ClassVar[int]
    VIEW_ACTIVE_FIELD_NUMBER: _ClassVar[int]
    LAST_EXECUTED_FIELD_NUMBER: _ClassVar[int]
    STABLE_SEQ_FIELD_NUMBER: _ClassVar[int]
    REPLICA_FIELD_NUMBER: _ClassVar[int]
    SUSPECTS_FIELD_NUMBER: _ClassVar[int]
    view: int
    view_active: bool
    last_executed: int
    stable_seq: int
    replica: int
    suspects: bool
    def __init__(self, view: _Optional[int] = ..., view_active: _Optional[bool] = ..., last_executed: _Optional[int] = ..., stable_seq: _Optional[int] = ..., replica: _Optional[int] = ..., suspects: _Optional[bool] = ...) -> None: ...

class ClientRecord(_message.Message):
    __slots__ = ("client_id", "timestamp", "result", "op_digest")
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    OP_DIGEST_FIELD_NUMBER: _ClassVar[int]
    client_id: str
    timestamp: int
    result: bytes
    op_digest: bytes
    def __init__(self, client_id: _Optional[str] = ..., timestamp: _Optional[int] = ..., result: _Optional[bytes] = ..., op_digest: _Optional[bytes] = ...) -> None: ...

class CheckpointState(_message.Message):
    __slots__ = ("seq", "app_snapshot", "clients")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    APP_SNAPSHOT_FIELD_NUMBER: _ClassVar[int]
    CLIENTS_FIELD_NUMBER: _ClassVar[int]
    seq: int
    app_snapshot: bytes
    clients: _containers.RepeatedCompositeFieldContainer[ClientRecord]
    def __init__(self, seq: _Optional[int] = ..., app_snapshot: _Optional[bytes] = ..., clients: _Optional[_Iterable[_Union[ClientRecord, _Mapping]]] = ...) -> None: ...

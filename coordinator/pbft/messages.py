"""Actions a sans-IO node returns, and the digests every replica computes the same way.

Messages themselves are the protobufs of ``protos/agora/v1/pbft.proto``; a PbftEnvelope is
what travels. Digests: a request's is SHA-256 over its signed bytes and its signature; a
batch's is SHA-256 over ``b"batch"`` and its requests' digests in order; a checkpoint's is
SHA-256 over the CheckpointState serialized with ``deterministic=True``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from google.protobuf.message import DecodeError

from agora.protos.agora.v1.pbft_pb2 import PbftEnvelope, PbftRequest

REQUEST_DOMAIN = b"agora.pbft.v1.request\0"
NULL_DIGEST = hashlib.sha256(b"batch").digest()
"""Digest of the empty batch: a null request (view change fills gaps with these)."""


@dataclass(frozen=True, slots=True)
class Send:
    """Deliver ``msg`` to replica ``to``."""
    to: int
    msg: PbftEnvelope


@dataclass(frozen=True, slots=True)
class Broadcast:
    """Deliver ``msg`` to every replica but the sender (a client: to every replica)."""
    msg: PbftEnvelope


@dataclass(frozen=True, slots=True)
class Reply:
    """Deliver ``msg`` (a PBFT REPLY) to client ``client_id``'s request whose ``op_key`` is
    ``op`` (b"": to whichever waits at its timestamp)."""
    client_id: str
    msg: PbftEnvelope
    op: bytes = b""


@dataclass(frozen=True, slots=True)
class Completed:
    """A client's request finished: f+1 (ordered) or 2f+1 (read-only) matching replies."""
    client_id: str
    timestamp: int
    result: bytes
    read_only: bool


Action = Send | Broadcast | Reply | Completed


MAX_TIMESTAMP = 2**63 - 1
"""The largest request timestamp a replica accepts: the protocol's field is a uint64, the
replicas' durable log (SQLite INTEGER) holds signed 64-bit integers. A request past it is
refused before ordering and refused in a pre-prepare (so a faulty primary cannot order it)."""


MAX_CLIENT_ID_BYTES = 0xFFFF
"""The longest client id the signing bytes can carry (its length is two bytes there). A
request with a longer one is refused wherever it appears -- alone, in a pre-prepare, a
prepared certificate or a new view -- before its digest is taken."""


def request_shape_ok(req: PbftRequest) -> bool:
    """Whether ``req``'s timestamp and client id fit the protocol (checked before its digest
    or signature: a faulty replica may put any request in what it sends)."""
    return (1 <= req.timestamp <= MAX_TIMESTAMP
            and len(req.client_id.encode("utf-8", "surrogatepass")) <= MAX_CLIENT_ID_BYTES)


def request_signing_bytes(client_id: str, timestamp: int, op: bytes, read_only: bool) -> bytes:
    """The bytes a client signs: canonical, independent of protobuf encoding. ValueError for a
    client id over ``MAX_CLIENT_ID_BYTES`` (see ``request_shape_ok``)."""
    cid = client_id.encode()
    if len(cid) > MAX_CLIENT_ID_BYTES:
        raise ValueError(f"client_id: {len(cid)} bytes; at most {MAX_CLIENT_ID_BYTES}")
    return b"".join((REQUEST_DOMAIN, len(cid).to_bytes(2, "big"), cid,
                     timestamp.to_bytes(8, "big"), b"\1" if read_only else b"\0", op))


def request_digest(req: PbftRequest) -> bytes:
    return hashlib.sha256(request_signing_bytes(req.client_id, req.timestamp, req.op,
                                                req.read_only) + req.signature).digest()


ClientEntry = tuple[int, bytes, bytes]
"""A replica's record of a client's last executed request: (its timestamp, the reply's
result, ``op_digest`` of its op; b"" where not known -- a log written before it was kept)."""


def op_digest(op: bytes) -> bytes:
    """What tells two requests of one client and one timestamp apart: SHA-256 of the op."""
    return hashlib.sha256(op).digest()


def reuses_timestamp(last: ClientEntry | None, timestamp: int, op: bytes) -> bool:
    """True if a request at ``timestamp`` with ``op`` reuses the timestamp of the client's
    last executed request (``last``) for another op: it is refused, not answered with the
    other request's result (a client must give each request a larger timestamp). False where
    the executed op's digest is not known (answered with the cached result, as before)."""
    return (last is not None and timestamp == last[0] and bool(last[2])
            and last[2] != op_digest(op))


def op_key(req) -> bytes:
    """What tells a request apart from another of its client at its timestamp while it waits
    for its reply (``ReplicaHost.waiter``): its op, and whether it only reads."""
    return op_digest((b"r" if req.read_only else b"w") + req.op)


def clients_of(state) -> dict[str, ClientEntry]:
    """The reply table a ``CheckpointState`` carries."""
    return {c.client_id: (c.timestamp, c.result, c.op_digest) for c in state.clients}


def batch_digest_of(request_digests: list[bytes]) -> bytes:
    return hashlib.sha256(b"batch" + b"".join(request_digests)).digest()


def batch_digest(requests) -> bytes:
    return batch_digest_of([request_digest(r) for r in requests])


def as_envelope(msg: PbftEnvelope | bytes) -> PbftEnvelope | None:
    """``msg`` itself if it is an envelope, else parsed from its bytes; None if they do not
    parse (the caller counts it as malformed)."""
    if isinstance(msg, PbftEnvelope):
        return msg
    env = PbftEnvelope()
    try:
        env.ParseFromString(bytes(msg))
    except (DecodeError, TypeError, ValueError):
        return None
    return env

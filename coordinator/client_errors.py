"""What a coordinator client's call ends with when it is not an answer: which gRPC statuses
are the request's own fault (``is_refusal``), how many replicas must give one alike
(``refusal_need``), and the error a call raises (``CoordinatorError``). Used by
``coordinator/client.py`` and the agents' clearinghouse."""

from __future__ import annotations

import grpc

from agora.coordinator.request_clock import AHEAD
from agora.protos.agora.v1 import coordinator_pb2 as pb

REFUSALS = (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.UNAUTHENTICATED,
            grpc.StatusCode.PERMISSION_DENIED,
            grpc.StatusCode.FAILED_PRECONDITION)


def is_refusal(code: grpc.StatusCode, details: str | None) -> bool:
    """Is this answer the request's own fault, so that f+1 alike end the call with it? Also
    RESOURCE_EXHAUSTED for a request over a limit (it names the limit; sending it again
    cannot help) -- but not a rate limit's "retry later", which waiting cures."""
    if code in REFUSALS:
        return True
    return code == grpc.StatusCode.RESOURCE_EXHAUSTED and "retry later" not in (details or "")


def refusal_need(code: grpc.StatusCode, f: int, message: str = "") -> int:
    """How many replicas must give one refusal alike for it to end the call. UNAUTHENTICATED
    (no key for the client, a signature that does not verify with its key) needs 2f+1: a
    site's key is what the log says at the replica's execution (``pbft/auth.py``), so a
    correct replica that has not yet executed the site's admission, or its new key,
    refuses it truthfully -- and one faulty replica copying that refusal made f+1: the
    client gave up on a request the up-to-date replicas ordered and executed (a review).
    2f+1 alike hold f+1 correct replicas, more than the f that may still lag once
    ``admit_site`` returned; a client no correct replica knows gets 2f+1 refusals all the
    same. A timestamp "ahead of the replicas' clocks" (``request_clock.ahead_refusal``)
    needs 2f+1 too: it is one replica's clock, and one correct replica whose clock is slow
    plus a faulty one copying its refusal made f+1 while the others would have executed the
    request (a review). The other refusals need f+1 (one of them correct): the request's own
    fields, alike at every correct replica, or a later timestamp of its client executed
    (stale, reused), which a replica behind cannot say untruly."""
    if code == grpc.StatusCode.UNAUTHENTICATED or AHEAD in message:
        return 2 * f + 1
    return f + 1


class CoordinatorError(Exception):
    """No f+1 matching answers: ``code`` is the refusal enough replicas agreed on
    (``refusal_need``), or UNAVAILABLE when too few replicas answered; ``errors`` holds each
    replica's error. For a command the schedule refused once ordered (``cancel_job``):
    FAILED_PRECONDITION, and ``result`` is the ``Result`` f+1 replicas returned."""

    def __init__(self, code: grpc.StatusCode, message: str,
                 errors: dict[int, str] | None = None, result: pb.Result | None = None) -> None:
        super().__init__(f"{code.name}: {message}")
        self.code, self.message, self.errors = code, message, errors or {}
        self.result = result

"""What a replica admits of a request's timestamp beyond PBFT's order (``service.py``).

A client stamps each request with its clock in microseconds, at least one more than its last
(``CoordinatorClient.envelope``). Two rules, each checked where a client's request first
reaches a replica (not on the pre-prepares that carry it on):

- **Not far ahead.** An ordered request stamped more than ``WINDOW_US`` (the read window of
  ``read_auth.py``: sites' clocks may differ by that much) ahead of this replica's clock is
  refused: once executed, its timestamp is the floor for every later request of the client,
  so one request stamped 2^63-1 (a broken clock, or a bug) refused every later request of
  that client for good, across restarts (a probe's finding).
- **Read-only requests are fresh and answered once.** PBFT's read-only requests are never
  ordered, so the floor does not apply to them: a copy (held by a faulty replica: every
  replica receives a reader's query) could be replayed at the others at any time, each
  answer charged to the victim's read budget until the victim's own queries were refused.
  A read-only request is admitted within ``WINDOW_US`` of this replica's clock, and a copy of
  one admitted is refused. The timestamps admitted are kept per client for the window, at
  most ``MOST_KEPT`` of them: beyond that the oldest is forgotten and the client's floor
  rises to it.

And PBFT's own rule, a request older than its client's last executed one never executes,
told as soon as it holds (``stale``): at admission, and to a request that waits for its reply
when a later one of its client executes first (processes signing as one client at once: it
waited ``request_timeout_s`` for an UNAVAILABLE that a retry of the same bytes could not
mend). The client's side: a request refused as stale is stamped again past the timestamp the
refusal names (``stale_floor``).
"""

from __future__ import annotations

import re
from collections import deque

import grpc

from agora.coordinator.read_auth import WINDOW_MS
from agora.coordinator.validate import Refusal

WINDOW_US = WINDOW_MS * 1000
MOST_KEPT = 4096
"""read-only timestamps kept per client (the window's worth at 13 queries a second)"""

STALE_RETRIES = 8
"""Times a request refused as stale (f+1 replicas executed a later timestamp of its client,
``service.CoordinatorService._admit``) is stamped again (``coordinator/client.py``), past
the last executed timestamp the refusal names: processes signing as one client at once (a
few ``agora submit`` as the operator) each get past the others'."""
_LAST = re.compile(r"last executed request \((\d+)\)")


def stale(client_id: str, timestamp: int, last: int) -> Refusal:
    """The refusal of ``client_id``'s request at ``timestamp``, older than its last executed
    one at ``last``: it can never execute (``stale_floor`` reads ``last`` back)."""
    return Refusal(grpc.StatusCode.FAILED_PRECONDITION, "stale_request",
                   f"envelope.payload.request.timestamp: {timestamp} is older than the "
                   f"client's last executed request ({last}); expected a larger timestamp")


def reused(client_id: str, timestamp: int, what: str) -> Refusal:
    """The refusal of ``client_id``'s request at ``timestamp``, the timestamp of another of
    its requests (``what``: "executed", ...): never answered with that one's result."""
    return Refusal(grpc.StatusCode.FAILED_PRECONDITION, "reused_timestamp",
                   f"envelope.payload.request.timestamp: {timestamp} is the timestamp of "
                   f"another request of client {client_id!r} ({what}); expected a timestamp "
                   f"of its own, larger than any this client used")


def stale_floor(e) -> int | None:
    """The client's last executed timestamp a stale refusal names (0 if none), or None
    when ``e`` is no stale refusal."""
    if e.code != grpc.StatusCode.FAILED_PRECONDITION or \
            not e.message.startswith("envelope.payload.request.timestamp:"):
        return None
    m = _LAST.search(e.message)
    return int(m.group(1)) if m else 0


AHEAD = " ahead of the replicas' clocks"
"""What a refusal of a request stamped ahead says (``client_errors.refusal_need``)."""


def ahead_refusal(timestamp: int, now_us: int) -> Refusal | None:
    """The refusal of an ordered request stamped ``timestamp`` (None: it is admitted)."""
    if timestamp <= now_us + WINDOW_US:
        return None
    # the same words at every replica (no clock reading, no index): a client needs f+1
    # matching refusals to be told why
    return Refusal(grpc.StatusCode.INVALID_ARGUMENT, "timestamp_ahead",
                   f"envelope.payload.request.timestamp: {timestamp} is more than "
                   f"{WINDOW_US // 1_000_000} s{AHEAD}; expected "
                   f"microseconds since the epoch by the client's clock, within "
                   f"{WINDOW_US // 1_000_000} s of theirs (check the client's clock)")


class ReadOnce:
    """Read-only timestamps admitted, per client (module doc)."""

    def __init__(self, most: int = MOST_KEPT) -> None:
        self.most = most
        self._kept: dict[str, tuple[deque[int], set[int]]] = {}
        self._floor: dict[str, int] = {}

    def refusal(self, client: str, timestamp: int, now_us: int) -> Refusal | None:
        """The refusal of a read-only request of ``client`` stamped ``timestamp`` (None: it
        is admitted, and remembered)."""
        if abs(timestamp - now_us) > WINDOW_US:
            return Refusal(grpc.StatusCode.INVALID_ARGUMENT, "read_out_of_window",
                           f"envelope.payload.request.timestamp: {timestamp} is more than "
                           f"{WINDOW_US // 1_000_000} s from the replicas' clocks; expected "
                           f"microseconds since the epoch within {WINDOW_US // 1_000_000} s "
                           f"of theirs for a read-only request (check the client's clock)")
        order, seen = self._kept.setdefault(client, (deque(), set()))
        while order and order[0] < now_us - WINDOW_US:      # past the window: refused anyway
            seen.discard(order.popleft())
        if timestamp in seen or timestamp <= self._floor.get(client, -1):
            return Refusal(grpc.StatusCode.INVALID_ARGUMENT, "read_copy",
                           f"envelope.payload.request.timestamp: {timestamp}: a copy of a "
                           f"read-only request of client {client!r} this replica admitted "
                           f"already; expected a new timestamp (a read-only request is "
                           f"answered once)")
        order.append(timestamp)
        seen.add(timestamp)
        if len(order) > self.most:
            old = order.popleft()
            seen.discard(old)
            self._floor[client] = max(self._floor.get(client, -1), old)
        return None

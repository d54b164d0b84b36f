"""A PBFT client (Castro & Liskov, section 4.1), sans-IO like the replica.

    client = Client(config, "site-a", keys)
    actions = client.submit(b"add x 1", now)            # Send to the primary it believes in
    actions = client.receive(reply_envelope, now)       # Completed(...) once enough match
    actions = client.tick(now)                          # resend to every replica on timeout

One request is outstanding at a time. An ordered request completes with f+1 matching replies
(same result, same timestamp) from distinct replicas, each checked with the replica-client
MAC: at least one comes from a correct replica. A read-only query (``read_only=True``) is sent
to every replica and answered from their current state without ordering; it completes with
2f+1 matching replies, as in PBFT's read-only optimisation (f+1 would not do: up to f correct
replicas may lag and f may lie, and 2f+1 matching answers contain f+1 correct ones, of which
one is in every quorum that committed the last write the client saw). When 2f+1 matching
answers can no longer come (replicas disagree) or the retransmission timer expires, the query
falls back to the ordered path as an ordinary request with a new timestamp (``App.execute``
must accept read-only ops).
"""

from __future__ import annotations

from google.protobuf.message import DecodeError

from coordinator.pbft.auth import ClientAuth
from coordinator.pbft.config import PbftConfig
from coordinator.pbft.keys import KeySet
from coordinator.pbft.messages import Action, Broadcast, Completed, Send, as_envelope
from protos.agora.v1.pbft_pb2 import PbftEnvelope, PbftMessage


class Client:
    """Client ``client_id``; ``first_timestamp``: its first request number (use something
    that grows across restarts, e.g. microseconds since the epoch, in production)."""

    def __init__(self, config: PbftConfig, client_id: str, keys: KeySet, *,
                 first_timestamp: int = 1):
        self.config = config
        self.client_id = client_id
        self.auth = ClientAuth(keys, client_id)
        self.view = 0
        self.next_timestamp = first_timestamp
        self.rejected: dict[str, int] = {}
        self.current: tuple[int, bytes, bool, PbftEnvelope] | None = None
        self.replies: dict[int, bytes] = {}
        self.views: dict[int, int] = {}
        self.deadline: float | None = None
        self.timeout = config.client_retransmit

    @property
    def busy(self) -> bool:
        return self.current is not None

    def submit(self, op: bytes, now: float, *, read_only: bool = False) -> list[Action]:
        if self.current is not None:
            raise RuntimeError(f"client {self.client_id}: a request is still outstanding; "
                               f"wait for Completed before submitting another")
        return self._send(op, read_only, now)

    def _send(self, op: bytes, read_only: bool, now: float) -> list[Action]:
        ts, self.next_timestamp = self.next_timestamp, self.next_timestamp + 1
        req = self.auth.sign_request(ts, op, read_only)
        env = PbftEnvelope(sender=-1, payload=PbftMessage(request=req).SerializeToString())
        self.current = (ts, op, read_only, env)
        self.replies, self.views = {}, {}
        self.timeout = self.config.client_retransmit
        self.deadline = now + self.timeout
        if read_only:
            return [Broadcast(env)]
        return [Send(self.view % self.config.n, env)]

    def receive(self, msg: PbftEnvelope | bytes, now: float) -> list[Action]:
        env = as_envelope(msg)
        if env is None:
            return self._reject("malformed")
        if not self.auth.reply_ok(env):
            return self._reject("bad_mac")
        m = PbftMessage()
        try:
            m.ParseFromString(env.payload)
        except DecodeError:
            return self._reject("malformed")
        if m.WhichOneof("kind") != "reply":
            return self._reject("unexpected_kind")
        r = m.reply
        if self.current is None or r.client_id != self.client_id or r.replica != env.sender:
            return self._reject("unexpected_reply")
        ts, op, read_only, _ = self.current
        if r.timestamp != ts or r.read_only != read_only:
            return self._reject("unexpected_reply")
        self.replies[env.sender] = r.result
        self.views[env.sender] = r.view
        need = 2 * self.config.f + 1 if read_only else self.config.f + 1
        tally: dict[bytes, list[int]] = {}
        for rep, result in sorted(self.replies.items()):
            tally.setdefault(result, []).append(rep)
        best = max(tally.values(), key=len)
        if len(best) >= need:
            self.view = max(self.view, sorted(self.views[x] for x in best)[-need])
            result = self.replies[best[0]]
            self.current, self.deadline = None, None
            return [Completed(self.client_id, ts, result, read_only)]
        if read_only and len(best) + self.config.n - len(self.replies) < need:
            self.current = None
            return self._send(op, False, now)
        return []

    def tick(self, now: float) -> list[Action]:
        if self.current is None or self.deadline is None or now < self.deadline:
            return []
        ts, op, read_only, env = self.current
        if read_only:
            self.current = None
            return self._send(op, False, now)
        self.timeout = min(self.timeout * 2, self.config.client_retransmit * 8)
        self.deadline = now + self.timeout
        return [Broadcast(env)]

    def next_deadline(self) -> float | None:
        return self.deadline

    def _reject(self, reason: str) -> list[Action]:
        self.rejected[reason] = self.rejected.get(reason, 0) + 1
        return []

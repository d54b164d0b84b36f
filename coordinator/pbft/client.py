"""A PBFT client (Castro & Liskov, section 4.1), sans-IO like the replica.

``ReplyTally`` is the client's rule for one request's replies -- which reply counts (the
replica's MAC, this client, this timestamp, the same read-only flag, from the replica it
names) and when enough match -- written once: the sans-IO ``Client`` below (the protocol's
tests, simulation and explorer) and the gRPC client that ships (``coordinator/client.py``)
both decide with it.

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

from agora.coordinator.pbft.auth import ClientAuth
from agora.coordinator.pbft.config import PbftConfig
from agora.coordinator.pbft.keys import KeySet
from agora.coordinator.pbft.messages import Action, Broadcast, Completed, Send, as_envelope
from agora.protos.agora.v1.pbft_pb2 import PbftEnvelope, PbftMessage


class ReplyTally:
    """The replies to one request (``timestamp``, ``read_only``) of client ``auth``: each
    replica's last authentic answer, and the result once ``need`` of them match (f+1
    ordered, 2f+1 read-only, or ``need``)."""

    def __init__(self, auth: ClientAuth, timestamp: int, read_only: bool, f: int,
                 n: int, need: int | None = None) -> None:
        self.auth, self.timestamp, self.read_only, self.n = auth, timestamp, read_only, n
        self.need = need or (2 * f + 1 if read_only else f + 1)
        self.replies: dict[int, bytes] = {}
        self.views: dict[int, int] = {}
        self.result: bytes | None = None
        self.agreeing: list[int] = []
        """the replicas whose matching replies gave ``result``"""

    def add(self, msg: PbftEnvelope | bytes, replica: int | None = None) -> str | None:
        """Count one reply envelope (``replica``: the replica it came from, when the
        transport knows); None, or why it does not count."""
        env = as_envelope(msg)
        if env is None:
            return "malformed"
        if replica is not None and env.sender != replica:
            return "unexpected_reply"
        if not self.auth.reply_ok(env):
            return "bad_mac"
        m = PbftMessage()
        try:
            m.ParseFromString(env.payload)
        except DecodeError:
            return "malformed"
        if m.WhichOneof("kind") != "reply":
            return "unexpected_kind"
        r = m.reply
        if (r.client_id != self.auth.client_id or r.replica != env.sender
                or r.timestamp != self.timestamp or r.read_only != self.read_only):
            return "unexpected_reply"
        self.replies[env.sender] = r.result
        self.views[env.sender] = r.view
        if self.result is None:
            tally: dict[bytes, list[int]] = {}
            for rep, result in sorted(self.replies.items()):
                tally.setdefault(result, []).append(rep)
            best = max(tally.values(), key=len)
            if len(best) >= self.need:
                self.agreeing, self.result = best, self.replies[best[0]]
        return None

    def view(self) -> int:
        """The view the agreeing replicas vouch for (the need-th highest of theirs)."""
        return sorted(self.views[x] for x in self.agreeing)[-self.need]

    def hopeless(self) -> bool:
        """No ``need`` matching replies can come any more (the replicas that have not
        answered could not tip any result over)."""
        if self.result is not None or not self.replies:
            return False
        counts: dict[bytes, int] = {}
        for result in self.replies.values():
            counts[result] = counts.get(result, 0) + 1
        return max(counts.values()) + self.n - len(self.replies) < self.need


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
        self.tally: ReplyTally | None = None
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
        self.tally = ReplyTally(self.auth, ts, read_only, self.config.f, self.config.n)
        self.timeout = self.config.client_retransmit
        self.deadline = now + self.timeout
        if read_only:
            return [Broadcast(env)]
        return [Send(self.view % self.config.n, env)]

    def receive(self, msg: PbftEnvelope | bytes, now: float) -> list[Action]:
        if self.current is None:
            return self._reject("unexpected_reply")
        why = self.tally.add(msg)
        if why is not None:
            return self._reject(why)
        ts, op, read_only, _ = self.current
        if self.tally.result is not None:
            self.view = max(self.view, self.tally.view())
            self.current, self.deadline = None, None
            return [Completed(self.client_id, ts, self.tally.result, read_only)]
        if read_only and self.tally.hopeless():
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

"""A client of the coordinator: signs PBFT requests, sends them to every replica, and accepts
an answer once enough replicas gave the same one (Castro & Liskov, section 4.1). Which reply
counts and when enough match is decided by the PBFT client's own rule
(``coordinator.pbft.client.ReplyTally``, shared with the sans-IO client the protocol tests
and the explorer drive); this module is its transport: gRPC, hedging, refusals.

- Ordered requests (submit jobs, cancel a job, a site's round messages, a replica's votes):
  f+1 matching replies, so at least one comes from a correct replica. The request goes
  first to the f+1 replicas that answered last time, and to all once one of them is slow,
  fails or disagrees.
- Queries: the read-only fast path needs 2f+1 matching replies; short of that (replicas
  lagging or down) the query is ordered like a command and f+1 matching replies suffice.
- Refusals: a request f+1 replicas refuse with the same gRPC status is refused
  (``CoordinatorError`` with that code and the first message); UNAUTHENTICATED needs 2f+1,
  as a correct replica behind the log may say it of a site admitted since, and so does a
  timestamp ahead of one replica's clock (``refusal_need``). ``cancel_job`` also raises
  when the ordered cancel was refused by the schedule (f+1 matching results with a
  rejection): FAILED_PRECONDITION, the rejection's field and reason.

One request is outstanding per client id at a time (PBFT's model: a replica remembers each
client's last request); run several clients (``site:a/0``, ``site:a/1``, ...) for
concurrency. Timestamps come from the wall clock in microseconds and only ever grow, so a
restarted client never reuses one.

    async with CoordinatorClient(config, keys, "site:dc-east") as c:
        result = await c.submit_round(pb.SiteRound(site="dc-east", round=0, bidding=True,
                                                   bids=[pb.Bid(job_id="j1", task_id="map",
                                                                instances=4, price=100)]))

TLS: with ``tls.enabled`` in the config the client connects with mutual TLS, presenting
``tls.client_cert``/``client_key`` (by default ``<certs_dir>/client.crt|key``), or the
certificate ``<certs_dir>/<tls_identity>.crt|key`` (e.g. ``tls_identity="site-dc-east"``).
``credentials=`` (``grpc.ChannelCredentials``) overrides both, and also works with a config
without TLS; ``credentials=INSECURE`` forces plaintext.

Transport: requests go over one long-lived ``Requests`` stream per replica
(``request_stream.py``); ``streams=False`` makes one unary call per request and replica
instead, and ``streams=RequestStreams(...)`` shares one process-wide set of streams among
clients with the same credentials.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Iterable

import grpc

from agora.agents.domain import Job
from agora.coordinator.client_errors import CoordinatorError, is_refusal, refusal_need
from agora.coordinator.client_reads import ClientReads
from agora.coordinator.config import CoordinatorConfig
from agora.coordinator.pbft.auth import ClientAuth
from agora.coordinator.pbft.client import ReplyTally
from agora.coordinator.pbft.keys import KeySet
from agora.coordinator.queries import job_status_query, ledger_query, schedule_query
from agora.coordinator.request_clock import STALE_RETRIES, stale_floor
from agora.coordinator.request_stream import (UNARY_AFTER_REFUSAL_S, RequestStream,
                                              RequestStreams, StreamError, stream_refused)
from agora.coordinator.transport import channel_options, client_channel_credentials, open_channel
from agora.protos.agora.v1 import coordinator_pb2 as pb
from agora.protos.agora.v1 import coordinator_pb2_grpc as rpc
from agora.protos.agora.v1.pbft_pb2 import PbftEnvelope, PbftMessage
from agora.protos.convert import job_to_proto

HEDGE_MIN_S, HEDGE_MAX_S, HEDGE_FACTOR = 0.05, 0.5, 4.0
"""An ordered request goes to the other replicas too after HEDGE_FACTOR x the recent
latency, clamped to [HEDGE_MIN_S, HEDGE_MAX_S] (see CoordinatorClient.send_raw)."""
RAW_METHODS = ("SubmitJobs", "SubmitRound", "CloseRound", "SiteLapsed", "CancelJob",
               "AdmitSite", "RemoveSite", "GetSchedule")
INSECURE = "insecure"
"""``credentials=INSECURE``: plaintext channels whatever the config says."""


class CoordinatorClient(ClientReads):
    """Client ``client_id`` of the coordinator group ``config`` (see module doc)."""

    def __init__(self, config: CoordinatorConfig, keys: KeySet, client_id: str, *,
                 timeout_s: float | None = None,
                 credentials: grpc.ChannelCredentials | str | None = None,
                 tls_identity: str | None = None,
                 streams: bool | RequestStreams = True) -> None:
        self.config = config
        self.streams = bool(streams)
        """send requests over one ``Requests`` stream per replica (``request_stream.py``);
        False: one unary call per request and replica"""
        self._shared = streams if isinstance(streams, RequestStreams) else None
        """streams shared with the process's other clients (same credentials): not ours
        to close"""
        if credentials is None:
            credentials = client_channel_credentials(config, tls_identity)
        elif credentials == INSECURE:
            credentials = None
        self.credentials: grpc.ChannelCredentials | None = credentials
        self.client_id = client_id
        self.auth = ClientAuth(keys, client_id)
        self.f = config.f
        self.timeout_s = timeout_s if timeout_s is not None else config.request_timeout_s + 2
        self._ts = 0
        self._lock: asyncio.Lock | None = None
        self._channels: list[grpc.aio.Channel] = []
        self._stubs: list[rpc.CoordinatorStub] = []
        self._raw: list[dict] = []
        self._streams: list[RequestStream] = []
        self._preferred: list[int] = []
        """the replicas that formed the last quorum: asked first (see send_raw)"""
        self._latency: float | None = None
        """moving average of the latency of ordered requests, seconds"""
        self._hb_ts = 0
        self._hb_pending: dict[int, asyncio.Future] = {}
        """replica -> its heartbeat call under way (``ClientReads.heartbeat``)"""
        self._unary_until: dict[int, float] = {}
        """replica -> until when requests to it go by unary calls (its streams refused)"""

    async def __aenter__(self) -> CoordinatorClient:
        self.open()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    def open(self) -> None:
        if not self._channels:
            self._lock = asyncio.Lock()
            options = channel_options(self.config)
            self._channels = [open_channel(a, self.credentials, options)
                              for a in self.config.replicas]
            self._stubs = [rpc.CoordinatorStub(c) for c in self._channels]
            # The same methods taking the ClientRequest's bytes as they are (no parse and
            # re-serialise per replica): grpc sends bytes unchanged without a serializer.
            self._raw = [{name: c.unary_unary(f"/agora.v1.Coordinator/{name}",
                                              request_serializer=None,
                                              response_deserializer=pb.ClientReply.FromString)
                          for name in RAW_METHODS} for c in self._channels]
            self._streams = (self._shared.open() if self._shared is not None
                             else [RequestStream(c) for c in self._channels])

    async def close(self) -> None:
        if self._shared is None:
            for st in self._streams:
                await st.close()
        for c in self._channels:
            await c.close(grace=None)
        for t in self._hb_pending.values():
            t.cancel()
        self._hb_pending.clear()
        self._channels, self._stubs, self._raw, self._streams = [], [], [], []

    # ---- the commands ----

    async def submit_jobs(self, jobs: Iterable[Job]) -> pb.Result:
        cmd = pb.Command(submit_jobs=pb.SubmitJobs(jobs=[job_to_proto(j) for j in jobs]))
        return pb.Result.FromString(await self.call("SubmitJobs", cmd))

    async def cancel_job(self, job_id: str, reason: str = "") -> pb.Result:
        """Cancel job ``job_id`` (the operator's client, or a client of the job's origin
        site): nothing more of it starts and its running instances are stopped. ``reason``
        (at most 200 characters; empty: "cancelled by <client id>") is kept as the job's.
        Returns the ordered ``Result``; raises ``CoordinatorError`` when the schedule
        refused the cancel (FAILED_PRECONDITION: unknown job, another site's job, already
        finished) or a replica refused the request (a status, as for every command)."""
        return await self._ordered("CancelJob", pb.Command(
            cancel_job=pb.CancelJob(job_id=job_id, reason=reason)))

    async def admit_site(self, site: str, verify_key: bytes) -> pb.Result:
        """Admit site ``site`` by the public key it made on its own node (the operator's
        client only); a second admission replaces the key. Returns once 2f+1 replicas
        executed it: then at most f can still refuse the site's next request for want of
        its key, too few to outvote the others. Raises ``CoordinatorError``
        (FAILED_PRECONDITION with the ordered ``Result``) when the schedule refused it."""
        return await self._ordered("AdmitSite", pb.Command(admit_site=pb.AdmitSite(
            site=site, verify_key=verify_key)), need=2 * self.f + 1)

    async def remove_site(self, site: str, reason: str = "") -> pb.Result:
        """Remove site ``site``: its key is revoked and its running instances are lost
        (the operator's client only; returns once 2f+1 executed it; errors as
        ``admit_site``)."""
        return await self._ordered("RemoveSite", pb.Command(remove_site=pb.RemoveSite(
            site=site, reason=reason)), need=2 * self.f + 1)

    async def _ordered(self, rpc_name: str, cmd: pb.Command,
                       need: int | None = None) -> pb.Result:
        res = pb.Result.FromString(await self.call(rpc_name, cmd, need=need))
        if res.rejections:
            r = res.rejections[0]
            raise CoordinatorError(grpc.StatusCode.FAILED_PRECONDITION,
                                   f"{r.field}: {r.reason}", result=res)
        return res

    async def submit_round(self, msg: pb.SiteRound) -> pb.Result:
        """A site's own message: its ends, its nodes, its decision for a round."""
        return pb.Result.FromString(await self.call("SubmitRound",
                                                    pb.Command(site_round=msg)))

    async def schedule(self, **by) -> pb.QueryResult:
        """``by``: one of all=True, site=, job_id=, task=(job, task), since_version=."""
        return await self.query(schedule_query(**by))

    async def job_status(self, job_id: str) -> pb.QueryResult:
        return await self.query(job_status_query(job_id))

    async def ledger(self) -> pb.LedgerView:
        """The whole ledger as f+1 (or 2f+1 on the fast path) replicas agree on it."""
        return (await self.query(ledger_query())).ledger

    async def query(self, q: pb.Query) -> pb.QueryResult:
        cmd = pb.Command(query=q)
        try:
            return pb.QueryResult.FromString(await self.call("GetSchedule", cmd,
                                                             read_only=True))
        except CoordinatorError as e:
            if is_refusal(e.code, e.message) and e.code != grpc.StatusCode.INVALID_ARGUMENT:
                raise
            # INVALID_ARGUMENT may say the read-only request is a copy of one answered: a
            # faulty replica that replays a client's query to the others ahead of it had the
            # client's own refused (a review). Ordered, it is a request of its own; one that
            # is malformed is refused there again, before it is ordered.
        # Fewer than 2f+1 replicas agree right now: order the query (f+1 suffice).
        return pb.Result.FromString(await self.call("GetSchedule", cmd)).query

    # ---- the protocol ----

    def envelope(self, op: bytes, *, read_only: bool = False) -> tuple[int, bytes]:
        """A fresh timestamp and the ClientRequest bytes of a signed request for ``op``."""
        self._ts = max(self._ts + 1, time.time_ns() // 1000)
        req = self.auth.sign_request(self._ts, op, read_only)
        env = PbftEnvelope(sender=-1, payload=PbftMessage(request=req).SerializeToString())
        return self._ts, pb.ClientRequest(envelope=env.SerializeToString()).SerializeToString()

    async def call(self, rpc_name: str, cmd: pb.Command, *, read_only: bool = False,
                   need: int | None = None) -> bytes:
        """Send ``cmd`` through ``rpc_name`` to every replica; the result f+1 (read-only:
        2f+1; or ``need``) replicas returned identically."""
        self.open()
        op, tries = cmd.SerializeToString(), 0
        async with self._lock:
            while True:
                ts, data = self.envelope(op, read_only=read_only)
                try:
                    return await self.send_raw(rpc_name, data, ts, read_only=read_only,
                                               need=need)
                except CoordinatorError as e:
                    # another process signing as this client (a site's agent, another
                    # agora submit) executed a later timestamp first: this one can never
                    # execute; stamp it again past that one, after a pause that grows
                    tries, last = tries + 1, stale_floor(e)
                    if tries > STALE_RETRIES or last is None:
                        raise
                    self._ts = max(self._ts, last)
                    await asyncio.sleep(0.005 * tries)

    async def send_raw(self, rpc_name: str, data: bytes, ts: int, *,
                       read_only: bool = False, need: int | None = None) -> bytes:
        """Send ClientRequest bytes to replicas and collect matching replies.

        An ordered request goes first to f+1 replicas only: the primary the last replies
        vouched for and replicas of the last quorum (``_targets``). Each correct replica
        executes it anyway (the pre-prepare carries it) and f+1 matching replies are all
        the client needs, so the other n-f-1 RPCs would only cost CPU. When an answer is
        missing after ``hedge`` (a few times the recent latency), fails or disagrees, the
        request goes to every other replica too (PBFT's client retransmission to all,
        which also starts their view-change timers when the primary is faulty).
        Read-only requests need 2f+1 and go to every replica at once."""
        self.open()
        n = len(self._stubs)
        need = need or (2 * self.f + 1 if read_only else self.f + 1)
        order = self._preferred + [i for i in range(n) if i not in self._preferred]
        first = order if read_only else order[:need]
        if self.streams and rpc_name in RAW_METHODS:
            data = pb.ClientRequest.FromString(data).envelope   # what a stream carries
        calls = {asyncio.ensure_future(self._one(i, rpc_name, data)): i for i in first}
        pending = set(calls)
        hedged = len(first) == n
        tally = ReplyTally(self.auth, ts, read_only, self.f, n, need)
        refusals: Counter[tuple[grpc.StatusCode, str]] = Counter()
        errors: dict[int, str] = {}
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        deadline = t0 + self.timeout_s

        def hedge() -> None:
            nonlocal hedged
            hedged = True
            for i in order[len(first):]:
                fut = asyncio.ensure_future(self._one(i, rpc_name, data))
                calls[fut] = i
                pending.add(fut)

        try:
            while pending:
                left = deadline - loop.time()
                if left <= 0:
                    break
                wait = left if hedged else min(left, self._hedge_s())
                done, _ = await asyncio.wait(pending, timeout=wait,
                                             return_when=asyncio.FIRST_COMPLETED)
                if not done:
                    if hedged:
                        break
                    hedge()
                    continue
                for fut in done:
                    pending.discard(fut)
                    i, reply = fut.result()
                    if isinstance(reply, (grpc.aio.AioRpcError, StreamError)):
                        errors[i] = f"{reply.code().name}: {reply.details()}"
                        if is_refusal(reply.code(), reply.details()):
                            code, msg = reply.code(), reply.details()
                            refusals[(code, msg)] += 1
                            if refusals[(code, msg)] >= refusal_need(code, self.f, msg):
                                raise CoordinatorError(code, msg, errors)
                        if not hedged:
                            hedge()
                        continue
                    why = tally.add(reply.envelope, i)
                    if why is not None:
                        errors[i] = (f"reply does not count ({why}): failed authentication "
                                     f"or does not match the request")
                        if not hedged:
                            hedge()
                        continue
                    if tally.result is not None:
                        if not read_only:
                            self._preferred = self._targets(tally, n, need)
                            lat = loop.time() - t0
                            self._latency = lat if self._latency is None else \
                                0.8 * self._latency + 0.2 * lat
                        return tally.result
                    if not hedged and not pending:
                        hedge()     # the first f+1 disagree
        finally:
            for fut in calls:
                fut.cancel()
        codes = Counter(e.split(":")[0] for e in errors.values())
        raise CoordinatorError(grpc.StatusCode.UNAVAILABLE,
                               f"{rpc_name}: no {need} matching replies from "
                               f"{n} replicas (errors: {dict(codes)})", errors)

    @staticmethod
    def _targets(tally: ReplyTally, n: int, need: int) -> list[int]:
        """Where the next ordered request goes first: the primary of the view the agreeing
        replicas vouch for (``ReplyTally.view``: a faulty replica cannot move it alone), then
        the replicas that agreed. Backups do not forward a client's request to the primary at
        once (only at their retransmission timer), so a request that missed the primary
        would wait for that."""
        primary = tally.view() % n
        return ([primary] + [i for i in tally.agreeing if i != primary])[:need]

    def _hedge_s(self) -> float:
        """How long to wait for the first f+1 replicas before asking the others."""
        if self._latency is None:
            return HEDGE_MAX_S
        return min(HEDGE_MAX_S, max(HEDGE_MIN_S, HEDGE_FACTOR * self._latency))

    async def _one(self, i: int, rpc_name: str, data: bytes):
        """Replica ``i``'s answer to ``data`` (the envelope on a stream, else the
        ClientRequest bytes): (i, ClientReply | AioRpcError | StreamError)."""
        if self.streams and rpc_name in RAW_METHODS:
            if time.monotonic() >= self._unary_until.get(i, 0.0):
                answer = await self._streams[i].request(rpc_name, data)
                if stream_refused(answer):
                    # the replica holds as many streams as it takes: unary calls to it for
                    # a while (a stream's refusal answered every request on it before)
                    self._unary_until[i] = time.monotonic() + UNARY_AFTER_REFUSAL_S
                elif not getattr(answer, "broken", False):
                    return i, answer
                # else the stream ended under the request (INTERNAL when a replica cut it
                # as it opened, seen in CI): asked once more by a unary call -- a replica
                # answers a request it has already again, by its client and timestamp
            data = pb.ClientRequest(envelope=data).SerializeToString()
        method = self._raw[i].get(rpc_name)
        if method is None:
            method = getattr(self._stubs[i], rpc_name)
            data = pb.ClientRequest.FromString(data)
        try:
            reply = await method(data, timeout=self.timeout_s)
        except grpc.aio.AioRpcError as e:
            return i, e
        return i, reply

"""The gRPC services of one replica (``coordinator/server.py`` hosts them):

- ``agora.v1.Peer``: the other replicas' streams of PBFT envelopes (``transport.py``);
- ``agora.v1.Coordinator``: each request RPC carries one client-signed PBFT request; the
  handler checks it (``validate.py``; INVALID_ARGUMENT, UNAUTHENTICATED, PERMISSION_DENIED,
  FAILED_PRECONDITION answer at once and are counted), hands it to the replica, waits until
  this replica has executed it, and returns this replica's authenticated reply. The client
  collects f+1 matching replies from any replicas (``client.py``). ``Requests`` carries the
  same requests over one long-lived stream per client (each answered by its id, refusals
  as the status the unary RPC would give; ``request_stream.py`` is the client's end): what
  the client uses by default. ``WatchSchedule`` streams
  this replica's committed updates (from a past version: what is still in memory, else the
  allocations and instance changes the state keeps); ``GetStatus`` reports its view,
  progress, round and counters; ``Heartbeat`` records a site's liveness (never ordered).
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

import grpc

from agora.coordinator.pbft.messages import op_key, reuses_timestamp
from agora.coordinator.read_auth import read_refusal
from agora.coordinator.read_scope import scope_for
from agora.coordinator.request_clock import ahead_refusal, reused, stale
from agora.coordinator.schedule_codec import check_known, unknown_problem
from agora.coordinator.schedule_rules import OPERATOR
from agora.coordinator.stream_serving import serve_requests
from agora.coordinator.validate import (MAX_REFUSAL_CHARS, Refusal, parse_command,
                                        parse_envelope)
from agora.coordinator.watch_history import backlog, watch_start
from agora.protos.agora.v1 import coordinator_pb2 as pb
from agora.protos.agora.v1 import coordinator_pb2_grpc as rpc
from agora.protos.convert_checks import ProtoError

if TYPE_CHECKING:
    from agora.coordinator.replica_host import ReplicaHost

MAX_WATCHES_PER_READER = 16
"""Watch streams one reader may hold open at one replica (a site agent holds one; each is a
queue of up to WATCH_QUEUE updates at the replica); more are refused, RESOURCE_EXHAUSTED."""
AGAIN = "\x00again"
"""Suffix of a client's second request budget: copies of its last executed or waiting
request (retransmissions, or replays by whoever holds one) are charged there."""
WATCH_QUEUE = 4096
"""Updates buffered per watcher; a watcher that falls further behind is cut off (its
stream ends with RESOURCE_EXHAUSTED, and it watches again from its last version)."""
CHARGE_EVERY_S = 0.01
"""A watch's backlog is charged to its reader's read budget in slices of this much of the
replica's time (``WatchSchedule``)."""
WATCH_AHEAD = 1_000_000
"""A watch from further past the replica's version than this is refused (a version no
replica lagging behind the others by a state transfer's worth could be asked for)."""


class PeerService(rpc.PeerServicer):
    def __init__(self, host: ReplicaHost) -> None:
        self.host = host

    async def Stream(self, request_iterator, context):
        metrics = self.host.metrics
        tls, checked = self.host.config.tls_enabled, None
        async for batch in request_iterator:
            if tls and batch.sender != checked:
                if not _peer_is_replica(context, batch.sender):
                    # a client's certificate is from the same CA: refused before any parsing
                    self.host.count("peer_not_a_replica")
                    await context.abort(grpc.StatusCode.PERMISSION_DENIED,
                                        f"sender: {batch.sender}; this stream takes only the "
                                        f"certificate of replica-{batch.sender}")
                checked = batch.sender
            if metrics is not None:
                metrics.bytes_in.inc(batch.ByteSize())
            envelopes = batch.envelopes
            allowed = self.host.peer_rate.take_many(str(batch.sender), len(envelopes))
            if allowed < len(envelopes):
                # a flood (a faulty replica): the rest is dropped unparsed, and counted
                self.host.count("peer_rate_limited")
                envelopes = envelopes[:allowed]
            for data in envelopes:
                self.host.feed(data, batch.sender)
        return pb.PeerAck()


def _peer_is_replica(context, sender: int) -> bool:
    """The TLS peer presented the certificate of replica ``sender``."""
    names = context.auth_context().get("x509_common_name", [])
    return any(n == f"replica-{sender}".encode() for n in names)


class CoordinatorService(rpc.CoordinatorServicer):
    def __init__(self, host: ReplicaHost) -> None:
        self.host = host
        self.request_streams: dict[str, int] = {}
        """network address -> ``Requests`` streams open from it that no signed request
        proved yet (``stream_serving``)"""
        self.client_streams: dict[str, int] = {}
        """client id -> ``Requests`` streams proved by a request it signed"""

    def _admit(self, envelope: bytes, rpc_name: str):
        """The checks before ordering, cheapest and keyless first: size, the envelope
        (``validate.parse_envelope``), client key, signature, staleness, rate, and only then
        the command (``validate.parse_command``: a request's jobs are parsed for a client
        whose signature verified, never for a sender without a key). Returns the request's
        envelope and PbftRequest, or raises Refusal."""
        return self._admit_verified(*self._verified(envelope, rpc_name), rpc_name)

    def _verified(self, envelope: bytes, rpc_name: str):
        """``_admit``'s checks up to the client's signature: (envelope, PbftRequest)."""
        host = self.host
        if len(envelope) > host.config.max_request_bytes:
            raise Refusal(grpc.StatusCode.RESOURCE_EXHAUSTED, "over_limit",
                          f"envelope: {len(envelope)} bytes; the limit is "
                          f"{host.config.max_request_bytes} (max_request_bytes); send "
                          f"fewer jobs or bids per request")
        env, req = parse_envelope(envelope, rpc_name)
        auth = host.replica.auth
        if req.client_id not in auth.client_verify:
            raise Refusal(grpc.StatusCode.UNAUTHENTICATED, "unknown_client",
                          f"envelope.payload.request.client_id: no key for client "
                          f"{req.client_id!r}; expected a client of the key file or a "
                          f"site the operator admitted (and did not remove)")
        if not auth.request_ok(req):
            raise Refusal(grpc.StatusCode.UNAUTHENTICATED, "bad_signature",
                          "envelope.payload.request.signature: does not verify with the "
                          f"key of client {req.client_id!r}")
        return env, req

    def _admit_verified(self, env, req, rpc_name: str, fresh=None):
        """``_admit``'s checks after the signature verified. ``fresh(req)`` is called once
        the request is known to be new -- within its clock checks, older than nothing its
        client executed, and no copy of a request executed or waiting here -- whatever the
        checks after it say (``stream_serving``: what proves a stream is its client's; a
        copy of a request proves nothing, anyone who saw it may hold one)."""
        host = self.host
        if (rpc_name == "GetSchedule" and req.client_id != OPERATOR
                and not host.read_cost.allowed(req.client_id)):     # the operator may read
            raise Refusal(grpc.StatusCode.RESOURCE_EXHAUSTED, "read_budget",
                          f"envelope.payload.request.client_id: client {req.client_id!r}'s "
                          f"queries took more than {host.config.client_read_seconds_per_s:g} "
                          f"s of this replica's time a second (client_read_seconds_per_s); "
                          f"retry later, ask for less (a job rather than the whole ledger), "
                          f"or watch the schedule")
        now_us = time.time_ns() // 1000
        refusal = (host.read_once.refusal(req.client_id, req.timestamp, now_us)
                   if req.read_only else ahead_refusal(req.timestamp, now_us))
        if refusal is not None:
            raise refusal
        last = host.replica.clients.get(req.client_id)
        if not req.read_only and last is not None and req.timestamp < last[0]:
            raise stale(req.client_id, req.timestamp, last[0])
        if not req.read_only and reuses_timestamp(last, req.timestamp, req.op):
            raise reused(req.client_id, req.timestamp, "executed")
        # Another request of the client waiting here at the same timestamp is no reason to
        # refuse this one: each waits for the reply to its own op (ReplicaHost.waiter), and
        # whichever is ordered first executes; the other is then refused as reused. (Refused
        # here, a request ordered through the replicas that received it first was told
        # "reused" by the others and never got f+1 replies: a probe.)
        waiting = host.waits(req.client_id, req.timestamp, op_key(req))
        # Charged after the cheap checks above, so that replays of a client's old requests
        # (every replica sees them in pre-prepares) cost it nothing; a copy of its last
        # executed or still waiting request is charged to a budget of its own, so a flood
        # of copies cannot refuse the client's new requests (a review's finding).
        again = waiting or (not req.read_only and last is not None
                            and req.timestamp == last[0])
        if fresh is not None and not again:
            fresh(req)
        if not host.rate.take(req.client_id + AGAIN if again else req.client_id):
            what = "copies of one request" if again else "requests"
            raise Refusal(grpc.StatusCode.RESOURCE_EXHAUSTED, "rate_limited",
                          f"envelope.payload.request.client_id: client {req.client_id!r} "
                          f"sent more than {host.config.client_requests_per_s:g} {what} "
                          f"a second (client_requests_per_s); retry later")
        parse_command(req, rpc_name)
        return env, req

    def _refused(self, r: Refusal, rpc_name: str) -> None:
        self.host.count(r.kind)
        if self.host.metrics is not None:
            self.host.metrics.request(rpc_name, "refused")

    def _timed_out(self, rpc_name: str) -> str:
        host = self.host
        host.count("timeout")
        if host.metrics is not None:
            host.metrics.request(rpc_name, "timeout")
        s = host.replica.status()
        return (f"not executed within {host.config.request_timeout_s} s at replica "
                f"{host.index} (view {s['view']}, active {s['view_active']}); retry")

    def _replied(self, reply, rpc_name: str) -> pb.ClientReply:
        """This replica's authenticated reply envelope as the answer to a request (counted)."""
        if self.host.metrics is not None:
            self.host.metrics.request(rpc_name, "ok")
        return pb.ClientReply(envelope=reply.SerializeToString(), replica=self.host.index)

    async def _request(self, request: pb.ClientRequest, context, rpc_name: str) -> pb.ClientReply:
        host = self.host
        try:
            # refused everywhere else in a request: here too (probe); listed only when few
            # (a review: 20 MB of them held the loop 6 s, keyless: ``unknown_problem``)
            unknown = unknown_problem(request)
            if unknown is not None:
                raise Refusal(grpc.StatusCode.INVALID_ARGUMENT, "invalid_argument",
                              f"request: {unknown}; expected only the fields of "
                              f"{request.DESCRIPTOR.full_name}")
            env, req = self._admit(request.envelope, rpc_name)
        except Refusal as r:
            self._refused(r, rpc_name)
            await context.abort(r.code, r.message)
        fut = host.waiter(req.client_id, req.timestamp, op_key(req))
        try:
            host.feed(env)
            reply = await asyncio.wait_for(fut, host.config.request_timeout_s)
        except asyncio.TimeoutError:
            await context.abort(grpc.StatusCode.UNAVAILABLE, self._timed_out(rpc_name))
        except Refusal as r:            # a later request of its client executed first
            self._refused(r, rpc_name)
            await context.abort(r.code, r.message)
        finally:
            host.forget(req.client_id, req.timestamp, fut)
        return self._replied(reply, rpc_name)

    Requests = serve_requests
    """The request stream (``coordinator/stream_serving.py``)."""

    async def SubmitJobs(self, request, context):
        return await self._request(request, context, "SubmitJobs")

    async def SubmitRound(self, request, context):
        return await self._request(request, context, "SubmitRound")

    async def CloseRound(self, request, context):
        return await self._request(request, context, "CloseRound")

    async def SiteLapsed(self, request, context):
        return await self._request(request, context, "SiteLapsed")

    async def CancelJob(self, request, context):
        return await self._request(request, context, "CancelJob")

    async def AdmitSite(self, request, context):
        return await self._request(request, context, "AdmitSite")

    async def RemoveSite(self, request, context):
        return await self._request(request, context, "RemoveSite")

    async def _known(self, request, context) -> None:
        """Unknown fields anywhere in ``request`` are refused, as in every ordered request (a
        probe: heartbeats, status and watch requests took them)."""
        try:
            check_known(request, "request")
        except ProtoError as e:
            self.host.count("invalid_argument")
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(e)[:MAX_REFUSAL_CHARS])

    async def Heartbeat(self, request, context):
        await self._known(request, context)
        why = self.host.keeper.heartbeat(request)
        if why is not None:
            self.host.count("bad_heartbeat")
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, why)
        return pb.HeartbeatReply(version=self.host.app.version)

    async def GetSchedule(self, request, context):
        return await self._request(request, context, "GetSchedule")

    async def _reader(self, context, auth, method: str, since: int = 0) -> None:
        why = read_refusal(self.host.replica.auth.client_verify, auth, method, since,
                           replica=self.host.index)
        if why is not None:
            self.host.count("unauthenticated_read")
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, why)

    async def GetStatus(self, request, context):
        await self._known(request, context)
        await self._reader(context, request.auth, "GetStatus")
        return self.host.status()

    async def WatchSchedule(self, request, context):
        await self._known(request, context)
        await self._reader(context, request.auth, "WatchSchedule", request.since_version)
        if request.since_version < 0:
            self.host.count("invalid_argument")
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                f"since_version: {request.since_version}; expected >= 0")
        now = self.host.app.version
        if request.since_version > now + WATCH_AHEAD:
            # a probe: 10^12 and 2^63-1 were taken, and the stream stayed silent for good
            self.host.count("invalid_argument")
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                f"since_version: {request.since_version} is more than "
                                f"{WATCH_AHEAD:,} versions past this replica's schedule "
                                f"(version {now}); expected a version the schedule reached "
                                f"(the last one a watch delivered, or 0 for all)")
        host = self.host
        reader = request.auth.client_id
        held = host.watching.get(reader, 0)
        if held >= MAX_WATCHES_PER_READER:
            host.count("watch_refused_too_many")
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                                f"auth.client_id: {reader!r} has {held} watch streams open at "
                                f"this replica, the most one reader may hold "
                                f"({MAX_WATCHES_PER_READER}); close one, or share one")
        keys = host.replica.auth.client_verify
        reader_key = bytes(keys.get(reader) or b"")
        app, q = host.app, asyncio.Queue(WATCH_QUEUE)
        host.watchers.append(q)
        host.watching[reader] = held + 1
        try:
            # What is committed already, then live updates (queued from now on).
            recent = host.recent.snapshot()
            start = watch_start(recent, app.version)
            last = (0, -1)                  # (version, sub) of the last update sent
            scope = scope_for(app, reader)    # a site reads what concerns it
            seen = scope.update if scope is not None else (lambda u: u)
            why = app.compacted.refusal(request.since_version, start)
            if why is not None:   # rows of finished jobs compacted away (compaction.py)
                host.count("watch_refused_compacted")
                await context.abort(grpc.StatusCode.OUT_OF_RANGE, why)
            # What the backlog costs this replica is charged to the reader's read budget, as
            # its queries are (the operator's never); a reader in debt is not sent history
            # rebuilt from the state (a site re-opening watches from version 0 held a loop
            # ~1 s each, uncharged: a review). Its watches from the kept updates go on.
            charged = reader != OPERATOR
            if (charged and request.since_version < start
                    and not host.read_cost.allowed(reader)):
                host.count("read_budget")
                await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                                    f"auth.client_id: {reader!r}'s reads took more than "
                                    f"{host.config.client_read_seconds_per_s:g} s of this "
                                    f"replica's time a second (client_read_seconds_per_s); "
                                    f"since_version: {request.since_version} is older than "
                                    f"the updates this replica keeps (from {start}); retry "
                                    f"later, or read the ledger and watch from its version")
            cost, t = 0.0, time.perf_counter()
            for u in backlog(app, recent, request.since_version, start):
                out = seen(u)
                cost += time.perf_counter() - t
                if charged and cost >= CHARGE_EVERY_S:
                    host.read_cost.charge(reader, cost)
                    cost = 0.0
                yield out
                last = (u.version, u.sub)
                t = time.perf_counter()
            if charged and cost:
                host.read_cost.charge(reader, cost)
            while True:
                update = await q.get()
                if update is None:
                    if host.closing:
                        return
                    host.count("watcher_cut_off")
                    await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                                        f"this watcher fell {WATCH_QUEUE} updates behind; "
                                        f"watch again from version {last[0]}")
                if bytes(keys.get(reader) or b"") != reader_key:
                    host.count("watcher_revoked")   # the operator removed (or re-keyed) it
                    await context.abort(grpc.StatusCode.UNAUTHENTICATED,
                                        f"auth.client_id: {reader!r} no longer has the key "
                                        f"it watched with (removed by the operator)")
                if (update.version, update.sub) > last:
                    yield seen(update)
                    last = (update.version, update.sub)
        finally:
            if q in host.watchers:
                host.watchers.remove(q)
            left = host.watching.get(reader, 1) - 1
            if left > 0:
                host.watching[reader] = left
            else:
                host.watching.pop(reader, None)

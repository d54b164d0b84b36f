"""One coordinator replica as a process: a sans-IO PBFT ``Replica`` hosted in a grpc.aio
server, with the replicated schedule (``ScheduleState``) as its application.

    host = await serve(config, index, keys)      # starts listening on config.replicas[index]
    await host.stop()

Served on the replica's address:

- ``agora.v1.Peer``: the other replicas' streams of PBFT envelopes (``transport.py``);
- ``agora.v1.Coordinator``: each request RPC carries one client-signed PBFT request; the
  handler checks it (``validate.py``; INVALID_ARGUMENT, UNAUTHENTICATED, FAILED_PRECONDITION
  answer at once and are counted), hands it to the replica, waits until this replica has
  executed it, and returns this replica's authenticated reply. The client collects f+1
  matching replies from any replicas (``client.py``). WatchSchedule streams this replica's
  committed changes; GetStatus reports its view, progress and counters;
- ``grpc.health.v1.Health``: SERVING for "" and every service above while the replica runs.

Timers: one asyncio task sleeps until ``replica.next_deadline()`` (``time.monotonic``) and
calls ``replica.tick``; every input that may move the deadline wakes it. Everything runs on
one event loop, so the replica is never entered concurrently.

Metrics (``metrics_port`` in the config; ``agents/metrics.py``): the replica serves
Prometheus text at ``http://<metrics host>:<port>/metrics`` and writes the port it bound to
``<data_dir>/replica-<i>.metrics-port`` (removed on a clean stop). Counted in this layer from
what the PBFT core already exposes, after every pump round (``ReplicaMetrics``):
``agora_commits_total`` (sequence numbers executed: growth of ``last_executed``, state
transfer included), ``agora_view_changes_total`` (new views installed: the replica becomes
active in a higher view), ``agora_view``, ``agora_wire_bytes_total`` (serialized PeerBatch
bytes in and out on the peer links) and ``agora_requests_total`` (client requests by RPC and
outcome). The counters are updated before the replies of the same round are sent.

TLS (``tls`` in the config): the server requires a client certificate signed by the
configured CA (mutual TLS), and the peer links present the replica's own certificate
(``transport.py``). Without it, everything is plaintext as before.

Storage: group commit (``GroupCommit``): the pump hands every queued input to the replica,
then commits their writes once and delivers their actions after the commit. Under
``sqlite_synchronous`` FULL/EXTRA the commit (an fsync) runs on a writer thread while the
pump goes on with the next inputs; the actions wait for their group's commit. Under NORMAL
it commits inline (no fsync).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter, deque
from pathlib import Path

import grpc
import yaml
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from agents.workloads.loader import load_cluster
from coordinator.config import CoordinatorConfig
from coordinator.group_commit import GroupCommit
from coordinator.pbft.keys import KeySet
from coordinator.pbft.messages import Broadcast, Reply, Send
from coordinator.pbft.replica import Replica
from coordinator.pbft.storage import SqliteStorage
from coordinator.replica_metrics import ReplicaMetrics
from coordinator.schedule_state import AllocationRow, ChangeRow, ScheduleState, allocation_pb
from coordinator.transport import (CHANNEL_OPTIONS, PeerLinks, channel_options,
                                   replica_channel_credentials, server_credentials)
from coordinator.validate import Refusal, parse_request
from protos.agora.v1 import coordinator_pb2 as pb
from protos.agora.v1 import coordinator_pb2_grpc as rpc
from protos.agora.v1.pbft_pb2 import PbftEnvelope, PbftMessage

log = logging.getLogger(__name__)

SERVICES = ("agora.v1.Coordinator", "agora.v1.Peer")
PUMP_MAX = 512
"""Inputs handed to the replica between two storage commits."""
WATCH_QUEUE = 4096
"""Updates buffered per watcher; a watcher that falls further behind is cut off."""


def load_keys(path: Path) -> KeySet:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise ValueError(f"{path}: cannot read the key file ({e.strerror or e}); write one "
                         f"with `agora keys`") from None
    try:
        return KeySet.from_dict(data)
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None


class ReplicaHost:
    """Feeds one Replica its inputs, fires its timers and delivers its actions."""

    def __init__(self, *, config: CoordinatorConfig, index: int, keys: KeySet,
                 app: ScheduleState, storage, byzantine=None) -> None:
        self.config = config
        self.byzantine = byzantine
        """fault harness only: a ``coordinator.pbft.byzantine`` behaviour that rewrites
        everything this replica sends (``agora coordinator --byzantine NAME``)"""
        self.index = index
        self.app = app
        self.storage = GroupCommit(storage)
        self.replica = Replica(config.pbft(), index, keys.for_replica(index), app,
                               self.storage)
        self.storage.commit()
        self.metrics = (ReplicaMetrics(index, self.replica)
                        if config.metrics_port_of(index) is not None else None)
        self.links = PeerLinks(index=index, addresses=config.replicas,
                               batch_max=config.peer_batch_max, on_count=self.count,
                               credentials=replica_channel_credentials(config, index),
                               options=channel_options(config),
                               on_bytes=self.metrics.bytes_out.inc if self.metrics else None)
        self.refused: Counter[str] = Counter()
        self.seen: dict[int, float] = {}
        self.waiters: dict[tuple[str, int], list[asyncio.Future]] = {}
        self.watchers: list[asyncio.Queue] = []
        self.inbox: deque[PbftEnvelope | bytes] = deque()
        self._wake = asyncio.Event()
        self._timer: asyncio.Task | None = None
        app.listeners.append(self._on_commit)

    def count(self, kind: str) -> None:
        self.refused[kind] += 1

    def start(self) -> None:
        self.storage.start(asyncio.get_running_loop())
        self.links.start()
        self._timer = asyncio.create_task(self._pump(), name=f"replica-{self.index}")

    async def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            try:
                await self._timer
            except (asyncio.CancelledError, Exception):
                pass
        await self.links.close()
        for q in self.watchers:
            q.put_nowait(None)
        for futs in self.waiters.values():
            for fut in futs:
                if not fut.done():
                    fut.cancel()
        self.storage.stop()
        close = getattr(self.storage.inner, "close", None)
        if close is not None:
            close()

    # ---- the replica's inputs and outputs ----

    def feed(self, env: PbftEnvelope | bytes, sender: int | None = None) -> None:
        """Queue one input; the pump hands it to the replica with whatever else is queued."""
        if sender is not None and 0 <= sender < self.config.n:
            self.seen[sender] = time.monotonic()
        self.inbox.append(env)
        self._wake.set()

    async def _pump(self) -> None:
        """The one task that enters the replica: every queued input and due timer, then one
        storage commit for all of them (group commit: one fsync instead of one per message),
        then their actions. Nothing is sent before what it depends on is durable."""
        inbox, replica, metrics = self.inbox, self.replica, self.metrics
        while True:
            self._wake.clear()
            now = time.monotonic()
            actions = []
            n = 0
            while inbox and n < PUMP_MAX:
                actions.extend(replica.receive(inbox.popleft(), now))
                n += 1
            deadline = replica.next_deadline()
            if deadline is not None and deadline <= now:
                actions.extend(replica.tick(now))
            if metrics is not None:
                metrics.observe(replica)
            if self.byzantine is not None:
                actions = self.byzantine.outgoing(self, actions, now)
            self.storage.submit(actions, self._deliver)
            if inbox:
                await asyncio.sleep(0)   # let the transport run, then drain the rest
                continue
            deadline = replica.next_deadline()
            now = time.monotonic()
            if deadline is not None and deadline <= now:
                continue
            try:
                await asyncio.wait_for(self._wake.wait(),
                                       None if deadline is None else deadline - now)
            except asyncio.TimeoutError:
                pass

    def _deliver(self, actions) -> None:
        for a in actions:
            if isinstance(a, Send):
                self.links.send(a.to, a.msg.SerializeToString())
            elif isinstance(a, Broadcast):
                self.links.broadcast(a.msg.SerializeToString())
            elif isinstance(a, Reply):
                self._resolve(a.client_id, a.msg)

    def _resolve(self, client_id: str, env: PbftEnvelope) -> None:
        msg = PbftMessage.FromString(env.payload)
        futs = self.waiters.pop((client_id, msg.reply.timestamp), ())
        for fut in futs:
            if not fut.done():
                fut.set_result(env)

    def waiter(self, client_id: str, timestamp: int) -> asyncio.Future:
        fut = asyncio.get_running_loop().create_future()
        self.waiters.setdefault((client_id, timestamp), []).append(fut)
        return fut

    def forget(self, client_id: str, timestamp: int, fut: asyncio.Future) -> None:
        futs = self.waiters.get((client_id, timestamp))
        if futs and fut in futs:
            futs.remove(fut)
            if not futs:
                del self.waiters[(client_id, timestamp)]

    # ---- watchers ----

    def _on_commit(self, seq: int, new: list[AllocationRow], changes: list[ChangeRow]) -> None:
        if not self.watchers:
            return
        update = update_message(seq, new, changes, self.index)
        for q in list(self.watchers):
            try:
                q.put_nowait(update)
            except asyncio.QueueFull:
                self.watchers.remove(q)
                q.put_nowait(None) if not q.full() else None

    def status(self) -> pb.ReplicaStatus:
        s = self.replica.status()
        now = time.monotonic()
        horizon = 2 * self.config.view_change_timeout_s
        seen = sorted({self.index} | {j for j, t in self.seen.items() if now - t <= horizon})
        rejected = Counter({f"replica.{k}": v for k, v in s["rejected"].items()})
        rejected.update({f"service.{k}": v for k, v in self.refused.items()})
        return pb.ReplicaStatus(
            replica=self.index, n=self.config.n, f=self.config.f, view=s["view"],
            primary=s["primary"], last_executed=s["last_executed"],
            last_committed=s["last_committed"], stable_checkpoint=s["stable_checkpoint"],
            low_water_mark=s["low_water_mark"], high_water_mark=s["high_water_mark"],
            replicas_seen=seen,
            rejected=[pb.Counter(name=k, count=v) for k, v in sorted(rejected.items())],
            round=self.app.round, allocations=len(self.app.allocations),
            schedule_rejected=[pb.Counter(name=k, count=v) for k, v in self.app.counters()])


def update_message(seq: int, new: list[AllocationRow], changes: list[ChangeRow],
                   replica: int) -> pb.ScheduleUpdate:
    return pb.ScheduleUpdate(
        version=seq, replica=replica, allocations=[allocation_pb(r) for r in new],
        changes=[pb.InstanceChange(version=v, job_id=j, task_id=t, instance_begin=b,
                                   instance_end=e, site=s, kind=k)
                 for v, j, t, b, e, s, k in changes])


class PeerService(rpc.PeerServicer):
    def __init__(self, host: ReplicaHost) -> None:
        self.host = host

    async def Stream(self, request_iterator, context):
        metrics = self.host.metrics
        async for batch in request_iterator:
            if metrics is not None:
                metrics.bytes_in.inc(batch.ByteSize())
            for data in batch.envelopes:
                self.host.feed(data, batch.sender)
        return pb.PeerAck()


class CoordinatorService(rpc.CoordinatorServicer):
    def __init__(self, host: ReplicaHost) -> None:
        self.host = host

    async def _request(self, request: pb.ClientRequest, context, rpc_name: str) -> pb.ClientReply:
        host = self.host
        try:
            env, req, _cmd = parse_request(request.envelope, rpc_name)
            auth = host.replica.auth
            if req.client_id not in auth.client_verify:
                raise Refusal(grpc.StatusCode.UNAUTHENTICATED, "unknown_client",
                              f"envelope.payload.request.client_id: no key for client "
                              f"{req.client_id!r}; expected a client of the key file")
            if not auth.request_ok(req):
                raise Refusal(grpc.StatusCode.UNAUTHENTICATED, "bad_signature",
                              "envelope.payload.request.signature: does not verify with the "
                              f"key of client {req.client_id!r}")
            last = host.replica.clients.get(req.client_id)
            if not req.read_only and last is not None and req.timestamp < last[0]:
                raise Refusal(grpc.StatusCode.FAILED_PRECONDITION, "stale_request",
                              f"envelope.payload.request.timestamp: {req.timestamp} is older "
                              f"than the client's last executed request ({last[0]}); "
                              f"expected a larger timestamp")
        except Refusal as r:
            host.count(r.kind)
            if host.metrics is not None:
                host.metrics.request(rpc_name, "refused")
            await context.abort(r.code, r.message)
        fut = host.waiter(req.client_id, req.timestamp)
        try:
            host.feed(env)
            reply = await asyncio.wait_for(fut, host.config.request_timeout_s)
        except asyncio.TimeoutError:
            host.count("timeout")
            if host.metrics is not None:
                host.metrics.request(rpc_name, "timeout")
            s = host.replica.status()
            await context.abort(grpc.StatusCode.UNAVAILABLE,
                                f"not executed within {host.config.request_timeout_s} s at "
                                f"replica {host.index} (view {s['view']}, active "
                                f"{s['view_active']}); retry")
        finally:
            host.forget(req.client_id, req.timestamp, fut)
        if host.metrics is not None:
            host.metrics.request(rpc_name, "ok")
        return pb.ClientReply(envelope=reply.SerializeToString(), replica=host.index)

    async def SubmitJobs(self, request, context):
        return await self._request(request, context, "SubmitJobs")

    async def SubmitBids(self, request, context):
        return await self._request(request, context, "SubmitBids")

    async def ReportCompletion(self, request, context):
        return await self._request(request, context, "ReportCompletion")

    async def ReportFailure(self, request, context):
        return await self._request(request, context, "ReportFailure")

    async def Tick(self, request, context):
        return await self._request(request, context, "Tick")

    async def ClearRound(self, request, context):
        return await self._request(request, context, "ClearRound")

    async def GetSchedule(self, request, context):
        return await self._request(request, context, "GetSchedule")

    async def GetStatus(self, request, context):
        return self.host.status()

    async def WatchSchedule(self, request, context):
        if request.since_version < 0:
            self.host.count("invalid_argument")
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                f"since_version: {request.since_version}; expected >= 0")
        app, q = self.host.app, asyncio.Queue(WATCH_QUEUE)
        self.host.watchers.append(q)
        try:
            # What is committed already, grouped by version, then live updates.
            past: dict[int, tuple[list, list]] = {}
            for row in app.allocations:
                if row[7] >= request.since_version:
                    past.setdefault(row[7], ([], []))[0].append(row)
            for row in app.changes:
                if row[0] >= request.since_version:
                    past.setdefault(row[0], ([], []))[1].append(row)
            last = 0
            for v in sorted(past):
                yield update_message(v, *past[v], self.host.index)
                last = v
            while True:
                update = await q.get()
                if update is None:
                    return
                if update.version > last or update.version == 0:
                    yield update
        finally:
            if q in self.host.watchers:
                self.host.watchers.remove(q)


async def serve(config: CoordinatorConfig, index: int, keys: KeySet | None = None, *,
                storage=None, app: ScheduleState | None = None,
                grace_s: float = 0.5, byzantine: str | None = None) -> Server:
    """Start replica ``index`` of ``config`` on its address; returns the running Server.
    ``byzantine``: the fault harness's behaviour name (``coordinator.pbft.byzantine``), for
    fault tests only: the replica then misbehaves in everything it sends."""
    if not 0 <= index < config.n:
        raise ValueError(f"--replica: got {index}; expected 0..{config.n - 1}")
    if keys is None:
        keys = load_keys(config.path(config.keys_file))
    if app is None:
        from coordinator.site_round import verifier
        app = ScheduleState(load_cluster(str(config.path(config.cluster))
                                         if config.cluster != "default" else "default"),
                            verify=verifier(keys.client_verify))
    if storage is None:
        db = config.database(index)
        db.parent.mkdir(parents=True, exist_ok=True)
        storage = SqliteStorage(db, synchronous=config.sqlite_synchronous)
    behaviour = None
    if byzantine is not None:
        from coordinator.pbft.byzantine import BEHAVIOURS
        usable = sorted(set(BEHAVIOURS) - {"replay"})
        if byzantine not in usable:
            raise ValueError(f"--byzantine: {byzantine!r}; expected one of {usable} (replay "
                             f"rewrites incoming traffic, which the server does not hook)")
        behaviour = BEHAVIOURS[byzantine](seed=index)
    host = ReplicaHost(config=config, index=index, keys=keys, app=app, storage=storage,
                       byzantine=behaviour)
    server = grpc.aio.server(options=CHANNEL_OPTIONS)
    rpc.add_PeerServicer_to_server(PeerService(host), server)
    rpc.add_CoordinatorServicer_to_server(CoordinatorService(host), server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    address = config.replicas[index]
    creds = server_credentials(config, index)
    bound = (server.add_insecure_port(address) if creds is None
             else server.add_secure_port(address, creds))
    if bound == 0:
        raise OSError(f"replica {index}: cannot listen on {address}")
    metrics_port = None
    if host.metrics is not None:
        from agents.metrics import start_metrics_server
        metrics_port = start_metrics_server(config.metrics_host_of(index),
                                            config.metrics_port_of(index))
        write_metrics_port(config.metrics_port_file(index), metrics_port)
        log.info("replica %d: metrics on http://%s:%d/metrics", index,
                 config.metrics_host_of(index), metrics_port)
    await server.start()
    for name in ("", *SERVICES):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    host.start()
    log.info("replica %d of %d serving on %s%s", index, config.n, address,
             " (mutual TLS)" if creds is not None else "")
    return Server(server=server, host=host, health=health_servicer, grace_s=grace_s,
                  metrics_port=metrics_port)


def write_metrics_port(path: Path, port: int) -> None:
    """Write ``port`` to ``path`` atomically (a reader sees the old file or the whole new
    one)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(f"{port}\n", encoding="utf-8")
    tmp.replace(path)


class Server:
    """A running replica: ``await stop()`` shuts it down gracefully. ``metrics_port``: the
    port of its metrics endpoint, or None."""

    def __init__(self, *, server: grpc.aio.Server, host: ReplicaHost, health,
                 grace_s: float, metrics_port: int | None = None) -> None:
        self.server, self.host, self.health, self.grace_s = server, host, health, grace_s
        self.metrics_port = metrics_port

    async def stop(self) -> None:
        for name in ("", *SERVICES):
            await self.health.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
        await self.host.close()
        await self.server.stop(self.grace_s)
        if self.metrics_port is not None:
            from agents.metrics import stop_metrics_server
            stop_metrics_server(self.metrics_port)
            self.host.config.metrics_port_file(self.host.index).unlink(missing_ok=True)

    async def wait(self) -> None:
        await self.server.wait_for_termination()

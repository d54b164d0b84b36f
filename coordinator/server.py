"""One coordinator replica as a process: a sans-IO PBFT ``Replica`` hosted in a grpc.aio
server, with the replicated schedule (``ScheduleState``) as its application.

    host = await serve(config, index, keys)      # starts listening on config.replicas[index]
    await host.stop()

Served on the replica's address: the services of ``coordinator/service.py`` (the peer
stream, the coordinator's client RPCs, the watch stream, status, heartbeats) and
``grpc.health.v1.Health`` (SERVING for "" and every service while the replica runs). Beside
the PBFT core the host runs the replica's ``RoundKeeper`` (``round_keeper.py``): its votes to
close a round that waits too long or lapse a site whose heartbeats stopped, sent as the
replica's own client ``replica:<i>``.

Timers: one asyncio task sleeps until ``replica.next_deadline()`` (``time.monotonic``) and
calls ``replica.tick``; every input that may move the deadline wakes it. Everything runs on
one event loop, so the replica is never entered concurrently.

Metrics (``metrics_port`` in the config; ``agents/metrics.py``): the replica serves
Prometheus text at ``http://<metrics host>:<port>/metrics`` and writes the port it bound to
``<data_dir>/replica-<i>.metrics-port`` (removed on a clean stop). Counted in this layer from
what the PBFT core already exposes, after every pump round (``ReplicaMetrics``):
``agora_commits_total`` (sequence numbers executed: growth of ``last_executed``, state
transfer included), ``agora_view_changes_total`` (new views installed: the replica becomes
active in a higher view), ``agora_view``, ``agora_replica_wire_bytes_total`` (serialized PeerBatch
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
import json
import logging
import sqlite3
import time
from collections import Counter, deque
from pathlib import Path

import grpc
import yaml
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from agora.agents.aio import cancel_and_wait
from agora.coordinator.config import CoordinatorConfig
from agora.coordinator.group_commit import GroupCommit
from agora.coordinator.pbft.keys import KeySet
from agora.coordinator.pbft.messages import Broadcast, Reply, Send
from agora.coordinator.pbft.replica import Replica
from agora.coordinator.client import CoordinatorClient
from agora.coordinator.pbft.storage import SqliteStorage
from agora.coordinator.rate_limit import ClientRate
from agora.coordinator.replica_metrics import ReplicaMetrics
from agora.coordinator.round_keeper import RoundKeeper
from agora.coordinator.schedule_state import ScheduleState
from agora.coordinator.service import WATCH_QUEUE, CoordinatorService, PeerService
from agora.protos.undecodable import RefuseUndecodable
from agora.coordinator.transport import (CHANNEL_OPTIONS, PeerLinks, channel_options,
                                         replica_channel_credentials, server_credentials)
from agora.protos.agora.v1 import coordinator_pb2 as pb
from agora.protos.agora.v1 import coordinator_pb2_grpc as rpc
from agora.protos.agora.v1.pbft_pb2 import PbftEnvelope, PbftMessage

log = logging.getLogger(__name__)

SERVICES = ("agora.v1.Coordinator", "agora.v1.Peer")
PUMP_MAX = 512
"""Inputs handed to the replica between two storage commits."""
WARM_SLICE_S = 0.002
"""When idle, the replica pre-encodes changed job records in slices of about this long
(``ScheduleState.warm``), so that a checkpoint does not stall on them."""
RECENT_UPDATES = 20_000
"""Updates kept in memory for watchers that (re)connect from a recent version."""


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
        # Filled before the replica recovers: what it re-executes from its log is in the
        # ring, so a restarted replica streams those versions as the others do.
        self.recent: deque[pb.ScheduleUpdate] = deque(maxlen=RECENT_UPDATES)
        app.listeners.append(self.recent.append)
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
        self.rate = ClientRate(config.client_requests_per_s)
        self.peer_rate = ClientRate(config.peer_envelopes_per_s)
        self.seen: dict[int, float] = {}
        self.waiters: dict[tuple[str, int], list[asyncio.Future]] = {}
        self.watchers: list[asyncio.Queue] = []
        self.inbox: deque[PbftEnvelope | bytes] = deque()
        self._wake = asyncio.Event()
        self._timer: asyncio.Task | None = None
        self.closing = False
        self.failed = asyncio.Event()
        """set when the replica can go on no longer (its pump raised, or its storage failed
        a commit): ``agora coordinator`` then stops the process with a non-zero exit, so
        that it is seen and restarted (it recovers from its log) instead of serving health
        checks while ordering nothing"""
        voter_id = f"replica:{index}"
        self.voter = (CoordinatorClient(config, keys.for_client(voter_id), voter_id)
                      if voter_id in keys.client_signing else None)
        self.keeper = RoundKeeper(app=app, index=index,
                                  client_verify=self.replica.auth.client_verify,
                                  round_timeout_s=config.round_timeout_s,
                                  round_grace_s=config.round_grace_s,
                                  site_timeout_s=config.site_timeout_s, vote=self._vote)
        app.listeners.append(self._on_commit)

    def count(self, kind: str) -> None:
        self.refused[kind] += 1

    def start(self) -> None:
        self.storage.start(asyncio.get_running_loop())
        self.links.start()
        self._timer = asyncio.create_task(self._pump(), name=f"replica-{self.index}")
        self._timer.add_done_callback(self._pump_ended)
        self.storage.on_failure = self.failed.set
        if self.voter is not None:
            self.keeper.start()

    def _pump_ended(self, task: asyncio.Task) -> None:
        if task.cancelled() or self.closing:
            return
        log.critical("replica %d: its pump failed; the replica stops", self.index,
                     exc_info=task.exception())
        self.failed.set()

    async def _vote(self, kind: str, msg) -> None:
        method = {"close_round": "CloseRound", "site_lapsed": "SiteLapsed"}[kind]
        await self.voter.call(method, pb.Command(**{kind: msg}))

    async def close(self) -> None:
        self.closing = True
        await cancel_and_wait([self._timer])
        await self.keeper.close()
        if self.keeper.trace is not None:
            trace = self.config.path(self.config.data_dir) / f"replica-{self.index}.trace.json"
            trace.write_text(json.dumps(self.keeper.trace))
        if self.voter is not None:
            await self.voter.close()
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
            self.links.peer_alive(sender)
        self.inbox.append(env)
        self._wake.set()

    async def _pump(self) -> None:
        """The one task that enters the replica: every queued input and due timer, then one
        storage commit for all of them (group commit: one fsync instead of one per message),
        then their actions. Nothing is sent before what it depends on is durable."""
        inbox, replica, metrics = self.inbox, self.replica, self.metrics
        loop = asyncio.get_running_loop()
        timer: asyncio.TimerHandle | None = None
        timer_at: float | None = None      # the replica's deadline the timer is set for
        fired = [False]

        def ring() -> None:
            fired[0] = True
            self._wake.set()

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
            if self._warm():
                await asyncio.sleep(0)       # anything that arrived meanwhile goes first
                if inbox:
                    continue
            deadline = replica.next_deadline()    # read after warming, which took time
            now = time.monotonic()
            if deadline is not None and deadline <= now:
                continue
            # sleep until an input or the deadline (a timer handle on the loop: waking
            # takes one turn of the loop, where wait_for's task would take two or three).
            # The handle is kept while the deadline stays the same -- most wakes are inputs,
            # and a fresh handle per sleep filled the loop's timer heap with cancelled ones
            if timer is not None and (timer_at != deadline or fired[0]):
                timer.cancel()
                timer = None
            if timer is None and deadline is not None:
                fired[0] = False
                timer, timer_at = loop.call_later(deadline - now, ring), deadline
            await self._wake.wait()

    def _warm(self) -> bool:
        """Idle: pre-encode changed job records for about WARM_SLICE_S (see
        ``ScheduleState.warm``); whether there may be more."""
        warm = self.app.warm
        end = time.perf_counter() + WARM_SLICE_S
        while time.perf_counter() < end:
            if not warm(4):
                return False
        return True

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

    def _on_commit(self, update: pb.ScheduleUpdate) -> None:
        # ``replica`` stays unset on the stream: every correct replica then sends the same
        # bytes, and a client matches f+1 of them without parsing (client.watch)
        self.keeper.executed(update)
        for q in list(self.watchers):
            try:
                q.put_nowait(update)
            except asyncio.QueueFull:
                # Cut it off: drop what it has not read and end its stream; it watches
                # again from its last version.
                self.watchers.remove(q)
                while not q.empty():
                    q.get_nowait()
                q.put_nowait(None)

    def status(self) -> pb.ReplicaStatus:
        s = self.replica.status()
        now = time.monotonic()
        horizon = 2 * self.config.view_change_timeout_s
        seen = sorted({self.index} | {j for j, t in self.seen.items() if now - t <= horizon})
        rejected = Counter({f"replica.{k}": v for k, v in s["rejected"].items()})
        rejected.update({f"service.{k}": v for k, v in self.refused.items()})
        p50, p99, samples = self.keeper.latency_ms()
        app = self.app
        return pb.ReplicaStatus(
            armed=app.armed, decided_sites=app.decided(),
            lapsed_sites=[x for x in app.site_names if app.sites[x].lapsed],
            decision_latency_ms_p50=p50, decision_latency_ms_p99=p99,
            decision_latency_samples=samples,
            replica=self.index, n=self.config.n, f=self.config.f, view=s["view"],
            primary=s["primary"], last_executed=s["last_executed"],
            last_committed=s["last_committed"], stable_checkpoint=s["stable_checkpoint"],
            low_water_mark=s["low_water_mark"], high_water_mark=s["high_water_mark"],
            replicas_seen=seen,
            rejected=[pb.Counter(name=k, count=v) for k, v in sorted(rejected.items())],
            round=self.app.round, allocations=len(self.app.allocations),
            schedule_rejected=[pb.Counter(name=k, count=v) for k, v in self.app.counters()])


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
        app = ScheduleState.for_config(config)
    if storage is None:
        db = config.database(index)
        db.parent.mkdir(parents=True, exist_ok=True)
        try:
            storage = SqliteStorage(db, synchronous=config.sqlite_synchronous)
        except sqlite3.DatabaseError as e:
            raise ValueError(_unreadable_log(db, e)) from None
    behaviour = None
    if byzantine is not None:
        from agora.coordinator.pbft.byzantine import BEHAVIOURS
        usable = sorted(set(BEHAVIOURS) - {"replay"})
        if byzantine not in usable:
            raise ValueError(f"--byzantine: {byzantine!r}; expected one of {usable} (replay "
                             f"rewrites incoming traffic, which the server does not hook)")
        behaviour = BEHAVIOURS[byzantine](seed=index)
    try:
        host = ReplicaHost(config=config, index=index, keys=keys, app=app, storage=storage,
                           byzantine=behaviour)
    except sqlite3.DatabaseError as e:      # a page deeper in the file is damaged
        raise ValueError(_unreadable_log(config.database(index), e)) from None
    server = grpc.aio.server(options=CHANNEL_OPTIONS, interceptors=[RefuseUndecodable()])
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
        from agora.agents.metrics import start_metrics_server
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


def _unreadable_log(db: Path, e: Exception) -> str:
    return (f"{db}: the replica's log is not a readable SQLite database ({e}); move it aside "
            f"(mv {db} {db}.damaged) and start this replica again: it starts empty and "
            f"catches up from its peers (state transfer), as long as 2f+1 others run")


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
            from agora.agents.metrics import stop_metrics_server
            stop_metrics_server(self.metrics_port)
            self.host.config.metrics_port_file(self.host.index).unlink(missing_ok=True)

    async def wait(self) -> None:
        await self.server.wait_for_termination()

"""The host of one coordinator replica: feeds the sans-IO PBFT ``Replica`` its inputs, fires
its timers, commits its writes and delivers its actions, answers the clients waiting on it,
streams committed updates to watchers and reports its status (``coordinator/server.py``
serves it over gRPC; ``service.py`` holds the services).

Timers: one asyncio task (the pump) sleeps until ``replica.next_deadline()``
(``time.monotonic``) and calls ``replica.tick``; every input that may move the deadline wakes
it. Everything runs on one event loop, so the replica is never entered concurrently.

Storage: group commit (``GroupCommit``): the pump hands every queued input to the replica,
then commits their writes once and delivers their actions after the commit. Under
``sqlite_synchronous`` FULL/EXTRA the commit (an fsync) runs on a writer thread while the
pump goes on with the next inputs; the actions wait for their group's commit. Under NORMAL
it commits inline (no fsync).

Metrics (``ReplicaMetrics``) are counted after every pump round, before the replies of the
same round are sent. Beside the PBFT core the host runs the replica's ``RoundKeeper``
(``round_keeper.py``): its votes to close a round that waits too long or lapse a site whose
heartbeats stopped, sent as the replica's own client ``replica:<i>``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import Counter, deque

from agora.agents.aio import cancel_and_wait
from agora.coordinator.client import CoordinatorClient
from agora.coordinator.config import CoordinatorConfig
from agora.coordinator.group_commit import GroupCommit
from agora.coordinator.pbft.keys import KeySet
from agora.coordinator.pbft.messages import Broadcast, Reply, Send
from agora.coordinator.pbft.replica import Replica
from agora.coordinator.rate_limit import ClientRate
from agora.coordinator.recent_updates import RecentUpdates
from agora.coordinator.replica_metrics import ReplicaMetrics
from agora.coordinator.request_clock import ReadOnce, reused, stale
from agora.coordinator.round_keeper import RoundKeeper
from agora.coordinator.schedule_state import ScheduleState
from agora.coordinator.transport import PeerLinks, channel_options, replica_channel_credentials
from agora.protos.agora.v1 import coordinator_pb2 as pb
from agora.protos.agora.v1.pbft_pb2 import PbftEnvelope, PbftMessage

log = logging.getLogger(__name__)

PUMP_MAX = 512
"""Inputs handed to the replica between two storage commits."""
WARM_SLICE_S = 0.002
"""When idle, the replica pre-encodes changed job records in slices of about this long
(``ScheduleState.warm``), so that a checkpoint does not stall on them."""


_QUERY_TAG = bytes([pb.Command.DESCRIPTOR.fields_by_name["query"].number << 3 | 2])
"""How a serialized Command holding a query begins (its one field's tag)."""


class _MeteredReads:
    """The schedule as the replica sees it: each query -- read-only, or ordered (a client's
    slow path) -- is timed and charged to its client (``ClientRate.charge``; ``service``
    refuses the queries of a client in debt). Everything else is the schedule's own."""

    def __init__(self, app: ScheduleState, cost: ClientRate) -> None:
        self._app, self._cost = app, cost

    def __getattr__(self, name: str):
        return getattr(self._app, name)

    def query(self, client_id: str, op: bytes) -> bytes:
        t = time.perf_counter()
        try:
            return self._app.query(client_id, op)
        finally:
            self._cost.charge(client_id, time.perf_counter() - t)

    def execute(self, client_id: str, op: bytes, seq: int) -> bytes:
        if not op.startswith(_QUERY_TAG):
            return self._app.execute(client_id, op, seq)
        t = time.perf_counter()
        try:
            return self._app.execute(client_id, op, seq)
        finally:
            self._cost.charge(client_id, time.perf_counter() - t)


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
        self.recent = RecentUpdates()
        app.listeners.append(self.recent.append)
        self.read_cost = ClientRate(config.client_read_seconds_per_s,
                                    burst=config.client_read_seconds_per_s)
        self.replica = Replica(config.pbft(), index, keys.for_replica(index),
                               _MeteredReads(app, self.read_cost), self.storage)
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
        self.read_once = ReadOnce()
        self.peer_rate = ClientRate(config.peer_envelopes_per_s)
        self.seen: dict[int, float] = {}
        self.waiters: dict[tuple[str, int], list[tuple[asyncio.Future, bytes]]] = {}
        """(client, timestamp) -> the requests waiting here for their reply: (future, what
        tells the request apart, ``op_key``)"""
        self._client_waits: dict[str, set[int]] = {}
        """client -> the timestamps its requests wait at here"""
        self.watchers: list[asyncio.Queue] = []
        self.watching: dict[str, int] = {}
        """reader -> watch streams it holds open here (``service.MAX_WATCHES_PER_READER``)"""
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
                                  site_timeout_s=config.site_timeout_s,
                                  site_start_grace_s=config.site_start_grace_s,
                                  vote=self._vote)
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
        for pairs in self.waiters.values():
            for fut, _op in pairs:
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
                self._resolve(a.client_id, a.msg, a.op)

    def _resolve(self, client_id: str, env: PbftEnvelope, op: bytes) -> None:
        """Hand the reply ``env`` to the requests of ``client_id`` at its timestamp whose op it
        answers (``op``; b"": any). A PBFT reply names its client and timestamp, not its
        request: a request of the same client and timestamp with another op (processes
        sharing a client's key and clock) would otherwise get the other's result -- "accepted"
        for a job that was never submitted, from every replica where it arrived first (a
        probe: 2 of 12 tries). Once an ordered request executed at the timestamp, the others
        there are refused as reused; a read-only answer leaves them waiting."""
        msg = PbftMessage.FromString(env.payload)
        ts = msg.reply.timestamp
        pairs = self.waiters.pop((client_id, ts), ())
        kept = []
        for fut, fop in pairs:
            if fut.done():
                continue
            if not op or fop == op:
                fut.set_result(env)
            elif msg.reply.read_only:
                kept.append((fut, fop))
            else:
                fut.set_exception(reused(client_id, ts, "executed"))
        if kept:
            self.waiters[(client_id, ts)] = kept
        else:
            self._unwait(client_id, ts)
        waits = self._client_waits.get(client_id)
        if waits and not msg.reply.read_only:
            # what waits at an older timestamp of this client will never execute now
            last = self.replica.clients.get(client_id)
            for t in [t for t in waits if last is not None and t < last[0]]:
                for fut, _op in self.waiters.pop((client_id, t), ()):
                    if not fut.done():
                        fut.set_exception(stale(client_id, t, last[0]))
                self._unwait(client_id, t)

    def waiter(self, client_id: str, timestamp: int, op: bytes = b"") -> asyncio.Future:
        """A future for the reply to ``client_id``'s request at ``timestamp``; ``op``: what
        tells that request apart (``op_key``): only a reply to that op resolves it."""
        fut = asyncio.get_running_loop().create_future()
        self.waiters.setdefault((client_id, timestamp), []).append((fut, op))
        self._client_waits.setdefault(client_id, set()).add(timestamp)
        return fut

    def waits(self, client_id: str, timestamp: int, op: bytes) -> bool:
        """Does a request of ``client_id`` at ``timestamp`` with ``op`` wait here already (a
        copy: charged to the client's budget for copies)?"""
        return any(fop == op for _f, fop in self.waiters.get((client_id, timestamp), ()))

    def forget(self, client_id: str, timestamp: int, fut: asyncio.Future) -> None:
        pairs = self.waiters.get((client_id, timestamp))
        if pairs:
            pairs[:] = [p for p in pairs if p[0] is not fut]
            if not pairs:
                del self.waiters[(client_id, timestamp)]
        self._unwait(client_id, timestamp)

    def _unwait(self, client_id: str, timestamp: int) -> None:
        """No request of the client waits at ``timestamp`` any more: forget the timestamp."""
        if (client_id, timestamp) not in self.waiters:
            waits = self._client_waits.get(client_id)
            if waits is not None:
                waits.discard(timestamp)
                if not waits:
                    del self._client_waits[client_id]

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
        ready50, ready99, _ = self.keeper.latency_ms(ready=True)
        app = self.app
        return pb.ReplicaStatus(
            armed=app.armed, decided_sites=app.decided(),
            lapsed_sites=[x for x in app.site_names if app.sites[x].lapsed],
            silent_sites=self.keeper.silent(now),
            decision_latency_ms_p50=p50, decision_latency_ms_p99=p99,
            decision_latency_samples=samples, decision_latency_ready_ms_p50=ready50,
            decision_latency_ready_ms_p99=ready99,
            replica=self.index, n=self.config.n, f=self.config.f, view=s["view"],
            primary=s["primary"], last_executed=s["last_executed"],
            last_committed=s["last_committed"], stable_checkpoint=s["stable_checkpoint"],
            low_water_mark=s["low_water_mark"], high_water_mark=s["high_water_mark"],
            replicas_seen=seen,
            rejected=[pb.Counter(name=k, count=v) for k, v in sorted(rejected.items())],
            round=self.app.round, allocations=len(self.app.allocations),
            schedule_rejected=[pb.Counter(name=k, count=v) for k, v in self.app.counters()])

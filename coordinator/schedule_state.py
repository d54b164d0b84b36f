"""The replicated schedule: the deterministic state machine every coordinator replica runs.

PBFT (Castro & Liskov, OSDI 1999) orders client requests; every correct replica then calls
``execute(client_id, op, seq)`` with the same requests in the same order, so every replica
must end in the same state and answer the same bytes. This class is that state machine (the
core's ``App`` protocol: ``execute``, ``query``, ``snapshot``, ``restore``).

**Commands** (``op`` = a serialised ``agora.v1.Command``; coordinator.proto documents each):

- ``submit_jobs``: admit jobs (the workload proto; checked by ``protos.convert``). A task that
  fits no node of the cluster rejects its job with the reason.
- ``bid_batch``: a site's bids for the current round, kept pending until the round's tick.
- ``tick``: clear the round: ``agents.market.clear`` over every pending bid of the round
  together, with :class:`~coordinator.schedule_book.ScheduleBook` (priority = -weight,
  arrival order, DAG order; rank = the origin's site preference; place = best-fit node
  reservation on ``agents.sim.capacity.Capacity``). Each award becomes allocations (job, task,
  instance range, site, node, round, version = the sequence number).
- ``completion`` / ``failure``: running instances finish (releasing their reservation and,
  when a task is done, opening the tasks that waited on it) or fail (their instances open
  again for re-bidding: never lost).
- ``query``: read-only, also answered by ``query()``.

**Mediation.** Client ids ``site:<name>`` belong to sites. A bid batch, completion or failure
naming a site other than the sender's is rejected; so is a job a site submits for another
origin. A bid is rejected when its task is unknown or not open, when it asks for more than
is open, when the site bid for the task already this round, when the site has no node that
could ever hold it, or when the site's bids of the round would together exceed the site's
free cpu, memory or gpu (over-allocation). Every rejection names the field, says why, is
counted by kind, and changes nothing else; commands are checked whole before any change.

**Determinism.** No clock, no randomness, no iteration over unordered sets: jobs are kept in
admission order, pending bids in commit order, instances lowest index first. ``snapshot()``
is a deterministic protobuf serialisation, so equal states give equal bytes, and
``restore(snapshot())`` rebuilds the very same state (gpu slots included).
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections import Counter
from typing import Callable

from agents.domain import Cluster, Demand, why_unschedulable
from agents.market import PRICE_MAX, Bid, clear, site_preference
from agents.sim.capacity import Capacity
from coordinator.schedule_book import (
    DONE,
    OPEN,
    RUNNING,
    WAITING,
    JobState,
    ScheduleBook,
    TaskKey,
    TaskState,
    runs,
)
from coordinator.schedule_codec import check_known, query_answer, restore_into, snapshot_bytes
from protos.agora.v1 import coordinator_pb2 as pb
from protos.agora.v1 import schedule_pb2
from protos.convert import ProtoError, cluster_to_proto, decode, job_from_proto

log = logging.getLogger(__name__)

SITE_PREFIX = "site:"
"""Client ids of site agents: ``site:<site name>`` (or ``site:<site name>/<k>``)."""

MAX_JOBS_PER_COMMAND = 10_000
MAX_TASKS_PER_JOB = 1_000
MAX_INSTANCES_PER_TASK = 1_000_000
MAX_REASON_BYTES = 1024

AllocationRow = tuple[str, str, int, int, str, str, float, int, int]
"""(job, task, instance begin, end, site, node, start_s, version, round)"""
ChangeRow = tuple[int, str, str, int, int, str, str]
"""(version, job, task, begin, end, site, "completed" | "failed")"""


class Rejected(Exception):
    """A command (or part of one) refused: counted under ``kind``, reported as field+reason."""

    def __init__(self, kind: str, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.kind, self.field, self.reason = kind, field, reason


def site_of_client(client_id: str) -> str | None:
    """The site a client acts for: ``site:<name>`` or ``site:<name>/<k>`` (one site may run
    several clients, each with its own key, for concurrent requests); None for others."""
    if not client_id.startswith(SITE_PREFIX):
        return None
    return client_id[len(SITE_PREFIX):].split("/", 1)[0]


class ScheduleState:
    """The coordinator's replicated schedule over a fixed ``cluster`` (see module doc)."""

    def __init__(self, cluster: Cluster,
                 verify: Callable[[str, bytes, bytes], bool] | None = None) -> None:
        self.cluster = cluster
        self.verify = verify
        """checks a site's signed round report (``coordinator.site_round.verifier``); None:
        ``round`` commands are refused"""
        self.site_index = {s.name: i for i, s in enumerate(cluster.sites)}
        self.node_names = [n.name for n in cluster.nodes]
        self.pref = site_preference(cluster)
        self.cluster_digest = hashlib.sha256(
            cluster_to_proto(cluster).SerializeToString(deterministic=True)).digest()
        self._fits_cache: dict[tuple[Demand, int], bool] = {}
        """(demand, site) -> whether some node of the site could ever hold it"""
        self.listeners: list[Callable[[int, list[AllocationRow], list[ChangeRow]], None]] = []
        """called after each command that allocated or finished instances (not state)"""
        self._reset()

    def _reset(self) -> None:
        self.capacity = Capacity(self.cluster)
        self.jobs: dict[str, JobState] = {}
        self.tasks: dict[TaskKey, TaskState] = {}
        self.version = 0
        """sequence number of the last command that changed the schedule"""
        self.round = 0
        self.clock_s = 0.0
        self.pending: list[tuple[str, str, str, int, int]] = []
        """this round's bids in commit order: (site, job, task, instances, price)"""
        self.pending_keys: set[tuple[str, TaskKey]] = set()
        self.pending_demand: dict[str, list[int]] = {}
        """site -> [cpu, mem, gpu] asked by its pending bids"""
        self.allocations: list[AllocationRow] = []
        self.allocation_bytes: list[bytes] = []
        """encoded snapshot fields of ``allocations`` (a cache: rows never change)"""
        self.changes: list[ChangeRow] = []
        self.rejected: Counter[str] = Counter()

    # ---- the App protocol ------------------------------------------------------------
    def execute(self, client_id: str, op: bytes, seq: int) -> bytes:
        """Apply one ordered command; returns the serialised ``Result`` (never raises)."""
        res = pb.Result(version=seq)
        try:
            cmd = decode(pb.Command, op, "command")
            check_known(cmd, "command")
            kind = cmd.WhichOneof("kind")
            if kind is None:
                raise ProtoError("command", "no command set",
                                 "one of submit_jobs, bid_batch, completion, failure, tick, "
                                 "round, query")
        except ProtoError as e:
            self._count(res, Rejected("command.malformed", e.field, str(e)))
            res.round = self.round
            return res.SerializeToString(deterministic=True)
        res.kind = kind
        try:
            if kind == "query":
                res.query.CopyFrom(query_answer(self, cmd.query, "command.query"))
            else:
                getattr(self, f"_do_{kind}")(client_id, getattr(cmd, kind), seq, res)
        except Rejected as r:
            self._count(res, r)
        res.round = self.round
        return res.SerializeToString(deterministic=True)

    def query(self, client_id: str, op: bytes) -> bytes:
        """Answer a read-only ``Command`` holding a ``Query``: a serialised ``QueryResult``.
        Changes nothing (not even the rejection counters)."""
        try:
            cmd = decode(pb.Command, op, "command")
            check_known(cmd, "command")
            if cmd.WhichOneof("kind") != "query":
                raise ProtoError("command.query", "not set", "a Command holding a query")
        except ProtoError as e:
            out = pb.QueryResult(version=self.version,
                                 error=pb.Rejection(field=e.field, reason=str(e)))
            return out.SerializeToString(deterministic=True)
        return query_answer(self, cmd.query, "command.query").SerializeToString(
            deterministic=True)

    def snapshot(self) -> bytes:
        return snapshot_bytes(self)

    def restore(self, snapshot: bytes) -> None:
        """Replace the whole state by ``snapshot`` (from ``snapshot()`` on the same cluster);
        raises ProtoError on bytes that are not one, leaving the state unchanged."""
        snap = decode(pb.ScheduleSnapshot, snapshot, "snapshot")
        if snap.cluster_digest != self.cluster_digest:
            raise ProtoError("snapshot.cluster_digest", "taken on another cluster",
                             "a snapshot of a replica configured with the same cluster")
        fresh = ScheduleState.__new__(ScheduleState)
        fresh.__dict__.update(self.__dict__)
        fresh._reset()
        restore_into(fresh, snap)
        listeners = self.listeners
        self.__dict__.update(fresh.__dict__)
        self.listeners = listeners

    def schedule_bytes(self) -> bytes:
        """The snapshot without the rejection counters: what a rejected command must leave
        unchanged."""
        return snapshot_bytes(self, counters=False)

    # ---- commands ----------------------------------------------------------------------
    def _count(self, res: pb.Result, r: Rejected) -> None:
        self.rejected[r.kind] += 1
        res.rejections.add(field=r.field, reason=r.reason)

    def _sender_is(self, client_id: str, site: str, where: str, kind: str) -> None:
        if site not in self.site_index:
            raise Rejected(f"{kind}.unknown_site", where,
                           f"unknown site {site!r}; expected one of {sorted(self.site_index)}")
        if site_of_client(client_id) != site:
            raise Rejected(f"{kind}.wrong_site", where,
                           f"client {client_id!r} may not act for site {site!r}; expected "
                           f"the client id {SITE_PREFIX}{site}")

    def _do_submit_jobs(self, client_id: str, msg: pb.SubmitJobs, seq: int,
                        res: pb.Result) -> None:
        where = "command.submit_jobs.jobs"
        if len(msg.jobs) > MAX_JOBS_PER_COMMAND:
            raise Rejected("submit.too_many", where, f"{len(msg.jobs)} jobs; expected at most "
                           f"{MAX_JOBS_PER_COMMAND} per command")
        own = site_of_client(client_id)
        batch: set[str] = set()
        for i, jm in enumerate(msg.jobs):
            at = f"{where}[{i}]"
            try:
                self._admit(jm, at, own, batch, seq)
                res.accepted += 1
            except Rejected as r:
                self._count(res, r)

    def _admit(self, jm, at: str, own: str | None, batch: set[str], seq: int) -> None:
        if len(jm.tasks) > MAX_TASKS_PER_JOB:
            raise Rejected("submit.too_big", f"{at}.tasks",
                           f"{len(jm.tasks)} tasks; expected at most {MAX_TASKS_PER_JOB}")
        for k, t in enumerate(jm.tasks):
            if t.instances > MAX_INSTANCES_PER_TASK:
                raise Rejected("submit.too_big", f"{at}.tasks[{k}].instances",
                               f"{t.instances}; expected at most {MAX_INSTANCES_PER_TASK}")
        try:
            job = job_from_proto(jm, at)
        except ProtoError as e:
            raise Rejected("submit.malformed", e.field, str(e)) from None
        if job.origin not in self.site_index:
            raise Rejected("submit.unknown_origin", f"{at}.origin", f"unknown site "
                           f"{job.origin!r}; expected one of {sorted(self.site_index)}")
        if own is not None and own != job.origin:
            raise Rejected("submit.wrong_site", f"{at}.origin", f"site {own!r} may only "
                           f"submit jobs with origin {own!r}, not {job.origin!r}")
        if job.id in self.jobs or job.id in batch:
            raise Rejected("submit.duplicate_job", f"{at}.id", f"job {job.id!r} exists")
        for k, t in enumerate(job.tasks):
            why = why_unschedulable(t.demand, self.cluster)
            if why:
                raise Rejected("submit.unschedulable", f"{at}.tasks[{k}]",
                               f"task {t.id!r} fits no node: {why}")
        js = JobState(job, len(self.jobs), self.site_index[job.origin])
        batch.add(job.id)
        self.jobs[job.id] = js
        for ts in js.tasks.values():
            self.tasks[ts.key] = ts
        self.version = seq

    def _do_bid_batch(self, client_id: str, msg: pb.BidBatch, seq: int,
                      res: pb.Result) -> None:
        where = "command.bid_batch"
        self._sender_is(client_id, msg.site, f"{where}.site", "bid_batch")
        if msg.round != self.round:
            raise Rejected("bid_batch.wrong_round", f"{where}.round",
                           f"round {msg.round} is not the current round; expected {self.round}")
        site = self.site_index[msg.site]
        asked = self.pending_demand.get(msg.site, [0, 0, 0])
        asked = list(asked)
        sl = self.capacity.site_slice[site]
        free = (int(self.capacity.free_cpu[sl].sum()), int(self.capacity.free_mem[sl].sum()),
                int(self.capacity.free_gpu[sl].sum()))
        accepted: list[tuple[str, str, str, int, int]] = []
        keys: set[tuple[str, TaskKey]] = set()
        for i, b in enumerate(msg.bids):
            at = f"{where}.bids[{i}]"
            try:
                d = self._check_bid(b, at, msg.site, site, keys)
                need = (d.cpu * b.instances, d.mem * b.instances, d.gpu * b.instances)
                for r, (name, n) in enumerate(zip(("cpu", "mem", "gpu"), need)):
                    if asked[r] + n > free[r]:
                        raise Rejected("bid.over_allocation", f"{at}.instances",
                                       f"would over-allocate site {msg.site!r}: its bids of "
                                       f"round {self.round} ask {asked[r] + n} {name} and it "
                                       f"has {free[r]} free; expected at most what fits")
                for r in range(3):
                    asked[r] += need[r]
                keys.add((msg.site, (b.job_id, b.task_id)))
                accepted.append((msg.site, b.job_id, b.task_id, b.instances, b.price))
            except Rejected as r:
                self._count(res, r)
        if accepted:
            self.pending.extend(accepted)
            self.pending_keys |= keys
            self.pending_demand[msg.site] = asked
            self.version = seq
        res.accepted = len(accepted)

    def _check_bid(self, b: pb.Bid, at: str, site_name: str, site: int,
                   keys: set[tuple[str, TaskKey]]) -> Demand:
        ts = self.tasks.get((b.job_id, b.task_id))
        if ts is None:
            raise Rejected("bid.unknown_task", f"{at}.task_id",
                           f"no task {b.job_id!r}/{b.task_id!r}; expected a submitted task")
        if ts.n_open == 0:
            raise Rejected("bid.not_open", f"{at}.task_id",
                           f"task {b.job_id}/{b.task_id} has no open instance (waiting "
                           f"{ts.count(WAITING)}, running {len(ts.running)}, done "
                           f"{ts.n_done}); expected a task whose dependencies are done")
        if not 1 <= b.instances <= ts.n_open:
            raise Rejected("bid.bad_instances", f"{at}.instances",
                           f"{b.instances}; task {b.job_id}/{b.task_id} has {ts.n_open} open "
                           f"instances; expected 1..{ts.n_open}")
        if not 0 <= b.price <= PRICE_MAX:
            raise Rejected("bid.bad_price", f"{at}.price",
                           f"{b.price}; expected an integer in [0, {PRICE_MAX}]")
        key = (site_name, ts.key)
        if key in self.pending_keys or key in keys:
            raise Rejected("bid.duplicate", at, f"site {site_name!r} already bid for "
                           f"{b.job_id}/{b.task_id} in round {self.round}; expected one bid "
                           f"per task per round")
        d = ts.task.demand
        fits = self._fits_cache.get((d, site))
        if fits is None:   # static: depends only on the nodes' totals
            sl = self.capacity.site_slice[site]
            fits = self._fits_cache[(d, site)] = bool(self.capacity.static_mask(d)[sl].any())
        if not fits:
            raise Rejected("bid.never_fits", at, f"no node of site {site_name!r} can hold "
                           f"an instance of {b.job_id}/{b.task_id}")
        return d

    def _do_tick(self, client_id: str, msg: pb.Tick, seq: int, res: pb.Result) -> None:
        if msg.round != self.round:
            raise Rejected("tick.wrong_round", "command.tick.round",
                           f"round {msg.round} is not the current round; expected {self.round}")
        if not math.isfinite(msg.at_s) or msg.at_s < self.clock_s:
            raise Rejected("tick.bad_time", "command.tick.at_s",
                           f"{msg.at_s!r}; expected a finite number >= {self.clock_s!r} "
                           f"(the previous clearing's)")
        book = ScheduleBook(self.tasks, self.capacity, self.pref)
        bids = [Bid(self.site_index[s], (j, t), n, p) for s, j, t, n, p in self.pending]
        cleared = clear(bids, book)
        names = self.cluster.site_names
        for b, why in cleared.rejected:
            kind = "clearing." + why.split(":")[0].replace(" ", "_")
            self._count(res, Rejected(kind, "command.tick", f"bid of site {names[b.site]!r} "
                                      f"for {b.task[0]}/{b.task[1]}: {why}"))
        by_task: dict[TaskKey, list[tuple[int, int]]] = {}
        task_of: dict[TaskKey, TaskState] = {}
        for ts, i, node in book.placed:
            by_task.setdefault(ts.key, []).append((i, node))
            task_of[ts.key] = ts
        new: list[AllocationRow] = []
        for key, placed in by_task.items():  # insertion order = clearing order
            for b, e, node in runs(placed):
                site = self.cluster.nodes[node].site
                new.append((key[0], key[1], b, e, site, self.node_names[node], msg.at_s, seq,
                            self.round))
        self.allocations.extend(new)
        add = res.allocations.add
        for job, task, b, e, site, node, start, version, rnd in new:
            add(job_id=job, task_id=task, instance_begin=b, instance_end=e, site=site,
                node=node, start_s=start, version=version, round=rnd)
        res.accepted = len(new)
        self.pending.clear()
        self.pending_keys.clear()
        self.pending_demand.clear()
        self.round += 1
        self.clock_s = msg.at_s
        self.version = seq
        self._notify(seq, new, [])

    def _do_round(self, client_id: str, msg: pb.Round, seq: int, res: pb.Result) -> None:
        """Every site's signed report (all ended instances first, then all bids), then the
        clearing: one ordered command per round. A site part that fails its checks is
        rejected alone (named by index), as a bid is within a batch."""
        where = "command.round"
        if self.verify is None:
            raise Rejected("round.unsupported", where, "this replica holds no client keys to "
                           "check site signatures; send BidBatch and Tick instead")
        if msg.round != self.round:
            raise Rejected("round.wrong_round", f"{where}.round",
                           f"round {msg.round} is not the current round; expected {self.round}")
        if not math.isfinite(msg.at_s) or msg.at_s < self.clock_s:
            raise Rejected("round.bad_time", f"{where}.at_s",
                           f"{msg.at_s!r}; expected a finite number >= {self.clock_s!r}")
        reports: list[tuple[str, pb.SiteRound]] = []
        seen: set[str] = set()
        for i, part in enumerate(msg.sites):
            at = f"{where}.sites[{i}]"
            try:
                if not self.verify(part.client_id, part.report, part.signature):
                    raise Rejected("round.bad_signature", f"{at}.signature",
                                   f"not a valid signature of client {part.client_id!r} over "
                                   f"the report; expected the client's Ed25519 signature")
                try:
                    rep = decode(pb.SiteRound, part.report, f"{at}.report")
                except ProtoError as e:
                    raise Rejected("round.malformed", e.field, str(e)) from None
                self._sender_is(part.client_id, rep.site, f"{at}.report.site", "round")
                if rep.round != msg.round:
                    raise Rejected("round.wrong_round", f"{at}.report.round",
                                   f"{rep.round}; expected the round's {msg.round}")
                if rep.site in seen:
                    raise Rejected("round.duplicate_site", f"{at}.report.site",
                                   f"site {rep.site!r} already reported in this round")
                seen.add(rep.site)
                reports.append((part.client_id, rep))
            except Rejected as r:
                self._count(res, r)
        scratch = pb.Result()
        for cid, rep in reports:
            for kind, items in (("completion", rep.completions), ("failure", rep.failures)):
                for m in items:
                    try:
                        getattr(self, f"_do_{kind}")(cid, m, seq, scratch)
                    except Rejected as r:
                        self._count(res, r)
        for cid, rep in reports:
            if rep.bids:
                try:
                    self._do_bid_batch(cid, pb.BidBatch(site=rep.site, round=msg.round,
                                                        bids=rep.bids), seq, scratch)
                except Rejected as r:
                    self._count(res, r)
        res.rejections.extend(scratch.rejections)
        self._do_tick(client_id, pb.Tick(round=msg.round, at_s=msg.at_s), seq, res)

    def _instances(self, msg, where: str, client_id: str, kind: str) -> TaskState:
        self._sender_is(client_id, msg.site, f"{where}.site", kind)
        ts = self.tasks.get((msg.job_id, msg.task_id))
        if ts is None:
            raise Rejected(f"{kind}.unknown_task", f"{where}.task_id",
                           f"no task {msg.job_id!r}/{msg.task_id!r}")
        n = ts.task.instances
        if not 0 <= msg.instance_begin < msg.instance_end <= n:
            raise Rejected(f"{kind}.bad_range", f"{where}.instance_end",
                           f"[{msg.instance_begin}, {msg.instance_end}); expected "
                           f"0 <= begin < end <= {n}")
        for i in range(msg.instance_begin, msg.instance_end):
            run = ts.running.get(i)
            if run is None or self.cluster.nodes[run[0]].site != msg.site:
                raise Rejected(f"{kind}.not_running", f"{where}.instance_begin",
                               f"instance {i} of {msg.job_id}/{msg.task_id} is not running at "
                               f"site {msg.site!r}; expected instances it runs")
        return ts

    def _release(self, ts: TaskState, begin: int, end: int, state: int) -> None:
        d = ts.task.demand
        ts.touch()
        for i in range(begin, end):
            node, slots = ts.running.pop(i)
            self.capacity.release(node, d, slots)
            ts.states[i] = state
        if state == OPEN:
            ts.n_open += end - begin
        else:
            ts.n_done += end - begin

    def _do_completion(self, client_id: str, msg: pb.Completion, seq: int,
                       res: pb.Result) -> None:
        ts = self._instances(msg, "command.completion", client_id, "completion")
        self._release(ts, msg.instance_begin, msg.instance_end, DONE)
        if ts.n_done == ts.task.instances:
            for child in ts.children:
                if all(p.n_done == p.task.instances for p in child.parents):
                    child.touch()
                    for i, s in enumerate(child.states):
                        if s == WAITING:
                            child.states[i] = OPEN
                            child.n_open += 1
        res.accepted = msg.instance_end - msg.instance_begin
        self._change(seq, msg, "completed")

    def _do_failure(self, client_id: str, msg: pb.Failure, seq: int, res: pb.Result) -> None:
        if len(msg.reason.encode()) > MAX_REASON_BYTES:
            raise Rejected("failure.bad_reason", "command.failure.reason",
                           f"{len(msg.reason.encode())} bytes; expected at most "
                           f"{MAX_REASON_BYTES}")
        ts = self._instances(msg, "command.failure", client_id, "failure")
        self._release(ts, msg.instance_begin, msg.instance_end, OPEN)
        ts.failures += 1
        ts.touch()
        res.accepted = msg.instance_end - msg.instance_begin
        self._change(seq, msg, "failed")

    def _change(self, seq: int, msg, kind: str) -> None:
        row = (seq, msg.job_id, msg.task_id, msg.instance_begin, msg.instance_end, msg.site,
               kind)
        self.changes.append(row)
        self.version = seq
        self._notify(seq, [], [row])

    def _notify(self, seq: int, new: list[AllocationRow], changes: list[ChangeRow]) -> None:
        for fn in self.listeners:
            try:
                fn(seq, new, changes)
            except Exception:  # a watcher's bug must not break the replica
                log.exception("schedule listener failed")

    # ---- read-only views ------------------------------------------------------------------
    def counters(self) -> list[tuple[str, int]]:
        return sorted(self.rejected.items())

    def check_invariants(self) -> None:
        """Raise AssertionError if a node is over-allocated or an instance count is off."""
        self.capacity.check_invariants()
        for ts in self.tasks.values():
            assert ts.n_open == ts.count(OPEN) and ts.n_done == ts.count(DONE)
            assert len(ts.running) == ts.count(RUNNING)


def allocation_pb(row: AllocationRow, *, with_round: bool = True) -> schedule_pb2.Allocation:
    """``row`` as a message. ``with_round=False`` leaves ``round`` unset: the snapshot keeps
    rounds in ``ScheduleSnapshot.allocation_rounds``, so its bytes (and checkpoint digests)
    are the same as before ``Allocation.round`` existed."""
    job, task, b, e, site, node, start, version, rnd = row
    return schedule_pb2.Allocation(job_id=job, task_id=task, instance_begin=b, instance_end=e,
                                   site=site, node=node, start_s=start, version=version,
                                   round=rnd if with_round else 0)

"""The replicated schedule: the deterministic state machine every coordinator replica runs.

PBFT (Castro & Liskov, OSDI 1999) orders client requests; every correct replica then calls
``execute(client_id, op, seq)`` with the same requests in the same order, so every replica
ends in the same state and answers the same bytes. This class is that state machine (the
core's ``App`` protocol: ``execute``, ``query``, ``snapshot``, ``restore``). Task-instance
state is the one ledger (``agents.ledger``), the clearing the one market
(``agents.market.clear`` over a ``LedgerBook``), the same code the simulation engine runs.

**Commands** (``op`` = a serialised ``agora.v1.Command``; coordinator.proto documents each):

- ``submit_jobs`` (``job_commands.py``): admit jobs. A task that fits no node of the
  cluster rejects its job.
- ``site_round`` (a site's own message, only from its own clients ``site:<name>``;
  ``site_commands.py``): the instances that stopped there (completed, failed, lost) and its
  nodes' state, applied first;
  then, when bidding, its decision for the current round (its bids replace any it sent
  earlier in the round). No site can act for another: every end must be an instance running
  at that site, every node one of its own, every bid is checked against its own free
  resources.
- ``close_round`` / ``site_lapsed``: votes of the replicas themselves (clients
  ``replica:<i>``), never of a site. f+1 distinct votes act.
- ``cancel_job`` (``job_commands.py``; the operator, client ``operator``, or a client of the
  job's origin site; never a replica): nothing more of a pending job starts, its standing
  bids are dropped, and its running instances stop at once (instance changes of kind
  ``cancelled``; their sites kill them when they see the update, whose ``cancelled`` names
  the job).
- ``admit_site`` / ``remove_site`` (the operator only; ``membership.py``): give client
  ``site:<name>`` the public key the site made on its own node, or revoke it (and lapse the
  site).
- ``query``: read-only, also answered by ``query()``.

**Runs.** With ``require_run`` (the coordinator config's field of that name) a job is
admitted only when every task says what its instances execute (``Task.run``): a live
deployment cannot start a task without a command. Off (the default), tasks without one are
admitted too (simulation and replay).

**Rounds.** Bids target a round. Round r is *armed* while something may be allocated (work
opened, capacity was released, a node came back; a round that allocated nothing disarms
until one of those happens -- unless one happened after it was armed; a decision of an
expected site for a round that closed without it arms the next one). It closes -- all
its decisions cleared together -- as soon as every *expected* site has decided for it: a
live (not lapsed) site that can hold some open task now. Work that opens while a round is
armed waits for the sites' next decisions (the next round), so new arrivals never
invalidate decisions already made and a busy stream of submissions cannot keep a round
from closing. A bid the "failed here" rule defers (``agents.market``) is not cleared in the
round in which a failed or lost run reopened its task (``reopened``; ``LedgerBook.held``):
the next round is armed for it. A site that stays silent cannot hold rounds
back for long: each replica
votes ``close_round`` when its round timeout passes with a decision in, or its round grace
once more than half of the expected sites decided (``round_keeper.py``; f+1 votes close the
round), and ``site_lapsed`` when the site's heartbeats stop (f+1 votes lapse it: its running
instances are lost and reopened, and no round waits for it until it sends again). No client
moves a clock: the state machine reads none, and nothing a site sends changes what another
site may do.

**Determinism.** No clock, no randomness, no iteration over unordered sets: jobs are kept in
admission order, sites in cluster order, instances lowest index first. ``snapshot()`` is a
deterministic serialisation, and ``restore(snapshot())`` rebuilds the very same state.
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from typing import Callable

from agora.agents.domain import Cluster
from agora.agents.ledger import RUNNING, Ledger, TaskEntry
from agora.agents.market import site_preference
from agora.agents.sim.capacity import Capacity
from agora.agents.ledger_codec import job_record_bytes
from agora.coordinator.compaction import Compacted, admitted, compact, due
from agora.coordinator.schedule_codec import (HistoryBytes, decode_known, query_answer,
                                              restore_into, snapshot_bytes)
from agora.coordinator.schedule_records import AllocationRow, ChangeRow, SiteInfo, SitePart
from agora.coordinator.schedule_rules import (END_KINDS, MAX_BIDS_PER_PART,  # noqa: F401 (re-exported)
                                        LISTED_PART_REJECTIONS, LISTED_REJECTIONS,
                                        MAX_CANCEL_REASON, MAX_ENDS_PER_PART,
                                        MAX_INSTANCES_PER_TASK, MAX_JOBS_PER_COMMAND,
                                        MAX_NODES_PER_PART, MAX_REASON_BYTES,
                                        MAX_TASKS_PER_JOB, OPERATOR, REPLICA_PREFIX,
                                        SITE_PREFIX, Rejected, part_over_limit,
                                        replica_of_client, site_of_client)
from agora.coordinator.job_commands import JobCommands
from agora.coordinator.membership import MembershipCommands
from agora.coordinator.read_scope import scope_for
from agora.coordinator.round_commands import RoundCommands
from agora.coordinator.site_commands import SiteCommands
from agora.protos.agora.v1 import coordinator_pb2 as pb
from agora.protos.convert import ProtoError, cluster_to_proto, decode

HISTORY_ROWS_PER_JOB = 16
"""``warm``'s budget: a job record costs about as much to encode as this many history rows"""

log = logging.getLogger(__name__)

__all__ = ["ScheduleState", "Rejected", "part_over_limit", "site_of_client",
           "replica_of_client", "SITE_PREFIX", "REPLICA_PREFIX", "OPERATOR", "END_KINDS",
           "MAX_JOBS_PER_COMMAND", "MAX_TASKS_PER_JOB", "MAX_INSTANCES_PER_TASK",
           "MAX_REASON_BYTES", "MAX_BIDS_PER_PART", "MAX_ENDS_PER_PART", "MAX_NODES_PER_PART",
           "MAX_CANCEL_REASON"]
def _notify(observers: list[Callable], *args) -> None:
    """Call each observer of the state (watchers, a replica's round keeper); one that fails
    is logged and must not break the replica."""
    for fn in observers:
        try:
            fn(*args)
        except Exception:
            log.exception("schedule observer %r failed", fn)


class ScheduleState(JobCommands, SiteCommands, RoundCommands, MembershipCommands):
    """The coordinator's replicated schedule over a fixed ``cluster`` (see module doc).
    ``n_replicas``: the group's size (f+1 = (n - 1) // 3 + 1 votes act). ``require_run``:
    refuse jobs with a task that has no ``run`` (configuration, like the cluster: every
    replica of a group must be given the same)."""

    @classmethod
    def for_config(cls, config, cluster: Cluster | None = None) -> "ScheduleState":
        """A replica's state for ``config`` (a ``CoordinatorConfig``): its cluster, n and
        require_run -- what ``agora coordinator`` serves and offline reads rebuild."""
        return cls(cluster if cluster is not None else config.load_cluster(),
                   n_replicas=config.n, require_run=config.require_run,
                   retain_finished_jobs=config.retain_finished_jobs,
                   max_unfinished_jobs_per_site=config.max_unfinished_jobs_per_site)

    def __init__(self, cluster: Cluster, *, n_replicas: int = 4,
                 require_run: bool = False, retain_finished_jobs: int = 0,
                 max_unfinished_jobs_per_site: int = 0) -> None:
        self.cluster = cluster
        self.n_replicas = n_replicas
        self.require_run = require_run
        self.retain_finished_jobs = retain_finished_jobs
        """finished jobs kept (``compaction.py``); 0: every job, for good"""
        self.max_unfinished_jobs_per_site = max_unfinished_jobs_per_site
        """unfinished jobs a site's own submissions may bring its jobs to
        (``job_commands``); 0: no bound"""
        self.votes_needed = (n_replicas - 1) // 3 + 1
        self.site_names = list(cluster.site_names)
        self.site_index = {s: i for i, s in enumerate(self.site_names)}
        self.node_names = [n.name for n in cluster.nodes]
        self.node_index = {n: i for i, n in enumerate(self.node_names)}
        self.node_site_names = [n.site for n in cluster.nodes]
        """each node's site (``cluster.nodes`` builds a tuple of every node when called: per
        instance, that made an end 20 s on a cluster of 20,000 nodes)"""
        self.pref = site_preference(cluster)
        self.cluster_digest = hashlib.sha256(
            cluster_to_proto(cluster).SerializeToString(deterministic=True)).digest()
        self.listeners: list[Callable[[pb.ScheduleUpdate], None]] = []
        """called with the update of every command that changed what watchers see"""
        self.after_command: list[Callable[[], None]] = []
        """called after every executed command, whether it changed what watchers see or not
        (a replica's round keeper counts the decisions in)"""
        self.scopes: dict = {}
        """site -> its ``read_scope.Scope`` over this state (what its clients read)"""
        self._reset()

    def _reset(self) -> None:
        self.capacity = Capacity(self.cluster)
        self.ledger = Ledger(max_attempts=self.cluster.faults.max_attempts)
        self.ledger.on_open = self._opened
        self.job_versions: dict[str, int] = {}
        self.unfinished_bound: dict[int, int] = {}
        """origin site -> a bound above its unfinished jobs (a cache of the quota's count:
        exact when counted, one more per job admitted since; never in a snapshot)"""
        self.version = 0
        """sequence number of the last command that changed the schedule"""
        self.round = 0
        self.armed = False
        self.armed_version = 0
        """the version that armed the current round"""
        self.rearm = False
        """armed again by a later command than ``armed_version`` (``_arm``)"""
        self.parts: dict[str, SitePart] = {}
        self.reopened: set[tuple[str, str]] = set()
        """tasks a stop (failed, lost) reopened in the current round: deferred bids for
        them wait for the next one (``LedgerBook.held``)"""
        self.close_votes: set[int] = set()
        self.sites = {s: SiteInfo() for s in self.site_names}
        self.nodes_down: set[int] = set()
        self.members: dict[str, bytes] = {}
        """site -> its admitted public key, b"" once removed (``membership.py``)"""
        self.allocations: list[AllocationRow] = []
        self.history_bytes = HistoryBytes()
        """encoded snapshot fields of ``allocations`` and ``changes`` (a cache: rows never
        change)"""
        self.changes: list[ChangeRow] = []
        self.rejected: Counter[str] = Counter()
        # transient, never in a snapshot (it does not change any answer): for the replica's
        # decision-latency measurement
        self.opened_seq: dict[tuple[str, str], int] = {}
        self.closed_round_armed_seq = 0
        self._expected: tuple | None = None
        """``expected_sites``' last answer and what it depended on (a cache)"""
        self.member_changes = 0
        """admissions and removals executed here (the PBFT core drops held requests that can
        no longer execute when it changes)"""
        self._opened_count = 0
        self._listed, self._unlisted = LISTED_REJECTIONS, 0
        """rejections the command being executed may list, and those it did not"""
        self._seq = 0
        self._sub = (0, 0)
        """(version, updates published at it so far): a batch of requests shares a version"""
        self.executing = False
        """an ordered command runs (``execute``), not a read-only query (between batches)"""
        self._update: pb.ScheduleUpdate | None = None
        self.compacted = Compacted()

    # ---- the App protocol ------------------------------------------------------------
    def execute(self, client_id: str, op: bytes, seq: int) -> bytes:
        """Apply one ordered command; returns the serialised ``Result`` (never raises)."""
        res = pb.Result(version=seq)
        self._seq = self.ledger.version = seq
        self._update = pb.ScheduleUpdate(version=seq)
        before = (self.round, self.armed, self.armed_version)
        jobs_before = admitted(self) if self.retain_finished_jobs else 0
        try:
            cmd = decode_known(pb.Command, op, "command")
            kind = cmd.WhichOneof("kind")
            if kind is None:
                raise ProtoError("command", "no command set", "one of submit_jobs, "
                                 "site_round, close_round, site_lapsed, cancel_job, "
                                 "admit_site, remove_site, query")
        except ProtoError as e:
            self._count(res, Rejected("command.malformed", e.field, str(e)))
            res.round = self.round
            return res.SerializeToString(deterministic=True)
        res.kind = kind
        self._listed = LISTED_PART_REJECTIONS if kind == "site_round" else LISTED_REJECTIONS
        self._unlisted = 0
        try:
            if kind == "query":
                self.executing = True
                try:
                    res.query.CopyFrom(query_answer(self, cmd.query, "command.query"))
                finally:
                    self.executing = False
            else:
                getattr(self, f"_do_{kind}")(client_id, getattr(cmd, kind), seq, res)
        except Rejected as r:
            self._count(res, r)
        if self._unlisted:
            res.rejections.add(field="command", reason=f"{self._unlisted} more rejections, "
                               f"not listed (a result lists the first {self._listed})")
        res.round = self.round
        changed = self._changes(before, self._update)
        if changed:
            # who each job named is for, as it is now: a site's watch stream redacts by it
            # (read_scope), whatever is compacted or submitted again later
            self.name_origins(self._update)
            if kind != "query" and due(self, jobs_before):   # only a command that changed
                gone = compact(self)                          # the schedule scans
                self._update.compacted.extend(gone)
        self._publish(changed)
        _notify(self.after_command)
        scope = scope_for(self, client_id)        # a site reads what concerns it
        if scope is not None:
            for a in res.allocations:
                scope.allocation(a)
            if res.HasField("query"):
                scope.answer(res.query)
        return res.SerializeToString(deterministic=True)

    def query(self, client_id: str, op: bytes) -> bytes:
        """Answer a read-only ``Command`` holding a ``Query``: a serialised ``QueryResult``.
        Changes nothing (not even the rejection counters)."""
        try:
            cmd = decode_known(pb.Command, op, "command")
            if cmd.WhichOneof("kind") != "query":
                raise ProtoError("command.query", "not set", "a Command holding a query")
        except ProtoError as e:
            out = pb.QueryResult(version=self.version,
                                 error=pb.Rejection(field=e.field, reason=str(e)))
            return out.SerializeToString(deterministic=True)
        out = query_answer(self, cmd.query, "command.query")
        scope = scope_for(self, client_id)        # a site reads what concerns it
        if scope is not None:
            scope.answer(out)
        return out.SerializeToString(deterministic=True)

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
        # the count of key changes only ever grows: the replica compares it with the last
        # value it saw (auth.ClientKeys.changes), and a count back at 0 could repeat that
        # value and hide the next admission or removal from it
        fresh.member_changes = self.member_changes + 1
        listeners = self.listeners
        self.__dict__.update(fresh.__dict__)
        self.ledger.on_open = self._opened
        self.listeners = listeners

    def warm(self, most: int) -> int:
        """Encode up to ``most`` job records that changed since they were last encoded
        (``Ledger.unencoded``; the host calls this while it has nothing else to do), so that
        the next checkpoint's snapshot finds them ready instead of stalling the replica on
        them; then, within the same budget (``HISTORY_ROWS_PER_JOB`` rows for a job), the
        allocation and instance-change rows written since (``HistoryBytes``; encoding them
        was most of a checkpoint's stall once job records were warmed). Changes nothing a
        snapshot says: the cache holds the bytes a snapshot would encode now, and a later
        change clears it again. Returns how many records and rows it encoded (0: none
        left)."""
        pending, jobs = self.ledger.unencoded, self.ledger.jobs
        done = 0
        while pending and done < most:
            job_id, js = pending.popitem()            # any order: only a cache is filled
            if js.rec is None and jobs.get(job_id) is js:   # not encoded meanwhile, not gone
                job_record_bytes(js, self.job_versions[job_id])
                done += 1
        if done < most:           # then the history rows written since (append-only)
            done += self.history_bytes.catch_up(self, (most - done) * HISTORY_ROWS_PER_JOB)
        return done

    def schedule_bytes(self) -> bytes:
        """The snapshot without the rejection counters: what a rejected command must leave
        unchanged."""
        return snapshot_bytes(self, counters=False)

    # ---- bookkeeping -------------------------------------------------------------------
    def _count(self, res: pb.Result, r: Rejected) -> None:
        self.rejected[r.kind] += 1
        if len(res.rejections) < self._listed:
            res.rejections.add(field=r.field, reason=r.reason)
        else:
            self._unlisted += 1

    def _opened(self, ts: TaskEntry) -> None:
        self.opened_seq[ts.key] = self._seq
        self._opened_count += 1
        self._arm()

    def _arm(self) -> None:
        if not self.armed:
            self.armed = True
            self.armed_version = self._seq
        elif self._seq != self.armed_version:
            # the sites may have decided before this: the next round gets to see it even if
            # this one allocates nothing (a review: work reopened by the lapse that closed a
            # round, or opened after the sites decided, waited for an unrelated event)
            self.rearm = True

    def _changes(self, before: tuple, u: pb.ScheduleUpdate) -> bool:
        """Whether the command being executed (its update ``u``) changed what watchers see:
        it publishes."""
        return bool((self.round, self.armed, self.armed_version) != before or u.jobs
                    or u.cancelled or u.allocations or u.changes or u.nodes or u.sites)

    def name_origins(self, u: pb.ScheduleUpdate) -> None:
        """``u.job_origins``: the origin site of every job its allocations, instance changes
        and cancellations name."""
        jobs, out = self.ledger.jobs, u.job_origins
        for job_id in sorted({*(a.job_id for a in u.allocations),
                              *(c.job_id for c in u.changes), *(c.job_id for c in u.cancelled)}):
            js = jobs.get(job_id)
            if js is not None:
                out.add(job_id=job_id, site=js.job.origin)

    def _publish(self, changed: bool) -> None:
        """Publish the command's update when it ``changed`` what watchers see."""
        u = self._update
        self._update = None
        if not changed:
            return
        self.version = self._seq
        n = self._sub[1] if self._sub[0] == self._seq else 0
        u.sub = n
        self._sub = (self._seq, n + 1)
        u.round.round, u.round.armed, u.round.armed_version = (self.round, self.armed,
                                                               self.armed_version)
        _notify(self.listeners, u)

    # ---- read-only views ------------------------------------------------------------------
    def counters(self) -> list[tuple[str, int]]:
        return sorted(self.rejected.items())

    def check_invariants(self) -> None:
        """Raise AssertionError if a node is over-allocated or an instance count is off."""
        self.capacity.check_invariants()
        for ts in self.ledger.tasks.values():
            assert ts.open == ts.count(1) and ts.done == ts.count(3)
            assert len(ts.placements) == ts.count(RUNNING) == ts.running

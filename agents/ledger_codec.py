"""The ledger to and from ``JobRecord`` messages: the coordinator's snapshot writes them, and a
site agent rebuilds its view from the coordinator's ``LedgerView`` with the very same reader.

Encodings are canonical (tasks in the job's order, running instances and failure counts by
instance, deterministic serialisation), so equal ledgers give equal bytes; a job's record is
cached on its ``JobEntry`` until the job changes (``TaskEntry.touch``), so a checkpoint
re-encodes only the jobs that changed, and then only their state: the job itself is encoded
once (``JobEntry.spec``).
"""

from __future__ import annotations

from agora.agents.ledger import JobEntry, Ledger, TaskEntry
from agora.protos.agora.v1 import coordinator_pb2 as pb
from agora.protos.convert import ProtoError, job_from_proto, job_to_proto
from agora.protos.wire import length_delimited


def job_record_bytes(js: JobEntry, version: int) -> bytes:
    """``js`` as a serialised ``JobRecord`` (cached in ``js.rec`` until it changes)."""
    if js.rec is not None:
        return js.rec
    head = pb.JobRecord(outcome=js.outcome, reason=js.reason, version=version)
    if js.completion is not None:
        head.completion = js.completion
    if js.spec is None:
        js.spec = length_delimited(1, job_to_proto(js.job).SerializeToString(deterministic=True))
    parts = [js.spec]
    by_id = js.by_id
    for t in js.job.tasks:
        ts = by_id[t.id]
        if ts.rec is None:
            ts.rec = length_delimited(2, task_record_bytes(ts))
        parts.append(ts.rec)
    js.rec = b"".join(parts) + head.SerializeToString(deterministic=True)
    return js.rec


def task_record_bytes(ts: TaskEntry) -> bytes:
    """``ts`` as a serialised ``TaskRecord``, fields in number order: states (1), then the
    running placements (3) -- each encoded once per run and kept (``TaskEntry.run_recs``):
    a busy task re-encodes only the runs that started since -- then the rest (4-8)."""
    head = pb.TaskRecord(states=bytes(ts.states)).SerializeToString(deterministic=True)
    tail = pb.TaskRecord(outcome=ts.outcome, reason=ts.reason)
    if ts.ready_at is not None:
        tail.ready_at = ts.ready_at
    for i in sorted(ts.failures):
        tail.failed_instance.append(i)
        tail.failed_attempts.append(ts.failures[i])
    tail.failed_nodes.extend(ts.failed_nodes)
    tail.turns = ts.turns
    cache = ts.run_recs
    if cache is None:
        cache = ts.run_recs = {}
    runs = []
    for i in sorted(ts.placements):
        node, slots = ts.placements[i]
        key = (node, slots, ts.placed_at.get(i, 0))
        hit = cache.get(i)
        if hit is None or hit[0] != key:
            hit = cache[i] = (key, length_delimited(3, pb.Placement(
                instance=i, node=node, gpu_index=[x[0] for x in slots],
                gpu_milli=[x[1] for x in slots], version=key[2]).SerializeToString(
                    deterministic=True)))
        runs.append(hit[1])
    if len(cache) > len(runs):            # runs that ended
        for i in [i for i in cache if i not in ts.placements]:
            del cache[i]
    return b"".join((head, *runs, tail.SerializeToString(deterministic=True)))


FOREIGN_NODE = -1
"""The node of an instance that runs at another site, as a site's redacted view of the
schedule gives it (``coordinator/read_scope.py``): running, but not where."""


def restore_job(ledger: Ledger, rec: pb.JobRecord, origin_index: dict[str, int],
                n_nodes: int, at: str, *, foreign: bool = False) -> JobEntry:
    """Add the job of ``rec`` to ``ledger`` with its recorded state; ProtoError naming the
    field on an inconsistent record (nothing is added then). ``foreign``: a site's redacted
    view, whose placements at other sites say ``FOREIGN_NODE``."""
    job = job_from_proto(rec.job, f"{at}.job")
    if job.origin not in origin_index:
        raise ProtoError(f"{at}.job.origin", f"unknown site {job.origin!r}",
                         "a site of the cluster")
    if job.id in ledger.jobs:
        raise ProtoError(f"{at}.job.id", f"job {job.id!r} appears twice", "a valid ledger")
    if len(rec.tasks) != len(job.tasks):
        raise ProtoError(f"{at}.tasks", "not one record per task", "a valid ledger")
    tasks = []
    for k, (t, tr) in enumerate(zip(job.tasks, rec.tasks)):
        placements, placed_at = {}, {}
        for p in tr.running:
            if not (0 <= p.instance < t.instances
                    and (0 <= p.node < n_nodes or (foreign and p.node == FOREIGN_NODE))
                    and len(p.gpu_index) == len(p.gpu_milli)):
                raise ProtoError(f"{at}.tasks[{k}].running", "bad placement", "a valid ledger")
            placements[p.instance] = (p.node, tuple(zip(p.gpu_index, p.gpu_milli)))
            placed_at[p.instance] = p.version
        if len(tr.failed_instance) != len(tr.failed_attempts):
            raise ProtoError(f"{at}.tasks[{k}].failed_attempts", "not parallel to "
                             "failed_instance", "a valid ledger")
        if tr.turns < 0:
            raise ProtoError(f"{at}.tasks[{k}].turns", f"{tr.turns} is negative",
                             "a count of the task's served turns, 0 or more")
        failed_nodes = tuple(tr.failed_nodes)
        if list(failed_nodes) != sorted(set(failed_nodes)) or \
                any(not 0 <= x < n_nodes for x in failed_nodes):
            raise ProtoError(f"{at}.tasks[{k}].failed_nodes", "not ascending node indices "
                             "of the cluster, each once", "a valid ledger")
        tasks.append({"states": tr.states, "placements": placements, "placed_at": placed_at,
                      "failures": dict(zip(tr.failed_instance, tr.failed_attempts)),
                      "failed_nodes": failed_nodes, "turns": tr.turns,
                      "outcome": tr.outcome, "reason": tr.reason,
                      "ready_at": tr.ready_at if tr.HasField("ready_at") else None})
    try:
        js = ledger.restore_job(job, origin_index[job.origin], outcome=rec.outcome,
                                reason=rec.reason,
                                completion=rec.completion if rec.HasField("completion")
                                else None, tasks=tasks)
    except ValueError as e:
        _forget(ledger, job.id)
        raise ProtoError(f"{at}.tasks", str(e), "a valid ledger") from None
    # the job's encoding as recorded (a coordinator keeps a job's bytes as submitted), so
    # that a restored state encodes to the very same snapshot
    js.spec = length_delimited(1, rec.job.SerializeToString(deterministic=True))
    return js


def _forget(ledger: Ledger, job_id: str) -> None:
    js = ledger.jobs.pop(job_id, None)
    if js is None:
        return
    for ts in js.tasks:
        ledger.tasks.pop(ts.key, None)
        ledger.pool.discard(ts)


def start_position(view) -> tuple[int, int]:
    """The (version, sub) after which a follower of the schedule applies updates, having
    restored the ledger ``view``: every update of its version is in it, unless it was read
    in the middle of the batch that made that version (``LedgerView.subs``)."""
    if view.HasField("subs"):
        return view.version, view.subs - 1
    return view.version, 1 << 30


def restore_ledger(view: pb.LedgerView, site_index: dict[str, int], n_nodes: int,
                   max_attempts: int) -> Ledger:
    """A ledger from the coordinator's ``LedgerView`` (what a site agent starts from; a
    site's view: where other sites' work runs is ``FOREIGN_NODE``)."""
    ledger = Ledger(max_attempts=max_attempts)
    for j, rec in enumerate(view.jobs):
        restore_job(ledger, rec, site_index, n_nodes, f"ledger.jobs[{j}]", foreign=True)
    return ledger


def apply_update(ledger: Ledger, u: pb.ScheduleUpdate, site_index: dict[str, int],
                 node_index: dict[str, int], *,
                 compact: bool = True) -> list[tuple[TaskEntry, int, int]]:
    """Apply one committed ``ScheduleUpdate`` to ``ledger`` in the order the coordinator
    executed it (admissions, then cancellations, then instance ends, then the allocations
    of a round it closed, then the finished jobs it compacted away), with the very
    transitions the coordinator's own ledger made.
    Returns the (task, instance, node) of every allocation in it (``FOREIGN_NODE`` for one
    at another site in a site's redacted view). ``compact=False`` keeps the jobs the
    coordinator compacted away (an account of a whole run)."""
    for jm in u.jobs:
        job = job_from_proto(jm, "update.jobs")
        ledger.admit(job, site_index[job.origin], job.arrival)
    for cj in u.cancelled:
        ledger.cancel(ledger.jobs[cj.job_id], cj.reason)
    for c in u.changes:
        ts = ledger.tasks[(c.job_id, c.task_id)]
        for inst in range(c.instance_begin, c.instance_end):
            if c.kind == "completed":
                ledger.complete(ts, inst, c.end_s)
            else:
                # "failed" counts an attempt; "lost" and "cancelled" stop without counting
                # (a cancelled job's instance is given up, not reopened: ``Ledger.fail``)
                ledger.fail(ts, inst, c.end_s, count=c.kind == "failed", reason=c.reason,
                            mark=c.kind in ("failed", "lost"))
    started = []
    ledger.version = u.version
    for a in u.allocations:
        ts = ledger.tasks[(a.job_id, a.task_id)]
        node = node_index[a.node] if a.node else FOREIGN_NODE    # "": at another site
        for inst in range(a.instance_begin, a.instance_end):
            ledger.start(ts, inst, node)
            started.append((ts, inst, node))
    if u.compacted and compact:
        # finished jobs the coordinator no longer keeps (coordinator/compaction.py)
        ledger.forget_jobs(set(u.compacted))
    return started

"""The replicated schedule to and from messages: its canonical snapshot, and query answers.

A snapshot lists everything in a fixed order (jobs by admission, tasks as the job lists
them, running instances by index, bids and allocations by commit, counters by name) and is
serialised deterministically, so two replicas in the same state produce the same bytes and
the PBFT checkpoint digests agree.
"""

from __future__ import annotations

import bisect
from collections import Counter
from typing import TYPE_CHECKING

from google.protobuf.message import Message
from google.protobuf.unknown_fields import UnknownFieldSet

from coordinator.schedule_book import DONE, OPEN, RUNNING, WAITING, JobState, apply_slots
from protos.agora.v1 import coordinator_pb2 as pb
from protos.agora.v1 import schedule_pb2
from protos.convert import ProtoError, job_from_proto

if TYPE_CHECKING:
    from coordinator.schedule_state import ScheduleState


def check_known(msg: Message, where: str) -> None:
    """Refuse unknown fields anywhere in ``msg`` (protos/README.md, "Versioning"): every
    replica must read a command the same way.

    Fast path: a copy with every unknown field discarded (in C, recursively) has the same
    encoded size exactly when there was none; only then is the field-by-field walk, which
    names the offending field, needed."""
    probe = type(msg)()
    probe.CopyFrom(msg)
    size = probe.ByteSize()
    probe.DiscardUnknownFields()
    if probe.ByteSize() == size:
        return
    _check_known_walk(msg, where)
    raise ProtoError(where, "unknown field(s)", f"only the fields of {msg.DESCRIPTOR.full_name}")


def _check_known_walk(msg: Message, where: str) -> None:
    unknown = sorted({f.field_number for f in UnknownFieldSet(msg)})
    if unknown:
        raise ProtoError(where, f"unknown field number(s) {unknown}",
                         f"only the fields of {msg.DESCRIPTOR.full_name}")
    for fd, value in msg.ListFields():
        if fd.message_type is None:
            continue
        if fd.is_repeated:
            for i, v in enumerate(value):
                _check_known_walk(v, f"{where}.{fd.name}[{i}]")
        else:
            _check_known_walk(value, f"{where}.{fd.name}")


# ---- snapshot ----

def _ld(number: int, payload: bytes) -> bytes:
    """One length-delimited protobuf field: tag, length, payload."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _varint(v: int) -> bytes:
    out = bytearray()
    while v > 0x7F:
        out.append(v & 0x7F | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


def snapshot_bytes(st: ScheduleState, *, counters: bool = True) -> bytes:
    """The state as a serialised ``ScheduleSnapshot``, fields in number order. Jobs and
    allocations never change once written, so their bytes are encoded once and cached:
    a checkpoint then costs a join, not a re-encoding of the whole history."""
    parts = [pb.ScheduleSnapshot(cluster_digest=st.cluster_digest, version=st.version,
                                 round=st.round).SerializeToString(deterministic=True)]
    for js in st.jobs.values():
        # A job's and a task's encodings are cached until they change (TaskState.touch):
        # a checkpoint re-encodes only what changed since the last one.
        if js.rec is None:
            rec = [_ld(1, js.job_bytes)]
            for t in js.job.tasks:
                ts = js.tasks[t.id]
                if ts.rec is None:
                    tr = pb.TaskRecord(states=bytes(ts.states), failures=ts.failures)
                    for i in sorted(ts.running):
                        node, slots = ts.running[i]
                        tr.running.add(instance=i, node=node,
                                       gpu_index=[x[0] for x in slots],
                                       gpu_milli=[x[1] for x in slots])
                    ts.rec = _ld(2, tr.SerializeToString(deterministic=True))
                rec.append(ts.rec)
            js.rec = _ld(4, b"".join(rec))
        parts.append(js.rec)
    tail = pb.ScheduleSnapshot()
    for site, job, task, n, price in st.pending:
        tail.pending.add(site=site, job_id=job, task_id=task, instances=n, price=price)
    parts.append(tail.SerializeToString(deterministic=True))
    cache = st.allocation_bytes
    if len(cache) < len(st.allocations):
        from coordinator.schedule_state import allocation_pb
        cache.extend(_ld(6, allocation_pb(row, with_round=False).SerializeToString(
            deterministic=True))
                     for row in st.allocations[len(cache):])
    parts.extend(cache)
    tail = pb.ScheduleSnapshot(clock_s=st.clock_s)
    if counters:
        for name, count in sorted(st.rejected.items()):
            tail.rejected.add(name=name, count=count)
    for version, job, task, b, e, site, kind in st.changes:
        tail.changes.add(version=version, job_id=job, task_id=task, instance_begin=b,
                         instance_end=e, site=site, kind=kind)
    tail.allocation_rounds.extend(row[8] for row in st.allocations)
    parts.append(tail.SerializeToString(deterministic=True))
    return b"".join(parts)


def restore_into(st: ScheduleState, snap: pb.ScheduleSnapshot) -> None:
    """Fill the freshly reset ``st`` from ``snap``; ProtoError on an inconsistent one."""
    check_known(snap, "snapshot")
    st.version, st.round, st.clock_s = snap.version, snap.round, snap.clock_s
    for j, rec in enumerate(snap.jobs):
        at = f"snapshot.jobs[{j}]"
        job = job_from_proto(rec.job, f"{at}.job")
        if job.origin not in st.site_index or job.id in st.jobs:
            raise ProtoError(f"{at}.job", "unknown origin or repeated job", "a valid snapshot")
        js = JobState(job, j, st.site_index[job.origin])
        if len(rec.tasks) != len(job.tasks):
            raise ProtoError(f"{at}.tasks", "not one record per task", "a valid snapshot")
        for k, (t, tr) in enumerate(zip(job.tasks, rec.tasks)):
            ts = js.tasks[t.id]
            if len(tr.states) != t.instances or any(s > DONE for s in tr.states):
                raise ProtoError(f"{at}.tasks[{k}].states", "bad instance states",
                                 "one byte 0..3 per instance")
            ts.states = bytearray(tr.states)
            ts.failures = tr.failures
            ts.n_open = ts.states.count(OPEN)
            ts.n_done = ts.states.count(DONE)
            for p in tr.running:
                if not (0 <= p.instance < t.instances and ts.states[p.instance] == RUNNING
                        and 0 <= p.node < st.capacity.n_nodes
                        and len(p.gpu_index) == len(p.gpu_milli)):
                    raise ProtoError(f"{at}.tasks[{k}].running", "bad placement",
                                     "a valid snapshot")
                slots = tuple(zip(p.gpu_index, p.gpu_milli))
                ts.running[p.instance] = (p.node, slots)
                apply_slots(st.capacity, p.node, t.demand, slots)
            if len(ts.running) != ts.states.count(RUNNING):
                raise ProtoError(f"{at}.tasks[{k}].running", "running instances without a "
                                 "placement", "a valid snapshot")
            assert WAITING == 0
        st.jobs[job.id] = js
        for ts in js.tasks.values():
            st.tasks[ts.key] = ts
    for p in snap.pending:
        ts = st.tasks.get((p.job_id, p.task_id))
        if ts is None or p.site not in st.site_index:
            raise ProtoError("snapshot.pending", "bid for an unknown task", "a valid snapshot")
        st.pending.append((p.site, p.job_id, p.task_id, p.instances, p.price))
        st.pending_keys.add((p.site, ts.key))
        d = ts.task.demand
        asked = st.pending_demand.setdefault(p.site, [0, 0, 0])
        asked[0] += d.cpu * p.instances
        asked[1] += d.mem * p.instances
        asked[2] += d.gpu * p.instances
    if len(snap.allocation_rounds) != len(snap.allocations):
        raise ProtoError("snapshot.allocation_rounds", "not one per allocation",
                         "a valid snapshot")
    for a, r in zip(snap.allocations, snap.allocation_rounds):
        st.allocations.append((a.job_id, a.task_id, a.instance_begin, a.instance_end, a.site,
                               a.node, a.start_s, a.version, r))
    st.rejected = Counter({c.name: c.count for c in snap.rejected})
    st.changes = [(c.version, c.job_id, c.task_id, c.instance_begin, c.instance_end, c.site,
                   c.kind) for c in snap.changes]


# ---- queries ----

def _error(st: ScheduleState, field: str, reason: str) -> pb.QueryResult:
    return pb.QueryResult(version=st.version, error=pb.Rejection(field=field, reason=reason))


def query_answer(st: ScheduleState, q: pb.Query, where: str) -> pb.QueryResult:
    """The answer to ``q`` from ``st`` (read-only)."""
    from coordinator.schedule_state import allocation_pb

    kind = q.WhichOneof("kind")
    if kind == "job_status":
        js = st.jobs.get(q.job_status.job_id)
        if js is None:
            return _error(st, f"{where}.job_status.job_id",
                          f"no job {q.job_status.job_id!r}; expected a submitted job id")
        out = pb.QueryResult(version=st.version)
        status = out.job_status
        status.job_id, status.origin, status.complete = js.job.id, js.job.origin, js.complete
        for t in js.job.tasks:
            ts = js.tasks[t.id]
            status.tasks.add(task_id=t.id, instances=t.instances, waiting=ts.count(WAITING),
                             open=ts.n_open, running=len(ts.running), done=ts.n_done,
                             failures=ts.failures)
        return out
    if kind != "schedule":
        return _error(st, where, "no query set; expected schedule or job_status")
    sq = q.schedule
    by = sq.WhichOneof("by")
    rows = st.allocations
    at = f"{where}.schedule"
    if by == "all":
        pass
    elif by == "site":
        if sq.site not in st.site_index:
            return _error(st, f"{at}.site", f"unknown site {sq.site!r}; expected one of "
                          f"{sorted(st.site_index)}")
        rows = [r for r in rows if r[4] == sq.site]
    elif by == "job_id":
        if sq.job_id not in st.jobs:
            return _error(st, f"{at}.job_id", f"no job {sq.job_id!r}")
        rows = [r for r in rows if r[0] == sq.job_id]
    elif by == "task":
        if (sq.task.job_id, sq.task.task_id) not in st.tasks:
            return _error(st, f"{at}.task", f"no task {sq.task.job_id!r}/{sq.task.task_id!r}")
        rows = [r for r in rows if r[0] == sq.task.job_id and r[1] == sq.task.task_id]
    elif by == "since_version":
        if sq.since_version < 0:
            return _error(st, f"{at}.since_version", f"{sq.since_version}; expected >= 0")
        # versions only grow along the list
        rows = rows[bisect.bisect_left(rows, sq.since_version, key=lambda r: r[7]):]
    else:
        return _error(st, at, "no selector set; expected all, site, job_id, task or "
                      "since_version")
    out = pb.QueryResult(version=st.version)
    out.schedule.CopyFrom(schedule_pb2.Schedule(version=st.version,
                                                allocations=[allocation_pb(r) for r in rows]))
    return out

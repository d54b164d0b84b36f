"""The replicated schedule to and from messages: its canonical snapshot, and query answers.

A snapshot lists everything in a fixed order (jobs by admission, tasks as the job lists
them, running instances by index, bids and allocations by commit, counters by name) and is
serialised deterministically, so two replicas in the same state produce the same bytes and
the PBFT checkpoint digests agree.
"""

from __future__ import annotations

import bisect
from collections import Counter
from typing import TYPE_CHECKING, TypeVar

from google.protobuf.message import Message
from google.protobuf.unknown_fields import UnknownFieldSet

from agora.agents.ledger import WAITING
from agora.agents.ledger_codec import job_record_bytes, restore_job
from agora.agents.market import Bid, Offer
from agora.coordinator.compaction import unknown_job
from agora.coordinator.schedule_records import SitePart, allocation_pb, change_pb
from agora.protos.agora.v1 import coordinator_pb2 as pb
from agora.protos.agora.v1 import schedule_pb2
from agora.protos.convert import ProtoError, decode
from agora.protos.wire import length_delimited, varint

if TYPE_CHECKING:
    from agora.coordinator.schedule_state import ScheduleState

M = TypeVar("M", bound=Message)


MAX_UNKNOWN_NAMED = 64 * 1024
"""Bytes of unknown fields a refusal still names field number by field number; past it, it
gives their size. Listing them builds an object per field (``UnknownFieldSet``): one keyless
request of 20 MB of two-byte unknown fields held a replica's event loop 6 s and raised it to
900 MB (a review; 64 MiB, gRPC's receive limit, ~20 s and 3 GB)."""
MAX_WALKED = 10_000
"""Messages walked to find the one holding unknown fields; past it, the refusal names the
message checked (a keyless envelope of 1,300,000 empty requests, the last with an unknown
field, held a replica's loop 1.7 s to name that request: a review)."""


def unknown_bytes(msg: Message) -> int:
    """Bytes of unknown fields anywhere in ``msg``: a copy with every unknown field discarded
    (in C, recursively) is measured against it."""
    probe = type(msg)()
    probe.CopyFrom(msg)
    size = probe.ByteSize()
    probe.DiscardUnknownFields()
    return size - probe.ByteSize()


def unknown_problem(msg: Message, extra: int | None = None) -> str | None:
    """What a refusal says of the unknown fields of ``msg``'s own level -- their numbers, or
    their size when there are more than ``MAX_UNKNOWN_NAMED`` bytes of them (``extra``: the
    unknown bytes of ``msg`` and all it holds, when known) -- or None: none anywhere."""
    if extra is None:
        extra = unknown_bytes(msg)
    if extra == 0:
        return None
    if extra > MAX_UNKNOWN_NAMED:
        return f"{extra:,} bytes of unknown fields"
    unknown = sorted({f.field_number for f in UnknownFieldSet(msg)})
    return f"unknown field number(s) {unknown}" if unknown else "unknown field(s)"


def check_known(msg: Message, where: str) -> None:
    """Refuse unknown fields anywhere in ``msg`` (protos/README.md, "Versioning"): every
    replica must read a command the same way.

    Fast path: a copy with every unknown field discarded (in C, recursively) has the same
    encoded size exactly when there was none; only then is the field-by-field walk, which
    names the offending field, needed -- and only when they are few (``MAX_UNKNOWN_NAMED``,
    ``MAX_WALKED``): what a refusal costs is bounded, whoever sends it."""
    extra = unknown_bytes(msg)
    if extra:
        _refuse_unknown(msg, where, extra)


def decode_known(message_type: type[M], data: bytes, where: str) -> M:
    """``decode`` then ``check_known``, without check_known's copy: the parse itself is
    measured, stripped of unknown fields and measured again (a request's command is checked
    this way on its hot path). Only bytes that held unknown fields are parsed a second time,
    to name them."""
    msg = decode(message_type, data, where)
    size = msg.ByteSize()
    msg.DiscardUnknownFields()
    extra = size - msg.ByteSize()
    if extra:
        _refuse_unknown(decode(message_type, data, where), where, extra)
    return msg


def _refuse_unknown(msg: Message, where: str, extra: int):
    """Raise the ProtoError of ``msg``'s ``extra`` bytes of unknown fields, naming the
    message that holds them when that is cheap to find."""
    full = msg.DESCRIPTOR.full_name
    if extra > MAX_UNKNOWN_NAMED:
        raise ProtoError(where, f"{extra:,} bytes of unknown fields", f"only the fields of {full}")
    _check_known_walk(msg, where, [MAX_WALKED])
    raise ProtoError(where, "unknown field(s)", f"only the fields of {full}")


def _check_known_walk(msg: Message, where: str, budget: list[int]) -> None:
    """Raise naming the first message of ``msg`` (depth first) with unknown fields of its
    own; returns when there is none, or when ``budget`` (messages left to walk) runs out.
    Called with at most ``MAX_UNKNOWN_NAMED`` unknown bytes in all: listing each message's
    own costs no more than they are."""
    budget[0] -= 1
    if budget[0] < 0:
        return
    unknown = sorted({f.field_number for f in UnknownFieldSet(msg)})
    if unknown:
        raise ProtoError(where, f"unknown field number(s) {unknown}",
                         f"only the fields of {msg.DESCRIPTOR.full_name}")
    for fd, value in msg.ListFields():
        if fd.message_type is None:
            continue
        if fd.is_repeated:
            for i, v in enumerate(value):
                _check_known_walk(v, f"{where}.{fd.name}[{i}]", budget)
                if budget[0] < 0:
                    return
        else:
            _check_known_walk(value, f"{where}.{fd.name}", budget)
        if budget[0] < 0:
            return


# ---- snapshot ----

def snapshot_bytes(st: ScheduleState, *, counters: bool = True) -> bytes:
    """The state as a serialised ``ScheduleSnapshot``, fields in number order (the bytes
    protobuf's deterministic serialisation gives). A job's record is cached until the job
    changes, and allocations, instance changes and allocation rounds never change once
    written (``HistoryBytes``), so a checkpoint re-encodes what changed since the last one,
    not the whole history."""
    parts = [pb.ScheduleSnapshot(cluster_digest=st.cluster_digest, version=st.version,
                                 round=st.round).SerializeToString(deterministic=True)]
    for js in st.ledger.jobs.values():
        parts.append(length_delimited(4, job_record_bytes(js, st.job_versions[js.job.id])))
    hist = st.history_bytes
    hist.catch_up(st)
    parts.extend(hist.allocations)
    if counters and st.rejected:
        mid = pb.ScheduleSnapshot()
        for name, count in sorted(st.rejected.items()):
            mid.rejected.add(name=name, count=count)
        parts.append(mid.SerializeToString(deterministic=True))
    parts.extend(hist.changes)
    if hist.rounds:
        parts.append(length_delimited(9, bytes(hist.rounds)))
    tail = pb.ScheduleSnapshot(armed=st.armed, armed_version=st.armed_version, rearm=st.rearm,
                               close_votes=sorted(st.close_votes),
                               nodes_down=sorted(st.nodes_down))
    for site in st.site_names:
        part = st.parts.get(site)
        if part is not None:
            tail.parts.add(site=site, seen_version=part.seen_version, counts=part.counts, bids=[
                pb.Bid(job_id=o.job_id, task_id=o.task_id, instances=o.instances,
                       price=o.price) for o in part.offers])
        info = st.sites[site]
        tail.sites.add(site=site, last_heard=info.last_heard, lapsed=info.lapsed,
                       lapse_votes=sorted(info.lapse_votes))
    for site in sorted(st.members):
        tail.members.add(site=site, verify_key=st.members[site])
    if st.compacted:
        st.compacted.to_pb(tail.compaction)
    for job_id, task_id in sorted(st.reopened):
        tail.reopened.add(job_id=job_id, task_id=task_id)
    parts.append(tail.SerializeToString(deterministic=True))
    return b"".join(parts)


class HistoryBytes:
    """The encoded snapshot fields of the append-only history (allocations: field 6, one
    entry per row; instance changes: field 8; allocation rounds: field 9's packed varints),
    extended with the rows written since the last snapshot. Rows never change once written;
    a restore starts a fresh one."""

    def __init__(self) -> None:
        self.allocations: list[bytes] = []
        self.changes: list[bytes] = []
        self.rounds = bytearray()

    def catch_up(self, st: ScheduleState, most: int | None = None) -> int:
        """Encode the rows written since the last call, at most ``most`` of them (None: all,
        as a snapshot needs); returns how many it encoded."""
        a, c = len(self.allocations), len(self.changes)
        if a == len(st.allocations) and c == len(st.changes):
            return 0                                  # (every idle turn of the pump asks)
        take_a = len(st.allocations) - a if most is None else min(most, len(st.allocations) - a)
        for row in st.allocations[a:a + take_a]:
            self.allocations.append(
                length_delimited(6, allocation_pb(row).SerializeToString(deterministic=True)))
            self.rounds += varint(row[7])
        take_c = len(st.changes) - c if most is None else min(most - take_a, len(st.changes) - c)
        self.changes.extend(
            length_delimited(8, change_pb(row).SerializeToString(deterministic=True))
            for row in st.changes[c:c + take_c])
        return take_a + take_c


def restore_into(st: ScheduleState, snap: pb.ScheduleSnapshot) -> None:
    """Fill the freshly reset ``st`` from ``snap``; ProtoError on an inconsistent one."""
    check_known(snap, "snapshot")
    st.version, st.round = snap.version, snap.round
    st.armed, st.armed_version, st.rearm = snap.armed, snap.armed_version, snap.rearm
    n_nodes = st.capacity.n_nodes
    for j, rec in enumerate(snap.jobs):
        js = restore_job(st.ledger, rec, st.site_index, n_nodes, f"snapshot.jobs[{j}]")
        st.job_versions[js.job.id] = rec.version
        for ts in js.tasks:
            for node, slots in ts.placements.values():
                apply_slots(st.capacity, node, ts.demand, slots)
    for node in snap.nodes_down:
        if not 0 <= node < n_nodes:
            raise ProtoError("snapshot.nodes_down", f"node {node}", "a node index")
        st.nodes_down.add(node)
        st.capacity.set_alive(node, False)
    st.close_votes = set(snap.close_votes)
    if [s.site for s in snap.sites] != st.site_names:
        raise ProtoError("snapshot.sites", "not one record per site in cluster order",
                         "a valid snapshot")
    for rec in snap.sites:
        info = st.sites[rec.site]
        info.last_heard, info.lapsed = rec.last_heard, rec.lapsed
        info.lapse_votes = set(rec.lapse_votes)
    for m in snap.members:
        if m.site not in st.site_index or len(m.verify_key) not in (0, 32):
            raise ProtoError("snapshot.members", f"site {m.site!r}, {len(m.verify_key)}-byte "
                             f"key", "a valid snapshot")
        st.members[m.site] = bytes(m.verify_key)
    st.compacted.restore(snap.compaction)
    for part in snap.parts:
        if part.site not in st.site_index:
            raise ProtoError("snapshot.parts", f"unknown site {part.site!r}", "a valid snapshot")
        # The standing bids as they were admitted, not admitted again: what happened since
        # (an end, a node down, a task giving up) may have made one stale, which the
        # clearing skips ("no open instance left") -- a restore must give the same state.
        offers, bids = [], []
        site = st.site_index[part.site]
        for k, b in enumerate(part.bids):
            ts = st.ledger.tasks.get((b.job_id, b.task_id))
            if ts is None or b.instances < 1:
                raise ProtoError(f"snapshot.parts.bids[{k}]", f"{b.job_id}/{b.task_id} x "
                                 f"{b.instances}", "a bid for a task of the ledger")
            offers.append(Offer(b.job_id, b.task_id, b.instances, b.price))
            bids.append(Bid(site, ts, b.instances, b.price))
        st.parts[part.site] = SitePart(part.seen_version, offers, bids, part.counts)
    for k, t in enumerate(snap.reopened):
        if (t.job_id, t.task_id) not in st.ledger.tasks:
            raise ProtoError(f"snapshot.reopened[{k}]", f"{t.job_id}/{t.task_id}",
                             "a task of the ledger")
        st.reopened.add((t.job_id, t.task_id))
    if len(snap.allocation_rounds) != len(snap.allocations):
        raise ProtoError("snapshot.allocation_rounds", "not one per allocation",
                         "a valid snapshot")
    for a, r in zip(snap.allocations, snap.allocation_rounds):
        st.allocations.append((a.job_id, a.task_id, a.instance_begin, a.instance_end, a.site,
                               a.node, a.version, r))
    st.rejected = Counter({c.name: c.count for c in snap.rejected})
    st.changes = [(c.version, c.job_id, c.task_id, c.instance_begin, c.instance_end, c.site,
                   c.kind, c.start_s, c.end_s, c.exit_code, c.reason) for c in snap.changes]


def apply_slots(capacity, node: int, demand, slots) -> None:
    """Take exactly ``slots`` (as recorded) for ``demand`` on ``node``: restoring a snapshot
    must hold the very gpus the instance held, not whatever ``take_gpus`` would pick now."""
    capacity.free_cpu[node] -= demand.cpu
    capacity.free_mem[node] -= demand.mem
    if slots:
        gf = capacity.gpu_free[node]
        for i, g in slots:
            gf[i] -= g
        capacity._refresh_gpu(node)


# ---- queries ----

def _error(st: ScheduleState, field: str, reason: str) -> pb.QueryResult:
    return pb.QueryResult(version=st.version, error=pb.Rejection(field=field, reason=reason))


def query_answer(st: ScheduleState, q: pb.Query, where: str) -> pb.QueryResult:
    """The answer to ``q`` from ``st`` (read-only)."""
    kind = q.WhichOneof("kind")
    if kind == "job_status":
        js = st.ledger.jobs.get(q.job_status.job_id)
        if js is None:
            return _error(st, f"{where}.job_status.job_id",
                          unknown_job(st, q.job_status.job_id))
        out = pb.QueryResult(version=st.version)
        status = out.job_status
        status.job_id, status.origin, status.complete = js.job.id, js.job.origin, js.complete
        status.outcome, status.reason = js.outcome, js.reason
        for t in js.job.tasks:
            ts = js.by_id[t.id]
            status.tasks.add(task_id=t.id, instances=t.instances, waiting=ts.count(WAITING),
                             open=ts.open, running=ts.running, done=ts.done,
                             failures=ts.total_failures, gave_up=ts.failed,
                             outcome=ts.outcome, reason=ts.reason)
        return out
    if kind == "ledger":
        out = pb.QueryResult(version=st.version)
        view = out.ledger
        view.version = st.version
        if st.executing and st._sub[0] == st._seq:
            # (only what this very batch published: ``_sub`` is no part of a snapshot, and a
            # replica restored from one answers a first query of a batch as the others do)
            # an ordered query in the batch that made this version: later commands of the
            # batch publish more updates at it (a review: a follower took the view for all
            # of them and lost the rest)
            view.subs = st._sub[1]
        for js in st.ledger.jobs.values():
            view.jobs.append(pb.JobRecord.FromString(
                job_record_bytes(js, st.job_versions[js.job.id])))
        view.round.round, view.round.armed = st.round, st.armed
        view.round.armed_version = st.armed_version
        for s in st.site_names:
            key = st.members.get(s)
            view.sites.add(site=s, lapsed=st.sites[s].lapsed, key=key or b"",
                           removed=key == b"")
        view.nodes_down.extend(st.node_names[i] for i in sorted(st.nodes_down))
        if st.compacted:
            st.compacted.to_pb(view.compaction)
        return out
    if kind != "schedule":
        return _error(st, where, "no query set; expected schedule, job_status or ledger")
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
        if sq.job_id not in st.ledger.jobs:
            return _error(st, f"{at}.job_id", unknown_job(st, sq.job_id))
        rows = [r for r in rows if r[0] == sq.job_id]
    elif by == "task":
        if (sq.task.job_id, sq.task.task_id) not in st.ledger.tasks:
            return _error(st, f"{at}.task", f"no task {sq.task.job_id!r}/{sq.task.task_id!r}")
        rows = [r for r in rows if r[0] == sq.task.job_id and r[1] == sq.task.task_id]
    elif by == "since_version":
        if sq.since_version < 0:
            return _error(st, f"{at}.since_version", f"{sq.since_version}; expected >= 0")
        why = st.compacted.refusal(sq.since_version, st.version + 1)
        if why is not None:
            return _error(st, f"{at}.since_version", why)
        # versions only grow along the list
        rows = rows[bisect.bisect_left(rows, sq.since_version, key=lambda r: r[6]):]
    else:
        return _error(st, at, "no selector set; expected all, site, job_id, task or "
                      "since_version")
    out = pb.QueryResult(version=st.version)
    out.schedule.CopyFrom(schedule_pb2.Schedule(version=st.version,
                                                allocations=[allocation_pb(r) for r in rows]))
    return out

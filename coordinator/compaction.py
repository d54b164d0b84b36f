"""Keeping the replicated schedule bounded: finished jobs compacted away.

A coordinator that runs for months must not keep every job it ever ran: each job costs a
replica ~4 KB of memory, its checkpoint and its state transfer grow with it, and so do the
allocation and instance-change history and every whole-schedule answer (measured in
docs/benchmarks.md, "A long-running coordinator: compaction"). Like Slurm's controller (``MinJobAge``)
and Kubernetes' finished-job TTL, the schedule keeps every job that is not finished and the
newest ``retain_finished_jobs`` finished ones; older finished jobs, with their allocations
and instance changes, are dropped. 0 keeps everything.

**Deterministic.** The scan runs as part of executing a command (``due``): one whose
admissions take the count of jobs ever admitted past a multiple of the slack (below), or the
first to change the schedule at a version past a multiple of ``SCAN_EVERY`` (work that
finishes while nothing is submitted) -- functions of the ordered log alone, so every correct
replica, and one restored from a snapshot, compacts the same jobs at the same version. It
drops, oldest admitted first, the finished jobs beyond the newest ``retain_finished_jobs``,
once they exceed it by a tenth (``slack``: a scan that compacts does so in bulk), except
each origin site's newest ``retain_finished_jobs // sites``: nothing a site sends changes
what another may do, so a site that floods the schedule with jobs pushes out its own history
and the oldest of others' beyond their share, never a site's newest. A job is dropped only when nothing of it runs, waits or is open
(``Ledger.compactable``) and no standing bid of the open round names it.

**What followers see.** The update of that version lists the compacted job ids
(``ScheduleUpdate.compacted``, applied last); a follower of the ledger (a site agent, the
operator's progress line) drops them too. ``Compaction`` (in the snapshot and the ledger
view) counts them by outcome and records the versions of the rows dropped (``history_floor``,
the newest; ``dropped``, spans holding them all): a schedule query or a watch that would
need rows of those versions from the history (a watch: older than the replica's recent
updates) is refused (read the ledger, then watch from its version). A
compacted job's id may be submitted again.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

from agora.agents.ledger import Ledger
from agora.protos.wire import varint

if TYPE_CHECKING:
    from agora.coordinator.schedule_state import ScheduleState

SCAN_EVERY = 256
"""Versions between two scans for finished jobs to compact (a scan walks every job)."""
MAX_SPANS = 64
"""Version spans of dropped rows recorded (``Compacted.dropped``)."""


def slack(retain: int) -> int:
    """Finished jobs beyond ``retain`` that wait for the next compaction: a tenth, >= 1."""
    return max(1, retain // 10)


class Compacted:
    """What the schedule has compacted away (part of the replicated state)."""

    def __init__(self) -> None:
        self.jobs: Counter[str] = Counter()
        """jobs compacted so far, by outcome"""
        self.history_floor = 0
        """the newest version of an allocation or instance change dropped"""
        self.dropped: list[tuple[int, int]] = []
        """[first, last] version spans holding every dropped row, ascending and disjoint, at
        most ``MAX_SPANS`` (the closest are merged: a superset, so a check stays safe)"""

    def __bool__(self) -> bool:
        return bool(self.jobs)

    def total(self) -> int:
        return sum(self.jobs.values())

    def add(self, versions: list[int]) -> None:
        """Record the versions of the rows one compaction dropped."""
        if not versions:
            return
        self.history_floor = max(self.history_floor, max(versions))
        spans = sorted(self.dropped + [(v, v) for v in set(versions)])
        merged: list[tuple[int, int]] = []
        for lo, hi in spans:
            if merged and lo <= merged[-1][1] + 1:
                merged[-1] = (merged[-1][0], max(merged[-1][1], hi))
            else:
                merged.append((lo, hi))
        while len(merged) > MAX_SPANS:          # merge the two spans with the least between
            k = min(range(len(merged) - 1), key=lambda i: (merged[i + 1][0] - merged[i][1], i))
            merged[k:k + 2] = [(merged[k][0], merged[k + 1][1])]
        self.dropped = merged

    def to_pb(self, msg) -> None:
        """Fill a ``pb.Compaction``."""
        for name, count in sorted(self.jobs.items()):
            msg.jobs.add(name=name, count=count)
        msg.history_floor = self.history_floor
        for lo, hi in self.dropped:
            msg.dropped.extend((lo, hi))

    def restore(self, msg) -> None:
        self.jobs = Counter({c.name: c.count for c in msg.jobs})
        self.history_floor = msg.history_floor
        d = list(msg.dropped)
        self.dropped = list(zip(d[0::2], d[1::2]))

    def missing(self, since: int, until: int) -> bool:
        """Whether rows of versions [since, until) may have been dropped."""
        return any(lo < until and hi >= since for lo, hi in self.dropped)

    def refusal(self, since: int, until: int) -> str | None:
        """Why a read of the history of versions [since, until) is refused (``missing``),
        or None."""
        if not self.missing(since, until):
            return None
        floor = self.history_floor
        return (f"since_version: {since}; rows up to version {floor} were compacted away "
                f"with their finished jobs (retain_finished_jobs); expected > {floor}, or "
                f"read the ledger and watch from its version")


def admitted(st: ScheduleState) -> int:
    """Jobs ever admitted (a resubmitted id counts again): kept plus compacted."""
    return len(st.ledger.jobs) + st.compacted.total()


def due(st: ScheduleState, admitted_before: int) -> bool:
    """Whether the command being executed scans (``st.version``: the version before it;
    ``admitted_before``: ``admitted`` before it)."""
    retain = st.retain_finished_jobs
    if retain <= 0:
        return False
    step = slack(retain)
    return (admitted(st) // step > admitted_before // step
            or st._seq // SCAN_EVERY > st.version // SCAN_EVERY)


def compact(st: ScheduleState) -> list[str]:
    """Drop the oldest finished jobs beyond ``st.retain_finished_jobs`` (module doc); the
    ids dropped, in admission order."""
    retain = st.retain_finished_jobs
    bid_on = {o.job_id for part in st.parts.values() for o in part.offers}
    done = [js for js in st.ledger.jobs.values()      # admission order
            if Ledger.compactable(js) and js.job.id not in bid_on]
    extra = len(done) - retain
    if extra <= slack(retain):
        return []
    # each origin site keeps its newest ``share`` finished jobs whatever the others send
    share, kept = retain // max(1, len(st.site_names)), Counter()
    protected = set()
    for js in reversed(done):
        if kept[js.job.origin] < share:
            kept[js.job.origin] += 1
            protected.add(js.job.id)
    drop = [js.job.id for js in done if js.job.id not in protected][:extra]
    gone = st.ledger.forget_jobs(set(drop))
    ids = {js.job.id for js in gone}
    c = st.compacted
    for js in gone:
        c.jobs[js.outcome] += 1
        del st.job_versions[js.job.id]
        for ts in js.tasks:
            st.opened_seq.pop(ts.key, None)
            st.reopened.discard(ts.key)
    _drop_history(st, ids)
    return [js.job.id for js in gone]


def _drop_history(st: ScheduleState, ids: set[str]) -> None:
    """Drop the allocations and instance changes of the jobs ``ids``, and their encodings
    in the history cache (``HistoryBytes``), keeping both in commit order."""
    hist = st.history_bytes
    keep_a = [r[0] not in ids for r in st.allocations]
    keep_c = [r[1] not in ids for r in st.changes]
    st.compacted.add([r[6] for r, k in zip(st.allocations, keep_a) if not k]
                     + [r[0] for r, k in zip(st.changes, keep_c) if not k])
    cached = len(hist.allocations)
    hist.allocations = [b for b, k in zip(hist.allocations, keep_a) if k]
    hist.rounds = bytearray(b"".join(varint(r[7]) for r, k in
                                     zip(st.allocations[:cached], keep_a) if k))
    hist.changes = [b for b, k in zip(hist.changes, keep_c) if k]
    st.allocations = [r for r, k in zip(st.allocations, keep_a) if k]
    st.changes = [r for r, k in zip(st.changes, keep_c) if k]


def unknown_job(st: ScheduleState, job_id: str) -> str:
    """Why ``job_id`` is not in the schedule, for a refusal."""
    if not st.compacted:
        return f"no job {job_id!r}; expected a submitted job id"
    return (f"no job {job_id!r}: never submitted, or finished and compacted away (the "
            f"coordinator keeps every unfinished job and the newest "
            f"{st.retain_finished_jobs} finished ones: retain_finished_jobs)")

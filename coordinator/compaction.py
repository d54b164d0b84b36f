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
once they exceed it by a tenth (``slack``: a scan that compacts does so in bulk). A job is dropped only when nothing of it runs, waits or is open
(``Ledger.compactable``) and no standing bid of the open round names it.

**What followers see.** The update of that version lists the compacted job ids
(``ScheduleUpdate.compacted``, applied last); a follower of the ledger (a site agent, the
operator's progress line) drops them too. ``Compaction`` (in the snapshot and the ledger
view) counts them by outcome and records ``history_floor`` and ``history_oldest``, the
newest and oldest versions of any row dropped: a schedule query from before the floor, and
a watch that would need the history of versions a dropped row may have (older than a
replica's recent updates), are refused (read the ledger, then watch from its version). A
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
ORIGINS_KEPT = 100_000
"""Compacted jobs whose origin site is still known (``Compacted.origin``): updates that
name them may still be streamed from a replica's recent updates, and a site's watch stream
must redact them the same way at every replica."""


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
        self.history_oldest = 0
        """the oldest version of one (0: none dropped yet)"""
        self.origins: dict[str, str] = {}
        """job id -> origin site of the most recently compacted jobs (``ORIGINS_KEPT``); not in
        a snapshot (see ``ORIGINS_KEPT``: a restored replica streams no update older than its
        snapshot)"""

    def __bool__(self) -> bool:
        return bool(self.jobs)

    def total(self) -> int:
        return sum(self.jobs.values())

    def origin(self, job_id: str) -> str | None:
        return self.origins.get(job_id)

    def to_pb(self, msg) -> None:
        """Fill a ``pb.Compaction``."""
        for name, count in sorted(self.jobs.items()):
            msg.jobs.add(name=name, count=count)
        msg.history_floor = self.history_floor
        msg.history_oldest = self.history_oldest

    def restore(self, msg) -> None:
        self.jobs = Counter({c.name: c.count for c in msg.jobs})
        self.history_floor = msg.history_floor
        self.history_oldest = msg.history_oldest

    def missing(self, since: int, until: int) -> bool:
        """Whether rows of versions [since, until) may have been dropped."""
        return (self.history_floor >= since and 0 < self.history_oldest < until
                and since < until)


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
    gone = st.ledger.forget_jobs({js.job.id for js in done[:extra]})
    ids = {js.job.id for js in gone}
    c = st.compacted
    for js in gone:
        c.jobs[js.outcome] += 1
        c.origins[js.job.id] = js.job.origin
        del st.job_versions[js.job.id]
        for ts in js.tasks:
            st.opened_seq.pop(ts.key, None)
    while len(c.origins) > ORIGINS_KEPT:
        del c.origins[next(iter(c.origins))]
    _drop_history(st, ids)
    return [js.job.id for js in gone]


def _drop_history(st: ScheduleState, ids: set[str]) -> None:
    """Drop the allocations and instance changes of the jobs ``ids``, and their encodings
    in the history cache (``HistoryBytes``), keeping both in commit order."""
    hist = st.history_bytes
    keep_a = [r[0] not in ids for r in st.allocations]
    keep_c = [r[1] not in ids for r in st.changes]
    dropped = ([r[6] for r, k in zip(st.allocations, keep_a) if not k]
               + [r[0] for r, k in zip(st.changes, keep_c) if not k])
    if dropped:
        c = st.compacted
        c.history_floor = max(c.history_floor, max(dropped))
        low = min(dropped)
        c.history_oldest = low if not c.history_oldest else min(c.history_oldest, low)
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

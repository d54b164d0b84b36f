"""What a watch from a past version is sent before the live updates (``service.py``'s
``WatchSchedule``): versions older than the updates a replica keeps (``recent_updates.py``)
rebuilt from what the state keeps for good, one at a time as they are sent, then the kept
updates past them."""

from __future__ import annotations

from typing import TYPE_CHECKING

from agora.coordinator.recent_updates import updates_since
from agora.coordinator.schedule_records import allocation_pb, change_pb
from agora.protos.agora.v1 import coordinator_pb2 as pb

if TYPE_CHECKING:
    from agora.coordinator.schedule_state import ScheduleState


def history(app: ScheduleState, since: int, until: int):
    """Updates of versions [since, until) rebuilt from what the state keeps for good
    (allocations and instance changes; job admissions and round states are not kept: a
    site agent starts from a ledger query instead), one version at a time, each built when
    it is to be sent. The rows are taken now (a commit, or a compaction, may change the
    state's lists while the watch streams); built whole first, 100,000 rows of each kind
    held a replica's loop 1 s and 125 MB, for as long as the watcher left the stream unread
    (a review)."""
    allocations = sorted((r for r in app.allocations if since <= r[6] < until),
                         key=lambda r: r[6])       # (kept in commit order: sorting is cheap)
    changes = sorted((r for r in app.changes if since <= r[0] < until), key=lambda r: r[0])
    a = c = 0
    while a < len(allocations) or c < len(changes):
        v = min(allocations[a][6] if a < len(allocations) else until,
                changes[c][0] if c < len(changes) else until)
        u = pb.ScheduleUpdate(version=v)
        while a < len(allocations) and allocations[a][6] == v:
            u.allocations.append(allocation_pb(allocations[a]))
            a += 1
        while c < len(changes) and changes[c][0] == v:
            u.changes.append(change_pb(changes[c]))
            c += 1
        app.name_origins(u)     # kept rows are of jobs the state keeps (compaction.py)
        yield u


def watch_start(recent: list, version: int) -> int:
    """The first version a watch streams from the kept updates ``recent`` (a snapshot);
    older ones are rebuilt (``history``). A kept version whose first updates were evicted
    is rebuilt whole instead: streamed from the ring, its first subs were lost (a review)."""
    if not recent:
        return version + 1
    v, sub, _ = recent[0]
    return v + 1 if sub > 0 else v


def backlog(app: ScheduleState, recent: list, since: int, start: int):
    """What a watch from ``since`` is sent before live updates: versions [since, start)
    rebuilt from the state, then the kept updates past them."""
    after = (0, -1)
    if since < start:
        yield from history(app, since, start)
        after = (start - 1, 1 << 31)
    yield from updates_since(recent, since, after)

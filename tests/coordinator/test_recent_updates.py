"""The updates a replica keeps for watchers (``coordinator/recent_updates.py``): serialized,
bounded by count and by bytes, the oldest going first, the newest always kept; a snapshot
taken before a watch streams older history is not changed by what is published after."""

from __future__ import annotations

from agora.coordinator.recent_updates import RecentUpdates, updates_since
from agora.protos.agora.v1 import coordinator_pb2 as pb


def update(v: int, sub: int = 0, allocations: int = 1) -> pb.ScheduleUpdate:
    u = pb.ScheduleUpdate(version=v, sub=sub)
    for k in range(allocations):
        u.allocations.add(job_id=f"j{v}-{k}", task_id="t", instance_end=1, version=v)
    return u


def test_they_are_bounded_by_count_and_by_bytes_and_come_back_as_they_were():
    r = RecentUpdates(most=5, budget=10**9)
    for v in range(1, 9):
        r.append(update(v))
    kept = r.snapshot()
    assert [v for v, _, _ in kept] == [4, 5, 6, 7, 8] and len(r) == 5
    assert list(updates_since(kept, 6, (0, -1))) == [update(6), update(7), update(8)]
    assert [u.version for u in updates_since(kept, 0, (7, 0))] == [8]
    big = RecentUpdates(most=1000, budget=3 * update(19, allocations=50).ByteSize())
    for v in range(1, 20):
        big.append(update(v, allocations=50))
    assert len(big) == 3 and big.bytes <= big.budget
    huge = RecentUpdates(most=1000, budget=10)
    huge.append(update(1, allocations=50))
    assert len(huge) == 1, "the newest is kept even over the budget"


def test_a_snapshot_is_not_changed_by_what_is_published_after():
    r = RecentUpdates(most=3, budget=10**9)
    for v in (1, 2, 3):
        r.append(update(v))
    kept = r.snapshot()
    for v in (4, 5, 6):                 # evicts everything the snapshot holds
        r.append(update(v))
    assert [u.version for u in updates_since(kept, 0, (0, -1))] == [1, 2, 3]

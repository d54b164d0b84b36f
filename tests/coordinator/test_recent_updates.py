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


def test_a_watch_from_before_a_version_the_ring_kept_in_part_misses_none_of_it():
    """A review: the ring kept only the later updates of its oldest version (a batch's
    commands share one), and a watch from before it streamed them from the ring -- the
    earlier ones, an allocation among them, were lost. Such a version is rebuilt whole."""
    from agora.coordinator.watch_history import backlog, watch_start
    from tests.coordinator.state_helpers import Run, decide, job, submit, vote

    r = Run()
    ring = RecentUpdates(most=2, budget=10**9)
    r.state.listeners.append(ring.append)
    r("site:a", submit(job("j", "a", n=1, dag=False)))                      # version 1
    r("site:a", decide("a", 0, ("j", "map", 1, 1)))                         # version 2 ...
    for voter in ("replica:0", "replica:1"):
        r(voter, vote(0), same_seq=True)                                    # ... closes
    r("site:c", submit(job("k", "c", n=1, dag=False)), same_seq=True)
    r("site:c", submit(job("m", "c", n=1, dag=False)), same_seq=True)
    kept = ring.snapshot()
    assert kept[0][0] == 2 and kept[0][1] > 0                  # version 2 kept in part
    start = watch_start(kept, r.state.version)
    assert start == 3
    got = list(backlog(r.state, kept, 1, start))
    allocated = [a.job_id for u in got for a in u.allocations]
    assert allocated == ["j"]
    keys = [(u.version, u.sub) for u in got]
    assert keys == sorted(set(keys))

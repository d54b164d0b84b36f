"""The replicated schedule (coordinator/schedule_state.py) is a deterministic state machine:
the same commands give the same results, updates and snapshot bytes; a snapshot restores and
the run continues identically; snapshot bytes are protobuf's canonical encoding at every step
(cached and pre-encoded pieces included); restore refuses another cluster and garbage."""

from __future__ import annotations

import random

import pytest

from agora.agents.domain import Cluster, Node, Site
from agora.coordinator.schedule_state import HISTORY_ROWS_PER_JOB, ScheduleState
from agora.protos.agora.v1 import coordinator_pb2 as pb
from tests.coordinator.state_helpers import Run, cluster, job, lapse, script, submit


def test_same_commands_same_results_updates_and_snapshot_bytes():
    cmds = script(random.Random(7), 400)
    runs = [Run(), Run()]
    results = [[r(c, mk(r.state)).SerializeToString(deterministic=True) for c, mk in cmds]
               for r in runs]
    assert results[0] == results[1]
    assert [u.SerializeToString(deterministic=True) for u in runs[0].updates] == \
        [u.SerializeToString(deterministic=True) for u in runs[1].updates]
    assert runs[0].state.snapshot() == runs[1].state.snapshot()
    assert runs[0].state.allocations, "the script must allocate something"
    assert runs[0].state.round > 2, "the script must close rounds"


def test_snapshot_restore_round_trips_and_continues_identically():
    cmds = script(random.Random(3), 300)
    a, b = Run(), Run()
    for c, mk in cmds[:150]:
        a(c, mk(a.state))
    snap = a.state.snapshot()
    b.state.restore(snap)
    b.seq = a.seq
    assert b.state.snapshot() == snap
    b.state.check_invariants()
    for c, mk in cmds[150:]:
        assert a(c, mk(a.state)) == b(c, mk(b.state))
    assert a.state.snapshot() == b.state.snapshot()


def test_incremental_snapshot_bytes_are_protobufs_canonical_encoding_at_every_step():
    """The snapshot is assembled from cached pieces (job records, each run's placement,
    history rows), some encoded ahead while idle (``warm``); at every step it must be
    exactly the deterministic serialisation of the message it encodes, and of a snapshot
    re-encoded from scratch (no cache) of the same state."""
    cmds = script(random.Random(11), 250)
    r, twin = Run(), Run()            # the twin is never warmed
    warmed = 0
    for k, (c, mk) in enumerate(cmds):
        r(c, mk(r.state))
        twin(c, mk(twin.state))
        if k % 3 == 1:
            warmed += r.state.warm(2)     # idle pre-encoding must not change a snapshot
        if k % 5:
            continue
        snap = r.state.snapshot()
        assert pb.ScheduleSnapshot.FromString(snap).SerializeToString(
            deterministic=True) == snap, f"step {k}"
        assert twin.state.snapshot() == snap, f"step {k}"
        fresh = ScheduleState(cluster(), n_replicas=4)
        fresh.restore(snap)
        assert fresh.snapshot() == snap, f"step {k}"
    assert r.state.changes and r.state.allocations and r.state.rejected
    assert warmed > 0


def test_idle_warming_encodes_the_history_rows_ahead_within_its_budget():
    # a checkpoint's stall was mostly encoding the allocation and change rows written since
    # the last one: warm encodes them ahead, a bounded number per call, in row order
    cmds = script(random.Random(5), 200)
    r, twin = Run(), Run()
    for c, mk in cmds:
        r(c, mk(r.state))
        twin(c, mk(twin.state))
    st, hist = r.state, r.state.history_bytes
    assert st.allocations and st.changes and not hist.allocations and not hist.changes
    while st.ledger.unencoded:                     # job records first
        st.warm(1)
    n = st.warm(1)                                 # then up to HISTORY_ROWS_PER_JOB rows
    assert 0 < n <= HISTORY_ROWS_PER_JOB
    assert len(hist.allocations) + len(hist.changes) == n
    while st.warm(3):
        pass
    assert len(hist.allocations) == len(st.allocations)
    assert len(hist.changes) == len(st.changes)
    assert st.snapshot() == twin.state.snapshot()   # the same bytes as encoding them late


def test_restore_refuses_another_cluster_and_garbage():
    r = Run()
    r("site:a", submit(job("j0")))
    other = ScheduleState(Cluster(sites=(Site("z", (Node("z/0", "z", 1000, 1000),)),)))
    with pytest.raises(ValueError, match="cluster_digest"):
        other.restore(r.state.snapshot())
    before = r.state.snapshot()
    with pytest.raises(ValueError, match="snapshot"):
        r.state.restore(b"\xff\xff")
    assert r.state.snapshot() == before


def test_the_kept_expected_sites_always_equal_a_fresh_computation():
    """``expected_sites`` keeps its answer until the open shapes, the free capacity or the
    lapsed sites change (a review: a site's 20,000 unplaceable shapes made every site part
    walk them all). After every command of a seeded script, and across a restore, the kept
    answer is the one computed afresh."""
    r = Run()
    for k, (c, mk) in enumerate(script(random.Random(13), 300)):
        r(c, mk(r.state))
        kept = r.state.expected_sites()
        r.state._expected = None
        assert kept == r.state.expected_sites(), k
        if k == 150:
            snap = r.state.snapshot()
            r.state.expected_sites()
            r.state.restore(snap)
            assert r.state._expected is None
    assert r.state.round > 2


def test_the_kept_expected_sites_move_with_the_open_shapes_and_the_capacity():
    r = Run()
    r("operator", submit(job("bigc", "c", n=1, cpu=12000, dag=False)))   # c's nodes only
    assert r.state.expected_sites() == ["c"]
    r("operator", submit(job("small", "a", n=1, cpu=1000, dag=False)))   # a new shape only
    assert r.state.expected_sites() == ["a", "b", "c"]
    cap = r.state.capacity
    for i, n in enumerate(r.state.cluster.nodes):                        # capacity only
        if n.site == "c":
            cap.set_alive(i, False)
    assert r.state.expected_sites() == ["a", "b"]
    heard = r.state.sites["b"].last_heard
    for voter in ("replica:0", "replica:1"):                              # a lapse only
        r(voter, lapse("b", heard))
    assert r.state.sites["b"].lapsed and r.state.expected_sites() == ["a"]


def test_a_reader_naming_no_site_of_the_cluster_is_not_kept():
    from agora.coordinator.read_scope import scope_for

    st = Run().state
    for i in range(100):
        assert scope_for(st, f"site:nosuch{i}") is not None
    assert scope_for(st, "site:a") is scope_for(st, "site:a")
    assert set(st.scopes) == {"a"}


def test_site_parts_that_change_nothing_do_not_walk_the_open_shapes_again():
    from agora.agents.domain import Demand, Job, Task
    from tests.coordinator.state_helpers import decide, report

    r = Run()
    # 2,000 distinct shapes only site c's nodes can hold: nothing places them
    jobs = [Job(f"c:s{i}", 0.0, "c", (Task("t", 1.0, Demand(9000 + i % 1000, 1 + i // 1000),
                                           1),)) for i in range(2000)]
    r("site:c", submit(*jobs))
    r("site:a", decide("a", r.state.round))
    cap, checks = r.state.capacity, []
    fit = cap.fit_mask
    cap.fit_mask = lambda *a, **k: checks.append(1) or fit(*a, **k)
    for _ in range(10):
        r("site:b", report("b"))                      # heartbeats of a site: no change
    assert len(checks) <= 2000, len(checks)           # once at most, not once a part

"""``TaskEntry.turns`` -- how many clearings served a bid of a site where the task failed,
whose turn it is among those sites' bids (``LedgerBook.turn``) -- is part of a replica's
state: it passes once per such clearing (not once per stopped run), it is kept alike
straight and restored, a site's view of the ledger carries 0 (a follower cannot count it
from its updates), and a snapshot that says it is negative is refused naming the field."""

import pytest

from agora.coordinator.schedule_state import ScheduleState
from agora.protos.agora.v1 import coordinator_pb2 as pb
from tests.coordinator.state_helpers import (Run, close, decide, end, job, op, report, site_of,
                                             submit)


def served_marked_twice() -> Run:
    """a's job of 2 instances; a never bids for it. b wins both and reports both failed in
    one message (marked: c, where none failed, could hold it, so b's bids are deferred);
    the round in which it reopened holds them, the next serves b alone: a turn passes.
    Twice."""
    r = Run()
    st = r.state
    r("site:a", submit(job("v", "a", n=2, dag=False)))
    ts = st.ledger.tasks[("v", "map")]

    def clearing() -> None:
        rnd = st.round
        for s in "abc":
            r(f"site:{s}", decide(s, rnd, *([("v", "map", 2, 5)] if s == "b" else [])))
        close(r, rnd)

    clearing()
    for turns in (0, 1, 2):
        assert ts.running == 2 and {site_of(r, ts, i) for i in (0, 1)} == {"b"}
        assert ts.turns == turns, "one turn per clearing that served a marked site"
        if turns == 2:
            return r
        r("site:b", report("b", *[end("v", "map", i, "failed", run=ts.placed_at[i])
                                  for i in (0, 1)]))
        clearing()
        assert not ts.running, "held in the round in which it reopened"
        clearing()


def test_a_turn_passes_once_per_clearing_and_survives_a_restore():
    r = served_marked_twice()
    twin = ScheduleState(r.state.cluster, n_replicas=4)
    twin.restore(r.state.snapshot())
    assert twin.ledger.tasks[("v", "map")].turns == 2
    assert twin.snapshot() == r.state.snapshot()


def test_a_sites_view_carries_no_turns():
    r = served_marked_twice()
    for reader in ("site:a", "site:b", "site:c"):
        q = pb.QueryResult.FromString(r.state.query(reader, op(query=pb.Query(
            ledger=pb.LedgerQuery()))))
        assert [t.turns for j in q.ledger.jobs for t in j.tasks] == [0], reader


def test_a_snapshot_with_negative_turns_is_refused_naming_the_field():
    r = served_marked_twice()
    snap = pb.ScheduleSnapshot.FromString(r.state.snapshot())
    snap.jobs[0].tasks[0].turns = -1
    with pytest.raises(ValueError, match=r"tasks\[0\]\.turns.*negative"):
        ScheduleState(r.state.cluster, n_replicas=4).restore(snap.SerializeToString())

"""``TaskEntry.stops`` -- a task's runs that stopped without completing, whose turn it is
among the deferred bids of the sites where it failed (``LedgerBook.turn``) -- is part of a
replica's state: counted alike straight and restored, and a snapshot that says it is
negative is refused naming the field."""

import pytest

from agora.agents.domain import Cluster, Demand, Job, Node, Site, Task
from agora.coordinator.schedule_state import ScheduleState
from agora.protos.agora.v1 import coordinator_pb2 as pb
from agora.protos.convert import job_to_proto


def op(**kind) -> bytes:
    return pb.Command(**kind).SerializeToString()


def stopped_twice() -> ScheduleState:
    """a's one-task job, run at b twice: once failed, once lost (a's node is too small for
    it: b is never deferred)."""
    cl = Cluster(sites=(Site("a", (Node("a/0", "a", 500, 16384),)),
                        Site("b", (Node("b/0", "b", 8000, 16384),))))
    st = ScheduleState(cl, n_replicas=4)
    seq = iter(range(1, 100))
    st.execute("site:a", op(submit_jobs=pb.SubmitJobs(jobs=[job_to_proto(
        Job("a:j", 0.0, "a", (Task("A", 1.0, Demand(1000, 512)),)))])), next(seq))
    for kind in (pb.END_FAILED, pb.END_LOST):
        rnd = st.round
        st.execute("site:a", op(site_round=pb.SiteRound(site="a", round=rnd, bidding=True)),
                   next(seq))
        st.execute("site:b", op(site_round=pb.SiteRound(site="b", round=rnd, bidding=True,
                                                        bids=[pb.Bid(job_id="a:j", task_id="A",
                                                                     instances=1, price=1)])),
                   next(seq))
        ts = st.ledger.tasks[("a:j", "A")]
        assert ts.running == 1, f"round {rnd}: b's bid did not win"
        st.execute("site:b", op(site_round=pb.SiteRound(site="b", ends=[pb.End(
            job_id="a:j", task_id="A", instance=0, kind=kind, start_s=0.0, end_s=1.0)])),
                   next(seq))
    return st


def test_stops_count_failed_and_lost_runs_and_survive_a_restore():
    st = stopped_twice()
    assert st.ledger.tasks[("a:j", "A")].stops == 2
    twin = ScheduleState(st.cluster, n_replicas=4)
    twin.restore(st.snapshot())
    assert twin.ledger.tasks[("a:j", "A")].stops == 2
    assert twin.snapshot() == st.snapshot()


def test_a_snapshot_with_negative_stops_is_refused_naming_the_field():
    st = stopped_twice()
    snap = pb.ScheduleSnapshot.FromString(st.snapshot())
    snap.jobs[0].tasks[0].stops = -1
    with pytest.raises(ValueError, match=r"tasks\[0\]\.stops.*negative"):
        ScheduleState(st.cluster, n_replicas=4).restore(snap.SerializeToString())

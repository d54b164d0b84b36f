"""A task whose job failed while its instances ran, and whose instances then all completed,
turned "completed" on a replica that executed the log straight without counting towards its
job's ``done_tasks`` nor releasing its children's ``pending_parents``, while a replica (or a
site agent) restored from a snapshot recomputes both from the outcomes and counts it (a
review's differential test, ``test_restore_differential.py``). No output diverged -- the job
is failed and its children given up, so neither field was read again -- but the in-memory
ledgers of two replicas of one log must not differ."""

from agora.agents.domain import Cluster, Demand, Faults, Job, Node, Site, Task
from agora.coordinator.schedule_state import ScheduleState
from agora.protos.agora.v1 import coordinator_pb2 as pb
from agora.protos.convert import job_to_proto


def op(**kind) -> bytes:
    return pb.Command(**kind).SerializeToString()


def test_a_task_completed_after_its_job_failed_counts_alike_straight_and_restored():
    cl = Cluster(sites=(Site("a", (Node("a/0", "a", 8000, 16384),)),
                        Site("b", (Node("b/0", "b", 8000, 16384),))),
                 faults=Faults(max_attempts=1))
    d = Demand(1000, 512)
    job = Job("a:j", 0.0, "a", (Task("A", 1.0, d), Task("B", 1.0, d),
                                Task("C", 1.0, d, after=("A",))))
    st = ScheduleState(cl, n_replicas=4)
    seq = iter(range(1, 100))
    st.execute("site:a", op(submit_jobs=pb.SubmitJobs(jobs=[job_to_proto(job)])), next(seq))
    st.execute("site:a", op(site_round=pb.SiteRound(site="a", round=0, bidding=True, bids=[
        pb.Bid(job_id="a:j", task_id="A", instances=1, price=1),
        pb.Bid(job_id="a:j", task_id="B", instances=1, price=1)])), next(seq))
    st.execute("site:b", op(site_round=pb.SiteRound(site="b", round=0, bidding=True)),
               next(seq))
    assert st.ledger.tasks[("a:j", "A")].running == 1 and st.ledger.tasks[("a:j", "B")].running

    def end(task: str, kind) -> bytes:
        return op(site_round=pb.SiteRound(site="a", ends=[pb.End(
            job_id="a:j", task_id=task, instance=0, kind=kind, start_s=0.0, end_s=1.0)]))

    st.execute("site:a", end("B", pb.END_FAILED), next(seq))      # the job fails (fail fast)
    st.execute("site:a", end("A", pb.END_COMPLETED), next(seq))   # A's run still completes
    js = st.ledger.jobs["a:j"]
    assert js.outcome == "failed" and js.by_id["A"].outcome == "completed"

    twin = ScheduleState(cl, n_replicas=4)
    twin.restore(st.snapshot())
    assert twin.snapshot() == st.snapshot()                        # the digests agree ...
    tj = twin.ledger.jobs["a:j"]
    # ... and so do the ledgers
    assert (js.done_tasks, js.by_id["C"].pending_parents) == \
        (tj.done_tasks, tj.by_id["C"].pending_parents)

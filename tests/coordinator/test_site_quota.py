"""A site's unfinished jobs are bounded (``max_unfinished_jobs_per_site``): a review found
that an admitted site could grow every replica's (and every agent's) state without bound
with open jobs nobody bids on -- the request limits bound each request and its rate, not
what piles up. Past the bound its own submissions are refused, naming the limit; other
sites and the operator are not touched; a job that finishes (or is cancelled) makes room;
and replicas decide alike whatever their cache of the count (a restored snapshot's is
empty)."""

from __future__ import annotations

from agora.coordinator.schedule_state import ScheduleState
from agora.protos.agora.v1 import coordinator_pb2 as pb
from tests.coordinator.state_helpers import Run, cluster, job, op, submit


def quota_run(limit: int) -> Run:
    r = Run()
    r.state = ScheduleState(cluster(), n_replicas=4, max_unfinished_jobs_per_site=limit)
    r.state.listeners.append(r.updates.append)
    return r


def cancel(job_id: str) -> bytes:
    return op(cancel_job=pb.CancelJob(job_id=job_id, reason="room"))


def test_a_site_past_its_bound_is_refused_and_others_are_not():
    r = quota_run(3)
    out = r("site:a", submit(*(job(f"a{i}", "a", n=1) for i in range(5))))
    assert out.accepted == 3
    refused = [x for x in out.rejections if "max_unfinished_jobs_per_site" in x.reason]
    assert len(refused) == 2 and r.state.rejected["submit.site_quota"] == 2
    assert refused[0].field == "command.submit_jobs.jobs[3].origin"
    assert "site 'a' has 3 unfinished jobs; the limit is 3" in refused[0].reason
    assert "a3" not in r.state.ledger.jobs
    # another site and the operator (for site a too) are not refused
    assert r("site:b", submit(*(job(f"b{i}", "b", n=1) for i in range(3)))).accepted == 3
    assert r("operator", submit(job("op-a", "a", n=1))).accepted == 1
    # a cancelled job makes room for exactly one more (the operator's counts too: 4 now)
    assert r("site:a", cancel("a0")).accepted == 1
    assert r("site:a", cancel("a1")).accepted == 1
    assert r("site:a", submit(job("a5", "a", n=1), job("a6", "a", n=1))).accepted == 1


def test_replicas_with_and_without_the_cached_count_decide_alike():
    """One replica restores a snapshot midway (its cache of the count is empty), the other
    goes on: the same commands give the same results and the same snapshot."""
    a, b = quota_run(4), quota_run(4)
    steps = [("site:a", submit(job("a0", "a", n=1), job("a1", "a", n=1))),
             ("site:a", cancel("a0")),
             ("site:a", submit(*(job(f"a{i}", "a", n=1) for i in range(2, 6)))),
             ("site:a", cancel("a2")),
             ("site:a", submit(job("a6", "a", n=1), job("a7", "a", n=1)))]
    for k, (client, data) in enumerate(steps):
        if k == 2:
            b.state.restore(b.state.snapshot())
            assert b.state.unfinished_bound == {}
        ra, rb = a(client, data), b(client, data)
        assert ra == rb
    assert a.state.snapshot() == b.state.snapshot()
    assert sorted(j for j in a.state.ledger.jobs if not a.state.ledger.jobs[j].finished) == \
        ["a1", "a3", "a4", "a6"]


def test_zero_means_no_bound():
    r = quota_run(0)
    assert r("site:a", submit(*(job(f"a{i}", "a", n=1) for i in range(20)))).accepted == 20

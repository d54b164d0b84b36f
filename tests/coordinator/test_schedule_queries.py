"""Reads of the replicated schedule: queries by site, job, task and version and of the whole
ledger (read-only, or ordered: the same answer), and the updates of one batch sharing a
version, told apart by ``sub``."""

from __future__ import annotations

from agora.protos.agora.v1 import coordinator_pb2 as pb
from tests.coordinator.state_helpers import Run, allocate, job, op, submit


def test_queries_by_site_job_task_version_and_the_whole_ledger():
    r = Run()
    r("site:a", submit(job("j0", n=2, dag=False), job("j1", n=2, dag=False)))
    allocate(r, "j0", "a", 2)
    allocate(r, "j1", "b", 2, 1)

    def q(**kind):
        return pb.QueryResult.FromString(r.state.query("x", op(query=pb.Query(**kind))))

    def sched(**by):
        return q(schedule=pb.ScheduleQuery(**by))

    assert [a.site for a in sched(all=True).schedule.allocations] == ["a", "b"]
    assert [a.job_id for a in sched(site="b").schedule.allocations] == ["j1"]
    assert [a.site for a in sched(job_id="j0").schedule.allocations] == ["a"]
    assert len(sched(task=pb.TaskRef(job_id="j1", task_id="map")).schedule.allocations) == 1
    last = r.state.allocations[-1][6]
    assert [a.version for a in sched(since_version=last).schedule.allocations] == [last]
    assert sched(site="zz").error.field == "command.query.schedule.site"
    led = q(ledger=pb.LedgerQuery()).ledger
    assert [j.job.id for j in led.jobs] == ["j0", "j1"] and led.round.round == 2
    assert [t.states for t in led.jobs[1].tasks] == [bytes([2, 2])]
    ordered = r("x", op(query=pb.Query(schedule=pb.ScheduleQuery(site="b"))))
    assert ordered.query.schedule.allocations == sched(site="b").schedule.allocations


def test_updates_of_one_batch_share_a_version_and_are_told_apart_by_sub():
    r = Run()
    r("site:a", submit(job("j0", n=1, dag=False)))
    r("site:a", submit(job("j1", n=1, dag=False)), same_seq=True)
    r("site:c", submit(job("j2", "c", n=1, dag=False)), same_seq=True)
    assert [(u.version, u.sub, u.jobs[0].id) for u in r.updates] == \
        [(1, 0, "j0"), (1, 1, "j1"), (1, 2, "j2")]
    assert all(u.round.armed and u.round.round == 0 for u in r.updates)

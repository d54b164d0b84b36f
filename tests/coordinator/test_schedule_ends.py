"""Ends and node states reported to the replicated schedule: dependent work opens only when
every parent instance is done; a failed attempt reopens work up to max_attempts, a lost run
(its node down, its site lapsed by f+1 replica votes) requeues without counting; an end for an
instance not running at the reporting site is refused and changes nothing."""

from __future__ import annotations

from agora.protos.agora.v1 import coordinator_pb2 as pb
from tests.coordinator.state_helpers import (Run, allocate, decide, end, job, lapse, op, report,
                                             submit)


def test_dependencies_open_only_when_every_parent_instance_is_done():
    r = Run()
    r("site:a", submit(job("j", n=2)))
    allocate(r, "j", "a", 2)
    assert r.running("j", "map") == [0, 1]
    r("site:a", report("a", end("j", "map", 0)))
    assert r.state.ledger.tasks[("j", "reduce")].open == 0
    r("site:a", report("a", end("j", "map", 1)))
    assert r.state.ledger.tasks[("j", "reduce")].open == 2 and r.state.armed
    status = pb.QueryResult.FromString(r.state.query("x", op(query=pb.Query(
        job_status=pb.JobStatusQuery(job_id="j"))))).job_status
    assert [(t.task_id, t.done, t.open) for t in status.tasks] == [("map", 2, 0),
                                                                   ("reduce", 0, 2)]


def test_a_failed_attempt_reopens_until_max_attempts_and_a_lost_run_never_counts():
    r = Run()
    r("site:a", submit(job("j", n=1, dag=False)))
    free = int(r.state.capacity.free_cpu.sum())
    # lost runs: as often as it takes (at the origin; another site that lost it now yields
    # it to a site where it was not lost, as after a failure)
    for attempt in range(5):
        allocate(r, "j", "a", 1, r.state.round)
        r("site:a", report("a", end("j", "map", 0, "lost", reason="node down")))
    ts = r.state.ledger.tasks[("j", "map")]
    assert ts.failures == {} and ts.open == 1
    assert int(r.state.capacity.free_cpu.sum()) == free
    for site in "bac":                             # failed attempts: max_attempts = 3,
        allocate(r, "j", site, 1, r.state.round)   # each at a site where none failed yet
        out = r(f"site:{site}", report(site, end("j", "map", 0, "failed", reason="exit 1")))
        assert out.accepted == 1
    assert ts.outcome == "failed" and r.state.ledger.jobs["j"].outcome == "failed"
    assert [c.kind for c in r.updates[-1].changes] == ["failed"]


def test_an_end_for_an_instance_not_running_at_the_site_is_refused_and_changes_nothing():
    r = Run()
    r("site:a", submit(job("j", n=2, dag=False)))
    allocate(r, "j", "b", 2)
    ts = r.state.ledger.tasks[("j", "map")]
    before = (bytes(ts.states), dict(ts.placements), r.state.capacity.free_cpu.tolist())
    for client, msg in (("site:c", report("c", end("j", "map", 0))),       # not c's
                        ("site:b", report("b", end("j", "map", 7))),       # no such instance
                        ("site:b", report("b", end("j", "zz", 0))),
                        ("site:a", report("b", end("j", "map", 0)))):      # a speaks for b
        out = r(client, msg)
        assert out.accepted == 0 and out.rejections, msg
    assert (bytes(ts.states), dict(ts.placements), r.state.capacity.free_cpu.tolist()) == before


def test_a_node_that_goes_down_loses_its_runs_and_takes_no_more_work():
    r = Run()
    r("site:a", submit(job("j", n=2, dag=False, cpu=9000)))
    allocate(r, "j", "c", 2)
    ts = r.state.ledger.tasks[("j", "map")]
    assert {r.state.node_names[n] for n, _ in ts.placements.values()} == {"c/n0", "c/n1"}
    r("site:c", report("c", nodes=[pb.NodeState(node="c/n0", up=False)]))
    assert ts.open == 1 and ts.failures == {} and len(ts.placements) == 1
    assert [(n.node, n.up) for n in r.updates[-1].nodes] == [("c/n0", False)]
    assert [c.kind for c in r.updates[-1].changes] == ["lost"]
    assert r("site:b", report("b", nodes=[pb.NodeState(node="c/n1", up=False)])).rejections
    out = r("site:c", decide("c", r.state.round, ("j", "map", 1, 1)))
    assert [x.field for x in out.rejections] == ["command.site_round.bids[0].instances"]
    r("site:c", report("c", nodes=[pb.NodeState(node="c/n0", up=True)]))
    allocate(r, "j", "c", 1, r.state.round)
    assert {r.state.node_names[n] for n, _ in ts.placements.values()} == {"c/n0", "c/n1"}


def test_f_plus_1_lapse_votes_lose_a_silent_sites_runs_and_it_comes_back_by_speaking():
    r = Run()
    r("site:a", submit(job("j", n=2, dag=False)))
    allocate(r, "j", "b", 2)
    heard = r.state.sites["b"].last_heard
    assert heard > 0
    assert r("site:c", lapse("b", heard)).rejections                 # sites do not vote
    r("replica:0", lapse("b", heard))
    assert not r.state.sites["b"].lapsed
    assert r("replica:1", lapse("b", heard - 1)).rejections           # a stale vote
    r("replica:2", lapse("b", heard))
    assert r.state.sites["b"].lapsed
    ts = r.state.ledger.tasks[("j", "map")]
    assert ts.open == 2 and ts.failures == {}                         # lost, not failed
    assert "b" not in r.state.expected_sites()
    r("site:b", report("b"))
    assert not r.state.sites["b"].lapsed and "b" in r.state.expected_sites()


def test_a_site_where_the_task_failed_gets_it_again_only_if_no_other_site_could_hold_it():
    """A review: one site that outbid the others (prices are its own to set) and reported
    every attempt failed gave another site's job up -- all of max_attempts won and failed by
    it; a flaky site likewise took every retry. A site where an instance of a task failed
    gets the task again only after the bids of sites where none failed, while a live one
    could hold it (its bids are deferred: test_schedule_failed_here_liveness.py)."""
    from agora.agents.market import PRICE_MAX
    r = Run()
    r("site:a", submit(job("victim", "a", n=1, dag=False), job("big", "a", n=1, dag=False,
                                                                   cpu=12000)))
    for rnd_sites in range(2):
        rnd = r.state.round
        r("site:a", decide("a", rnd, ("victim", "map", 1, 1000)))
        r("site:b", decide("b", rnd))
        r("site:c", decide("c", rnd, ("victim", "map", 1, PRICE_MAX),
                                 ("big", "map", 1, 1)))      # only c's nodes hold big
        st = r.state
        placed = sorted((j, st.node_site_names[st.ledger.tasks[(j, "map")].placements[0][0]])
                        for j in ("victim", "big"))
        if rnd_sites == 0:
            assert placed == [("big", "c"), ("victim", "c")]   # c outbids the origin
            for j in ("victim", "big"):
                run_v = r.state.ledger.tasks[(j, "map")].placed_at[0]
                r("site:c", report("c", end(j, "map", 0, "failed", run=run_v)))
        else:
            # victim goes to a, where it did not fail; big, which no other site holds,
            # may be tried at c again
            assert placed == [("big", "c"), ("victim", "a")]
    assert r.state.rejected["bid.failed_here"] == 0         # deferred as it came in,
    assert r.state.rejected["clearing.failed_here"] == 1    # and a's bid took victim first
    assert r.state.ledger.tasks[("victim", "map")].failed_nodes == (3,)   # c/n0


def test_a_sites_view_keeps_only_its_own_nodes_among_where_anothers_task_failed():
    from agora.coordinator.read_scope import scope_for
    r = Run()
    r("site:a", submit(job("j", "a", n=1, dag=False)))
    allocate(r, "j", "c", 1)
    r("site:c", report("c", end("j", "map", 0, "failed")))
    rec = pb.JobRecord()
    rec.tasks.add(failed_nodes=[3])
    rec.job.origin = "a"
    scope_for(r.state, "site:b").job_record(rec)
    assert list(rec.tasks[0].failed_nodes) == []          # where at c: not b's business
    rec.tasks[0].failed_nodes[:] = [3]
    scope_for(r.state, "site:c").job_record(rec)
    assert list(rec.tasks[0].failed_nodes) == [3]


def test_a_task_that_failed_at_a_site_takes_none_of_its_budget_nor_its_window():
    """A second review: the site where t failed (c could hold t, but is full) offered t
    first, its whole budget, and u -- a gpu task only it can hold -- was never bid for. Now
    its window leaves t out while it holds other work, and the coordinator refuses an offer
    for t before it takes any budget."""
    from agora.agents.domain import Demand, Job, Task
    from agora.agents.step.observe import Observer

    r = Run()
    st = r.state
    r("site:c", submit(Job("fill", 0.0, "c", (Task("map", 1e6, Demand(16000, 1024),
                                                    instances=2),))))
    r("site:c", decide("c", 0, ("fill", "map", 2, 5)))          # c is full
    r("site:a", submit(Job("t", 0.0, "a", (Task("map", 100.0, Demand(5000, 1024),
                                                 instances=6),))))
    r("site:a", decide("a", st.round, ("t", "map", 1, 5)))
    ts = st.ledger.tasks[("t", "map")]
    inst = next(iter(ts.placements))
    r("site:a", report("a", end("t", "map", inst, "failed", run=ts.placed_at[inst])))
    r("site:a", submit(Job("u", 0.0, "a", (Task("map", 10.0, Demand(2000, 1024, 1000),
                                                 instances=1),))))
    obs = Observer(st.cluster, 4).observe(st.ledger, st.capacity, [0], 0.0)[0]
    assert [t.job.job.id for t in obs.window] == ["u"]            # t left out at a
    out = r("site:a", decide("a", st.round, ("t", "map", 3, 9), ("u", "map", 1, 1)))
    assert out.rejections[0].field == "command.site_round.bids[0].task_id"
    assert "failed here" in out.rejections[0].reason
    assert st.ledger.tasks[("u", "map")].running == 1

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
    for attempt in range(5):                       # lost runs: as often as it takes
        allocate(r, "j", "b", 1, r.state.round)
        r("site:b", report("b", end("j", "map", 0, "lost", reason="node down")))
    ts = r.state.ledger.tasks[("j", "map")]
    assert ts.failures == {} and ts.open == 1
    assert int(r.state.capacity.free_cpu.sum()) == free
    for attempt in range(3):                       # failed attempts: max_attempts = 3
        allocate(r, "j", "b", 1, r.state.round)
        out = r("site:b", report("b", end("j", "map", 0, "failed", reason="exit 1")))
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

"""The simulation engine's side of the review of 290c497 (tests/coordinator/
test_schedule_failed_here_review.py): a marked site's deferred bid waits while every site
where the task did not fail is full (busy, not unwilling), without a round of its own (no
loop of empty rounds), and is cleared once one has room and does not take it."""

from __future__ import annotations

from agora.agents.domain import Cluster, Demand, Faults, Job, Node, NodeOutage, Site, Task, \
    Workload
from agora.agents.market import Offer
from agora.agents.sim.engine import Simulator
from agora.agents.step.seams import SitePart
from agora.agents.step.simulation import MemoryClearinghouse, SimExecutor


def world() -> tuple[Simulator, MemoryClearinghouse]:
    """o (2 cpus) submits 'far' (6 cpus) at 0, which a/n0's outage in [1, 2) loses; b (8
    cpus) runs its own 'busy' (8 cpus, until 50) from 0."""
    sites = (Site("o", (Node("o/n0", "o", cpu=2000, mem=4096),)),
             Site("a", (Node("a/n0", "a", cpu=8000, mem=16384),)),
             Site("b", (Node("b/n0", "b", cpu=8000, mem=16384),)))
    cluster = Cluster(sites=sites, faults=Faults(
        max_attempts=3, outages=(NodeOutage(at=1.0, until=2.0, node="a/n0"),)))
    jobs = (Job("far", 0.0, "o", (Task("t", 100.0, Demand(6000, 1024), instances=1),)),
            Job("busy", 0.0, "b", (Task("t", 50.0, Demand(8000, 1024), instances=1),)))
    sim = Simulator(cluster, Workload(jobs=jobs))
    ch = MemoryClearinghouse(sim, [SimExecutor(sim, i) for i in range(3)])
    sim.step_events()
    return sim, ch


def bid(ch, site: str, job: str, price: int = 5) -> None:
    ch.submit(SitePart(site, ch.round, 0, [Offer(job, "t", 1, price)]))


def test_a_marked_sites_bid_waits_for_room_where_it_did_not_fail():
    sim, ch = world()
    far = sim.ledger.tasks[("far", "t")]
    bid(ch, "a", "far")
    bid(ch, "b", "busy")
    assert ch.clear_round() == 2
    sim.step_events()                                  # t=1: a/n0 down, far lost
    sim.step_events()                                  # t=2: a/n0 up again
    assert far.open == 1 and far.failed_nodes == (1,)
    bid(ch, "a", "far")
    assert ch.clear_round() == 0 and ch.held_back == 1   # the round it reopened in
    bid(ch, "a", "far")
    assert ch.clear_round() == 0 and ch.held_back == 0   # b is full: a waits, no round
    while sim.ledger.jobs["busy"].outcome == "pending":  # for it (AgentsPolicy returns)
        sim.step_events()
    bid(ch, "a", "far")                                # b has room and does not bid
    assert ch.clear_round() == 1 and far.placements[0][0] == 1

"""The simulation engine's clearinghouse (``agents.step.simulation.MemoryClearinghouse``) and
the "failed here" rule: it admits and clears as the coordinator does, so it had the same
liveness bug -- a task lost at site a (a node outage) while another site (b) could hold it
was never given to a again, though b never bid for it, and the simulator ended with it open
("policy left tasks open"). A marked site's bids are deferred, not refused: a gets it when
no unmarked site bids for it, and b, when it bids, gets it first. Both engines place alike:
as in the coordinator (test_schedule_failed_here_liveness.py), deferred bids wait in the
round in which the task reopened (the events before a round fall in it, as a site's report
falls in the coordinator's current round), and the round after is played for them."""

from __future__ import annotations

from types import SimpleNamespace

from agora.agents.domain import Cluster, Demand, Faults, Job, Node, NodeOutage, Site, Task, \
    Workload
from agora.agents.market import PRICE_MAX, Offer
from agora.agents.sim.engine import Simulator
from agora.agents.step.seams import SitePart
from agora.agents.step.simulation import MemoryClearinghouse, SimExecutor


def world() -> tuple[Simulator, MemoryClearinghouse]:
    """Sites o (2 cpus: never holds the job), a and b (8 cpus each); o's one-instance job of
    6 cpus arrives at 0; a/n0 is down in [1, 2)."""
    sites = (Site("o", (Node("o/n0", "o", cpu=2000, mem=4096),)),
             Site("a", (Node("a/n0", "a", cpu=8000, mem=16384),)),
             Site("b", (Node("b/n0", "b", cpu=8000, mem=16384),)))
    cluster = Cluster(sites=sites, faults=Faults(
        max_attempts=3, outages=(NodeOutage(at=1.0, until=2.0, node="a/n0"),)))
    job = Job("far", 0.0, "o", (Task("t", 100.0, Demand(6000, 1024), instances=1),))
    sim = Simulator(cluster, Workload(jobs=(job,)))
    ch = MemoryClearinghouse(sim, [SimExecutor(sim, i) for i in range(3)])
    sim.step_events()                                  # t=0: the job arrives
    return sim, ch


def bid(ch: MemoryClearinghouse, site: str, price: int = 5) -> None:
    ch.submit(SitePart(site, ch.round, 0, [Offer("far", "t", 1, price)]))


def lose_it_at_a(sim: Simulator, ch: MemoryClearinghouse):
    ts = sim.ledger.tasks[("far", "t")]
    bid(ch, "a")
    assert ch.clear_round() == 1 and ts.placements[0][0] == 1        # a/n0
    sim.step_events()                                  # t=1: a/n0 down, the run lost
    sim.step_events()                                  # t=2: a/n0 up again
    assert ts.open == 1 and ts.failed_nodes == (1,) and sim.cap.alive[1]
    return ts


def test_a_site_that_lost_a_task_gets_it_again_when_the_live_site_that_could_never_bids():
    sim, ch = world()
    ts = lose_it_at_a(sim, ch)
    rounds = 0
    for _ in range(20):                                # b decides, never bidding for it
        ch.submit(SitePart("b", ch.round, 0, []))
        bid(ch, "a")
        rounds += 1
        if ch.clear_round():
            break
    assert ts.running == 1 and ts.placements[0][0] == 1, (
        f"the task lost at a never ran again in 20 rounds ({ch.refused} offers refused): b, "
        f"which never bid for it, could hold it")
    assert rounds == 2                   # the first, in which it reopened, held a's bid back
    while sim.has_events:
        sim.step_events()
    assert sim.ledger.jobs["far"].outcome == "completed"


def test_the_site_that_lost_it_comes_after_one_that_did_not():
    sim, ch = world()
    ts = lose_it_at_a(sim, ch)
    bid(ch, "a", PRICE_MAX)
    assert ch.clear_round() == 0 and ch.held_back == 1              # the reopening round
    bid(ch, "a", PRICE_MAX)
    bid(ch, "b", 0)
    assert ch.clear_round() == 1 and ts.placements[0][0] == 2        # b/n0
    assert ch.held_back == 0


def test_the_agents_policy_plays_the_round_after_a_held_back_one(monkeypatch):
    """``AgentsPolicy.schedule`` plays rounds until one places nothing -- but not when a
    round placed nothing only because it held deferred bids back: the next is for them (a
    coordinator arms it)."""
    import agora.agents.step.simulation as simulation

    sim, ch = world()
    ts = lose_it_at_a(sim, ch)
    pol = simulation.AgentsPolicy.__new__(simulation.AgentsPolicy)   # its rounds, no network
    pol.sim, pol.clearinghouse, pol.recorder, pol.rng, pol.teacher = sim, ch, None, None, None
    pol.agents, pol.rounds = [], 0

    def act(agents, info, rng=None, teacher=None):   # a bids for it every round, b never
        bid(ch, "a")
        return [SimpleNamespace(obs=SimpleNamespace(active=True))]

    monkeypatch.setattr(simulation, "act", act)
    pol.schedule(sim.begin_decision())
    assert pol.rounds == 2 and ts.running == 1 and ts.placements[0][0] == 1

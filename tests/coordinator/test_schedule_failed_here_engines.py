"""Both engines place alike under the "failed here" rule's deferral: the coordinator's
replicated schedule (``ScheduleState``: admission, rounds, ends and node states as the sites
report them) and the simulation engine's clearinghouse (``MemoryClearinghouse`` over the
simulator's ledger, the simulator's own ends and outages), driven through the same rounds of
random bids with random ends between them -- completed, failed, lost with a node that went
down and came back -- hold the same ledger after every step: the same instances running on
the same nodes, the same attempts spent and sites marked. A deferred bid waits in the round in
which its task reopened in both (the coordinator arms the next round for it, the
simulation engine plays it)."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from agora.agents.domain import Workload
from agora.agents.market import PRICE_MAX, Offer
from agora.agents.sim.engine import Simulator
from agora.agents.step.seams import SitePart
from agora.agents.step.simulation import MemoryClearinghouse, SimExecutor
from agora.protos.agora.v1 import coordinator_pb2 as pb
from tests.coordinator.state_helpers import (SETTINGS, Run, cluster, decide, end, job, report,
                                             submit, vote)

SITES = "abc"


def jobs(r: random.Random):
    out = []
    for j in range(r.randint(1, 4)):
        out.append(job(f"j{j}", r.choice(SITES), n=r.randint(1, 3), dag=False,
                       cpu=r.choice([1000, 3000, 6000, 12000])))
    return out


def ledger_state(ledger, node_names):
    return sorted((ts.key, bytes(ts.states), sorted((i, node_names[n]) for i, (n, _) in
                                                    ts.placements.items()),
                   sorted(ts.failures.items()), [node_names[n] for n in ts.failed_nodes])
                  for ts in ledger.tasks.values())


@SETTINGS
@given(seed=st.integers(0, 10**9), rounds=st.integers(2, 12))
def test_the_coordinator_and_the_simulation_engine_place_alike(seed, rounds):
    r = random.Random(seed)
    cl = cluster()
    js = jobs(r)
    coord = Run()
    cs = coord.state
    coord("operator", submit(*js))
    sim = Simulator(cl, Workload(jobs=tuple(js)))
    sim.step_events()                                   # every job arrives at 0
    ch = MemoryClearinghouse(sim, [SimExecutor(sim, i) for i in range(len(SITES))])
    names = cs.node_names
    assert ledger_state(cs.ledger, names) == ledger_state(sim.ledger, names)
    for _ in range(rounds):
        # the round: every site's bids for open tasks (ties likely: prices 0..2, or the most)
        rnd = cs.round
        open_tasks = sorted((ts for ts in cs.ledger.tasks.values() if ts.open),
                            key=lambda t: t.rank)
        parts = {s: [(*ts.key, r.randint(1, ts.open), r.choice([0, 1, 2, PRICE_MAX]))
                     for ts in open_tasks if r.random() < 0.6] for s in SITES}
        for s in SITES:
            coord(f"site:{s}", decide(s, rnd, *parts[s]))
            ch.submit(SitePart(s, ch.round, 0, [Offer(*b) for b in parts[s]]))
        if cs.round == rnd and cs.armed:
            for i in range(2):
                coord(f"replica:{i}", vote(rnd))

        def cleared_alike(rnd: int) -> None:
            """A round the coordinator closed (its decisions stand until it does: a
            disarmed round closes on what arms it) is cleared in the simulation engine at
            the same point."""
            if cs.round != rnd:
                ch.clear_round()
                if ch.held_back:
                    assert cs.armed           # the round after is for the held-back bids
            assert ledger_state(cs.ledger, names) == ledger_state(sim.ledger, names)
            assert cs.reopened == sim.reopened

        cleared_alike(rnd)
        if cs.round == rnd:
            # disarmed: the decisions stand, and what arms it next closes it with them --
            # between the ends below, which the simulation engine never has between a
            # round's decisions and its clearing (nor its admission: at the clearing). The
            # sites take them back, so that such a round clears nothing in either engine.
            for s in SITES:
                coord(f"site:{s}", decide(s, rnd))
                ch.submit(SitePart(s, ch.round, 0, []))
        # then ends, reported between rounds (they fall in the next round in both)
        running = sorted(((ts, i) for ts in sim.ledger.tasks.values() for i in ts.placements),
                         key=lambda p: (p[0].rank, p[1]))
        downs = set()
        for ts, i in running:
            x = r.random()
            if x > 0.5 or i not in ts.placements:
                continue
            node = ts.placements[i][0]
            site = cs.node_site_names[node]
            if x < 0.1:                       # the node goes down and comes back: lost
                if node not in downs:
                    downs.add(node)
                    for up in (False, True):
                        rnd = cs.round
                        coord(f"site:{site}", report(site, nodes=[
                            pb.NodeState(node=names[node], up=up)]))
                        if up:
                            sim._up([node])
                        else:
                            sim._down([node], False)
                        cleared_alike(rnd)
                continue
            kind = "failed" if x < 0.3 else "completed"
            rnd = cs.round
            coord(f"site:{site}", report(site, end(*ts.key, i, kind,
                                                   run=cs.ledger.tasks[ts.key].placed_at[i])))
            a = next(a for a in sim.node_running[node] if a.task is ts and a.instance == i)
            a.fails = kind == "failed"
            sim._end(a)
            cleared_alike(rnd)

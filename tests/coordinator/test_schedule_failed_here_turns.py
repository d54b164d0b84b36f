"""The marked sites' turns (``LedgerBook.turn``, a review of the first version, whose turn
passed with every stopped run, ``stops``): a site that stops ``n_sites`` runs between two
clearings -- lost, or failed -- does not keep its turn, and where only marked sites can hold
a task the price does not decide among them either. Sites a=0, b=1, c=2."""

from __future__ import annotations

import pytest

from agora.agents.market import PRICE_MAX
from tests.coordinator.state_helpers import (Run, close, decide, end, job, race_a_loser, report,
                                             site_of, submit)


def _running_at(r, ts, where):
    return [i for i in sorted(ts.placements) if site_of(r, ts, i) == where]


@pytest.mark.parametrize("kind", ["lost", "failed"])
def test_a_site_that_stops_n_sites_runs_at_once_does_not_keep_its_turn(kind):
    """a's job of 3 instances; a (origin, live, room, unmarked) never bids for it, so b's
    and c's bids are deferred once marked. c, once first, wins every open instance and
    reports its 3 runs stopped in one message: with the turn passing per stopped run it
    moved by 3 = n_sites and c was first again, for good. Lost (no attempt spent): b,
    honest and bidding every round, never got an instance. Failed (one node of c gone bad,
    or a lying site): c spent every attempt of a's job, b never had a turn. It passes once
    per clearing now."""
    r = Run()
    st = r.state
    r("site:a", submit(job("v", "a", n=3, dag=False)))
    ts = st.ledger.tasks[("v", "map")]
    rnd = st.round
    r("site:a", decide("a", rnd))
    r("site:b", decide("b", rnd, ("v", "map", 1, 5)))
    r("site:c", decide("c", rnd, ("v", "map", 2, PRICE_MAX)))
    close(r, rnd)
    assert sorted(site_of(r, ts, i) for i in ts.placements) == ["b", "c", "c"]
    # b flakes once, honestly (marked); c reports one of its two lost (marked)
    [ib] = _running_at(r, ts, "b")
    r("site:b", report("b", end("v", "map", ib, "failed", run=ts.placed_at[ib])))
    ic = _running_at(r, ts, "c")[0]
    r("site:c", report("c", end("v", "map", ic, "lost", run=ts.placed_at[ic])))
    b_won = 0
    for _ in range(30):
        mine = _running_at(r, ts, "c")
        if len(mine) == 3:           # c holds every instance: all three stop at once
            r("site:c", report("c", *[end("v", "map", i, kind, run=ts.placed_at[i])
                                      for i in mine]))
        for i in _running_at(r, ts, "b"):  # b runs what it wins, honestly
            r("site:b", report("b", end("v", "map", i, run=ts.placed_at[i])))
        if st.ledger.jobs["v"].outcome != "pending":
            break
        rnd = st.round
        r("site:a", decide("a", rnd))
        r("site:b", decide("b", rnd, *([("v", "map", 1, 5)] if ts.open else [])))
        r("site:c", decide("c", rnd, *([("v", "map", ts.open, PRICE_MAX)] if ts.open else [])))
        close(r, rnd)
        b_won += len(_running_at(r, ts, "b"))
    assert b_won > 0, (f"in 30 rounds b (honest, marked, bidding every round) never won an "
                       f"instance; turns={ts.turns}, failures {ts.failures}, job "
                       f"{st.ledger.jobs['v'].outcome}: {st.ledger.jobs['v'].reason}")


def test_where_only_marked_sites_can_hold_the_task_they_take_turns_not_the_price():
    """b's job needs 6 cpus: a (8) and c (16) can hold it, b (4, the origin) never can. a
    flakes once, honestly (marked); c, unmarked, then outbids and reports its run lost
    (marked too). Every live site that could hold it is marked, so nothing is deferred
    (``failed_here``: 'where no other site could hold it, the site stands with the
    others'): c's price won every round, reporting each run lost (no attempt spent), and
    a, which would run it, never got it. Marked bids take turns, deferred or not, now."""
    r = Run()
    st = r.state
    r("site:b", submit(job("far", "b", n=1, dag=False, cpu=6000)))
    ts = st.ledger.tasks[("far", "map")]
    rnd = st.round
    r("site:a", decide("a", rnd, ("far", "map", 1, 5)))
    r("site:b", decide("b", rnd))
    r("site:c", decide("c", rnd))
    close(r, rnd)
    assert site_of(r, ts) == "a"
    r("site:a", report("a", end("far", "map", 0, "failed", run=ts.placed_at[0])))
    won = race_a_loser(r, ts, honest="a", loser="c", quiet="b")
    assert st.ledger.jobs["far"].outcome == "completed", (
        f"in 30 rounds c won b's job {won['c']} times, reporting each run lost, a "
        f"{won['a']} times; turns={ts.turns}, failed_nodes={ts.failed_nodes}")

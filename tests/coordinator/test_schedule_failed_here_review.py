"""What the deferral of a failed-here site's bids (``LedgerBook.deferred``) must not let a
marked site do that the refusal did not (a second review): spend every attempt of another
site's job while the sites where it did not fail are only busy; nor keep an honestly failed
site from a task only marked sites can hold (the marked sites take turns:
``LedgerBook.turn``)."""

from __future__ import annotations

from agora.agents.market import PRICE_MAX
from tests.coordinator.state_helpers import (Run, close, decide, end, job, race_a_loser, report,
                                             site_of, submit)


def test_a_marked_site_cannot_spend_every_attempt_while_the_unmarked_one_is_only_busy():
    """b's job needs 6 cpus: a (8) and c (16) can hold it, b (4) never can. a is busy with
    its own work for now (both its nodes full): it cannot bid for b's job, it will once
    free. c outbids and reports every run of it failed. Refused 'failed here' (before
    290c497), c spent one attempt and b's job waited for a; deferred, c gets it again in
    every round after the one that reopened it -- nobody unmarked could bid -- and spends
    every attempt: b's job fails though a, live and able to hold it, was only busy (the
    first review's 'a flaky site took every retry')."""
    r = Run()
    st = r.state
    r("site:a", submit(job("busy", "a", n=2, dag=False, cpu=8000)))
    r("site:b", submit(job("far", "b", n=1, dag=False, cpu=6000)))
    busy, ts = st.ledger.tasks[("busy", "map")], st.ledger.tasks[("far", "map")]
    rnd = st.round
    r("site:a", decide("a", rnd, ("busy", "map", 2, 5)))
    r("site:b", decide("b", rnd))
    r("site:c", decide("c", rnd, ("far", "map", 1, PRICE_MAX)))
    close(r, rnd)
    assert busy.running == 2 and site_of(r, ts) == "c"        # a is full from now on
    for _ in range(12):
        if ts.running and site_of(r, ts) == "c":
            r("site:c", report("c", end("far", "map", 0, "failed", run=ts.placed_at[0])))
        if st.ledger.jobs["far"].outcome != "pending":
            break
        rnd = st.round
        r("site:a", decide("a", rnd))                         # full: nothing to bid with
        r("site:b", decide("b", rnd))
        r("site:c", decide("c", rnd, *([("far", "map", 1, PRICE_MAX)] if ts.open else [])))
        close(r, rnd)
    assert st.ledger.jobs["far"].outcome == "pending", (
        f"c spent every attempt of b's job ({ts.failures}) while a, which can hold it, was "
        f"busy: {st.ledger.jobs['far'].reason}")
    # a is free again (its ends come before its next decision, as an agent's do: the
    # round may close on the decisions it made while full), then bids for b's job; c goes
    # on failing whatever it wins
    for i in (0, 1):
        r("site:a", report("a", end("busy", "map", i, run=busy.placed_at[i])))
    for _ in range(6):
        if ts.running and site_of(r, ts) == "c":
            r("site:c", report("c", end("far", "map", 0, "failed", run=ts.placed_at[0])))
        if not ts.open:
            break
        rnd = st.round
        r("site:a", decide("a", rnd, ("far", "map", 1, 1)))
        r("site:b", decide("b", rnd))
        r("site:c", decide("c", rnd, ("far", "map", 1, PRICE_MAX)))
        close(r, rnd)
    assert ts.running == 1 and site_of(r, ts) == "a", ts.failures
    r("site:a", report("a", end("far", "map", 0, run=ts.placed_at[0])))
    assert st.ledger.jobs["far"].outcome == "completed"

def test_a_marked_site_reporting_lost_cannot_keep_an_honest_marked_site_from_the_task():
    """The liveness 290c497 adds, denied: a's job, a (its origin) never bids for it. Its run
    failed once at b (an honest flake: b is marked). c outbids b: once marked too (it
    reports every run it wins lost, which spends no attempt), c and b are deferred alike and
    c's price won every round that did not hold them -- a round after each loss. b, which
    would run it, never got it: the job neither ran nor ended, as when both were refused.
    Now the marked sites take turns, the turn passing on with each stopped run."""
    r = Run()
    st = r.state
    r("site:a", submit(job("v", "a", n=1, dag=False)))
    ts = st.ledger.tasks[("v", "map")]
    rnd = st.round
    r("site:a", decide("a", rnd))
    r("site:b", decide("b", rnd, ("v", "map", 1, 5)))
    r("site:c", decide("c", rnd))
    close(r, rnd)
    r("site:b", report("b", end("v", "map", 0, "failed", run=ts.placed_at[0])))
    won = race_a_loser(r, ts, honest="b", loser="c", quiet="a")
    assert st.ledger.jobs["v"].outcome == "completed", (
        f"in 30 rounds c won a's job {won['c']} times, reporting each run lost, b "
        f"{won['b']} times")

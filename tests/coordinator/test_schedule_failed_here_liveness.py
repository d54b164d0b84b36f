"""The "failed here" rule's liveness, and what keeps it safe (tests/coordinator/
test_schedule_failed_here.py has the rule's first two reviews):

- a job that only sites other than its origin can hold waited for good: once an instance
  failed (or was lost) at site c, c's bids for it were refused as long as another live site
  (a) could hold it -- whether or not a ever bid for it (a policy that never picks it, an
  agent alive but silent for that task). A marked site's bids are now *deferred*: they are
  cleared after every unmarked site's bids of the round, so a marked site gets what no
  unmarked site's bid took that round, and never ahead of one;
- deferral alone would reopen the "lost" exploit: a site that won an instance waits until
  the others decided for the round (the instance runs at it, so they cannot bid for it),
  then reports it lost and bids for it again in the same round, where nobody unmarked bid
  for it -- and wins it every round, for good. A marked site's deferred bid is therefore
  not cleared in the round in which a stop marking some site reopened the task: the other
  sites always get one whole round of decisions seeing it open first."""

from __future__ import annotations

import pytest

from agora.agents.market import PRICE_MAX
from agora.coordinator.schedule_state import ScheduleState
from tests.coordinator.state_helpers import (Run, close, cluster, decide, end, job, report,
                                             site_of, submit)


@pytest.mark.parametrize("how", ["failed", "lost"])
def test_a_job_only_other_sites_can_hold_runs_again_when_the_live_one_never_bids(how):
    """b's job needs 6 cpus: only a (8) and c (16) hold it, b (4) never can. It fails (or is
    lost) at c; a stays live and decides every round but never bids for it. c's bids were
    refused 'failed here' for good, and the job never ran again."""
    r = Run()
    st = r.state
    r("site:b", submit(job("far", "b", n=1, dag=False, cpu=6000)))
    ts = st.ledger.tasks[("far", "map")]
    rnd = st.round
    r("site:a", decide("a", rnd))
    r("site:c", decide("c", rnd, ("far", "map", 1, 5)))
    close(r, rnd)
    assert ts.running == 1 and site_of(r, ts) == "c"
    r("site:c", report("c", end("far", "map", 0, how, reason="exit 1", run=ts.placed_at[0])))
    assert ts.open == 1 and ts.failed_nodes                 # c is marked for it
    for _ in range(20):                                     # twenty rounds of a saying nothing
        rnd = st.round
        r("site:a", decide("a", rnd))
        r("site:b", decide("b", rnd))
        r("site:c", decide("c", rnd, ("far", "map", 1, 5)))
        close(r, rnd)
        if ts.running:
            break
    assert ts.running == 1 and site_of(r, ts) == "c", (
        f"b's job never ran again in 20 rounds: c's bids refused 'failed here' "
        f"{st.rejected['bid.failed_here']} times while a, which never bid for it, stayed "
        f"live ({dict(st.rejected)})")


def test_a_marked_sites_bid_comes_after_an_unmarked_ones_and_never_in_the_reopening_round():
    """c, marked, bids the highest price: in the round in which its loss reopened the task
    its bid is not cleared (a had not seen it open), and in the next one a, which bids the
    lowest price but is not marked, gets it; c got it in test 1 only because a never bid."""
    r = Run()
    st = r.state
    r("site:b", submit(job("far", "b", n=1, dag=False, cpu=6000)))
    ts = st.ledger.tasks[("far", "map")]
    rnd = st.round
    r("site:c", decide("c", rnd, ("far", "map", 1, 5)))
    close(r, rnd)
    r("site:c", report("c", end("far", "map", 0, "lost", run=ts.placed_at[0])))
    rnd = st.round                                  # the round in which it reopened
    r("site:a", decide("a", rnd))
    r("site:c", decide("c", rnd, ("far", "map", 1, PRICE_MAX)))
    close(r, rnd)
    assert st.round == rnd + 1 and ts.open == 1 and st.armed
    assert st.rejected["clearing.failed_here"] == 1
    rnd = st.round
    r("site:a", decide("a", rnd, ("far", "map", 1, 0)))
    r("site:c", decide("c", rnd, ("far", "map", 1, PRICE_MAX)))
    close(r, rnd)
    assert ts.running == 1 and site_of(r, ts) == "a"
    assert st.rejected["clearing.failed_here"] == 2
    r("site:a", report("a", end("far", "map", 0, run=ts.placed_at[0])))
    assert st.ledger.jobs["far"].outcome == "completed" and ts.failures == {}


def test_a_site_that_reports_lost_after_the_others_decided_does_not_win_again():
    """The exploit deferral alone would reopen: b outbids a and c once, then in every round
    waits until they decided (the instance runs at b: they cannot bid for it), reports it
    lost and bids for it again, alone. A bid of a marked site is not cleared in the round in
    which the task reopened: a and c bid for it in the next round and get it."""
    r = Run()
    st = r.state
    r("site:a", submit(job("v", "a", n=1, dag=False)))
    # work nobody bids for: every site stays expected, so no round closes before all decide
    r("site:c", submit(job("idle", "c", n=1, dag=False)))
    ts = st.ledger.tasks[("v", "map")]
    won_by_b = 0
    restored = False
    for k in range(10):
        rnd = st.round
        honest = [("v", "map", 1, 5)] if ts.open else []
        r("site:a", decide("a", rnd, *honest))
        r("site:c", decide("c", rnd, *honest))
        if ts.running and site_of(r, ts) == "b":
            # b: the run "lost", and a bid for it at once, after a and c decided
            r("site:b", report("b", end("v", "map", 0, "lost", run=ts.placed_at[0])))
            if not restored:                   # the round's state survives a snapshot
                snap = st.snapshot()
                fresh = ScheduleState(cluster(), n_replicas=4)
                fresh.restore(snap)
                assert fresh.snapshot() == snap
                r.state = st = fresh
                ts = st.ledger.tasks[("v", "map")]
                restored = True
        assert st.round == rnd                 # a and c decided; the round waits for b
        r("site:b", decide("b", rnd, ("v", "map", 1, PRICE_MAX)))
        assert st.round == rnd + 1             # b's decision closed it
        if ts.running and site_of(r, ts) == "b":
            won_by_b += 1
        if ts.running and site_of(r, ts) != "b":
            break
    assert restored
    assert won_by_b == 1, f"b won a's instance {won_by_b} times, reporting it lost each time"
    assert ts.running == 1 and site_of(r, ts) == "a"
    assert ts.failures == {}


def test_a_site_that_fails_what_it_wins_cannot_spend_the_attempts_while_others_bid():
    """The first review's exploit under deferral: c outbids the others and reports every
    run it wins failed. Once marked it wins only what nobody unmarked bid for; a and b bid
    every round, so c spends one attempt of a's job, not max_attempts."""
    r = Run()
    st = r.state
    r("site:a", submit(job("v", "a", n=1, dag=False)))
    ts = st.ledger.tasks[("v", "map")]
    for _ in range(6):
        rnd = st.round
        if ts.open:
            r("site:a", decide("a", rnd, ("v", "map", 1, 5)))
            r("site:b", decide("b", rnd, ("v", "map", 1, 5)))
            r("site:c", decide("c", rnd, ("v", "map", 1, PRICE_MAX)))
            close(r, rnd)
        where = site_of(r, ts)
        if where == "c":
            r("site:c", report("c", end("v", "map", 0, "failed", run=ts.placed_at[0])))
        else:
            r(f"site:{where}", report(where, end("v", "map", 0, run=ts.placed_at[0])))
            break
    assert ts.done == 1 and st.ledger.jobs["v"].outcome == "completed"
    assert ts.failures == {0: 1}

"""The "failed here" rule (a site where an instance of a task failed is not given it again
while a site where none failed can take it: docs/security.md) against a hostile site, from
a review:

- a site's own job was starved for good by another site that merely stayed live: once an
  instance failed at its origin a, a's bids were refused as long as some live site could
  hold it when empty -- whether or not that site ever bid for it. The origin now may retry
  its own job on its own nodes (charged what its other offers left);
- the rule was bypassed by reporting the end lost (or the node down and up) instead of
  failed: a lost run spent no attempt and marked nothing, so a site that outbid the others
  won another site's instance every round, lost it, and won it again. A lost run now marks
  its site as a failure does (still no attempt spent)."""

import pytest

from agora.agents.market import PRICE_MAX
from agora.protos.agora.v1 import coordinator_pb2 as pb
from tests.coordinator.state_helpers import (Run, decide, end, job, lapse, report, submit,
                                             vote)


def _setup() -> Run:
    r = Run()
    # c goes away (f+1 lapse votes): b is the only other live site
    heard = r.state.sites["c"].last_heard
    for i in range(2):
        r(f"replica:{i}", lapse("c", heard))
    assert r.state.sites["c"].lapsed
    r("site:a", submit(job("own", "a", n=1, dag=False)))
    r("site:b", decide("b", r.state.round))             # b never bids for a's job
    r("site:a", decide("a", r.state.round, ("own", "map", 1, 5)))
    ts = r.state.ledger.tasks[("own", "map")]
    assert ts.running == 1
    run = ts.placed_at[0]
    r("site:a", report("a", end("own", "map", 0, "failed", reason="exit 1", run=run)))
    assert ts.open == 1 and ts.failures == {0: 1}      # one attempt of 3 spent, honestly
    return r


def test_a_live_site_that_never_bids_cannot_keep_the_origin_from_retrying_its_own_job():
    r = _setup()
    ts = r.state.ledger.tasks[("own", "map")]
    for _ in range(20):                                # twenty rounds of b saying nothing
        rnd = r.state.round
        r("site:b", decide("b", rnd))
        r("site:a", decide("a", rnd, ("own", "map", 1, 5)))
        if r.state.round == rnd:                       # the round keeper's votes close it
            for i in range(2):
                r(f"replica:{i}", vote(rnd))
        if ts.running:
            break
    assert ts.running == 1 or ts.done == 1, (
        f"a's own job never ran again in 20 rounds: {r.state.rejected['bid.failed_here']} "
        f"of a's bids refused 'failed here' while b, which never bid for it, stayed live")


@pytest.mark.parametrize("how", ["end_lost", "node_down_up"])
def test_a_site_that_keeps_losing_what_it_won_does_not_keep_winning_it(how):
    r = Run()
    st = r.state
    r("site:a", submit(job("v", "a", n=1, dag=False)))
    ts = st.ledger.tasks[("v", "map")]
    won_by_b = 0
    for _ in range(10):
        rnd = st.round
        r("site:a", decide("a", rnd, ("v", "map", 1, 5)))      # the origin bids honestly
        r("site:c", decide("c", rnd, ("v", "map", 1, 5)))      # and so does c
        r("site:b", decide("b", rnd, ("v", "map", 1, PRICE_MAX)))
        if st.round == rnd:
            for i in range(2):
                r(f"replica:{i}", vote(rnd))
        node, _ = ts.placements[0]
        if st.node_site_names[node] != "b":
            break
        won_by_b += 1
        if how == "end_lost":
            r("site:b", report("b", end("v", "map", 0, "lost", reason="oops",
                                        run=ts.placed_at[0])))
        else:
            r("site:b", report("b", nodes=[pb.NodeState(node="b/n0", up=False)]))
            r("site:b", report("b", nodes=[pb.NodeState(node="b/n0", up=True)]))
        assert ts.open == 1 and ts.failures == {}              # nothing spent, nothing marked
    assert won_by_b <= 1, (f"b won a's instance {won_by_b} rounds running and lost it each "
                           f"time ({how}); a and c, which bid for it, never got it")

"""Rounds of the replicated schedule: a round closes once every site that can take open work
has decided, or on f+1 distinct replicas' votes, never on a site's say (no site moves the
clock); work that opens during a round waits for the next; a round that allocates nothing
disarms. The clearing is agents.market's over the one ledger: equal prices go to the origin
site, a higher price beats it, GPU work goes to the GPU node."""

from __future__ import annotations

import struct

from hypothesis import given, settings
from hypothesis import strategies as st
from agora.agents import market
from agora.coordinator import round_commands
from agora.protos.agora.v1 import coordinator_pb2 as pb
from tests.coordinator.state_helpers import Run, decide, job, submit, vote


# ---- rounds ----

def test_a_round_closes_once_every_site_that_can_take_the_work_decided():
    r = Run()
    r("site:a", submit(job("j0", n=2, dag=False, cpu=6000)))     # fits a and c, not b (4 cores)
    assert r.state.armed and r.state.expected_sites() == ["a", "c"]
    out = r("site:a", decide("a", 0, ("j0", "map", 1, 5)))
    assert r.state.round == 0 and not out.allocations             # c has not decided
    assert r("site:b", decide("b", 0)).accepted == 0 and r.state.round == 0
    out = r("site:c", decide("c", 0, ("j0", "map", 2, 9)))
    assert r.state.round == 1
    assert [(a.site, a.instance_begin, a.instance_end, a.round) for a in out.allocations] == \
        [("c", 0, 2, 0)]                                          # the higher price wins both


def test_work_that_opens_during_a_round_waits_for_the_next():
    r = Run()
    r("site:a", submit(job("j0", n=1, dag=False)))
    for s in "ab":
        r(f"site:{s}", decide(s, 0, ("j0", "map", 1, 1)))
    r("operator", submit(job("late", "c", n=1, dag=False)))      # c can take it, a new site
    assert r.state.round == 0 and "c" in r.state.expected_sites()
    out = r("site:c", decide("c", 0))                            # c passes: the round closes
    assert r.state.round == 1 and len(out.allocations) == 1
    assert r.state.ledger.tasks[("late", "map")].open == 1       # ... for round 1


def test_a_sites_new_decision_replaces_its_earlier_one_in_the_round():
    r = Run()
    r("site:a", submit(job("j0", n=1, dag=False), job("j1", n=1, dag=False)))
    r("site:a", decide("a", 0, ("j0", "map", 1, 1)))
    r("site:a", decide("a", 0, ("j1", "map", 1, 1)))
    r("site:b", decide("b", 0))
    out = r("site:c", decide("c", 0))
    assert [a.job_id for a in out.allocations] == ["j1"]


def test_a_round_that_allocates_nothing_disarms_until_something_changes():
    r = Run()
    r("site:a", submit(job("j0", n=1, dag=False)))
    for s in "abc":
        r(f"site:{s}", decide(s, 0))                              # everyone passes
    assert r.state.round == 1 and not r.state.armed
    assert not r.state.expected_sites() or not r.state.armed
    r("operator", submit(job("j1", n=1, dag=False)))
    assert r.state.armed


def test_a_round_closed_before_a_site_decided_stays_armed_for_it():
    """A review: a round closed on the replicas' votes while an expected site was late, and
    that allocated nothing, disarmed the next -- the late site's bid for it closed nothing,
    close votes were refused as idle, and work only that site could hold waited for an
    unrelated event."""
    r = Run()
    r("site:c", submit(job("x", "c", n=1, dag=False, cpu=12000)))   # only c (16 cores) fits
    assert r.state.expected_sites() == ["c"]
    r("site:a", decide("a", 0))                   # a's part (it carried a report): no bid
    r("replica:1", vote(0))
    r("replica:2", vote(0))                       # c is late: the round times out
    assert r.state.round == 1 and not r.state.armed
    out = r("site:c", decide("c", 0, ("x", "map", 1, 5)))    # c's decision, too late
    assert out.rejections[0].field == "command.site_round.round"
    assert r.state.armed                          # armed again for c
    r("site:c", decide("c", 1, ("x", "map", 1, 5)))
    assert r.state.ledger.tasks[("x", "map")].running == 1


def test_a_late_decision_with_a_report_re_arms_once_for_a_site_that_never_saw_the_round():
    """A review: an agent that never saw round 0 armed (armed and closed in one watch batch,
    or its loop stalled past the timeout) sends its decision for round 0 late, with what it
    reports (here an idle node going down, which arms nothing): the report applies, the
    decision is refused as a stale round, and round 1 is armed for it -- once: a copy of
    the part (sent again, not confirmed) while round 1 is armed changes no round."""
    r = Run()
    r("site:c", submit(job("x", "c", n=1, dag=False, cpu=12000)))   # only c fits
    r("site:a", decide("a", 0))
    r("replica:1", vote(0))
    r("replica:2", vote(0))                       # c never saw round 0: it timed out
    assert r.state.round == 1 and not r.state.armed
    late = decide("c", 0, ("x", "map", 1, 5), nodes=[pb.NodeState(node="c/n1", up=False)])
    out = r("site:c", late)
    assert out.rejections[0].field == "command.site_round.round"
    assert r.state.node_index["c/n1"] in r.state.nodes_down
    assert r.state.round == 1 and r.state.armed
    armed = (r.state.round, r.state.armed, r.state.armed_version)
    assert r("site:c", late).rejections[0].field == "command.site_round.round"
    assert (r.state.round, r.state.armed, r.state.armed_version) == armed
    r("site:c", decide("c", 1, ("x", "map", 1, 5)))
    assert r.running("x", "map") == [0] and r.state.round == 2


def test_a_site_that_never_decides_does_not_keep_rounds_going():
    """A second review: keeping the next round armed for every site late at a close let a
    site that heartbeats and never decides (a broken agent, a faulty site) keep empty rounds
    -- each a decision of every other site and f+1 votes -- going for good."""
    r = Run()
    r("site:c", submit(job("x", "c", n=1, dag=False, cpu=12000)))   # only c fits
    r("site:a", decide("a", 0))
    r("replica:1", vote(0))
    r("replica:2", vote(0))
    assert r.state.round == 1 and not r.state.armed
    assert r("replica:1", vote(1)).rejections[0].field == "command.close_round.round"


def test_work_that_reopens_as_a_round_closes_gets_an_armed_round():
    """A review: a site lapsed by the command that also closed the round (its instance
    reopened in that command) left the next round disarmed though a and c had room."""
    from tests.coordinator.state_helpers import lapse
    r = Run()
    r("site:b", submit(job("w", "b", n=1, dag=False)))
    for s, bid in (("a", ()), ("b", (("w", "map", 1, 5),)), ("c", ())):
        r(f"site:{s}", decide(s, 0, *bid))
    assert r.state.ledger.tasks[("w", "map")].running == 1 and r.state.round == 1
    r("site:b", submit(job("y", "b", n=1, dag=False)))
    r("site:a", decide("a", 1))
    r("site:c", decide("c", 1))                   # b, expected, goes silent
    heard = r.state.sites["b"].last_heard
    r("replica:1", lapse("b", heard))
    r("replica:2", lapse("b", heard))             # w lost and reopened; round 1 closes
    assert r.state.round == 2 and r.state.armed
    r("site:a", decide("a", 2, ("w", "map", 1, 5), ("y", "map", 1, 5)))
    r("site:c", decide("c", 2))
    assert r.state.ledger.tasks[("w", "map")].running == 1


def test_work_opened_after_the_sites_decided_gets_the_next_round():
    """Work opened while a round was armed (the sites decided without it) is not stranded
    when that round allocates nothing: the next round is armed."""
    r = Run()
    r("site:a", submit(job("j0", n=1, dag=False, cpu=6000)))   # fits a and c
    r("site:a", decide("a", 0))
    r("operator", submit(job("j1", n=1, dag=False, cpu=6000)))  # opens during round 0
    r("site:c", decide("c", 0))                                 # round 0: nothing placed
    assert r.state.round == 1 and r.state.armed
    for s in "abc":
        r(f"site:{s}", decide(s, 1))                            # nothing new after it
    assert r.state.round == 2 and not r.state.armed


def test_only_f_plus_1_distinct_replicas_close_a_round_early():
    r = Run()
    r("site:a", submit(job("j0", n=2, dag=False)))
    r("site:a", decide("a", 0, ("j0", "map", 2, 1)))
    before = r.state.schedule_bytes()
    out = r("site:a", vote(0))                                    # a site may not vote
    assert out.rejections[0].field == "command.close_round"
    assert "may not vote" in out.rejections[0].reason
    assert r("operator", vote(0)).rejections and r.state.schedule_bytes() == before
    assert r("replica:7", vote(0)).rejections                     # no such replica
    r("replica:1", vote(0))
    r("replica:1", vote(0))                                       # the same replica twice
    assert r.state.round == 0
    assert r("replica:2", vote(5)).rejections                     # another round
    out = r("replica:3", vote(0))
    assert r.state.round == 1 and [a.site for a in out.allocations] == ["a"]


def test_no_site_can_move_the_clock_or_close_rounds_for_the_others():
    """What a Tick(at_s=1e300) once did: the command no longer exists, and its bytes are
    refused whole, changing nothing."""
    r = Run()
    r("site:a", submit(job("j0", n=1, dag=False)))
    r("site:a", decide("a", 0, ("j0", "map", 1, 1)))
    before = r.state.schedule_bytes()
    tick = bytes([0x08, 0x00, 0x11]) + struct.pack("<d", 1e300)   # Tick{round 0, at_s 1e300}
    old_tick = bytes([0x2A, len(tick)]) + tick                     # as Command field 5
    out = r("site:a", old_tick)
    assert out.rejections and "unknown field" in out.rejections[0].reason
    assert r.state.schedule_bytes() == before and r.state.round == 0
    for s in "bc":
        r(f"site:{s}", decide(s, 0))
    assert r.state.round == 1                                    # rounds go on as before


# ---- clearing ----

def test_clearing_is_agents_market_clear_over_the_ledger(monkeypatch):
    assert round_commands.clear is market.clear
    seen = []

    def spy(bids, book):
        seen.append((len(bids), type(book).__name__))
        return market.clear(bids, book)

    monkeypatch.setattr(round_commands, "clear", spy)
    r = Run()
    r("site:a", submit(job("j0", n=2, dag=False)))
    r("site:a", decide("a", 0, ("j0", "map", 2, 5)))
    r("site:b", decide("b", 0))
    r("site:c", decide("c", 0, ("j0", "map", 2, 9)))
    assert seen == [(2, "LedgerBook")]


def test_equal_prices_go_to_the_origin_site_a_higher_price_beats_it():
    r = Run()
    r("site:c", submit(job("j", "c", n=4, dag=False), job("k", "c", n=4, dag=False)))
    r("site:a", decide("a", 0, ("j", "map", 4, 1), ("k", "map", 4, 2)))
    r("site:b", decide("b", 0))
    out = r("site:c", decide("c", 0, ("j", "map", 4, 1), ("k", "map", 4, 1)))
    got = {(a.job_id, a.site): a.instance_end - a.instance_begin for a in out.allocations}
    assert got == {("j", "c"): 4, ("k", "a"): 4}


def test_gpu_work_goes_to_the_gpu_node():
    r = Run()
    r("site:a", submit(job("g", n=3, gpu=500, dag=False)))
    out = r("site:a", decide("a", 0, ("g", "map", 3, 1)))
    assert {a.node for a in out.allocations} == {"a/g0"}
    assert sum(a.instance_end - a.instance_begin for a in out.allocations) == 3


@settings(max_examples=300, deadline=None)
@given(tail=st.text(max_size=4))
def test_a_replica_vote_is_counted_only_under_the_replicas_own_names(tail):
    """A review: ``replica:²`` passed ``isdigit`` and made ``int`` raise out of a command's
    execution (whose contract is never to raise); ``replica:01`` and ``replica:١`` counted as
    replica 1. Only ``replica:0`` .. ``replica:<n-1>`` vote, and a vote under any other name
    is refused naming the field."""
    r = Run()
    r("site:a", submit(job("j", n=2, dag=False)))
    r("site:a", decide("a", 0, ("j", "map", 2, 1)))
    out = r(f"replica:{tail}", vote(0))
    if tail in ("0", "1", "2", "3"):
        assert out.accepted == 1 and r.state.close_votes == {int(tail)}
    else:
        assert out.accepted == 0 and out.rejections[0].field == "command.close_round"
        assert r.state.close_votes == set()

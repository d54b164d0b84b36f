"""A replica's round keeper (coordinator/round_keeper.py) over the real replicated schedule:
when it votes to close a round. Its clock is the test's (``check(now)``), its votes are
recorded instead of sent (a fake of the replica's client, in this unit test only)."""

from __future__ import annotations

import asyncio
import time

import pytest

from agora.coordinator.round_keeper import RoundKeeper
from agora.protos.agora.v1 import coordinator_pb2 as pb
from tests.coordinator.state_helpers import Run, decide, end, job, report, submit
from tests.coordinator.state_helpers import vote as vote_op


def keeper(run: Run, *, grace: float, timeout: float = 10.0, site_timeout: float = 1e9,
           start_grace: float = 0.0) -> tuple[RoundKeeper, list]:
    votes: list[tuple[str, object]] = []

    async def vote(kind, msg):
        votes.append((kind, msg))

    k = RoundKeeper(app=run.state, index=0, client_verify={}, round_timeout_s=timeout,
                    site_timeout_s=site_timeout, vote=vote, round_grace_s=grace,
                    site_start_grace_s=start_grace)
    run.state.listeners.append(k.executed)
    return k, votes


async def check(k: RoundKeeper, at: float) -> None:
    k._last_check = None       # the tests' clock jumps between checks: no stall meant here
    await k.check(at)
    await asyncio.sleep(0)              # let the vote's task run


def three_sites_expected(run: Run) -> None:
    run("site:a", submit(job("j", n=2, dag=False)))
    assert run.state.armed and sorted(run.state.expected_sites()) == ["a", "b", "c"]


def test_once_more_than_half_decided_the_rest_get_the_grace_then_a_close_vote():
    async def main():
        run = Run()
        k, votes = keeper(run, grace=0.5)
        three_sites_expected(run)
        run("site:a", decide("a", 0, ("j", "map", 2, 5)))
        now = time.monotonic()
        assert k.next_due(now) > 5.0            # 1 of 3: only the round timeout runs
        await check(k, now + 1.0)
        assert votes == []
        run("site:b", decide("b", 0, ("j", "map", 1, 3)))   # 2 of 3: the grace starts
        now = time.monotonic()
        assert 0.4 < k.next_due(now) <= 0.5
        await check(k, now + 0.3)
        assert votes == []
        await check(k, now + 0.6)
        assert votes == [("close_round", pb.CloseRound(round=0))]
        await check(k, now + 0.9)               # one vote per round
        assert len(votes) == 1 and k.grace_votes == 1
        assert run.state.round == 0             # a vote is a request: f+1 of them close it

    asyncio.run(main())


def test_without_grace_a_round_waits_for_every_expected_site_up_to_its_timeout():
    async def main():
        run = Run()
        k, votes = keeper(run, grace=0.0, timeout=2.0)
        three_sites_expected(run)
        run("site:a", decide("a", 0, ("j", "map", 2, 5)))
        run("site:b", decide("b", 0, ("j", "map", 1, 3)))
        now = time.monotonic()
        await check(k, now + 1.0)
        assert votes == []
        await check(k, now + 2.1)
        assert votes == [("close_round", pb.CloseRound(round=0))] and k.grace_votes == 0

    asyncio.run(main())


def test_a_round_every_expected_site_decided_closes_by_itself_and_no_vote_is_due():
    async def main():
        run = Run()
        k, votes = keeper(run, grace=0.5)
        three_sites_expected(run)
        for s in "abc":
            run(f"site:{s}", decide(s, 0, ("j", "map", 1, 3)))
        assert run.state.round == 1
        now = time.monotonic()
        assert k.next_due(now) is None
        await check(k, now + 5.0)
        assert votes == []

    asyncio.run(main())


def test_a_heartbeat_from_an_id_no_client_can_have_is_refused_by_its_length():
    """Its id was echoed whole: 100,000 characters passed gRPC's 16 KiB limit on status
    details, and the sender saw "Stream removed" instead of the field."""
    k, _ = keeper(Run(), grace=0.0)
    why = k.heartbeat(pb.HeartbeatRequest(client_id="site:" + "x" * 100_000, timestamp_us=1))
    assert why.startswith("client_id: 100005 characters; expected at most 256") and \
        len(why) < 200


def owing_keeper(**kw) -> tuple[Run, RoundKeeper, list]:
    """A keeper (site timeout 10 s, ``kw`` more) of a state where site a runs work, so owes,
    and the votes it sends."""
    run = Run()
    votes: list = []

    async def vote(kind, msg):
        votes.append((kind, msg))
    run("site:a", submit(job("j", n=2, dag=False)))
    run("site:a", decide("a", 0, ("j", "map", 2, 5)))
    k = RoundKeeper(app=run.state, index=0, client_verify={}, round_timeout_s=1e9,
                    site_timeout_s=10.0, vote=vote, **kw)
    return run, k, votes


def test_a_site_not_heard_since_the_start_gets_the_start_grace_then_the_timeout():
    """A probe: ``agora up`` on a schedule resumed with work running lapsed every site 10 s
    after the replicas started -- before the agents (which start after Ray) could report
    what had ended while the service stopped, so that work ran again. A site not heard
    since the replica started is voted lapsed only after ``site_start_grace_s``; one heard
    since, after ``site_timeout_s`` of silence as before."""
    async def main():
        run, k, votes = owing_keeper(site_start_grace_s=120.0)
        vote = k.vote
        t0 = k.started
        await check(k, t0 + 30.0)
        assert [v for v in votes if v[0] == "site_lapsed"] == []    # 10 s would have
        await check(k, t0 + 121.0)
        assert "a" in [v[1].site for v in votes if v[0] == "site_lapsed"]
        k0 = RoundKeeper(app=run.state, index=0, client_verify={}, round_timeout_s=1e9,
                         site_timeout_s=10.0, vote=vote)             # no grace: as before
        votes.clear()
        await check(k0, k0.started + 11.0)
        assert "a" in [v[1].site for v in votes if v[0] == "site_lapsed"]

    asyncio.run(main())


def test_a_site_holding_an_instance_past_its_timeout_is_voted_lapsed_though_it_heartbeats():
    """A review: a site that won instances and kept heartbeating but never reported their
    ends held them -- and their job -- for good. Its node's runner kills a run at the task's
    ``timeout_s`` and the site reports the end, so a site still holding one past
    ``overdue_s(timeout_s)`` is voted lapsed (its work is placed again); a task without a
    timeout is not judged."""
    from dataclasses import replace as dc_replace

    from agora.agents.domain import Run as RunSpec
    from agora.coordinator.site_lapses import overdue_s

    async def main():
        run = Run()
        votes: list = []

        async def vote(kind, msg):
            votes.append((kind, msg))
        k = RoundKeeper(app=run.state, index=0, client_verify={}, round_timeout_s=1e9,
                        site_timeout_s=10.0, vote=vote)
        run.state.listeners.append(k.executed)
        timed = job("timed", "b", n=1, dag=False)
        timed = dc_replace(timed, tasks=(dc_replace(timed.tasks[0], run=RunSpec(
            argv=("sleep", "9"), timeout_s=30.0)),))
        run("site:b", submit(timed, job("untimed", "c", n=1, dag=False)))
        run("site:a", decide("a", 0))
        run("site:b", decide("b", 0, ("timed", "map", 1, 1)))
        run("site:c", decide("c", 0, ("untimed", "map", 1, 1)))
        assert run.state.ledger.tasks[("timed", "map")].running == 1
        t0 = time.monotonic()
        for site in ("a", "b", "c"):
            k.heard[site] = t0 + 10_000                  # heartbeating all along
        await check(k, t0 + overdue_s(30.0) - 5)
        assert [v for v in votes if v[0] == "site_lapsed"] == []
        await check(k, t0 + overdue_s(30.0) + 5)
        lapsed = [v[1].site for v in votes if v[0] == "site_lapsed"]
        assert lapsed == ["b"]                           # not c: its task has no timeout

    asyncio.run(main())


def test_a_site_silent_past_its_timeout_is_reported_silent_though_it_owes_nothing():
    """A probe: a site ``agora up`` started without an agent (its Ray node was dead), holding
    no work, was never voted lapsed -- it owes nothing -- and ``agora site list`` called it
    live. Each replica now reports the live sites it has not heard for ``site_timeout_s``
    (past its start grace, for one never heard) in its status, voting nothing."""
    from tests.coordinator.state_helpers import lapse

    async def main():
        run = Run()
        k, votes = keeper(run, grace=0.0, timeout=1e9, site_timeout=10.0, start_grace=30.0)
        t0 = k.started
        assert k.silent(t0 + 29.0) == []                       # the start grace
        sites = list(run.state.site_names)
        assert k.silent(t0 + 31.0) == sites
        k.heard[sites[0]] = t0 + 31.0                           # a heartbeat
        assert k.silent(t0 + 40.0) == sites[1:]
        assert k.silent(t0 + 41.5) == sites
        run("replica:0", lapse(sites[1], 0))
        run("replica:1", lapse(sites[1], 0))                   # f+1 votes: lapsed
        assert run.state.sites[sites[1]].lapsed
        assert k.silent(t0 + 50.0) == [sites[0]] + sites[2:]
        await check(k, t0 + 50.0)
        assert votes == []                                      # owing nothing: no vote

    asyncio.run(main())


def test_latency_from_ready_leaves_out_the_wait_for_capacity_the_first_measure_counts(
        monkeypatch):
    """Work that opens while every site is full waits for capacity: the first latency counts
    that wait (from the round's arming), the one from ready only from the end that freed
    room -- the first moment some site could hold it."""
    now = [100.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    run = Run()
    k, _ = keeper(run, grace=0.0)
    run("site:a", submit(job("fill", n=52, dag=False)))         # every cpu of a, b and c
    for s, n in (("a", 16), ("b", 4), ("c", 32)):
        run(f"site:{s}", decide(s, 0, ("fill", "map", n, 1)))
    assert run.state.round == 1 and run.state.armed and not run.state.expected_sites()
    now[0] = 101.0
    run("site:a", submit(job("late", n=1, dag=False)))          # opens; no site can hold it
    assert not run.state.expected_sites()
    now[0] = 105.0                                              # b's instance ends: room
    on_b = [i for i, (node, *_) in run.state.ledger.tasks[("fill", "map")].placements.items()
            if run.state.cluster.nodes[node].site == "b"]
    run("site:b", report("b", end("fill", "map", on_b[0])))
    assert run.state.expected_sites() == ["b"]
    now[0] = 105.25
    run("site:b", decide("b", 1, ("late", "map", 1, 1)))
    assert run.state.round == 2 and run.running("late", "map") == [0]
    assert len(k.latencies) == len(k.ready_latencies) >= 2   # an allocation row each
    assert max(k.latencies) == pytest.approx(4.25)        # from its opening at 101 s
    assert max(k.ready_latencies) == pytest.approx(0.25)  # from the end at 105 s
    assert k.latency_ms(ready=True)[2] == len(k.latencies)


def test_room_that_comes_with_the_closing_part_counts_nothing_from_ready(monkeypatch):
    """A site whose own end freed the room bids for it in the part that reports the end: the
    round became placeable in the command that closed it, so the latency from ready is 0 while
    the first measure still counts the whole wait."""
    now = [100.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    run = Run()
    k, _ = keeper(run, grace=0.0)
    run("site:a", submit(job("fill", n=52, dag=False)))
    for s, n in (("a", 16), ("b", 4), ("c", 32)):
        run(f"site:{s}", decide(s, 0, ("fill", "map", n, 1)))
    now[0] = 101.0
    run("site:a", submit(job("late", n=1, dag=False)))
    now[0] = 103.5
    on_b = [i for i, (node, *_) in run.state.ledger.tasks[("fill", "map")].placements.items()
            if run.state.cluster.nodes[node].site == "b"]
    run("site:b", decide("b", 1, ("late", "map", 1, 1), ends=[end("fill", "map", on_b[0])]))
    assert run.state.round == 2 and run.running("late", "map") == [0]
    assert max(k.latencies) == pytest.approx(2.5)
    assert max(k.ready_latencies) == 0.0


def test_an_instance_whose_execution_this_replica_forgot_is_judged_from_when_it_saw_it():
    """A review: an allocation whose version the replica no longer timed (pruned from
    ``exec_time``, or executed before a restart or state transfer) counted from the
    replica's start -- a day-old replica voted a site lapsed 600 s into a one-hour task."""
    from dataclasses import replace as dc_replace

    from agora.agents.domain import Run as RunSpec
    from agora.coordinator import round_keeper as rk
    from agora.coordinator.site_lapses import overdue_s

    async def main():
        run = Run()
        k, votes = keeper(run, grace=0.0, timeout=1e9, site_timeout=10.0)
        k.started = time.monotonic() - 86_400.0           # up for a day
        timed = job("timed", "b", n=1, dag=False)
        timed = dc_replace(timed, tasks=(dc_replace(timed.tasks[0], run=RunSpec(
            argv=("sleep", "7200"), timeout_s=3600.0)),))
        run("site:b", submit(timed))
        for s, bid in (("a", ()), ("b", (("timed", "map", 1, 1),)), ("c", ())):
            run(f"site:{s}", decide(s, 0, *bid))
        ts = run.state.ledger.tasks[("timed", "map")]
        t_alloc = k.exec_time[next(iter(ts.placed_at.values()))]
        for s in "abc":
            k.heard[s] = t_alloc + 1e6                    # heartbeating all along
        for v in range(run.seq + 1, run.seq + 2 + 4 * rk.LATENCY_SAMPLES):
            k.executed(pb.ScheduleUpdate(version=v))      # the group goes on; pruned
        await check(k, t_alloc + 600.0)
        assert [v for v in votes if v[0] == "site_lapsed"] == []
        await check(k, t_alloc + 600.0 + overdue_s(3600.0) - 5)   # seen at +600 s
        assert [v for v in votes if v[0] == "site_lapsed"] == []
        await check(k, t_alloc + 600.0 + overdue_s(3600.0) + 5)   # a stuck site is still found
        assert [v[1].site for v in votes if v[0] == "site_lapsed"] == ["b"]

    asyncio.run(main())


def test_a_close_vote_that_never_reached_the_schedule_is_sent_again():
    """A review: a replica's close vote that failed (no f+1 replies, or replaced at the
    backups by its next request) was never sent again for that round; a round waiting on a
    site that heartbeats but never decides could stay open for good."""
    async def main():
        run = Run()
        attempts: list = []

        async def vote(kind, msg):
            attempts.append(msg.round)
            if len(attempts) == 1:
                raise RuntimeError("UNAVAILABLE: no 2 matching replies")
        k = RoundKeeper(app=run.state, index=1, client_verify={}, round_timeout_s=2.0,
                        site_timeout_s=1e9, vote=vote)
        run.state.listeners.append(k.executed)
        three_sites_expected(run)
        run("site:a", decide("a", 0, ("j", "map", 2, 5)))
        run("site:b", decide("b", 0))                  # c never decides
        now = time.monotonic()
        await check(k, now + 3.0)
        assert attempts == [0]
        await check(k, now + 4.0)                      # not before its timeout again
        assert attempts == [0]
        await check(k, now + 5.5)
        assert attempts == [0, 0]
        run("replica:1", vote_op(0))
        await check(k, now + 60.0)                     # executed: not again
        assert attempts == [0, 0]

    asyncio.run(main())


def test_a_lapse_vote_is_withdrawn_once_the_site_is_heard_again():
    """A review: a lapse vote stood until the site's next ordered message, which a site busy
    with long work may not send for hours: a short silence at one replica, and hours later
    one at another, lapsed a healthy site (f+1 votes) and lost its work. The replica that
    hears the site again takes its vote back; the other's later vote alone lapses nothing."""
    from tests.coordinator.state_helpers import lapse

    async def main():
        run = Run()
        run("site:b", submit(job("long", "b", n=1, dag=False)))
        for s, bid in (("a", ()), ("b", (("long", "map", 1, 1),)), ("c", ())):
            run(f"site:{s}", decide(s, 0, *bid))
        assert run.state.ledger.tasks[("long", "map")].running == 1   # b busy: it owes
        k, votes = keeper(run, grace=0.0, timeout=1e9, site_timeout=10.0)
        t0 = time.monotonic()
        for s in "abc":
            k.heard[s] = t0
        await check(k, t0 + 11.0)                         # b silent here for 11 s
        sent = [v[1] for v in votes if v[0] == "site_lapsed"]
        assert [(m.site, m.withdraw) for m in sent] == [("b", False)]
        run("replica:0", pb.Command(site_lapsed=sent[0]).SerializeToString())
        assert run.state.sites["b"].lapse_votes == {0}
        await check(k, t0 + 12.0)                         # not heard yet: stands
        assert len(votes) == 1
        k.heard["b"] = t0 + 12.5                          # heard again
        await check(k, t0 + 13.0)
        assert [(v[1].site, v[1].withdraw) for v in votes[1:]] == [("b", True)]
        await check(k, t0 + 14.0)                         # not sent twice meanwhile
        assert len(votes) == 2
        run("replica:0", pb.Command(site_lapsed=votes[1][1]).SerializeToString())
        assert run.state.sites["b"].lapse_votes == set()
        heard = run.state.sites["b"].last_heard
        run("replica:1", lapse("b", heard))               # hours later, another's glitch
        assert not run.state.sites["b"].lapsed
        assert run.state.ledger.tasks[("long", "map")].running == 1

    asyncio.run(main())


def test_a_withdrawal_takes_back_only_the_voters_own_vote():
    from tests.coordinator.state_helpers import lapse, op
    run = Run()
    run("site:a", submit(job("j", "a", n=1, dag=False)))
    heard = run.state.sites["a"].last_heard
    run("replica:0", lapse("a", heard))
    out = run("replica:1", op(site_lapsed=pb.SiteLapsed(site="a", last_heard=heard,
                                                         withdraw=True)))
    assert out.accepted == 1 and run.state.sites["a"].lapse_votes == {0}
    out = run("site:a", op(site_lapsed=pb.SiteLapsed(site="a", last_heard=heard,
                                                      withdraw=True)))
    assert out.accepted == 0 and run.state.sites["a"].lapse_votes == {0}   # not a replica
    run("replica:2", lapse("a", heard))
    assert run.state.sites["a"].lapsed                                     # 0 and 2

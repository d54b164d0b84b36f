"""A site agent that never saw a round armed (a review): the update that armed round r and the
one that closed it reached the agent in one watch batch, or its loop was stalled past
``round_timeout_s``. It woke to a disarmed round r + 1, owed nothing (it decides only in an
armed round) and sent nothing; the coordinator re-arms for an expected site's decision of an
earlier round, but none came, and open work only that site could hold waited for an
unrelated event -- on a quiet cluster, for good. Now such an agent, when it has something to
bid for, sends its decision for round r once (a late decision: refused as ``wrong_round``,
it arms the next round).

The agent's real step and runtime over this test's stand-ins of its clearinghouse (the
replicated schedule's own state machine, ``tests.coordinator.state_helpers.Run``, its updates
applied to the agent's ledger as a watch batch brings them) and of its executor (free nodes,
nothing running). No servers, no Ray."""

from __future__ import annotations

import pytest
import torch

from agora.agents.cluster.runtime import AgentRuntime
from agora.agents.ledger import Ledger
from agora.agents.ledger_codec import apply_update
from agora.agents.learn.learned_policy import AgentConfig, Agents
from agora.agents.sim.capacity import Capacity
from agora.agents.step.policy import NumpyPolicy
from agora.agents.step.seams import Ended, MemoryExchange, RoundInfo, SitePart
from agora.coordinator.clearinghouse import PbftClearinghouse
from agora.coordinator.site_messages import to_message
from tests.coordinator.state_helpers import Run, cluster, decide, job, op, submit, vote

torch.set_num_threads(1)   # tests share a 2-core machine

SITES = {"a": 0, "b": 1, "c": 2}


def policy() -> NumpyPolicy:
    """A small untrained policy that, with more than one open task, ranks by its SRPT teacher
    (``max_open``): it bids for every candidate, whatever its weights."""
    torch.manual_seed(0)
    ag = Agents(AgentConfig(k=4, hidden=16))
    return NumpyPolicy(ag.policy_weights(), {**ag.cfg.to_dict(), "max_open": 1})


class Clearinghouse:
    """The agent's view of ``run``'s schedule: ``catch_up`` applies every update committed
    since the last batch (the watch), ``submit`` records the agent's parts."""

    def __init__(self, run: Run) -> None:
        self.run, self.seen = run, 0
        self.ledger = Ledger(max_attempts=3)
        self.version = 0
        self.round = RoundInfo(round=0, armed=False, armed_version=0, version=0)
        self.redecide_at, self.removed = None, None
        self.parts: list[SitePart] = []

    def catch_up(self) -> None:
        st = self.run.state
        for u in self.run.updates[self.seen:]:
            apply_update(self.ledger, u, st.site_index, st.node_index)
            self.version = u.version
            self.round = RoundInfo(round=u.round.round, armed=u.round.armed,
                                   armed_version=u.round.armed_version, version=u.version)
        self.seen = len(self.run.updates)

    def round_info(self) -> RoundInfo:
        return self.round

    def submit(self, part: SitePart) -> None:
        self.parts.append(part)


class Executor:
    """A site whose nodes are all free and run nothing; ``ends`` / ``nodes``: its reports."""

    def __init__(self, site: int) -> None:
        self.site, self.capacity = site, Capacity(cluster())
        self.ends: list[Ended] = []
        self.nodes: list[tuple[str, bool]] = []

    def now(self) -> float:
        return 0.0

    def has_reports(self) -> bool:
        return bool(self.ends or self.nodes)

    def take_ended(self) -> list[Ended]:
        out, self.ends = self.ends, []
        return out

    def take_node_changes(self) -> list[tuple[str, bool]]:
        out, self.nodes = self.nodes, []
        return out

    def running(self) -> set:
        return set()


def agent(run: Run, name: str) -> AgentRuntime:
    pol = policy()
    return AgentRuntime(site=SITES[name], name=name, cluster=cluster(), policy=pol,
                        exchange=MemoryExchange(len(SITES), pol.code_dim),
                        clearinghouse=Clearinghouse(run), executor=Executor(SITES[name]))


def send(run: Run, name: str, part: SitePart):
    """``part`` as the site's client sends it, executed by the replicated schedule."""
    return run(f"site:{name}", op(site_round=to_message(part)))


def only_c_can_hold() -> Run:
    """Round 0 armed for two jobs only site c (16 cores a node) can hold."""
    r = Run()
    r("site:c", submit(job("x", "c", n=1, dag=False, cpu=12000),
                       job("y", "c", n=1, dag=False, cpu=12000)))
    assert r.state.armed and r.state.expected_sites() == ["c"]
    return r


def queued(*parts: SitePart) -> SitePart:
    """What a site's clearinghouse sends for ``parts`` submitted while a message of it is in
    flight: one message, merged (``site_messages.merge``)."""
    ch = PbftClearinghouse(cluster=cluster(), client=None)
    for p in parts:
        ch.submit(p)
    return ch._pending


def time_out(r: Run, rnd: int) -> None:
    """Round ``rnd`` closes on f+1 replicas' votes (c did not decide it): nothing allocated."""
    r("replica:1", vote(rnd))
    r("replica:2", vote(rnd))
    assert r.state.round == rnd + 1 and not r.state.armed


@pytest.mark.timeout(60)
def test_an_agent_that_never_saw_the_round_armed_sends_a_late_decision_once():
    r = only_c_can_hold()
    c = agent(r, "c")
    ch = c.agent.clearinghouse
    c.act_if_owed()                     # round 0 as the agent last saw it: disarmed, nothing
    assert ch.parts == []
    r("site:a", decide("a", 0))
    time_out(r, 0)
    ch.catch_up()                       # round 0 armed and closed: one watch batch
    assert (ch.round_info().round, ch.round_info().armed) == (1, False)
    for _ in range(3):                  # woken, then on the tick: once
        c.act_if_owed()
    assert [(p.round, p.bidding) for p in ch.parts] == [(0, True)]
    assert {o.job_id for o in ch.parts[0].offers} == {"x", "y"}
    assert c.counts["decisions"] == 0   # not a decision of a round: it arms the next
    out = send(r, "c", ch.parts[0])
    assert out.rejections[0].field == "command.site_round.round"
    assert r.state.round == 1 and r.state.armed          # armed again for c
    ch.catch_up()
    c.act_if_owed()                     # round 1, armed: c decides, and the work runs
    assert [p.round for p in ch.parts] == [0, 1]
    out = send(r, "c", ch.parts[1])
    assert {a.job_id for a in out.allocations} == {"x", "y"}
    assert r.state.ledger.tasks[("x", "map")].running == 1
    for _ in range(2):
        ch.catch_up()
        c.act_if_owed()
    assert len(ch.parts) == 2


@pytest.mark.timeout(60)
def test_an_agent_stalled_past_a_round_sends_its_late_decision_for_that_round():
    """It decided round 0 (x ran), then its loop stalled while round 1 was armed for y and
    timed out: awake at round 2, disarmed, it sends a late decision for round 1 -- not 0."""
    r = Run()
    r("site:c", submit(job("x", "c", n=1, dag=False, cpu=12000)))
    c = agent(r, "c")
    ch = c.agent.clearinghouse
    ch.catch_up()
    c.act_if_owed()
    r("site:c", submit(job("y", "c", n=1, dag=False, cpu=12000)))   # opens during round 0
    assert send(r, "c", ch.parts[0]).allocations[0].job_id == "x"
    assert r.state.round == 1 and r.state.armed         # for y
    time_out(r, 1)                                      # c's loop stalled meanwhile
    ch.catch_up()
    c.act_if_owed()
    c.act_if_owed()
    assert [(p.round, [o.job_id for o in p.offers]) for p in ch.parts] == \
        [(0, ["x"]), (1, ["y"])]
    send(r, "c", ch.parts[1])
    assert r.state.round == 2 and r.state.armed


@pytest.mark.timeout(60)
def test_an_agent_that_decided_the_round_sends_nothing_more():
    """Its decision of round 0 was merely late (the round timed out first): the coordinator
    re-arms for that decision; the agent sends no second part for round 0."""
    r = only_c_can_hold()
    c = agent(r, "c")
    ch = c.agent.clearinghouse
    ch.catch_up()
    c.act_if_owed()                     # round 0 seen armed: decided
    assert [p.round for p in ch.parts] == [0]
    time_out(r, 0)
    ch.catch_up()
    for _ in range(3):
        c.act_if_owed()
    assert [p.round for p in ch.parts] == [0]
    send(r, "c", ch.parts[0])           # its decision, late: armed again for it
    assert r.state.round == 1 and r.state.armed


@pytest.mark.timeout(60)
def test_an_agent_with_nothing_to_bid_for_sends_nothing_and_looks_once():
    r = only_c_can_hold()
    a = agent(r, "a")                   # a cannot hold x or y
    ch = a.agent.clearinghouse
    looked = []
    observe = a.agent.observer.observe
    a.agent.observer.observe = lambda *args: looked.append(1) or observe(*args)
    r("site:a", decide("a", 0))
    time_out(r, 0)
    ch.catch_up()
    for _ in range(3):
        a.act_if_owed()
    assert ch.parts == [] and len(looked) <= 1          # one look for round 0, not per tick


@pytest.mark.timeout(60)
def test_a_late_decision_carries_the_reports_and_later_ones_keep_its_round():
    """What the agent reports while the round stays disarmed goes in a part of the late round
    too: merged with the late part still queued (the clearinghouse keeps the newer
    decision), a part of the disarmed round would have replaced the late decision and no
    round been armed (an idle node going down arms nothing)."""
    r = only_c_can_hold()
    c = agent(r, "c")
    ch, ex = c.agent.clearinghouse, c.agent.executor
    r("site:a", decide("a", 0))
    time_out(r, 0)
    ch.catch_up()
    ex.nodes = [("c/n1", False)]
    c.act_if_owed()
    ex.nodes = [("c/n1", True)]
    c.act_if_owed()
    assert [(p.round, p.nodes) for p in ch.parts] == [(0, [("c/n1", False)]),
                                                       (0, [("c/n1", True)])]
    one = queued(*ch.parts)
    assert one.round == 0 and one.nodes == [("c/n1", True)] and one.offers
    out = send(r, "c", one)             # c/n1 down and up again: no change arms round 1
    assert out.rejections[0].field == "command.site_round.round"
    assert r.state.round == 1 and r.state.armed


@pytest.mark.timeout(60)
def test_a_later_decision_replaces_a_queued_late_one():
    """The late part of round 0 still queued when round 1 is armed and decided: the message
    carries the decision of round 1 (and the reports of both)."""
    late = SitePart(site="c", round=0, seen_version=3, offers=[], nodes=[("c/n1", False)])
    now = SitePart(site="c", round=1, seen_version=4, offers=[])
    got = queued(late, now)
    assert (got.round, got.seen_version, got.nodes, got.bidding) == \
        (1, 4, [("c/n1", False)], True)


@pytest.mark.timeout(60)
def test_a_fresh_agent_at_round_0_sends_nothing():
    """No round before the first: nothing late to send (a part of round -1 is refused before
    ordering, and a refused part restarts the agent)."""
    r = only_c_can_hold()
    c = agent(r, "c")
    for _ in range(2):
        c.act_if_owed()
    assert c.agent.clearinghouse.parts == []

"""Joining a Ray cluster (``ray.address``): what its live nodes must carry
(``deploy.ray_runtime.check_joined``). A site no live Ray node carries is refused in one line
naming the resource and where to read how; an Agora node none carries (its Ray node dead)
only starts down -- one dead Ray node refused the whole start, and the keeper spent its
restarts on it (a probe); and ``agora site list`` names each site's nodes down."""

from __future__ import annotations

import logging

import pytest

from agora.agents.cluster.node_runner import node_resource
from agora.agents.domain import Node
from agora.deploy.ray_runtime import check_joined, site_resource

NODES = [Node("a/n0", "a", cpu=1000, mem=512), Node("a/n1", "a", cpu=1000, mem=512),
         Node("b/n0", "b", cpu=1000, mem=512)]
ALL = {site_resource("a"): 1.0, site_resource("b"): 1.0,
       **{node_resource(n.name): 1.0 for n in NODES}, "CPU": 4.0}


def test_every_resource_carried_joins_quietly(caplog):
    with caplog.at_level(logging.WARNING):
        check_joined(ALL, "ray://x:10001", ["a", "b"], NODES)
    assert caplog.records == []


def test_a_site_no_live_node_carries_is_refused_naming_its_resource():
    have = {k: v for k, v in ALL.items() if k != site_resource("b")}
    with pytest.raises(ValueError) as e:
        check_joined(have, "10.0.0.1:6379", ["a", "b"], NODES)
    msg = str(e.value)
    assert f"no live Ray node carries the resource {site_resource('b')!r}" in msg
    assert "docs/deploying.md" in msg and "more" not in msg
    with pytest.raises(ValueError, match=r"\(and 1 more site\(s\)\)"):
        check_joined({"CPU": 1.0}, "auto", ["a", "b"], [])


def test_a_node_no_live_ray_node_carries_starts_down_with_a_warning(caplog):
    have = {k: v for k, v in ALL.items() if k != node_resource("a/n1")}
    with caplog.at_level(logging.WARNING):
        check_joined(have, "auto", ["a", "b"], NODES)       # not refused
    [rec] = caplog.records
    assert "node a/n1" in rec.getMessage() and "starts down" in rec.getMessage()
    check_joined(have, "auto", ["a", "b"], [])             # agora replay: no runners


def test_agora_site_list_names_each_sites_nodes_down():
    """An Agora node down (its Ray node dead) was visible only in agora up's log (a probe)."""
    from agora.deploy.cli_sites import site_rows
    from agora.protos.agora.v1 import coordinator_pb2 as pb

    view = pb.LedgerView(version=7, sites=[pb.SiteStatus(site="s2"), pb.SiteStatus(site="s")],
                         nodes_down=["s2/b", "s/a", "s2/a"])
    rows = {r["site"]: r["nodes_down"] for r in site_rows(view)}
    assert rows == {"s2": ["s2/a", "s2/b"], "s": ["s/a"]}


def test_agora_site_list_says_silent_for_a_site_f_plus_1_replicas_have_not_heard():
    """A site started without its agent and owing nothing was never voted lapsed, and
    agora site list called it live (a probe): a site f+1 replicas report silent (no
    heartbeat for site_timeout_s) reads "silent"; f faulty replicas can neither make one
    silent nor, with 2f+1 answering, hide one."""
    from agora.coordinator.queries import silent_sites
    from agora.deploy.cli_sites import site_rows
    from agora.protos.agora.v1 import coordinator_pb2 as pb

    def st(*silent):
        return pb.ReplicaStatus(silent_sites=list(silent))

    assert silent_sites([st("s2"), st("s2", "s"), "no answer", st()], f=1) == {"s2"}
    assert silent_sites([st("s2"), st(), st(), st()], f=1) == set()     # one liar
    assert silent_sites([st("s2"), "no answer", "no answer", "no answer"], f=1) is None
    view = pb.LedgerView(version=7, sites=[pb.SiteStatus(site="s2"), pb.SiteStatus(site="s")])
    assert {r["site"]: r["silent"] for r in site_rows(view, {"s2"})} == {"s2": True,
                                                                         "s": False}
    assert {r["silent"] for r in site_rows(view)} == {None}           # not known


def test_a_resumed_schedule_starts_without_a_site_no_live_node_carries(caplog):
    """A restart after a site's only Ray node died was refused five times over and left every
    site without service (a re-probe): resumed, the site's agent is not started, the rest
    serve."""
    from agora.deploy.ray_runtime import sites_unplaced

    have = {k: v for k, v in ALL.items() if k not in (site_resource("b"), node_resource("b/n0"))}
    with caplog.at_level(logging.WARNING):
        check_joined(have, "auto", ["a", "b"], NODES, resumed=True)
    text = " | ".join(r.getMessage() for r in caplog.records)
    assert f"{site_resource('b')!r}: that site's agent is not started" in text
    assert "node b/n0" in text and "starts down" in text
    assert sites_unplaced(have, ["a", "b"]) == ["b"]
    with pytest.raises(ValueError):                           # a first start: refused
        check_joined(have, "auto", ["a", "b"], NODES)


def waiting_system(waiting):
    """A fake of ``launch.System`` holding what ``start_waiting`` and ``admit_sites`` use
    (in this unit test only): its agents are strings."""
    import threading
    from types import SimpleNamespace

    class Operator:
        removed: set[str] = set()

        async def ledger(self):
            return SimpleNamespace(sites=[SimpleNamespace(site=s, removed=True)
                                          for s in self.removed])

    class Loop:
        def run(self, coro, timeout=None):
            import asyncio
            return asyncio.run(coro)

    return SimpleNamespace(waiting=list(waiting), sites=["a"], actors=["agent-a"], specs=[],
                           fresh=set(), admitted={}, stopping=threading.Event(),
                           make_agent=lambda s: (f"agent-{s}", f"spec-{s}"),
                           operator=Operator(), loop=Loop())


def test_a_waiting_sites_agent_starts_once_a_live_ray_node_carries_it(caplog):
    """A re-probe: a site restarted without its agent (its only Ray node was dead) stayed
    without one -- its nodes idle -- until someone ran agora up again. The service now starts
    the agent once a live Ray node carries the site's resource, and not before."""
    from agora.deploy.system_watch import start_waiting

    system = waiting_system(["b"])
    have = {k: v for k, v in ALL.items() if k != site_resource("b")}
    assert start_waiting(system, have) == []
    assert system.waiting == ["b"] and system.actors == ["agent-a"]
    with caplog.at_level(logging.WARNING):
        assert start_waiting(system, ALL) == ["b"]
    assert system.waiting == [] and system.fresh == {"b"}
    assert list(zip(system.actors, system.sites)) == [("agent-a", "a"), ("agent-b", "b")]
    assert system.specs == ["spec-b"]
    assert "site b: a live Ray node carries its resource now" in caplog.text
    system.stopping.set()                              # stopping: nothing more starts
    late = waiting_system(["b"])
    late.stopping.set()
    assert start_waiting(late, ALL) == [] and late.waiting == ["b"]
    gone = waiting_system(["b"])              # the operator removed it while it waited
    gone.operator.removed = {"b"}
    assert start_waiting(gone, ALL) == [] and gone.waiting == [] and gone.actors == ["agent-a"]


def test_a_late_agent_that_keeps_failing_to_start_is_not_logged_every_time(caplog,
                                                                          monkeypatch):
    """A probe: a late agent whose start failed was logged every 2 s until it started. The
    watch now logs the first failure, then once a minute with a count; after a success the
    next failure is logged at once."""
    import threading
    from types import SimpleNamespace

    from agora.deploy import system_watch

    now = [0.0]
    warnings = system_watch.RepeatedWarnings(every_s=60.0, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="agora.launch"):
        for _ in range(31):                 # 2 s apart, 0 to 60 s: the first, then at 60 s
            warnings.warn("place", "starting a waiting site's agent: no")
            now[0] += 2.0
        assert [r.getMessage() for r in caplog.records] == [
            "starting a waiting site's agent: no",
            "starting a waiting site's agent: no (still failing: 30 more times in the last "
            "60 s)"]
        warnings.clear("place")
        warnings.warn("place", "starting a waiting site's agent: again")
        assert caplog.records[-1].getMessage() == "starting a waiting site's agent: again"

    # the real watch loop, failing to start a waiting agent every round
    def fail(site):
        raise RuntimeError("cannot place the actor")
    system = waiting_system(["b"])
    system.make_agent, system.group = fail, SimpleNamespace(procs={})
    monkeypatch.setattr(system_watch, "start_waiting",
                        lambda s: system.make_agent(s.waiting[0]))
    caplog.clear()
    t = threading.Thread(target=system_watch.watch, args=(system,),
                         kwargs=dict(period_s=0.005, place_every_s=0.005, admit_every_s=1e9))
    with caplog.at_level(logging.WARNING, logger="agora.launch"):
        t.start()
        threading.Event().wait(0.5)
        system.stopping.set()
        t.join(5)
    said = [r.getMessage() for r in caplog.records if "waiting site" in r.getMessage()]
    assert said == ["starting a waiting site's agent: cannot place the actor"], said


def test_an_agent_started_late_is_admitted_by_its_new_key_as_at_start(monkeypatch):
    """The late agent made a new key on its (new) node: the key the schedule holds for the
    site is the one of its last run, which this process never admitted -- a key it would
    keep (``agora site admit`` decides) for an agent it did not start. One it started is
    admitted as at start, once."""
    from types import SimpleNamespace

    import ray

    from agora.deploy import site_admission

    monkeypatch.setattr(ray, "wait", lambda refs, **kw: (list(refs), []))
    monkeypatch.setattr(ray, "get", lambda ref, **kw: dict(ref))
    admitted = []

    class Operator:
        async def ledger(self):
            return SimpleNamespace(sites=[SimpleNamespace(site="b", key=b"old", removed=False)])

        async def admit_site(self, site, key):
            admitted.append((site, key))

    class Loop:
        def run(self, coro, timeout=None):
            import asyncio
            return asyncio.run(coro)

    class Agent:
        def __init__(self, key):
            self.identity_request = SimpleNamespace(     # a hashable "ref"
                remote=lambda: (("site", "b"), ("key", key), ("csr", None)))

    system = waiting_system([])
    system.sites, system.actors = ["b"], [Agent(b"new")]
    system.operator, system.loop = Operator(), Loop()
    assert site_admission.admit_sites(system) == 0        # not started here: kept
    system.fresh.add("b")
    assert site_admission.admit_sites(system) == 1
    assert admitted == [("b", b"new")] and system.fresh == set()


def test_stopping_asks_only_the_agents_a_live_ray_node_can_hold():
    """agora down with a site's Ray node dead waited 3 s more (the straggler grace) for that
    site's agent, which Ray holds pending; it is no longer asked (it ends with its owner).
    A GCS that cannot be read leaves every agent asked."""
    from agora.deploy.launch import placed_agents

    have = {k for k in ALL if k != site_resource("b")}
    assert placed_agents(["agent-a", "agent-b"], ["a", "b"], lambda: have) == ["agent-a"]
    assert placed_agents(["agent-a", "agent-b"], ["a", "b"], lambda: 1 / 0) == [
        "agent-a", "agent-b"]

"""A restarted site agent while the committed schedule moves on (a review of the cluster
runtime): the executor asks its runners what runs (real Ray calls: seconds) while the
watch applies committed updates. Before, what the ledger said at its read was started
afterwards as it stood then -- an instance that completed meanwhile ran again, one placed
anew ran on its old node -- and a start that an update asked for meanwhile went to a runner
not yet found (a spurious "node down"). Over a fake of the node runner and of the
clearinghouse (objects recording calls, in this unit test only)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest

from agora.agents.cluster.instance_run import RunEnd, RunRequest
from agora.agents.cluster.node_runner import node_resource
from agora.agents.cluster.ray_executor import RayExecutor
from agora.agents.cluster.runtime import AgentRuntime
from agora.agents.domain import Cluster, Demand, Faults, Job, Node, Run, Site, Task
from agora.agents.ledger import Ledger
from tests.cluster.test_ray_executor import FakeRunner, Scripted


def cluster() -> Cluster:
    return Cluster(sites=(Site("a", (Node("a/n0", "a", cpu=4000, mem=4096),
                                     Node("a/n1", "a", cpu=4000, mem=4096))),),
                   faults=Faults(max_attempts=3))


def ledger(instances: int = 1) -> Ledger:
    led = Ledger(max_attempts=3)
    led.admit(Job("j", 0.0, "a", (Task("t", 1.0, Demand(1000, 64), instances,
                                       run=Run(argv=("true",))),)), 0, 0.0)
    led.version = 5
    return led


def slow_snapshot(during) -> Scripted:
    """A runner whose snapshot takes a moment, during which ``during()`` runs (a committed
    update the watch applies meanwhile)."""
    async def snapshot():
        await asyncio.sleep(0.05)
        during()
        return {"running": [], "ended": [], "incarnation": "1", "ray_node": "R1"}
    return Scripted(snapshot=snapshot)


def runtime(ch, ex, nodes: range) -> AgentRuntime:
    """The agent's runtime over ``ch`` and ``ex`` on ``nodes``, its loop idle (this test's)."""
    rt = AgentRuntime.__new__(AgentRuntime)
    rt.own_nodes, rt._recovering, rt.name = nodes, False, "a"
    rt.counts = {"reconciled_lost": 0, "reconciled_killed": 0, "started": 0}
    rt.agent = SimpleNamespace(clearinghouse=ch, executor=ex)
    rt.wake = lambda: None

    async def idle():
        pass
    rt._loop = idle
    return rt


def executor(runners) -> RayExecutor:
    ex = RayExecutor(cluster=cluster(), site=0, namespace="test", node_check_s=0)
    ex.read_carried = lambda: {node_resource("a/n0"), node_resource("a/n1")}
    ex.runners = runners
    return ex


def starts(*runners) -> list:
    return [(c[1].instance, c[1].run_id, c[1].node) for r in runners for c in r.calls
            if c[0] == "start"]


@pytest.mark.timeout(30)
def test_recovery_starts_no_run_that_ended_or_moved_while_the_runners_were_asked():
    async def main():
        led = ledger(instances=3)
        ts = led.tasks[("j", "t")]
        for i in range(3):
            led.start(ts, i, 0)                           # runs 5 on a/n0, never started

        def meanwhile():
            led.version = 7
            led.complete(ts, 0, 1.0)                      # its end committed
            led.fail(ts, 1, 1.0, count=False)             # lost, placed anew on a/n1
            led.start(ts, 1, 1)
        n0, n1 = slow_snapshot(meanwhile), FakeRunner()
        ex = executor({0: n0, 1: n1})
        await ex.recover([(ts, i, 0) for i in range(3)], led)
        await asyncio.sleep(0.05)
        ex.close()
        # only instance 2 is still run 5 on a/n0; instance 0 is done, 1 is run 7's (the
        # agent starts that one once recovered: the next test)
        assert starts(n0, n1) == [(2, 5, "a/n0")]

    asyncio.run(main())


class FakeClearinghouse:
    """``start`` reads a ledger where instance 0 runs on a/n0 (run 5); ``update`` is what the
    watch applies while the executor recovers: instance 1 placed on a/n1 (run 6)."""

    def __init__(self, led: Ledger) -> None:
        self.ledger, self.removed, self.on_update = led, None, None

    async def start(self, on_update):
        self.on_update = on_update
        ts = self.ledger.tasks[("j", "t")]
        self.ledger.start(ts, 0, 0)
        return [(ts, 0, 0)]

    def update(self) -> None:
        ts = self.ledger.tasks[("j", "t")]
        self.ledger.version = 6
        self.ledger.start(ts, 1, 1)
        self.on_update([(ts, 1, 1)])


class Executor:
    """Records the seam's calls; its recovery takes a moment in which the update comes."""

    def __init__(self, ch: FakeClearinghouse) -> None:
        self.ch, self.calls, self.recovering, self._running = ch, [], False, set()

    async def recover(self, placed, led):
        self.recovering = True
        self.ch.update()
        await asyncio.sleep(0.01)
        self.recovering = False

    def start(self, ts, i, node):
        assert not self.recovering, "a start sent while the executor recovered"
        self.calls.append(("start", i, node, ts.placed_at[i]))
        self._running.add(("j", "t", i))

    def lose(self, key, reason, run_id=0):
        self.calls.append(("lose", key[2], run_id))

    def running(self):
        return set(self._running)

    def kill(self, key, reason, *, report):
        self.calls.append(("kill", key[2]))


@pytest.mark.timeout(30)
def test_what_is_placed_while_the_agent_recovers_starts_once_it_has_recovered():
    async def main():
        ch = FakeClearinghouse(ledger(instances=2))
        ex = Executor(ch)
        rt = runtime(ch, ex, range(0, 2))
        await rt.start()
        # instance 0 (read at start, run 5) was lost with the old agent: reported lost as
        # run 5; instance 1 (placed meanwhile, run 6) is started after the recovery
        assert ex.calls == [("lose", 0, 5), ("start", 1, 1, 6)]
        assert rt.counts["started"] == 1 and rt.counts["reconciled_lost"] == 1

    asyncio.run(main())


@pytest.mark.timeout(30)
def test_an_agent_whose_start_failed_exits_for_ray_to_start_it_again(monkeypatch):
    """A review: a start that failed once (the coordinator unavailable for minutes, a runner
    call raising) left the actor alive doing nothing for good -- every later call got the
    same error, Ray restarts only a dead actor, and its heartbeats beat on. The callers
    get the error and the agent exits a moment later (``os._exit`` recorded here)."""
    from agora.agents.cluster import site_actor
    from agora.agents.cluster.site_actor import SiteAgentActor

    exits = []
    monkeypatch.setattr(site_actor, "RESTART_AFTER_S", 0.05)
    monkeypatch.setattr(site_actor.os, "_exit", exits.append)
    monkeypatch.setattr(site_actor.logging, "shutdown", lambda: None)
    a = SiteAgentActor.__new__(SiteAgentActor)
    a._starting, a.address, a.epoch = None, "", 1
    a.spec = SimpleNamespace(site="a")

    async def fails():
        raise RuntimeError("no f+1 replicas answered for 180 s")
    a._start = fails

    async def main():
        with pytest.raises(RuntimeError, match="180 s"):
            await a.start()
        assert exits == []
        await asyncio.sleep(0.2)
    asyncio.run(main())
    assert exits == [75]


class KillingRunner:
    """A node runner (this test's stand-in): a start of a live run answers "running"; a kill
    marks it and its "killed" end comes a moment later."""

    def __init__(self, live, during):
        self.live, self.during, self.calls, self.ended = dict(live), during, [], []

    def __getattr__(self, method):
        runner = self

        class M:
            def remote(self, *args):
                runner.calls.append((method, *args))
                return getattr(runner, "_" + method)(*args)
        return M()

    async def _snapshot(self):
        await asyncio.sleep(0.02)
        self.during()                                  # the watch applies an update meanwhile
        return {"running": [(req, 1.0) for req in self.live.values()], "ended": [],
                "incarnation": "1", "ray_node": "R1"}

    async def _start(self, req):
        ident = (*req.key, req.run_id)
        if ident in self.live:
            return "running"
        self.live[ident] = req
        return "started"

    async def _kill(self, job, task, inst, run_id, reason=""):
        ident = (job, task, inst, run_id)
        if ident not in self.live:
            return False

        async def later():
            await asyncio.sleep(0.05)
            self.live.pop(ident, None)
            self.ended.append(RunEnd(job, task, inst, run_id, "killed", -15, 1.0, 2.0, reason,
                                     seq=len(self.ended) + 1))
        asyncio.ensure_future(later())
        return True

    async def _ends(self, after, timeout):
        await asyncio.sleep(0.01)
        return "1", [e for e in self.ended if e.seq > after]

    async def _ack(self, items):
        return None


@pytest.mark.timeout(30)
def test_a_run_placed_while_the_agent_recovers_that_its_runner_runs_is_taken_over():
    """A review: the restarted agent read the ledger from replicas behind its predecessor
    (run 7 not yet placed there); while the runners were asked, version 7 arrived. The
    runner's run 7 was killed as "not placed here", then "started" while dying (answered
    "running"), and its killed end dropped: the schedule placed it for good, unreported."""
    async def main():
        cl = Cluster(sites=(Site("a", (Node("a/n0", "a", cpu=4000, mem=4096),)),),
                     faults=Faults(max_attempts=3))
        led = Ledger(max_attempts=3)
        led.admit(Job("j", 0.0, "a", (Task("t", 1.0, Demand(1000, 64), 1,
                                           run=Run(argv=("true",))),)), 0, 0.0)
        ts = led.tasks[("j", "t")]
        # the predecessor agent had seen version 7 place j/t[0] on a/n0 and started it
        req7 = RunRequest(job="j", task="t", instance=0, run_id=7, attempt=1,
                          argv=("true",), env=(), cwd=None, timeout_s=None, cpu=1.0,
                          mem_mib=64, gpus=0.0, site="a", node="a/n0")

        def meanwhile():        # the (lagging) read was at version 5; version 7 arrives now
            if ts.placements:
                return
            led.version = 7
            led.start(ts, 0, 0)
            ch.on_update([(ts, 0, 0)])
        runner = KillingRunner({("j", "t", 0, 7): req7}, meanwhile)

        class CH:
            ledger, removed, on_update = led, None, None

            async def start(self, on_update):
                self.on_update = on_update
                return []                                   # the view placed nothing here
        ch = CH()
        ex = RayExecutor(cluster=cl, site=0, namespace="t", node_check_s=0, poll_s=0.05)
        ex.read_carried = lambda: {node_resource("a/n0")}
        ex.runners = {0: runner}
        rt = runtime(ch, ex, range(0, 1))
        await rt.start()
        await asyncio.sleep(0.5)
        ex.close()
        # the run the ledger now places is taken over, not killed; nothing is lost
        assert [c for c in runner.calls if c[0] == "kill"] == []
        assert list(runner.live) == [("j", "t", 0, 7)] and ex.running() == {("j", "t", 0)}
        assert ex.take_ended() == []

    asyncio.run(main())

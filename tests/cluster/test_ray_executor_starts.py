"""Starts and kills that do not land as asked (a review of the Ray executor), over fakes of
the node runner (objects recording calls, in this unit test only):

- a start the runner refuses (its method raised) is a failed attempt with the reason; it was
  sent again every second for good, the instance "running" in the schedule and holding its
  node's capacity (a job id whose folder name was too long);
- a run killed before its start landed (the start failed, then the schedule stopped placing
  it here) ends here with its resources: it was held for good, the policy seeing a smaller
  node; a start that lands after its kill is killed;
- an end a restarted runner sends again for a run already reported is acknowledged only once
  the committed schedule has it: acknowledged at once, a restart of the agent before the
  report committed found it nowhere."""

from __future__ import annotations

import asyncio

import pytest
from ray.exceptions import RayActorError, RayTaskError

from agora.agents.cluster.instance_run import RunEnd
from agora.agents.cluster.ray_executor import RayExecutor
from agora.agents.domain import Cluster, Demand, Faults, Job, Node, Run, Site, Task
from agora.agents.ledger import Ledger
from tests.cluster.test_ray_executor import FakeRunner, Scripted


def setup(runner):
    cl = Cluster(sites=(Site("a", (Node("a/n0", "a", cpu=4000, mem=4096),)),),
                 faults=Faults(max_attempts=3))
    led = Ledger(max_attempts=3)
    led.admit(Job("j", 0.0, "a", (Task("t", 1.0, Demand(1000, 64), 1,
                                       run=Run(argv=("true",))),)), 0, 0.0)
    led.version = 5
    ts = led.tasks[("j", "t")]
    led.start(ts, 0, 0)                               # run 5 on a/n0
    ex = RayExecutor(cluster=cl, site=0, namespace="test", node_check_s=0)
    ex.ledger, ex.runners = led, {0: runner}
    return ex, ts, led


def calls(runner, method):
    return [c for c in runner.calls if c[0] == method]


@pytest.mark.timeout(30)
def test_a_start_the_runner_refuses_is_a_failed_attempt_with_its_reason():
    async def refuse(req):
        raise RayTaskError("start", "Traceback ...\nOSError: [Errno 36] File name too long",
                           OSError(36, "File name too long"))

    async def main():
        runner = Scripted(start=refuse)
        ex, ts, _ = setup(runner)
        ex.start(ts, 0, 0)
        await asyncio.sleep(1.5)
        ended = ex.take_ended()
        assert len(calls(runner, "start")) == 1                  # not sent again
        assert [(e.kind, e.run_id) for e in ended] == [("failed", 5)]
        assert "could not start it" in ended[0].reason
        assert "File name too long" in ended[0].reason
        assert ex.running() == set() and ex.capacity.free_cpu[0] == 4000
        ex.close()

    asyncio.run(main())


@pytest.mark.timeout(30)
def test_a_run_killed_before_its_start_landed_ends_here_with_its_resources():
    failed = []

    async def start(req):                          # the runner restarts: the start fails
        failed.append(req)
        raise RayActorError()

    async def kill(*args):                         # "it does not run here"
        return False

    async def main():
        runner = Scripted(start=start, kill=kill)
        ex, ts, _ = setup(runner)
        ex.start(ts, 0, 0)
        await asyncio.sleep(0.1)                   # the start failed once
        ex.kill(("j", "t", 0), "the job was cancelled", report=False)
        await asyncio.sleep(1.5)
        assert ex.running() == set() and ex.capacity.free_cpu[0] == 4000
        assert len(failed) == 1                    # not sent again once killed
        assert ex.take_ended() == []               # killed unreported, as asked
        ex.close()

    asyncio.run(main())


@pytest.mark.timeout(30)
def test_a_start_that_lands_after_its_kill_is_killed():
    async def main():
        opened = asyncio.Event()

        async def start(req):                      # slow to land
            await opened.wait()
            return "started"

        async def kill(*args):
            return False

        runner = Scripted(start=start, kill=kill)
        ex, ts, _ = setup(runner)
        ex.start(ts, 0, 0)
        await asyncio.sleep(0.05)
        ex.kill(("j", "t", 0), "the job was cancelled", report=True)
        await asyncio.sleep(0.05)
        assert ex.running() == set() and ex.capacity.free_cpu[0] == 4000
        assert [(e.kind, e.run_id) for e in ex.take_ended()] == [("lost", 5)]
        opened.set()                               # the start lands now
        await asyncio.sleep(0.05)
        assert calls(runner, "kill")[-1] == ("kill", "j", "t", 0, 5,
                                             "stopped before it started")
        ex.close()

    asyncio.run(main())


@pytest.mark.timeout(30)
def test_an_end_sent_again_by_a_restarted_runner_is_acknowledged_once_committed():
    async def main():
        runner = FakeRunner()
        ex, ts, led = setup(runner)
        ex.start(ts, 0, 0)
        ex._on_end(0, RunEnd("j", "t", 0, 5, "completed", 0, 1.0, 2.0, "", seq=1))
        assert [e.kind for e in ex.take_ended()] == ["completed"]     # reported, in flight
        ex._on_end(0, RunEnd("j", "t", 0, 5, "completed", 0, 1.0, 2.0, "", seq=1))
        ex._ack_committed(0)
        await asyncio.sleep(0)
        assert calls(runner, "ack") == []          # the schedule still places run 5
        led.complete(ts, 0, 2.0)                   # its report commits
        ex._ack_committed(0)
        await asyncio.sleep(0)
        assert calls(runner, "ack") == [("ack", [(1, "j", "t", 0, 5)])]
        ex.close()

    asyncio.run(main())

"""The Ray executor's bookkeeping of runs (``agents/cluster/ray_executor.py``), over a fake of
the node runner (an object recording the calls it gets, in this unit test only):

- an instance placed again on the same site: the older run is killed unreported and the new
  one is the key's run, so its end is reported (a probe: the older run stayed, the new one's
  end was dropped as "not ours", and the instance ran on in the ledger for good);
- a runner that answers again after its node was taken down: what it still runs was placed
  elsewhere meanwhile and is killed (a probe: a frozen runner's run went on beside its
  replacement);
- a runner whose process died is given a grace to come back before its node is taken down:
  the restarted runner reports the end its predecessor saw (a probe: a runner killed just
  after an instance completed took the node down, the completion was dropped as "not ours"
  and the instance ran again); a runner that stays away takes it down;
- a start that fails (the runner is restarting) is sent again while the run is still this
  site's and the node up (a re-probe: such starts were dropped, the run "running" for good)."""

from __future__ import annotations

import asyncio

import pytest

from ray.exceptions import RayActorError

from agora.agents.cluster.instance_run import RunEnd, RunRequest
from agora.agents.cluster.node_runner import node_resource
from agora.agents.cluster.ray_executor import RayExecutor
from agora.agents.domain import Cluster, Demand, Faults, Job, Node, Run, Site, Task
from agora.agents.ledger import Ledger


class FakeRunner:
    def __init__(self) -> None:
        self.calls: list[tuple] = []
        self.running: list = []
        self.ray_node = "R1"

    def __getattr__(self, method):
        runner = self

        class Method:
            def remote(self, *args):
                runner.calls.append((method, *args))
                fut = asyncio.get_running_loop().create_future()
                fut.set_result({"running": runner.running, "ended": [], "incarnation": "1",
                                "ray_node": runner.ray_node}
                               if method == "snapshot" else None)
                return fut
        return Method()


def started():
    """An executor whose site's node runs instance 0 of j/t as run 5 (on the fake runner)."""
    cl = Cluster(sites=(Site("a", (Node("a/n0", "a", cpu=4000, mem=4096),)),),
                 faults=Faults(max_attempts=3))
    ledger = Ledger(max_attempts=3)
    ledger.admit(Job("j", 0.0, "a", (Task("t", 1.0, Demand(1000, 64), 1,
                                          run=Run(argv=("true",))),)), 0, 0.0)
    ex = RayExecutor(cluster=cl, site=0, namespace="test")
    ex.read_carried = lambda: {node_resource("a/n0")}     # a live Ray node carries a/n0
    ex.ledger, runner = ledger, FakeRunner()
    ex.runners = {0: runner}
    ts = ledger.tasks[("j", "t")]
    ts.placed_at[0] = 5
    ex.start(ts, 0, 0)
    return ex, ts, runner


@pytest.mark.timeout(30)
def test_an_instance_placed_again_here_reports_the_new_runs_end():
    async def main():
        ex, ts, runner = started()
        ts.placed_at[0] = 9                       # lost, then placed here again
        ex.start(ts, 0, 0)
        await asyncio.sleep(0)
        assert ("kill", "j", "t", 0, 5, "placed again") in runner.calls
        assert [c[1].run_id for c in runner.calls if c[0] == "start"] == [5, 9]
        ex._on_end(0, RunEnd("j", "t", 0, 5, "killed", -15, 1.0, 2.0, "placed again", seq=1))
        assert ex.take_ended() == []              # the older run: unreported
        ex._on_end(0, RunEnd("j", "t", 0, 9, "failed", 1, 3.0, 4.0, "exit code 1", seq=2))
        assert [(e.kind, e.reason) for e in ex.take_ended()] == [("failed", "exit code 1")]
        assert ex.capacity.free_cpu[0] == 4000    # nothing held twice, all given back

    asyncio.run(main())


@pytest.mark.timeout(30)
def test_a_runner_back_after_its_node_went_down_stops_what_it_still_runs():
    async def main():
        ex, ts, runner = started()
        ex._node_down(0, "its runner does not answer")
        assert [e.kind for e in ex.take_ended()] == ["lost"]   # placed again elsewhere
        runner.running = [(RunRequest(job="j", task="t", instance=0, run_id=5, attempt=1,
                                      argv=("true",), env=(), cwd=None, timeout_s=None,
                                      cpu=1.0, mem_mib=64, gpus=0.0, site="a",
                                      node="a/n0"), 1.0)]
        assert await ex._back_up(0)
        await asyncio.sleep(0)
        assert ("kill", "j", "t", 0, 5, "not placed here") in runner.calls
        assert 0 not in ex.down and ex.take_node_changes()[-1] == ("a/n0", True)

    asyncio.run(main())


class Scripted(FakeRunner):
    """Each method of ``answers`` answers as that coroutine function does; others as the
    fake runner does."""

    def __init__(self, **answers) -> None:
        super().__init__()
        self.answers = answers

    def __getattr__(self, method):
        if method not in self.__dict__.get("answers", {}):
            return super().__getattr__(method)
        runner = self

        class Method:
            def remote(self, *args):
                runner.calls.append((method, *args))
                return runner.answers[method](*args)
        return Method()


class FailsFirst(FakeRunner):
    """``method`` fails at once ``fails`` times (the actor's process died, or Ray restarts
    it), then answers as ``then(*args)`` does."""

    def __init__(self, method: str, fails: int, then) -> None:
        super().__init__()
        self.method, self.fails, self.then = method, fails, then

    def __getattr__(self, method):
        if method != self.method:
            return super().__getattr__(method)
        runner = self

        class Method:
            def remote(self, *args):
                runner.calls.append((method, *args))

                async def answer():
                    if runner.fails > 0:
                        runner.fails -= 1
                        raise RayActorError()
                    return await runner.then(*args)
                return answer()
        return Method()


async def second_incarnation(after, timeout):
    """A restarted runner's ``ends``: the completed end of run 5 its predecessor wrote."""
    if after == 0:
        return "second", [RunEnd("j", "t", 0, 5, "completed", 0, 1.0, 2.0, "", seq=1)]
    await asyncio.sleep(timeout)
    return "second", []


async def landed(req):
    return "started"


@pytest.mark.timeout(30)
@pytest.mark.parametrize("dies, grace_s, kinds, down", [
    (2, 10.0, ["completed"], False),       # back within the grace: its end, nothing lost
    (1_000, 1.5, ["lost"], True),          # away past the grace: the node goes down
])
def test_a_runner_that_died_is_given_a_grace_to_come_back_with_its_ends(dies, grace_s, kinds,
                                                                        down):
    async def main():
        ex, ts, _ = started()
        ex.runners = {0: FailsFirst("ends", dies, second_incarnation)}
        ex.restart_grace_s, ex.poll_s = grace_s, 0.05
        ex._cursor[0] = ("first", 0)
        poll = asyncio.ensure_future(ex._poll(0))
        await asyncio.sleep(3.5)
        poll.cancel()
        assert [e.kind for e in ex.take_ended()] == kinds
        assert (0 in ex.down) == down
        assert ex.take_node_changes() == ([("a/n0", False)] if down else [])

    asyncio.run(main())


@pytest.mark.timeout(30)
def test_a_start_that_fails_is_sent_again_until_it_lands_or_the_run_is_not_ours():
    async def main():
        ex, ts, _ = started()
        ex.runners = {0: FailsFirst("start", 2, landed)}
        ts.placed_at[0] = 7                       # placed again here: a fresh start
        ex.start(ts, 0, 0)
        await asyncio.sleep(3.0)
        starts = [c[1].run_id for c in ex.runners[0].calls if c[0] == "start"]
        # run 5's start (sent by started()) failed and is not sent again: 7 replaced it;
        # run 7's failed once and landed the second time
        assert starts == [5, 7, 7]
        ex.runners = {0: FailsFirst("start", 1_000, landed)}
        ts.placed_at[0] = 8
        ex.start(ts, 0, 0)
        await asyncio.sleep(1.5)
        ex._node_down(0, "its runner does not answer")      # lost: reported, not retried
        await asyncio.sleep(2.0)
        starts = [c[1].run_id for c in ex.runners[0].calls if c[0] == "start"]
        assert 2 <= len(starts) <= 3 and set(starts) == {8}
        assert all(t.done() for t in ex._tasks)

    asyncio.run(main())


@pytest.mark.timeout(30)
def test_a_restarted_agent_reports_up_every_node_whose_runner_answers():
    """A probe: a node taken down (its raylet killed) stayed down in the committed schedule
    through five restarts of agora up, its new runner idle beside open work: the executor
    only ever reported "up" for a node it had itself taken down. At (re)start it now reports
    up every node whose runner answers, down one whose runner does not."""
    async def main():
        ex, _ts, runner = started()
        ex.take_node_changes()
        await ex.recover([], ex.ledger)
        for t in ex._tasks:
            t.cancel()
        assert ex.take_node_changes() == [("a/n0", True)]
        gone, _ts, _r = started()
        gone.runners = {0: FailsFirst("snapshot", 1_000, landed)}    # its node died
        gone.take_node_changes()
        await gone.recover([], gone.ledger)
        for t in gone._tasks:
            t.cancel()
        assert gone.take_node_changes() == [("a/n0", False)]

    asyncio.run(main())


async def never(*_args):
    await asyncio.sleep(3600)


@pytest.mark.timeout(30)
def test_a_node_whose_ray_node_the_gcs_holds_dead_goes_down_before_its_runner_times_out():
    """A probe: for 20-50 s after a raylet died new work was still placed on its node (the
    runner's calls neither fail nor return until their timeout). The executor reads which Ray
    nodes the GCS holds dead (here a fake of that read) and takes their nodes down at once."""
    async def main():
        ex, _ts, runner = started()
        ex.runners = {0: FailsFirst("ends", 0, never)}        # a long poll never answered
        ex.call_timeout_s, ex.node_check_s = 60.0, 0.05
        dead: set[str] = set()
        ex.read_dead = lambda: set(dead)
        await ex.recover([], ex.ledger)
        assert ex.ray_node == {0: "R1"}
        await asyncio.sleep(0.3)
        assert 0 not in ex.down                               # R1 alive: nothing happens
        dead.add("R1")
        await asyncio.sleep(0.5)
        for t in ex._tasks:
            t.cancel()
        assert 0 in ex.down
        assert [(e.kind, e.reason) for e in ex.take_ended()] == [
            ("lost", "node a/n0: its Ray node died")]
        assert ex.take_node_changes()[-1] == ("a/n0", False)

    asyncio.run(main())


@pytest.mark.timeout(30)
def test_a_node_no_live_ray_node_carries_starts_down_without_waiting_for_its_runner():
    """A probe: on a joined Ray cluster with one Agora node's Ray node missing, agora up took
    23-28 s instead of 9 -- the agent's recovery waited its runner's call timeout (the runner
    waits, unplaced, for a Ray node with its resource). Such a node is now down at once,
    its runner not asked; once the runner answers (a Ray node with its resource joined), the
    poll brings it up. A GCS that cannot be read leaves the runner asked, as before."""
    async def main():
        loop = asyncio.get_running_loop()
        ex, _ts, _runner = started()
        ex.runners = {0: FailsFirst("snapshot", 0, never)}     # unplaced: never answers
        ex.call_timeout_s, ex.node_check_s = 60.0, 0
        ex.read_carried = lambda: {"some_other_resource"}
        ex.take_node_changes()
        t0 = loop.time()
        await ex.recover([], ex.ledger)
        assert loop.time() - t0 < 1.0
        for t in ex._tasks:
            t.cancel()
        assert 0 in ex.down and ex.take_node_changes() == [("a/n0", False)]
        assert [c for c in ex.runners[0].calls if c[0] == "snapshot"] == []

        up, _ts, _runner = started()           # then a node with its resource joins
        up.runners = {0: FailsFirst("ends", 0, second_incarnation)}
        up.read_carried, up.node_check_s, up.poll_s = (lambda: set()), 0, 0.05
        up.take_node_changes()
        await up.recover([], up.ledger)
        await asyncio.sleep(0.3)
        for t in up._tasks:
            t.cancel()
        assert 0 not in up.down
        assert up.take_node_changes() == [("a/n0", False), ("a/n0", True)]

        unread, _ts, runner = started()
        unread.read_carried, unread.node_check_s = (lambda: 1 / 0), 0   # the GCS away
        await unread.recover([], unread.ledger)
        for t in unread._tasks:
            t.cancel()
        assert 0 not in unread.down and ("snapshot",) in runner.calls

    asyncio.run(main())


@pytest.mark.timeout(30)
def test_a_runner_answering_from_a_dead_ray_node_does_not_bring_its_node_up():
    """A runner outlives its raylet by up to a second: its answer then must not undo the
    node's death; one answering from another Ray node (Ray restarted it there) does."""
    async def main():
        ex, _ts, runner = started()
        ex.ray_node = {0: "R1"}
        ex._ray_node_dead(0, "R1")
        assert 0 in ex.down
        assert not await ex._back_up(0)
        assert 0 in ex.down
        runner.ray_node = "R2"
        assert await ex._back_up(0)
        assert 0 not in ex.down and ex.ray_node == {0: "R2"}

    asyncio.run(main())

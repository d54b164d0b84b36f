"""A site the operator removed (or whose key another replaced) while its agent ran: the
agent went on running its work, unreported, while the schedule placed that work again
elsewhere -- it ran twice -- and knocked at the replicas for good (a probe of membership
changes). Its clearinghouse now asks, after heartbeats no replica took, whether the site's
key is still the group's; refused twice (f+1 replicas agreeing: ``CoordinatorError``), the
agent kills what it runs and acts no more.

Over fakes of the coordinator client and the agent's parts (objects recording calls, in this
unit test only); the refusal itself over gRPC is in ``tests/security``."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import grpc
import pytest

from agora.agents.cluster.runtime import AgentRuntime
from agora.coordinator.clearinghouse import PbftClearinghouse
from agora.coordinator.client import CoordinatorError
from tests.simkit import cluster, node, site

NO_KEY = ("envelope.payload.request.client_id: no key for client 'site:b'; expected a "
          "client of the key file or a site the operator admitted (and did not remove)")


class FakeClient:
    client_id = "site:b"

    def __init__(self, refusal: CoordinatorError) -> None:
        self.refusal = refusal
        self.asked = 0

    async def heartbeat(self, wait_s: float | None = None) -> int:
        return 0                                  # no replica takes its beats

    async def schedule(self, **by):
        assert by == {"job_id": "agora-key-check"}      # a cheap question, not the ledger
        self.asked += 1
        raise self.refusal


def clearinghouse(refusal: CoordinatorError) -> PbftClearinghouse:
    cl = cluster(site("b", node("b", "n0", 2)))
    return PbftClearinghouse(cluster=cl, client=FakeClient(refusal), heartbeat_s=0.01)


ROTATED = ("envelope.payload.request.signature: does not verify with the key of client "
           "'site:b'")


@pytest.mark.timeout(30)
@pytest.mark.parametrize("why", [NO_KEY, ROTATED])
def test_a_site_whose_key_is_refused_twice_stops_and_tells_its_agent(why):
    async def main():
        ch = clearinghouse(CoordinatorError(grpc.StatusCode.UNAUTHENTICATED, why, {}))
        told = []
        ch.on_update = told.append
        other = asyncio.ensure_future(asyncio.sleep(60))     # its watch, say
        ch._tasks = [other]
        await asyncio.wait_for(ch._heartbeats(), 10)
        assert ch.removed == why and told == [[]] and ch.client.asked == 2
        await asyncio.sleep(0)
        assert other.cancelled()

    asyncio.run(main())


@pytest.mark.timeout(30)
def test_replicas_that_do_not_answer_are_no_removal():
    async def main():
        ch = clearinghouse(CoordinatorError(grpc.StatusCode.UNAVAILABLE, "no 2 matching", {}))
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(ch._heartbeats(), 0.5)
        assert ch.removed is None and ch.client.asked > 2

    asyncio.run(main())


def test_a_removed_sites_agent_kills_everything_it_runs_and_acts_no_more():
    kills = []
    executor = SimpleNamespace(running=lambda: {("j", "t", 0), ("j", "t", 1)},
                               kill=lambda key, why, report: kills.append((key, why, report)))
    ledger = SimpleNamespace(tasks={})
    rt = AgentRuntime.__new__(AgentRuntime)
    rt.own_nodes = range(0, 1)
    rt.counts = {"reconciled_killed": 0}
    rt.agent = SimpleNamespace(executor=executor, clearinghouse=SimpleNamespace(
        ledger=ledger, removed=NO_KEY, round_info=lambda: pytest.fail("it acted")))
    rt._reconcile()
    assert sorted(k for k, _, _ in kills) == [("j", "t", 0), ("j", "t", 1)]
    assert all(not report and why.startswith("the site was removed: ") for _, why, report
               in kills)
    rt.act_if_owed()                           # returns before it looks at the round


@pytest.mark.timeout(30)
def test_an_agent_that_cannot_follow_the_schedule_any_more_restarts_itself():
    """Its view fell behind past history the coordinator compacted away (more than 2f
    replicas refuse its watch): the clearinghouse tells its agent, which restarts to read
    the ledger afresh, instead of asking again every few seconds for good (over this test's
    fake client)."""
    from agora.coordinator.watch_merge import WatchRefused

    class Refusing(FakeClient):
        def watch(self, since_version):
            async def refused():
                raise WatchRefused(f"since_version: {since_version}; compacted away")
                yield                                  # an async generator
            return refused()

    async def main():
        ch = PbftClearinghouse(cluster=cluster(site("b", node("b", "n0", 2))),
                               client=Refusing(CoordinatorError(grpc.StatusCode.OK, "", {})),
                               heartbeat_s=0.01)
        told = []
        ch.lost_track = told.append
        await asyncio.wait_for(ch._follow(), 5)          # returns once it has told
        return told
    told = asyncio.run(main())
    assert told == ["cannot follow the schedule from version 0 (since_version: 0; "
                    "compacted away)"]

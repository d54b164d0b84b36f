"""Review of a2c8e24: a site's removal reaches the agents only as the ``sites`` entry of
the removal's update. A watch that resumes past the replicas' kept updates (an agent cut
off WATCH_QUEUE behind, or replicas restarted: their ring is empty) gets that version
rebuilt from history (``watch_history.history``: allocations and instance changes only), with
no entry: the agent went on taking the removed site's codes until it restarted."""

from __future__ import annotations

import asyncio

import pytest

import agora.coordinator.clearinghouse as chm
from agora.coordinator.clearinghouse import PbftClearinghouse
from agora.coordinator.queries import ledger_query
from agora.coordinator.watch_history import history
from agora.protos.agora.v1 import coordinator_pb2 as pb
from tests.cluster.test_removed_site_codes import Watching
from tests.coordinator.state_helpers import Run, cluster, decide, job, op, submit, vote


def removed_with_work() -> tuple[Run, int]:
    """c runs a's job, then the operator removes c: the version before the removal."""
    r = Run()
    r("site:a", submit(job("j", "a", n=1, dag=False)))
    r("site:c", decide("c", 0, ("j", "map", 1, 5)))
    for i in (0, 1):
        if r.state.round == 0:
            r(f"replica:{i}", vote(0))
    assert r.state.ledger.tasks[("j", "map")].running == 1
    before = r.state.version
    assert r("operator", op(remove_site=pb.RemoveSite(site="c"))).accepted == 1
    return r, before


class WatchingAndReading(Watching):
    def __init__(self, updates, state) -> None:
        super().__init__(updates)
        self.state = state

    async def ledger(self) -> pb.LedgerView:
        q = op(query=ledger_query())
        return pb.QueryResult.FromString(self.state.query("site:a", q)).ledger


@pytest.mark.timeout(30)
def test_an_agent_that_meets_a_removal_rebuilt_stops_taking_the_sites_codes():
    r, before = removed_with_work()
    live = [(s.lapsed, s.removed) for s in r.updates[-1].sites if s.site == "c"]
    assert live == [(True, True)]                           # the update as it was published
    rebuilt = list(history(r.state, before + 1, r.state.version + 1))
    assert rebuilt and rebuilt[-1].changes and not rebuilt[-1].sites   # as a watch gets it

    async def main():
        ch = PbftClearinghouse(cluster=cluster(),
                               client=WatchingAndReading(rebuilt, r.state))
        held = ch.removed_sites
        ch.version = before
        ch.on_update = lambda started: None
        real = chm.apply_update
        chm.apply_update = lambda *a, **k: []             # the agent's ledger is not the point
        try:
            follow = asyncio.ensure_future(ch._follow())
            for _ in range(200):
                if "c" in held:
                    break
                await asyncio.sleep(0.01)
            follow.cancel()
        finally:
            chm.apply_update = real
        assert held == {"c"} and ch.removed_sites is held, (
            f"removed sites after the rebuilt removal: {held}")
        assert "c" in ch.lapsed

    asyncio.run(main())

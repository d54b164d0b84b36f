"""Compaction in a running group (``retain_finished_jobs`` in the coordinator's config): the
ledger a client reads lists the kept jobs and counts the others; a watch from the beginning
is still served whole from the replicas' recent updates; a replica restarted from its
checkpoint, whose recent updates no longer reach back, refuses a watch that would need the
dropped history (OUT_OF_RANGE, naming the rule) instead of streaming a history with holes;
and a client that more than 2f replicas refuse gets ``WatchRefused`` rather than waiting
forever."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from agora.coordinator.watch_merge import WatchRefused, merged_watch
from agora.deploy.local_group import LocalGroup
from agora.protos.agora.v1 import coordinator_pb2 as pb
from tests.coordinator.grpc_helpers import (CLIENTS, CLUSTER, close_round, completed,
                                            current_round, decision, job, run)


async def _fill(g: LocalGroup) -> None:
    async with g.client("operator") as op:
        res = await op.submit_jobs([job(f"c{i}", n=1) for i in range(4)])
        assert res.accepted == 4
    rnd = await current_round(g)
    await close_round(g, rnd, {"east": decision("east", rnd, *(
        (f"c{i}", "map", 1, 1) for i in range(4)))})
    async with g.client("site:east") as east:     # map done: reduce opens; run it too
        await east.submit_round(pb.SiteRound(site="east", ends=[
            e for i in range(4) for e in completed(f"c{i}", "map", 0)]))
    rnd = await current_round(g)
    await close_round(g, rnd, {"east": decision("east", rnd, *(
        (f"c{i}", "reduce", 1, 1) for i in range(4)))})
    async with g.client("site:east") as east:
        await east.submit_round(pb.SiteRound(site="east", ends=[
            e for i in range(4) for e in completed(f"c{i}", "reduce", 0)]))
    async with g.client("operator") as op:       # an admission: the schedule scans
        assert (await op.submit_jobs([job("tail", n=1)])).accepted == 1


async def _raw_watch(g: LocalGroup, i: int, since: int) -> grpc.aio.AioRpcError | None:
    """One replica's WatchSchedule from ``since``: its refusal, or None once it streams."""
    async with g.client("operator") as op:
        op.open()
        method = op._channels[i].unary_stream("/agora.v1.Coordinator/WatchSchedule",
                                              request_serializer=None,
                                              response_deserializer=None)
        call = method(pb.WatchRequest(since_version=since, auth=op.read_auth(
            "WatchSchedule", since, i)).SerializeToString())
        try:
            async for _ in call:
                call.cancel()
                return None
        except grpc.aio.AioRpcError as e:
            return e
    return None


@pytest.mark.timeout(180)
def test_a_running_group_compacts_and_refuses_only_the_watches_it_cannot_serve(tmp_path):
    g = LocalGroup(tmp_path, n=4, clients=CLIENTS, key_seed=b"test-compaction",
                   cluster=str(CLUSTER), batch_size=8, batch_timeout_s=0.001,
                   checkpoint_interval=4, watermark_window=16, view_change_timeout_s=0.5,
                   request_timeout_s=8.0, round_timeout_s=4.0, site_timeout_s=3600.0,
                   retain_finished_jobs=1)
    with g.serving():
        run(_fill(g))

        async def ledger():
            async with g.client("operator") as op:
                return await op.ledger()
        view = run(ledger())
        kept = [r.job.id for r in view.jobs]
        assert "tail" in kept and len(kept) <= 3
        assert {c.name: c.count for c in view.compaction.jobs} == {"completed": 5 - len(kept)}
        assert view.compaction.history_floor > 0

        # served whole from the recent updates of a replica that has run since the start
        assert run(_raw_watch(g, 1, 0)) is None
        # a replica restarted from its checkpoint no longer holds those updates
        g.kill(0)
        g.start(0)
        g.wait_serving(0)
        err = run(_raw_watch(g, 0, 0))
        assert err is not None and err.code() == grpc.StatusCode.OUT_OF_RANGE
        assert "retain_finished_jobs" in err.details() and "since_version: 0" in err.details()
        assert run(_raw_watch(g, 0, view.compaction.history_floor + 1)) is None

        async def refused_by_f_plus_1():
            async with g.client("operator") as op:
                op.open()
                chans = op._channels
                stand_in = [0, 0, 0, 3]     # replica 0 answers for 3 of 4: more than 2f
                bad = [chans[k] for k in stand_in]

                def auth(method, since, i):
                    return op.read_auth(method, since, stand_in[i])
                async for _ in merged_watch(bad, 1, [0, 1], auth, 0):
                    raise AssertionError("a watch with holes was streamed")
        with pytest.raises(WatchRefused, match="retain_finished_jobs"):
            run(asyncio.wait_for(refused_by_f_plus_1(), 30))

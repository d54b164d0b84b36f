"""Replicas killed with SIGKILL over real gRPC: the others carry on without a killed backup,
which catches up from its SQLite database when restarted; a killed primary gives a view
change, commits resume, and no allocation agreed before is lost."""

from __future__ import annotations

import asyncio
import time

import grpc
import pytest

from agora.coordinator.client import CoordinatorError
from agora.protos.agora.v1 import coordinator_pb2_grpc as rpc
from tests.coordinator.grpc_helpers import close_round, current_round, decision, job, statuses

pytestmark = pytest.mark.timeout(180)


def test_a_killed_backup_does_not_stop_commits_and_catches_up_after_restart(group):
    async def go():
        s = await statuses(group)
        primary = s[0].primary
        victim = (primary + 1) % 4
        group.kill(victim)
        async with group.client("site:east") as east, group.client("operator") as op:
            for k in range(6):       # more than a checkpoint interval (4)
                r = await east.submit_jobs([job(f"k{k}")])
                assert r.accepted == 1
                await close_round(group, r.round, {
                    "east": decision("east", r.round, (f"k{k}", "map", 1, 1))})
            live = [x for x in await op.status() if not isinstance(x, str)]
            assert len(live) == 3
            target = max(x.last_executed for x in live)
        group.start(victim)
        group.wait_serving(victim)
        async with group.client("site:east") as east:
            # one more commit gives the restarted replica something to catch up to
            await east.submit_jobs([job("after-restart")])
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with grpc.insecure_channel(group.config.replicas[victim]) as ch:
                st_ = rpc.CoordinatorStub(ch).GetStatus(group.status_request(replica=victim), timeout=5)
            if st_.last_executed > target:
                break
            await asyncio.sleep(0.3)
        assert st_.last_executed > target, f"replica {victim} stuck at {st_.last_executed}"
        ss = [x for x in await statuses(group) if not isinstance(x, str)]
        assert len(ss) == 4
        assert len({x.allocations for x in ss}) == 1
    asyncio.run(asyncio.wait_for(go(), 120))


def test_a_killed_primary_gives_a_view_change_and_loses_no_committed_allocation(group):
    """SIGKILL of the primary while a client is committing: the backups change view, commits
    resume, and the schedule agreed by f+1 replicas afterwards holds every allocation agreed
    before (same rows, same versions and rounds)."""
    async def go():
        s = [x for x in await statuses(group) if not isinstance(x, str)]
        primary, view0 = s[0].primary, max(x.view for x in s)
        async with group.client("site:east") as east, group.client("site:west") as west, \
                group.client("operator") as op:
            for k in range(3):
                r = await east.submit_jobs([job(f"pk{k}")])
                assert r.accepted == 1
                t = await close_round(group, r.round, {
                    "west": decision("west", r.round, (f"pk{k}", "map", 2, 3))})
                assert [a.round for a in t.allocations] == [r.round]
            before = (await op.schedule(all=True)).schedule.allocations
            assert {a.job_id for a in before} >= {"pk0", "pk1", "pk2"}
            assert all(a.round >= 0 for a in before)

            commits: list[float] = []
            stop = asyncio.Event()

            async def load():   # keeps committing through the kill
                k = 0
                while not stop.is_set():
                    try:
                        r = await east.submit_jobs([job(f"pl{k}")])
                        assert r.accepted == 1
                        commits.append(time.monotonic())
                        k += 1
                    except CoordinatorError:
                        await asyncio.sleep(0.05)

            task = asyncio.ensure_future(load())
            while len(commits) < 3:
                await asyncio.sleep(0.05)
            group.kill(primary)
            t_kill = time.monotonic()
            while not any(t > t_kill for t in commits) and time.monotonic() - t_kill < 60:
                await asyncio.sleep(0.05)
            resumed = [t for t in commits if t > t_kill]
            assert resumed, "no commit within 60 s of killing the primary"
            while len([t for t in commits if t > t_kill]) < 3:
                await asyncio.sleep(0.05)
            stop.set()
            await task

            live = [x for x in await op.status() if not isinstance(x, str)]
            assert len(live) == 3
            assert all(x.view > view0 and x.primary != primary for x in live)
            # the client follows the new primary: its next requests go there first
            assert east._preferred[0] == live[0].primary
            rnd = await current_round(group)   # the new primary orders rounds too
            t = await close_round(group, rnd, {
                "west": decision("west", rnd, ("pl0", "map", 2, 3))})
            after = (await op.schedule(all=True)).schedule.allocations
            ser = lambda rows: [a.SerializeToString(deterministic=True) for a in rows]
            assert ser(after)[:len(before)] == ser(before)
            assert len(after) == len(before) + len(t.allocations)
        group.start(primary)       # leave the module's group whole
        group.wait_serving(primary)
    asyncio.run(asyncio.wait_for(go(), 140))

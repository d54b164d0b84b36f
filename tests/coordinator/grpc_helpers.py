"""Helpers of the coordinator's gRPC tests (test_grpc_*.py; the TLS, metrics, offline,
replica-failure and security tests use them too): four `agora coordinator` processes on
loopback (``make_group``; conftest.py's module-scoped ``group`` fixture starts them), the jobs
and site decisions sent to them, a round closed by every site, and waits on the replicas'
statuses."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from agora.agents.domain import Demand, Job, Task
from agora.deploy.local_group import LocalGroup
from agora.protos.agora.v1 import coordinator_pb2 as pb

ROOT = Path(__file__).resolve().parents[2]
CLUSTER = ROOT / "tests" / "fixtures" / "cluster_small.yaml"
CLIENTS = ["site:east", "site:west", "site:edge", "operator"]
ROUND_TIMEOUT_S = 4.0
"""long enough that ``close_round``'s three sites, each with a fresh client, decide before the
replicas' round timers close the round on a loaded machine (at 1 s, CI once closed it between
two sites' decisions and a bid was refused as for a wrong round)"""


def make_group(tmp: Path) -> LocalGroup:
    """Four `agora coordinator` processes on loopback, and their config and keys."""
    return LocalGroup(tmp, n=4, clients=CLIENTS, key_seed=b"test-grpc", cluster=str(CLUSTER),
                      batch_size=8, batch_timeout_s=0.001, checkpoint_interval=4,
                      watermark_window=16, view_change_timeout_s=0.5, request_timeout_s=8.0,
                      round_timeout_s=ROUND_TIMEOUT_S, site_timeout_s=3600.0)


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 60))


def job(jid: str, origin: str = "east", n: int = 4) -> Job:
    return Job(id=jid, arrival=0.0, origin=origin, tasks=(
        Task("map", 10.0, Demand(2000, 1024), instances=n),
        Task("reduce", 5.0, Demand(1000, 512), instances=1, after=("map",))))


async def statuses(g: LocalGroup) -> list:
    async with g.client("operator") as c:
        return await c.status()


async def current_round(g: LocalGroup) -> int:
    s = [x for x in await statuses(g) if not isinstance(x, str)]
    return max(x.round for x in s)


def decision(site: str, rnd: int, *bids: tuple[str, str, int, int], ends=()) -> pb.SiteRound:
    return pb.SiteRound(site=site, round=rnd, bidding=True, ends=list(ends), bids=[
        pb.Bid(job_id=j, task_id=t, instances=n, price=p) for j, t, n, p in bids])


def completed(j: str, t: str, *instances: int) -> list[pb.End]:
    return [pb.End(job_id=j, task_id=t, instance=i, kind=pb.END_COMPLETED, start_s=1.0,
                   end_s=2.0) for i in instances]


async def close_round(g: LocalGroup, rnd: int, decided: dict[str, pb.SiteRound]) -> pb.Result:
    """Every site decides for round ``rnd`` (those not in ``decided`` pass); returns the
    result of the decision that closed it."""
    last = None
    for s in ("east", "west", "edge"):
        async with g.client(f"site:{s}") as c:
            last = await c.submit_round(decided.get(s, decision(s, rnd)))
    assert last.round == rnd + 1, "every site decided: the round must have closed"
    return last


async def settled(op, holds, timeout_s: float = 10.0):
    """The replicas' statuses once ``holds(statuses)`` (a backup may still be executing what
    f+1 others already answered from: it catches up); fails with them after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        ss = await op.status()
        if holds(ss):
            return ss
        assert time.monotonic() < deadline, ss
        await asyncio.sleep(0.1)

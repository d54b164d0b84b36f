"""Reads are charged by what they cost, not by count (review, 2026-12-02): a site's 1,000
whole-ledger queries a second, each within its request rate, stalled a group of four on one
2-core machine. Each replica now times a client's read-only queries and refuses the queries
of a client past ``client_read_seconds_per_s`` (RESOURCE_EXHAUSTED naming the limit) until it
is back under; its ordered requests and other clients' reads go on, and the operator's reads
are never refused."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from agora.coordinator.rate_limit import ClientRate
from agora.deploy.local_group import LocalGroup
from agora.protos.agora.v1 import coordinator_pb2 as pb
from agora.protos.agora.v1 import coordinator_pb2_grpc as rpc
from tests.coordinator.grpc_helpers import CLUSTER, job

CLIENTS = ["site:east", "site:west", "operator"]


def test_read_cost_is_a_budget_of_seconds_charged_after_each_query():
    now = [0.0]
    c = ClientRate(0.05, burst=0.05, clock=lambda: now[0])
    assert c.allowed("a")
    c.charge("a", 0.2)                   # one costly query is answered, and puts it in debt
    assert not c.allowed("a") and c.allowed("b")     # another client is not affected
    now[0] += 2.0                        # 0.1 s back: still 0.05 s in debt
    assert not c.allowed("a")
    now[0] += 1.1
    assert c.allowed("a")
    now[0] += 100.0                      # a quiet client saves at most one second's worth
    c.charge("a", 0.05)
    assert not c.allowed("a")
    with pytest.raises(ValueError):
        ClientRate(0)


@pytest.fixture(scope="module")
def group(tmp_path_factory):
    g = LocalGroup(tmp_path_factory.mktemp("reads"), n=4, clients=CLIENTS, cluster=str(CLUSTER),
                   key_seed=b"reads", client_read_seconds_per_s=1e-6,
                   round_timeout_s=1.0, site_timeout_s=3600.0)
    with g.serving():
        yield g


@pytest.mark.timeout(120)
def test_a_client_past_its_read_budget_is_refused_reads_and_nothing_else(group):
    async def go():
        async with group.client("operator") as op:
            await op.submit_jobs([job(f"reads-{k}", origin="east") for k in range(20)])
    asyncio.run(asyncio.wait_for(go(), 60))

    west = group.client("site:west")
    query = pb.Command(query=pb.Query(ledger=pb.LedgerQuery())).SerializeToString()
    with group.channel(1) as ch:
        stub = rpc.CoordinatorStub(ch)

        def read(client, read_only: bool = True) -> grpc.StatusCode | str:
            _, data = client.envelope(query, read_only=read_only)
            try:
                stub.GetSchedule(pb.ClientRequest.FromString(data), timeout=10)
                return "ok"
            except grpc.RpcError as e:
                if e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
                    assert "client_read_seconds_per_s" in e.details(), e.details()
                return e.code()

        assert read(west) == "ok"        # the query that spends the budget is answered
        assert [read(west) for _ in range(5)] == [grpc.StatusCode.RESOURCE_EXHAUSTED] * 5
        assert read(west, read_only=False) == grpc.StatusCode.RESOURCE_EXHAUSTED  # ordered too
        east = group.client("site:east")
        assert read(east, read_only=False) == "ok"      # another reader is not charged, and
        assert read(east) == grpc.StatusCode.RESOURCE_EXHAUSTED   # ordered queries spend it
        op = group.client("operator")
        assert [read(op) for _ in range(3)] == ["ok"] * 3        # the operator is not limited

    async def ordered():                  # the same client's ordered requests go on
        async with group.client("site:west") as w:
            r = await w.submit_jobs([job("reads-west", origin="west")])
            assert r.accepted == 1
    asyncio.run(asyncio.wait_for(ordered(), 60))

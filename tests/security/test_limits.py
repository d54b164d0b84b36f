"""Finding 4 (issue 16): no limits. One site sent 200,000 bids in one 3 MB request: 13 s to
execute while every other client waited. Now a part holds at most MAX_BIDS_PER_PART bids
(and bounded ends and node states), a request at most ``max_request_bytes``, and a client at
most ``client_requests_per_s`` requests a second at each replica: over a limit is refused
with RESOURCE_EXHAUSTED naming the limit, before it is ordered. The state machine refuses an
oversized part too (a faulty primary could order one), deterministically."""

from __future__ import annotations

import asyncio
import time

import grpc
import pytest

from agora.agents.workloads.loader import load_cluster
from agora.deploy.local_group import LocalGroup
from agora.coordinator.pbft.keys import generate_keys
from agora.coordinator.rate_limit import ClientRate
from agora.coordinator.schedule_state import MAX_BIDS_PER_PART, ScheduleState
from agora.coordinator.validate import Refusal, parse_request
from agora.protos.agora.v1 import coordinator_pb2 as pb
from agora.protos.agora.v1 import coordinator_pb2_grpc as rpc
from tests.coordinator.grpc_helpers import CLUSTER, current_round, job

CLIENTS = ["site:east", "site:west", "site:edge", "operator"]


def flood(site: str, rnd: int, n: int) -> pb.Command:
    return pb.Command(site_round=pb.SiteRound(site=site, round=rnd, bidding=True, bids=[
        pb.Bid(job_id=f"j{i}", task_id="t", instances=1, price=1) for i in range(n)]))


def signed(client_id: str, cmd: pb.Command) -> bytes:
    from agora.coordinator.client import CoordinatorClient
    from agora.coordinator.config import config_from_dict

    cfg = config_from_dict({"replicas": ["127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3",
                                         "127.0.0.1:4"]})
    keys = generate_keys(4, CLIENTS, seed=b"limits")
    c = CoordinatorClient(cfg, keys.for_client(client_id), client_id)
    return pb.ClientRequest.FromString(c.envelope(cmd.SerializeToString())[1]).envelope


def test_a_200000_bid_part_is_refused_before_ordering_naming_the_limit():
    data = signed("site:east", flood("east", 0, 200_000))
    assert len(data) > 2_000_000
    with pytest.raises(Refusal) as e:
        parse_request(data, "SubmitRound")
    assert e.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "site_round.bids: 200000 bids; the limit is 4096" in e.value.message
    # a part at the limit is fine
    parse_request(signed("site:east", flood("east", 0, MAX_BIDS_PER_PART)), "SubmitRound")


def test_the_state_machine_refuses_an_oversized_part_a_faulty_primary_ordered():
    state = ScheduleState(load_cluster(str(CLUSTER)))
    op = flood("east", 0, MAX_BIDS_PER_PART + 1).SerializeToString()
    res = pb.Result.FromString(state.execute("site:east", op, 1))
    assert [r.field for r in res.rejections] == ["command.site_round.bids"]
    assert "limit is 4096" in res.rejections[0].reason
    assert state.parts == {} and res.accepted == 0
    again = ScheduleState(load_cluster(str(CLUSTER)))       # the same on every replica
    assert again.execute("site:east", op, 1) == res.SerializeToString(deterministic=True)


def test_a_part_of_invalid_items_gets_a_bounded_reply_and_every_rejection_counted():
    """A review: a part within the limits whose every item is invalid drew one rejection per
    item -- 8.5 MB of reply from every replica, kept in its reply table. A part's result
    lists the first LISTED_PART_REJECTIONS and counts the rest in one more; the counters
    (agora status) still count each."""
    from agora.coordinator.schedule_rules import LISTED_PART_REJECTIONS

    state = ScheduleState(load_cluster(str(CLUSTER)))
    op = flood("east", 0, MAX_BIDS_PER_PART).SerializeToString()
    out = state.execute("site:east", op, 1)
    res = pb.Result.FromString(out)
    assert len(res.rejections) == LISTED_PART_REJECTIONS + 1
    assert res.rejections[0].field == "command.site_round.bids[0].task_id"
    more = MAX_BIDS_PER_PART - LISTED_PART_REJECTIONS
    assert (res.rejections[-1].field, res.rejections[-1].reason) == (
        "command", f"{more} more rejections, not listed (a result lists the first 256)")
    assert sum(state.rejected.values()) == MAX_BIDS_PER_PART
    assert len(out) < 40_000
    # a submission still lists every refused job (a client maps them back to its jobs)
    submit = pb.SubmitJobs()
    for i in range(300):
        submit.jobs.add(id=f"x{i}", origin="nowhere")
    jobs = pb.Command(submit_jobs=submit).SerializeToString()
    res = pb.Result.FromString(state.execute("operator", jobs, 2))
    assert len(res.rejections) == 300 and res.accepted == 0


def test_client_rate_is_a_token_bucket_per_client():
    now = [0.0]
    r = ClientRate(10.0, clock=lambda: now[0])
    assert sum(r.take("a") for _ in range(50)) == 10        # a burst of one second's worth
    assert r.take("b")                                       # another client is not affected
    now[0] += 0.5
    assert sum(r.take("a") for _ in range(50)) == 5          # refilled at 10 a second
    with pytest.raises(ValueError):
        ClientRate(0)
    peers = ClientRate(100.0, clock=lambda: now[0])     # per peer replica, many at once
    assert peers.take_many("3", 250) == 100
    assert peers.take_many("3", 5) == 0 and peers.take_many("2", 5) == 5
    now[0] += 0.1
    assert peers.take_many("3", 250) == 10


# ---- end to end: real replicas ----

@pytest.fixture(scope="module")
def group(tmp_path_factory):
    g = LocalGroup(tmp_path_factory.mktemp("limits"), n=4, clients=CLIENTS, cluster=str(CLUSTER),
                   key_seed=b"limits", max_request_bytes=256 * 1024, client_requests_per_s=20,
                   round_timeout_s=1.0, site_timeout_s=3600.0)
    with g.serving():
        yield g


@pytest.mark.timeout(180)
def test_oversized_and_too_frequent_requests_are_refused_and_others_are_served(group):
    async def go():
        async with group.client("operator") as op:
            await op.submit_jobs([job("limits-1", origin="east")])
            rnd = await current_round(group)
            before = [s.last_executed for s in await op.status()]
        with group.channel(0) as ch:
            stub = rpc.CoordinatorStub(ch)
            big = signed("site:east", flood("east", rnd, 20_000))     # ~400 KB > 256 KiB
            t0 = time.perf_counter()
            with pytest.raises(grpc.RpcError) as e:
                stub.SubmitRound(pb.ClientRequest(envelope=big), timeout=10)
            refused_s = time.perf_counter() - t0
            assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "max_request_bytes" in e.value.details()
        west = group.client("site:west")
        query = pb.Command(query=pb.Query(schedule=pb.ScheduleQuery(all=True)))
        codes = []
        with group.channel(0) as ch:
            stub = rpc.CoordinatorStub(ch)
            for _ in range(60):     # as fast as one client can: far above 20 a second
                _, data = west.envelope(query.SerializeToString(), read_only=True)
                try:
                    stub.GetSchedule(pb.ClientRequest.FromString(data), timeout=10)
                    codes.append("ok")
                except grpc.RpcError as e:
                    codes.append(e.code())
                    if e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
                        assert "client_requests_per_s" in e.details()
        assert "ok" in codes and grpc.StatusCode.RESOURCE_EXHAUSTED in codes, codes
        async with group.client("operator") as op:   # another client is served meanwhile
            await op.submit_jobs([job("limits-2", origin="east")])
            after = await op.status()
        assert all(a.last_executed >= b + 1 for a, b in zip(after, before) if not
                   isinstance(a, str))
        assert sum(c.count for s in after for c in s.rejected
                   if c.name in ("service.over_limit", "service.rate_limited")) >= 2
        return refused_s

    refused_s = asyncio.run(asyncio.wait_for(go(), 120))
    assert refused_s < 5.0     # refused at once, not executed (the flood took 13 s)


@pytest.mark.timeout(120)
def test_replays_of_a_sites_request_do_not_spend_the_budget_of_its_new_requests(group):
    """A review: whoever holds a site's signed request (every replica does) replayed it to a
    replica; each copy spent the site's request budget before being found stale, and the
    site's next genuine request was refused RESOURCE_EXHAUSTED. Copies now cost a budget of
    their own (and older requests nothing): the new request is served."""
    edge = group.client("site:edge")
    cancel = pb.Command(cancel_job=pb.CancelJob(job_id="no-such-job")).SerializeToString()
    with group.channel(0) as ch:
        stub = rpc.CoordinatorStub(ch)
        _, first = edge.envelope(cancel)
        stub.CancelJob(pb.ClientRequest.FromString(first), timeout=30)      # executed
        _, second = edge.envelope(cancel)
        stub.CancelJob(pb.ClientRequest.FromString(second), timeout=30)
        refused = 0
        for data in [first, second] * 40:    # 80 copies at once: the budget is 20 a second
            try:
                stub.CancelJob(pb.ClientRequest.FromString(data), timeout=10)
            except grpc.RpcError as e:
                refused += e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert refused > 0                    # the copies are limited too
        _, fresh = edge.envelope(cancel)
        stub.CancelJob(pb.ClientRequest.FromString(fresh), timeout=30)      # served


def test_an_overlong_client_id_site_name_or_id_is_refused_by_its_length_never_echoed():
    """A request claiming a client id of 100,000 characters was refused with the id in the
    status details, past gRPC's 16 KiB limit on them: the sender saw RESOURCE_EXHAUSTED
    "Stream removed (received metadata size exceeds hard limit)" and no field. Every id a
    refusal may echo is bounded first (client ids, site names, job and task ids)."""
    from agora.protos.agora.v1.pbft_pb2 import PbftEnvelope, PbftMessage

    def claimed(client_id: str) -> bytes:
        env = PbftEnvelope.FromString(signed("operator", pb.Command(
            cancel_job=pb.CancelJob(job_id="j"))))
        msg = PbftMessage.FromString(env.payload)
        msg.request.client_id = client_id
        env.payload = msg.SerializeToString()
        return env.SerializeToString()

    def refusal(data: bytes, rpc_name: str) -> Refusal:
        with pytest.raises(Refusal) as e:
            parse_request(data, rpc_name)
        assert len(e.value.message) < 1000, e.value.message[:200]
        return e.value

    r = refusal(claimed("x" * 100_000), "CancelJob")
    assert r.code == grpc.StatusCode.INVALID_ARGUMENT
    assert r.message.startswith("envelope.payload.request.client_id: 100000 characters; "
                                "expected at most 256")
    long = "y" * 100_000
    for client, rpc_name, cmd, field in [
            ("operator", "CancelJob", pb.Command(cancel_job=pb.CancelJob(job_id=long)),
             "cancel_job.job_id: 100000 characters"),
            ("operator", "CancelJob", pb.Command(cancel_job=pb.CancelJob(job_id="..")),
             "cancel_job.job_id: id '..' names"),
            ("site:east", "SubmitRound", pb.Command(site_round=pb.SiteRound(site=long)),
             "site_round.site: 100000 characters"),
            ("site:east", "SubmitRound", pb.Command(site_round=pb.SiteRound(
                site="east", bidding=True, bids=[pb.Bid(job_id=long, task_id="t",
                                                        instances=1, price=1)])),
             "site_round.bids[0].job_id: 100000 characters"),
            ("site:east", "SubmitRound", pb.Command(site_round=pb.SiteRound(
                site="east", ends=[pb.End(job_id="j", task_id=long, kind=pb.END_LOST)])),
             "site_round.ends[0].task_id: 100000 characters"),
            ("operator", "RemoveSite", pb.Command(remove_site=pb.RemoveSite(site=long)),
             "remove_site.site: 100000 characters"),
            # a node name was checked by its site prefix only, and 100 KB of it was echoed
            # whole in the ordered refusal
            ("site:east", "SubmitRound", pb.Command(site_round=pb.SiteRound(
                site="east", nodes=[pb.NodeState(node="east/" + long, up=False)])),
             "site_round.nodes[0].node: 'east/yyy")]:
        r = refusal(signed(client, cmd), rpc_name)
        assert r.code == grpc.StatusCode.INVALID_ARGUMENT and field in r.message, r.message
    # names in a submitted job: a 100 KB origin, a gpu model holding NUL
    from dataclasses import replace

    from agora.agents.domain import Demand
    from agora.protos.convert import job_to_proto
    base = job("limits-names", origin="east")
    t = base.tasks[0]
    for bad, field in [(replace(base, origin=long), "origin"),
                       (replace(base, tasks=(replace(t, demand=Demand(
                           cpu=t.demand.cpu, mem=t.demand.mem, gpu=1000,
                           gpu_models=("T4\x00",))),)), "gpu_models[0]")]:
        cmd = pb.Command(submit_jobs=pb.SubmitJobs(jobs=[job_to_proto(bad)]))
        r = refusal(signed("operator", cmd), "SubmitJobs")
        assert r.code == grpc.StatusCode.INVALID_ARGUMENT and field in r.message, r.message
        assert "printable characters" in r.message, r.message


@pytest.mark.timeout(120)
def test_the_client_reports_a_request_over_a_limit_naming_the_limit(group):
    """f+1 replicas answering RESOURCE_EXHAUSTED for a request over a limit end the call with
    that answer: the client used to wait them out and raise UNAVAILABLE ("no 2 matching
    replies"), which reads as an outage to retry, and lost the limit's name. A rate limit
    ("retry later") stays retryable."""
    from agora.coordinator.client import CoordinatorError, is_refusal
    from agora.coordinator.schedule_rules import MAX_BIDS_PER_PART

    async def go():
        rnd = await current_round(group)
        async with group.client("site:east") as east:
            with pytest.raises(CoordinatorError) as e:
                await east.submit_round(flood("east", rnd, MAX_BIDS_PER_PART + 1).site_round)
        return e.value

    err = asyncio.run(asyncio.wait_for(go(), 60))
    assert err.code == grpc.StatusCode.RESOURCE_EXHAUSTED, err
    assert f"the limit is {MAX_BIDS_PER_PART}" in err.message
    assert not is_refusal(grpc.StatusCode.RESOURCE_EXHAUSTED,
                          "client 'x' sent more than 20 requests a second; retry later")

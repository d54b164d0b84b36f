"""A client's request is matched to its reply by client and timestamp, so two requests of one
client at one timestamp (a clock of one-second resolution, two processes signing as one
client) used to share a reply: the second got the first one's result and believed itself
executed. Over real gRPC: one replica served in this process (n = 1, f = 0) -- the second is
refused FAILED_PRECONDITION naming the timestamp after the first executed, one waiting with
another op is refused once this one executes, and the same request again still gets its
reply; and four replicas where the two requests reach different replicas first (a probe: the
one never ordered got three "accepted" answers from the replicas it reached first, the one
ordered was refused there and never got f+1 answers)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import pytest

from agora.coordinator.pbft.auth import ClientAuth
from agora.coordinator.validate import Refusal
from agora.protos.agora.v1 import coordinator_pb2 as pb
from agora.protos.agora.v1 import coordinator_pb2_grpc as rpc
from agora.protos.agora.v1.pbft_pb2 import PbftEnvelope, PbftMessage

CLUSTER = Path(__file__).parents[1] / "fixtures" / "cluster_small.yaml"

pytestmark = pytest.mark.timeout(120)


def _request(auth: ClientAuth, ts: int, site_round: pb.SiteRound) -> pb.ClientRequest:
    req = auth.sign_request(ts, pb.Command(site_round=site_round).SerializeToString(), False)
    env = PbftEnvelope(sender=-1, payload=PbftMessage(request=req).SerializeToString())
    return pb.ClientRequest(envelope=env.SerializeToString())


def _result(reply: pb.ClientReply) -> bytes:
    env = PbftEnvelope.FromString(reply.envelope)
    return PbftMessage.FromString(env.payload).reply.result


def test_a_second_request_at_a_used_timestamp_is_refused_and_the_first_one_answered(tmp_path):
    from agora.coordinator.config import config_from_dict
    from agora.coordinator.pbft.keys import generate_keys
    from agora.coordinator.server import serve
    from agora.deploy.local_group import free_ports

    keys = generate_keys(1, ["site:east"], seed=b"reused-timestamp")
    cfg = config_from_dict({"replicas": [f"127.0.0.1:{free_ports(1)[0]}"], "f": 0,
                            "data_dir": str(tmp_path / "data"), "cluster": str(CLUSTER)})
    auth = ClientAuth(keys.for_client("site:east"), "site:east")
    first = _request(auth, 1000, pb.SiteRound(site="east"))
    other = _request(auth, 1000, pb.SiteRound(site="east", round=7))

    async def go():
        server = await serve(cfg, 0, keys)
        try:
            async with grpc.aio.insecure_channel(cfg.replicas[0]) as ch:
                stub = rpc.CoordinatorStub(ch)
                answer = _result(await stub.SubmitRound(first))
                with pytest.raises(grpc.aio.AioRpcError) as e:
                    await stub.SubmitRound(other)
                assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
                assert e.value.details().startswith("envelope.payload.request.timestamp: 1000")
                assert "another request" in e.value.details() and "(executed)" in e.value.details()
                assert _result(await stub.SubmitRound(first)) == answer    # a retry: its reply
                # another request of the client waits at 2000 for its reply (its op told
                # apart by op_key): this one executes, and the other is refused, not given
                # this one's result
                host = server.service.host
                other_waits = host.waiter("site:east", 2000, b"something else")
                mine = _request(auth, 2000, pb.SiteRound(site="east"))
                got = await stub.SubmitRound(mine)
                assert _result(got) and PbftMessage.FromString(
                    PbftEnvelope.FromString(got.envelope).payload).reply.timestamp == 2000
                with pytest.raises(Refusal) as e:
                    other_waits.result()
                assert e.value.code == grpc.StatusCode.FAILED_PRECONDITION
                assert "2000 is the timestamp of another request" in e.value.message
                assert ("site:east", 2000) not in host.waiters
            assert server.service.host.refused["reused_timestamp"] == 1
        finally:
            await server.stop()
    asyncio.run(asyncio.wait_for(go(), 90))


def test_two_requests_at_one_timestamp_reaching_different_replicas_first_get_their_own_answers(
        tmp_path):
    import time

    from agora.protos.convert import job_to_proto
    from tests.coordinator.grpc_helpers import job, make_group

    g = make_group(tmp_path)

    def submit(auth, ts, jid):
        op = pb.Command(submit_jobs=pb.SubmitJobs(jobs=[job_to_proto(job(jid))]))
        req = auth.sign_request(ts, op.SerializeToString(), False)
        env = PbftEnvelope(sender=-1, payload=PbftMessage(request=req).SerializeToString())
        return pb.ClientRequest(envelope=env.SerializeToString())

    async def go():
        async with g.client("operator") as op:
            primary = (await op.status())[0].primary
            auth = ClientAuth(g.keys.for_client("site:east"), "site:east")
            ts = time.time_ns() // 1000
            a, b = submit(auth, ts, "ts-a"), submit(auth, ts, "ts-b")
            chans = [grpc.aio.insecure_channel(addr) for addr in g.config.replicas]
            try:
                stubs = [rpc.CoordinatorStub(c) for c in chans]
                # a reaches the primary only, b every backup only, at the same moment
                sent = {i: (a if i == primary else b) for i in range(4)}
                answers = await asyncio.gather(
                    *(stubs[i].SubmitJobs(sent[i], timeout=20) for i in range(4)),
                    return_exceptions=True)
                ledger = {j.job.id for j in (await op.ledger()).jobs}
                assert len({"ts-a", "ts-b"} & ledger) == 1, ledger
                executed = a if "ts-a" in ledger else b
                for i, got in enumerate(answers):
                    if sent[i] is executed:
                        assert not isinstance(got, Exception), got
                        assert _result(got)
                    else:     # never an answer of the other request's
                        assert isinstance(got, grpc.aio.AioRpcError), (i, got)
                        assert got.code() == grpc.StatusCode.FAILED_PRECONDITION, got
                        assert "is the timestamp of another request" in got.details()
                # the executed one, sent again to every replica: its own reply from each
                again = await asyncio.gather(*(s.SubmitJobs(executed, timeout=20)
                                               for s in stubs))
                assert len({_result(r) for r in again}) == 1
            finally:
                for c in chans:
                    await c.close()

    with g.serving():
        asyncio.run(asyncio.wait_for(go(), 90))

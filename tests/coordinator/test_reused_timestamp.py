"""A client's request is matched to its reply by client and timestamp, so two requests of one
client at one timestamp (a clock of one-second resolution, two processes signing as one
client) used to share a reply: the second got the first one's result and believed itself
executed. Over real gRPC, one replica served in this process (n = 1, f = 0): the second is
refused FAILED_PRECONDITION naming the timestamp -- after the first executed, and while it
still waits -- and the same request again still gets its reply."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import pytest

from agora.coordinator.pbft.auth import ClientAuth
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
                # while one waits for its reply: the host's table of open requests says so
                host = server.service.host
                host.waiter("site:east", 2000, b"something else")
                with pytest.raises(grpc.aio.AioRpcError) as e:
                    await stub.SubmitRound(_request(auth, 2000, pb.SiteRound(site="east")))
                assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
                assert "waiting for its reply" in e.value.details()
            assert server.service.host.refused["reused_timestamp"] == 2
        finally:
            await server.stop()
    asyncio.run(asyncio.wait_for(go(), 90))

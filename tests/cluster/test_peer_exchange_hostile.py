"""An agent's ``PeerExchange`` server (built as ``SiteAgentActor._start`` builds it: the
guard against bytes that are no message, its options, its stream bound) fed hostile streams
over real gRPC, with and without mutual TLS: codes with any field values, bytes that are no
SiteCode before or after valid ones, streams left half-way. Each stream ends with its own
status -- a receipt counting what it took and refused, naming the first refusal's field, or
INVALID_ARGUMENT naming the type -- never UNKNOWN, a hung call or a traceback; only
well-formed codes of the sites the agent listens to reach its book, and it answers after."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from agora.agents.cluster.peers import SERVER_OPTIONS, PeerService
from agora.agents.step.codes import CodeBook
from agora.protos.agora.v1 import agent_pb2 as pb
from agora.protos.agora.v1 import agent_pb2_grpc as rpc
from agora.protos.undecodable import RefuseUndecodable

SITES = ["east", "west", "edge"]
GARBAGE = b"\xff\xff\xff\xff\x0f"

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    from agora.deploy.certs import make_all

    d = tmp_path_factory.mktemp("certs")
    make_all(d, SITES, 0)
    return d


def _pem(d, name):
    return (d / f"{name}.key").read_bytes(), (d / f"{name}.crt").read_bytes()


CODES = st.builds(lambda site, rnd, code, epoch: pb.SiteCode(
    site=site, round=rnd, code=code, epoch=epoch).SerializeToString(),
    site=st.sampled_from(SITES) | st.text(max_size=6) | st.just("w" * 300),
    rnd=st.integers(-2**63, 2**63 - 1) | st.integers(0, 5),
    code=st.binary(min_size=8, max_size=8) | st.binary(max_size=20),
    epoch=st.integers(-2**63, 2**63 - 1))
STREAMS = st.lists(st.lists(CODES | st.just(GARBAGE), min_size=1, max_size=6), min_size=1,
                   max_size=4)


def _taken(m: bytes, tls: bool) -> bool:
    """Whether the agent of east takes code ``m`` from a stream of west (with west's
    certificate under TLS: a code naming another site is refused)."""
    if m == GARBAGE:
        return False
    c = pb.SiteCode.FromString(m)
    senders = ("west",) if tls else ("west", "edge")
    return c.site in senders and len(c.code) == 8 and c.round >= 0


def _run(certs, streams, tls: bool):
    async def main():
        svc = PeerService("east", SITES, CodeBook(3, 8), 8)
        srv = grpc.aio.server(interceptors=[RefuseUndecodable()], options=SERVER_OPTIONS,
                              maximum_concurrent_rpcs=4 * len(SITES) + 32)
        rpc.add_PeerExchangeServicer_to_server(svc, srv)
        if tls:
            ca = (certs / "ca.crt").read_bytes()
            port = srv.add_secure_port("127.0.0.1:0", grpc.ssl_server_credentials(
                [_pem(certs, "site-east")], root_certificates=ca, require_client_auth=True))
            ch = grpc.aio.secure_channel(f"127.0.0.1:{port}", grpc.ssl_channel_credentials(
                ca, *_pem(certs, "site-west")))
        else:
            port = srv.add_insecure_port("127.0.0.1:0")
            ch = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
        await srv.start()
        try:
            send = ch.stream_unary("/agora.v1.PeerExchange/Send",
                                   response_deserializer=pb.CodeReceipt.FromString)

            async def one(msgs):
                async def it():
                    for m in msgs:
                        yield m
                        await asyncio.sleep(0.01)     # one message at a time on the wire
                try:
                    return await send(it(), timeout=10)
                except grpc.aio.AioRpcError as e:
                    return e
            ends = await asyncio.gather(*(one(s) for s in streams))
            after = await send(iter([pb.SiteCode(site="west", round=0, code=bytes(8))
                                     .SerializeToString()]), timeout=10)
            return svc, ends, after
        finally:
            await ch.close()
            await srv.stop(None)
    return asyncio.run(asyncio.wait_for(main(), 60))


@settings(max_examples=20, deadline=None, phases=[Phase.explicit, Phase.generate],
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(streams=STREAMS, tls=st.booleans())
def test_hostile_code_streams_each_end_with_a_status_and_reach_the_book_only_when_valid(
        certs, streams, tls):
    svc, ends, after = _run(certs, streams, tls)
    for msgs, end in zip(streams, ends):
        if (tls and isinstance(end, grpc.aio.AioRpcError)
                and end.code() == grpc.StatusCode.RESOURCE_EXHAUSTED):
            # a peer holds two streams at once over TLS: its newer ones end its oldest
            assert len(streams) > 2 and "replaced this one" in end.details(), end
            continue
        if GARBAGE in msgs:
            assert isinstance(end, grpc.aio.AioRpcError), (msgs, end)
            if end.code() == grpc.StatusCode.INTERNAL:     # the client's own write after it
                assert "execute_batch" in (end.debug_error_string() or ""), end
                continue
            assert end.code() == grpc.StatusCode.INVALID_ARGUMENT, (tls, msgs, end)
            assert "cannot be parsed as agora.v1.SiteCode" in end.details()
            continue
        assert isinstance(end, pb.CodeReceipt), (tls, msgs, end)
        taken = sum(_taken(m, tls) for m in msgs)
        assert (end.accepted, end.refused) == (taken, len(msgs) - taken), (msgs, end)
        if end.refused:
            assert end.reason.split(":")[0] in ("site", "code", "round"), end.reason
            assert len(end.reason) < 400, end.reason
    assert (after.accepted, after.refused) == (1, 0)
    assert svc.book.latest_round[0] == -1                   # never its own
    if tls:
        assert svc.book.latest_round[2] == -1               # edge's, from west's stream

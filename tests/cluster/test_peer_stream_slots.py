"""A hostile admitted site (its own valid certificate) holds every stream slot of a peer's
agent server: the server is built as ``SiteAgentActor._start`` builds it (one global
``maximum_concurrent_rpcs = 4 * sites + 32``), so one site's idle streams lock every honest
neighbour out -- its codes are refused RESOURCE_EXHAUSTED, for as long as the hostile site
keeps its streams open (keepalive keeps them). Expected: a site's streams beyond a few are
its own loss (the oldest of its own end), never another site's."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from agora.agents.cluster.peers import SERVER_OPTIONS, PeerService
from agora.agents.step.codes import CodeBook
from agora.protos.agora.v1 import agent_pb2 as pb
from agora.protos.agora.v1 import agent_pb2_grpc as rpc
from agora.protos.undecodable import RefuseUndecodable

SITES = ["east", "west", "edge"]


@pytest.mark.timeout(60)
def test_one_sites_streams_do_not_lock_the_other_peers_out(tmp_path):
    from agora.deploy.certs import make_all

    make_all(tmp_path, SITES, 0)
    ca = (tmp_path / "ca.crt").read_bytes()

    def pem(name):
        return (tmp_path / f"{name}.key").read_bytes(), (tmp_path / f"{name}.crt").read_bytes()

    async def main():
        svc = PeerService("east", SITES, CodeBook(3, 8), 8)
        srv = grpc.aio.server(interceptors=[RefuseUndecodable()], options=SERVER_OPTIONS,
                              maximum_concurrent_rpcs=4 * len(SITES) + 32)   # site_actor's
        rpc.add_PeerExchangeServicer_to_server(svc, srv)
        port = srv.add_secure_port("127.0.0.1:0", grpc.ssl_server_credentials(
            [pem("site-east")], root_certificates=ca, require_client_auth=True))
        await srv.start()
        hold = asyncio.Event()

        async def idle_stream():             # one code, then open for good
            yield pb.SiteCode(site="west", round=1, code=bytes(8))
            await hold.wait()

        def creds(name):
            return grpc.ssl_channel_credentials(ca, *pem(name))

        bad = grpc.aio.secure_channel(f"127.0.0.1:{port}", creds("site-west"))
        calls = []
        try:
            for _ in range(4 * len(SITES) + 32):
                call = rpc.PeerExchangeStub(bad).Send(idle_stream())
                calls.append(call)
            await asyncio.sleep(1.0)
            async with grpc.aio.secure_channel(f"127.0.0.1:{port}", creds("site-edge")) as ch:
                try:
                    r = await rpc.PeerExchangeStub(ch).Send(
                        iter([pb.SiteCode(site="edge", round=1, code=bytes(8))]), timeout=10)
                    got = (r.accepted, r.refused)
                except grpc.aio.AioRpcError as e:
                    got = (e.code(), e.details())
            assert got == (1, 0), f"edge's honest code: {got}"
            assert svc.book.latest_round[2] == 1
        finally:
            hold.set()
            for c in calls:
                c.cancel()
            await bad.close()
            await srv.stop(None)

    asyncio.run(main())

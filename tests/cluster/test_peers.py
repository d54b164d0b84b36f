"""Codes between site agents over gRPC (agents/cluster/peers.py): what the receiving side
accepts, streams opened before the first round, no acknowledgement waited on, a restarted
peer found again through the resolver, and a code of round r counting from round r + 1."""

from __future__ import annotations

import asyncio

import grpc
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agora.agents.cluster.peers import GrpcExchange, PeerService
from agora.agents.step.codes import CodeBook
from agora.protos.agora.v1 import agent_pb2 as pb
from agora.protos.agora.v1 import agent_pb2_grpc as rpc

SITES = ["east", "west", "edge"]


@settings(max_examples=200, deadline=None)
@given(site=st.text(max_size=8), rnd=st.integers(-5, 2**40), code=st.binary(max_size=80))
def test_peer_service_accepts_exactly_well_formed_codes(site, rnd, code):
    svc = PeerService("east", SITES, CodeBook(3, 8), 8)
    why = svc.check(pb.SiteCode(site=site, round=rnd, code=code))
    ok = site in ("west", "edge") and len(code) == 8 and rnd >= 0
    assert (why == "") == ok
    if not ok:
        assert why.split(":")[0] in ("site", "code", "round")


async def until(cond, timeout: float = 10.0) -> None:
    end = asyncio.get_running_loop().time() + timeout
    while not cond():
        assert asyncio.get_running_loop().time() < end, "timed out"
        await asyncio.sleep(0.02)


@pytest.mark.timeout(60)
def test_codes_travel_over_streams_and_a_restarted_peer_is_found_again():
    async def main():
        addr: dict[str, str | None] = {}
        ex: dict[str, GrpcExchange] = {}
        servers: dict[str, grpc.aio.Server] = {}

        async def resolve(peer):
            return addr.get(peer)

        async def serve(s):
            srv = grpc.aio.server()
            rpc.add_PeerExchangeServicer_to_server(ex[s].service, srv)
            addr[s] = f"127.0.0.1:{srv.add_insecure_port('127.0.0.1:0')}"
            await srv.start()
            servers[s] = srv

        for s in SITES:
            ex[s] = GrpcExchange(site=s, sites=SITES, code_dim=8, code_bytes=8,
                                 resolve=resolve, epoch=1)
            await serve(s)
        for s in SITES:
            ex[s].links.start()
        assert await ex["east"].links.wait_connected(10) == (2, 2)  # open before any round
        other = sorted(ex["east"].links.peers)[0]                   # a removed site's: not
        assert await ex["east"].links.wait_connected(10, absent=[other]) == (1, 1)  # waited
        code = np.arange(8, dtype=np.int8)
        ex["east"].publish(0, 4, code)                              # never blocks
        await until(lambda: ex["west"].book.latest_round[0] == 4)
        codes, has = ex["west"].codes(4)
        assert not has[0]                                           # not in its own round
        codes, has = ex["west"].codes(5)
        assert has[0] and (codes[0] == code).all()
        # west restarts on a new port: east's broken stream reopens at the new address
        await servers["west"].stop(grace=None)
        ex["west"] = GrpcExchange(site="west", sites=SITES, code_dim=8, code_bytes=8,
                                  resolve=resolve, epoch=2)
        await serve("west")
        await until(lambda: "west" in ex["east"].links.connected and
                    ex["east"].links.reconnects >= 1)
        # the restarted west gets east's latest code as the stream reopens (a review: it had
        # none until east spoke again; a code in flight as a stream broke was lost)
        await until(lambda: ex["west"].book.latest_round[0] == 4)
        ex["east"].publish(0, 6, -code)
        await until(lambda: ex["west"].book.latest_round[0] == 6)
        assert (ex["west"].codes(7)[0][0] == -code).all()
        # a peer that is gone costs nothing: publishing still returns at once
        await servers["edge"].stop(grace=None)
        addr["edge"] = None
        ex["east"].publish(0, 7, code)
        for e in ex.values():
            await e.links.close()
        for srv in servers.values():
            await srv.stop(grace=None)

    asyncio.run(main())


@pytest.mark.timeout(60)
def test_a_peer_that_refuses_the_stream_at_once_is_tried_less_and_less_often():
    """A review: a peer that refused at once (no such service at a reused address) was
    reopened every retry interval for good -- a channel, a handshake and a registry lookup
    each time."""
    from agora.agents.cluster.peers import PeerLinks

    async def main():
        srv = grpc.aio.server()                       # serves no PeerExchange
        port = srv.add_insecure_port("127.0.0.1:0")
        await srv.start()
        asked = []

        async def resolve(peer):
            asked.append(peer)
            return f"127.0.0.1:{port}"
        links = PeerLinks("east", ["west"], resolve, retry_s=0.05)
        links.start()
        await asyncio.sleep(3.0)
        await links.close()
        await srv.stop(grace=None)
        return len(asked)
    assert asyncio.run(main()) <= 8                   # 0.05 s a try was 40 and more


@pytest.mark.timeout(60)
def test_bytes_that_are_no_code_are_refused_naming_the_type():
    """An agent's server (built as SiteAgent builds it, with RefuseUndecodable): a stream
    message that is not a SiteCode ends the stream with INVALID_ARGUMENT naming the type,
    not UNKNOWN and a traceback in the agent's log; a well-formed code still counts."""
    from agora.protos.undecodable import RefuseUndecodable

    async def main():
        svc = PeerService("east", SITES, CodeBook(3, 8), 8)
        srv = grpc.aio.server(interceptors=[RefuseUndecodable()])
        rpc.add_PeerExchangeServicer_to_server(svc, srv)
        port = srv.add_insecure_port("127.0.0.1:0")
        await srv.start()
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
                send = ch.stream_unary("/agora.v1.PeerExchange/Send")
                with pytest.raises(grpc.aio.AioRpcError) as e:
                    await send(iter([b"\xff\xff\xff\xff\x0f"]), timeout=10)
                assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
                assert "cannot be parsed as agora.v1.SiteCode" in e.value.details()
                ok = pb.SiteCode(site="west", round=1, code=bytes(8)).SerializeToString()
                await send(iter([ok]), timeout=10)
            assert svc.received == 1
        finally:
            await srv.stop(None)
    asyncio.run(main())


def test_a_bounded_neighbourhood_streams_only_to_listeners_and_hears_only_neighbours():
    # east listens to west only; west and edge listen to east
    listen = np.array([[False, True, False], [True, False, False], [True, False, False]])

    async def resolve(peer):
        return None

    async def main():
        ex = {s: GrpcExchange(site=s, sites=SITES, code_dim=8, code_bytes=8, resolve=resolve,
                              epoch=1, listen=listen) for s in SITES}
        assert ex["east"].links.peers == ["west", "edge"]     # both listen to east
        assert ex["west"].links.peers == ["east"]
        assert ex["edge"].links.peers == []                   # nobody listens to edge
        svc = ex["east"].service
        code = bytes(8)
        assert svc.check(pb.SiteCode(site="west", round=1, code=code)) == ""
        why = svc.check(pb.SiteCode(site="edge", round=1, code=code))
        assert why.startswith("site: 'edge' is not among the 1 sites this agent listens to")
        for e in ex.values():
            await e.links.close()

    asyncio.run(main())


@pytest.mark.timeout(60)
def test_over_mutual_tls_a_code_must_name_the_site_of_its_certificate(tmp_path):
    """Any certificate of the CA could speak for any site: site west's certificate (or the
    commands' client certificate) sent codes as edge and east's agent took them (and a
    code of round 2^62 would have kept edge's real codes out of its book for good)."""
    from agora.deploy.certs import make_all

    make_all(tmp_path, SITES, 0)

    def pem(name: str) -> tuple[bytes, bytes]:
        return (tmp_path / f"{name}.key").read_bytes(), (tmp_path / f"{name}.crt").read_bytes()

    ca = (tmp_path / "ca.crt").read_bytes()

    async def main():
        svc = PeerService("east", SITES, CodeBook(3, 8), 8)
        srv = grpc.aio.server()
        rpc.add_PeerExchangeServicer_to_server(svc, srv)
        port = srv.add_secure_port("127.0.0.1:0", grpc.ssl_server_credentials(
            [pem("site-east")], root_certificates=ca, require_client_auth=True))
        await srv.start()
        try:
            async def send(cert: str, site: str) -> pb.CodeReceipt:
                key, chain = pem(cert)
                creds = grpc.ssl_channel_credentials(ca, key, chain)
                async with grpc.aio.secure_channel(f"127.0.0.1:{port}", creds) as ch:
                    return await rpc.PeerExchangeStub(ch).Send(
                        iter([pb.SiteCode(site=site, round=1, code=bytes(8))]), timeout=10)

            assert (await send("site-west", "west")).accepted == 1
            for cert, site in (("site-west", "edge"), ("client", "west")):
                r = await send(cert, site)
                assert (r.accepted, r.refused) == (0, 1)
                assert r.reason.startswith(f"site: {site!r} is not the site of this "
                                           f"stream's certificate"), r.reason
            assert svc.received == 1
        finally:
            await srv.stop(None)
    asyncio.run(main())


@pytest.mark.timeout(60)
def test_over_tls_a_link_reaches_only_the_server_holding_the_peers_certificate(tmp_path):
    """A review: the registry takes any Ray caller's address for any site, and the dialer
    checked only that the server's certificate named the address -- every site's names
    127.0.0.1 -- so site a's server, with a's own certificate, took c's codes meant for b.
    A link now asks for site-<peer>'s certificate by name."""
    from agora.agents.cluster.peers import PeerLinks
    from agora.deploy.certs import make_all

    make_all(tmp_path, SITES, 0)
    ca = (tmp_path / "ca.crt").read_bytes()

    def creds(name: str):
        return ((tmp_path / f"{name}.key").read_bytes(), (tmp_path / f"{name}.crt").read_bytes())

    async def main():
        servers, svcs, port = [], {}, {}
        for s in ("east", "west"):
            svcs[s] = PeerService(s, SITES, CodeBook(3, 8), 8)
            srv = grpc.aio.server()
            rpc.add_PeerExchangeServicer_to_server(svcs[s], srv)
            port[s] = srv.add_secure_port("127.0.0.1:0", grpc.ssl_server_credentials(
                [creds(f"site-{s}")], root_certificates=ca, require_client_auth=True))
            await srv.start()
            servers.append(srv)
        where = {"west": port["east"]}                 # a rogue registration: east for west

        async def resolve(peer):
            return f"127.0.0.1:{where[peer]}"
        links = PeerLinks("edge", ["west"], resolve, retry_s=0.05,
                          credentials=grpc.ssl_channel_credentials(ca, *creds("site-edge")))
        links.start()
        try:
            links.broadcast(1, np.ones(8), 1)
            assert await links.wait_connected(2.0) == (0, 1)
            assert svcs["east"].received == 0
            where["west"] = port["west"]               # the true address
            assert await links.wait_connected(15.0) == (1, 1)
            await until(lambda: svcs["west"].received >= 1)
        finally:
            await links.close()
            for srv in servers:
                await srv.stop(None)
    asyncio.run(main())


@pytest.mark.timeout(60)
def test_a_peer_whose_host_vanishes_without_closing_is_found_gone_and_reached_again():
    """A review's frozen-proxy case: a peer whose connections go silent without a FIN left
    the stream "connected" for good (45 s and more; gRPC's ping timeout is 60 s unless set),
    its codes going nowhere. The channels ping (``agents.keepalive``, here every second):
    a healthy stream is not broken by them, a silent one is found gone within seconds and
    reopened where the peer now is."""
    from agora.agents.cluster.peers import SERVER_OPTIONS, PeerLinks
    from agora.agents.keepalive import client_options
    from tests.loopback_proxy import LoopbackProxy

    async def main():
        svc = PeerService("west", ["east", "west"], CodeBook(2, 8), 8)
        srv = grpc.aio.server(options=SERVER_OPTIONS)
        rpc.add_PeerExchangeServicer_to_server(svc, srv)
        port = srv.add_insecure_port("127.0.0.1:0")
        await srv.start()
        proxy = await LoopbackProxy(port).start()
        where = {"west": f"127.0.0.1:{proxy.port}"}

        async def resolve(peer):
            return where[peer]
        links = PeerLinks("east", ["west"], resolve, options=client_options(1.0, 1.0))
        links.start()
        try:
            assert await links.wait_connected(10) == (1, 1)
            links.broadcast(0, np.zeros(8), 1)
            await until(lambda: svc.received == 1)
            await asyncio.sleep(3.0)                   # three pings on a healthy stream
            assert links.reconnects == 0 and "west" in links.connected
            proxy.freeze()
            where["west"] = f"127.0.0.1:{port}"        # the peer is now reached directly
            links.broadcast(1, np.ones(8), 1)
            await until(lambda: links.reconnects >= 1, timeout=8.0)
            await until(lambda: svc.received >= 2)      # the latest code got through
            assert svc.book.latest_round[0] == 1
        finally:
            await links.close()
            await proxy.close()
            await srv.stop(grace=None)
    asyncio.run(main())


def test_the_coordinators_channels_and_servers_ping_and_take_pings():
    """Replica links, agents' watch and request streams and the replicas' servers use the
    same keepalive (the behaviour is the test above's)."""
    from agora.agents.keepalive import SERVER_OPTIONS, client_options
    from agora.coordinator.transport import CHANNEL_OPTIONS
    assert set(client_options()) <= set(CHANNEL_OPTIONS)
    assert set(SERVER_OPTIONS) <= set(CHANNEL_OPTIONS)


def test_a_site_certificate_that_does_not_name_its_site_is_asked_for_again(tmp_path):
    """A review: peer links ask for site-<peer> by name, but an agent kept a certificate made
    before certificates named their site (it still fitted its key, its CA and its dates), so
    after an upgrade its peers could not reach it for the certificate's year. One that does
    not name its site no longer fits: the agent asks for a new one."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.x509.oid import ExtendedKeyUsageOID

    from agora.coordinator import site_tls
    from agora.deploy import certs

    certs.make_ca(tmp_path)
    ca = (tmp_path / "ca.crt").read_bytes()
    kpath = tmp_path / "keys" / "site-east.tls.key"
    key = site_tls.tls_key(kpath)
    new = certs.sign_request(tmp_path, "site-east", site_tls.request(kpath, "east"))
    assert site_tls.fits(kpath, ca, new)
    ca_key = serialization.load_pem_private_key((tmp_path / "ca.key").read_bytes(), None)
    start, end = certs._validity(365)
    old = (x509.CertificateBuilder().subject_name(certs._name("site-east"))
           .issuer_name(x509.load_pem_x509_certificate(ca).subject)
           .public_key(key.public_key()).serial_number(x509.random_serial_number())
           .not_valid_before(start).not_valid_after(end)
           .add_extension(certs._san(certs.DEFAULT_HOSTS), critical=False)
           .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                 ExtendedKeyUsageOID.CLIENT_AUTH]),
                          critical=False)
           .sign(ca_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM))
    assert not site_tls.fits(kpath, ca, old)

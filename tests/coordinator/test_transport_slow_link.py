"""A peer link whose connection takes longer than the kick interval to set up (a WAN link,
a busy peer) still connects while the peer keeps talking. Before, every message from the
peer "kicked" the link at most every 0.1 s and each kick abandoned the attempt in progress:
with a 0.3 s handshake nothing was ever delivered (review). Real gRPC through a loopback
proxy that delays every hop (``tests/loopback_proxy.py``)."""

from __future__ import annotations

import asyncio
import time

import grpc
import pytest

from agora.coordinator.transport import PeerLinks, channel_options, open_channel
from agora.protos.agora.v1 import coordinator_pb2 as pb
from agora.protos.agora.v1 import coordinator_pb2_grpc as rpc
from tests.loopback_proxy import LoopbackProxy

pytestmark = pytest.mark.timeout(60)
DELAY = 0.3


class _Peer(rpc.PeerServicer):
    def __init__(self) -> None:
        self.got = 0

    async def Stream(self, request_iterator, context):
        async for b in request_iterator:
            self.got += len(b.envelopes)
        return pb.PeerAck()


async def _peer_behind_slow_proxy():
    """A peer servicer, its server, and the slow proxy in front of it (and its port)."""
    peer = _Peer()
    srv = grpc.aio.server()
    rpc.add_PeerServicer_to_server(peer, srv)
    port = srv.add_insecure_port("127.0.0.1:0")
    await srv.start()
    proxy = await LoopbackProxy(port, delay_s=DELAY).start()
    return peer, srv, proxy, proxy.port


def test_a_slow_link_connects_while_its_peer_keeps_talking():
    async def go() -> float | None:
        peer, srv, proxy, pport = await _peer_behind_slow_proxy()
        links = PeerLinks(index=0, addresses=("127.0.0.1:1", f"127.0.0.1:{pport}"))
        links.start()
        t0, first = time.monotonic(), None
        try:
            while time.monotonic() - t0 < 12 and first is None:
                links.send(1, b"x")
                links.peer_alive(1)          # the peer keeps sending us votes
                await asyncio.sleep(0.02)
                if peer.got:
                    first = time.monotonic() - t0
        finally:
            await links.close()
            await srv.stop(None)
            await proxy.close()
        return first

    first = asyncio.run(go())
    assert first is not None, "nothing reached the peer in 12 s"


def test_a_call_through_a_link_slow_to_set_up_is_answered():
    """A client's call to a replica that is slow to finish the HTTP/2 handshake (a busy
    machine: a restarted service on 2 cores) waits for it within the call's deadline. Before,
    gRPC gave each connection attempt 0.1 s (``min_reconnect_backoff_ms`` is also its minimum
    connect timeout) and the call failed UNAVAILABLE at once: CI saw ``agora jobs`` refused
    ("connection attempt timed out before receiving SETTINGS frame") right after a restart."""
    async def go():
        peer, srv, proxy, pport = await _peer_behind_slow_proxy()
        channel = open_channel(f"127.0.0.1:{pport}", None, channel_options(None))
        try:
            batch = pb.PeerBatch(sender=0, envelopes=[b"x"])
            await rpc.PeerStub(channel).Stream(iter([batch]), timeout=10)
        finally:
            await channel.close()
            await srv.stop(None)
            await proxy.close()
        return peer.got

    assert asyncio.run(go()) == 1

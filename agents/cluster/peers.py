"""Agent-to-agent messages over gRPC (``protos/agora/v1/agent.proto``).

Every site agent serves ``PeerExchange``; for each peer it keeps one long-lived
bidirectional stream, on which it writes a ``SiteCode`` when its trigger fires and reads
the peer's ``CodeAck`` (so a sent code is known to be in the peer's mailbox). A stream that
breaks (the peer restarted: new process, new port) is reopened once at the address the
registry now gives for that peer; a peer that still cannot be reached is skipped for the
round and counted, never waited on forever.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Awaitable, Callable

import grpc
import numpy as np

from agents.cluster.brain import Mailbox
from protos.agora.v1 import agent_pb2 as pb
from protos.agora.v1 import agent_pb2_grpc as rpc

log = logging.getLogger(__name__)


class PeerService(rpc.PeerExchangeServicer):
    """The receiving side: every acknowledged code is the sender's latest in ``mailbox``."""

    def __init__(self, site: str, sites: list[str], mailbox: Mailbox, code_bytes: int) -> None:
        self.site = site
        self.index = {s: i for i, s in enumerate(sites)}
        self.mailbox = mailbox
        self.code_bytes = code_bytes
        self.received = 0
        self.refused = 0
        self.bytes_in = 0

    def check(self, m: pb.SiteCode) -> str:
        if m.site not in self.index:
            return f"site: unknown sender {m.site!r}; expected one of {sorted(self.index)}"
        if m.site == self.site:
            return f"site: {m.site!r} is this agent itself"
        if len(m.code) != self.code_bytes:
            return (f"code: {len(m.code)} bytes; expected {self.code_bytes} (one int8 per "
                    f"latent dimension)")
        if m.round < 0:
            return f"round: {m.round}; expected >= 0"
        return ""

    async def Exchange(self, request_iterator, context):
        async for m in request_iterator:
            self.bytes_in += m.ByteSize()
            why = self.check(m)
            if why:
                self.refused += 1
                yield pb.CodeAck(site=self.site, round=m.round, ok=False, reason=why)
                continue
            self.mailbox.put(self.index[m.site], np.frombuffer(m.code, dtype=np.int8))
            self.received += 1
            yield pb.CodeAck(site=self.site, round=m.round, ok=True)


class PeerLinks:
    """The sending side: one stream per peer, reopened through ``resolve`` when it breaks."""

    def __init__(self, site: str, peers: list[str],
                 resolve: Callable[[str], Awaitable[str | None]],
                 credentials: grpc.ChannelCredentials | None = None,
                 timeout_s: float = 5.0) -> None:
        self.site = site
        self.peers = peers
        self.resolve = resolve
        self.credentials = credentials
        self.timeout_s = timeout_s
        self._links: dict[str, tuple[str, grpc.aio.Channel, object]] = {}
        self.sent = 0
        self.unreachable = 0
        self.reconnects = 0
        self.bytes_out = 0

    async def _open(self, peer: str, fresh: bool) -> object | None:
        if peer in self._links and not fresh:
            return self._links[peer][2]
        await self._drop(peer)
        addr = await self.resolve(peer)
        if addr is None:
            return None
        ch = (grpc.aio.secure_channel(addr, self.credentials) if self.credentials
              else grpc.aio.insecure_channel(addr))
        call = rpc.PeerExchangeStub(ch).Exchange()
        self._links[peer] = (addr, ch, call)
        return call

    async def _drop(self, peer: str) -> None:
        link = self._links.pop(peer, None)
        if link is not None:
            await link[1].close(grace=None)

    async def _send_one(self, peer: str, msg: pb.SiteCode) -> bool:
        for attempt in range(2):
            call = await self._open(peer, fresh=attempt > 0)
            if call is None:
                break
            try:
                await asyncio.wait_for(call.write(msg), self.timeout_s)
                ack = await asyncio.wait_for(call.read(), self.timeout_s)
                if ack is grpc.aio.EOF:
                    raise ConnectionError("stream closed")
                if not ack.ok:
                    log.warning("%s refused our code: %s", peer, ack.reason)
                    return False
                self.bytes_out += msg.ByteSize()
                return True
            except (grpc.aio.AioRpcError, ConnectionError, asyncio.TimeoutError,
                    asyncio.InvalidStateError) as e:
                log.info("%s -> %s: stream broke (%s); reopening", self.site, peer, e)
                self.reconnects += 1
        self.unreachable += 1
        return False

    async def broadcast(self, round: int, code: np.ndarray, epoch: int) -> int:
        """Send ``code`` to every peer; returns how many acknowledged it."""
        msg = pb.SiteCode(site=self.site, round=round, code=code.astype(np.int8).tobytes(),
                          epoch=epoch)
        ok = await asyncio.gather(*(self._send_one(p, msg) for p in self.peers))
        self.sent += 1
        return sum(ok)

    async def close(self) -> None:
        for p in list(self._links):
            await self._drop(p)

"""Replica-to-replica links over gRPC: one client stream per ordered pair of replicas.

Replica i opens ``Peer.Stream`` to every other replica j and writes ``PeerBatch`` messages
into it: every envelope queued for j since the last write, up to ``batch_max`` per message.
Packing many small PBFT votes into one gRPC message is what keeps the per-message cost of
HTTP/2 framing and Python's gRPC layer off each vote. The link never blocks the replica: a
full queue drops its oldest envelopes and a broken stream is reopened with back-off; PBFT
itself retransmits what matters (status messages, view changes), so loss costs time, not
safety. Envelopes carry their own MACs; the link adds no authentication.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import Callable

import grpc

from protos.agora.v1 import coordinator_pb2 as pb
from protos.agora.v1 import coordinator_pb2_grpc as rpc

log = logging.getLogger(__name__)

MAX_QUEUE = 65_536
"""Envelopes held for one peer before the oldest are dropped (a peer that is down)."""

CHANNEL_OPTIONS = [("grpc.max_receive_message_length", 64 * 1024 * 1024),
                   ("grpc.max_send_message_length", 64 * 1024 * 1024),
                   ("grpc.initial_reconnect_backoff_ms", 100),
                   ("grpc.min_reconnect_backoff_ms", 100),
                   ("grpc.max_reconnect_backoff_ms", 1000)]


class PeerLinks:
    """Outbound links of replica ``index`` to every other address of ``addresses``."""

    def __init__(self, *, index: int, addresses: tuple[str, ...], batch_max: int = 256,
                 on_count: Callable[[str], None] | None = None) -> None:
        self.index = index
        self.addresses = addresses
        self.batch_max = batch_max
        self.queues: list[deque[bytes]] = [deque() for _ in addresses]
        self.ready: list[asyncio.Event] = [asyncio.Event() for _ in addresses]
        self.connected: list[bool] = [False] * len(addresses)
        self.sent_batches = 0
        self.sent_envelopes = 0
        self._count = on_count or (lambda _: None)
        self._tasks: list[asyncio.Task] = []
        self._channels: list[grpc.aio.Channel | None] = [None] * len(addresses)
        self._closed = False

    def start(self) -> None:
        for j in range(len(self.addresses)):
            if j != self.index:
                self._tasks.append(asyncio.create_task(self._link(j), name=f"peer-{j}"))

    def send(self, to: int, data: bytes) -> None:
        if to == self.index or not 0 <= to < len(self.addresses):
            return
        q = self.queues[to]
        if len(q) >= MAX_QUEUE:
            q.popleft()
            self._count("peer_queue_dropped")
        q.append(data)
        self.ready[to].set()

    def broadcast(self, data: bytes) -> None:
        for j in range(len(self.addresses)):
            if j != self.index:
                self.send(j, data)

    async def _batches(self, j: int):
        q, ev = self.queues[j], self.ready[j]
        while not self._closed:
            if not q:
                ev.clear()
                await ev.wait()
                # Let the loop run once more before writing: whatever else the replica and
                # the other handlers queue for this peer meanwhile goes into the same write
                # (a stream write costs about the same for one envelope as for a hundred).
                await asyncio.sleep(0)
                continue
            n = min(len(q), self.batch_max)
            batch = pb.PeerBatch(sender=self.index, envelopes=[q.popleft() for _ in range(n)])
            self.sent_batches += 1
            self.sent_envelopes += n
            yield batch

    async def _link(self, j: int) -> None:
        backoff = 0.05
        while not self._closed:
            channel = grpc.aio.insecure_channel(self.addresses[j], options=CHANNEL_OPTIONS)
            self._channels[j] = channel
            try:
                await asyncio.wait_for(channel.channel_ready(), timeout=2.0)
                self.connected[j] = True
                backoff = 0.05
                await rpc.PeerStub(channel).Stream(self._batches(j))
            except (grpc.aio.AioRpcError, asyncio.TimeoutError) as e:
                if not self._closed:
                    log.debug("replica %d -> %d: link down (%s)", self.index, j, e)
            except asyncio.CancelledError:
                await channel.close(grace=None)
                raise
            finally:
                self.connected[j] = False
            await channel.close(grace=None)
            if self._closed:
                return
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 1.0)

    async def close(self) -> None:
        self._closed = True
        for ev in self.ready:
            ev.set()
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            try:
                await t
            except (asyncio.CancelledError, Exception):
                pass

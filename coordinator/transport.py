"""Replica-to-replica links over gRPC: one client stream per ordered pair of replicas.

Replica i opens ``Peer.Stream`` to every other replica j and writes ``PeerBatch`` messages
into it: every envelope queued for j since the last write, up to ``batch_max`` per message.
Packing many small PBFT votes into one gRPC message is what keeps the per-message cost of
HTTP/2 framing and Python's gRPC layer off each vote. The link never blocks the replica: a
full queue drops its oldest envelopes and a broken stream is reopened with back-off; PBFT
itself retransmits what matters (status messages, view changes), so loss costs time, not
safety. Envelopes carry their own MACs; the link adds no authentication of its own.

With TLS on (``CoordinatorConfig.tls``) each link is a mutual-TLS channel presenting the
replica's certificate (``replica_channel_credentials``); ``server_credentials`` are the
replica server's side, which requires a client certificate from the same CA.
``open_channel`` opens a plaintext or TLS channel to one address, as the config says.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import grpc

from agora.agents.aio import cancel_and_wait
from agora.agents.keepalive import SERVER_OPTIONS, client_options
from agora.coordinator.private_file import check_private
from agora.protos.agora.v1 import coordinator_pb2 as pb
from agora.protos.agora.v1 import coordinator_pb2_grpc as rpc

if TYPE_CHECKING:
    from agora.coordinator.config import CoordinatorConfig

log = logging.getLogger(__name__)

MAX_QUEUE = 65_536
"""Envelopes held for one peer before the oldest are dropped (a peer that is down)."""
PEER_BATCH_BYTES = 16 * 1024 * 1024
"""Most envelope bytes packed into one message to a peer (an envelope larger goes alone)."""

CONNECT_TIMEOUT_MS = 5000
"""The least time gRPC gives one connection attempt (TCP, TLS and the HTTP/2 handshake).
gRPC reads it from ``grpc.min_reconnect_backoff_ms``: set to 100 ms with the back-off, it
made a call to a replica slow to answer the handshake -- a busy machine, a restarted
service -- fail UNAVAILABLE after 0.1 s instead of waiting within its deadline."""
CHANNEL_OPTIONS = [("grpc.max_receive_message_length", 64 * 1024 * 1024),
                   ("grpc.max_send_message_length", 64 * 1024 * 1024),
                   ("grpc.initial_reconnect_backoff_ms", 100),
                   ("grpc.min_reconnect_backoff_ms", CONNECT_TIMEOUT_MS),
                   ("grpc.max_reconnect_backoff_ms", 1000)] + client_options() + SERVER_OPTIONS
"""Every channel and server of the coordinator's (replicas, their clients): messages up to
64 MiB, quick reconnects, and pings both ways (``agents.keepalive``): a replica or client
whose host vanished without closing its connections is found gone in ~15 s, not when TCP
gives up (minutes), and its stream reopened."""


def _read(path: Path, field: str) -> bytes:
    """The PEM file ``path`` (config field ``tls.<field>``); a key must be private
    (``check_private``)."""
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ValueError(f"tls.{field}: cannot read {path} ({e.strerror or e}); expected a PEM "
                         f"file, e.g. written by `agora certs`") from None
    # gRPC takes any bytes and, at the first connection, logs "Invalid cert chain file"
    # from its C core, naming neither file nor field (a review)
    if b"-----BEGIN " not in data:
        raise ValueError(f"tls.{field}: {path} is not a PEM file (no -----BEGIN line); "
                         f"expected a PEM file, e.g. written by `agora certs`")
    if field == "key":
        try:
            check_private(path, "a TLS key", "make new certificates with `agora certs "
                                            "--force`, or chmod 600 it if no one else read it")
        except ValueError as e:
            raise ValueError(f"tls.{field}: {e}") from None
    return data


def server_credentials(config: CoordinatorConfig, replica: int) -> grpc.ServerCredentials | None:
    """Replica ``replica``'s mutual-TLS server credentials (None with TLS off): its
    certificate, and callers must present one signed by the CA."""
    if not config.tls_enabled:
        return None
    return grpc.ssl_server_credentials(
        [(_read(config.tls_path("key", replica), "key"),
          _read(config.tls_path("cert", replica), "cert"))],
        root_certificates=_read(config.tls_path("ca"), "ca"), require_client_auth=True)


def channel_credentials(config: CoordinatorConfig, cert: Path, key: Path
                        ) -> grpc.ChannelCredentials:
    """Channel credentials trusting the config's CA and presenting ``cert``/``key``."""
    return grpc.ssl_channel_credentials(root_certificates=_read(config.tls_path("ca"), "ca"),
                                        private_key=_read(key, "key"),
                                        certificate_chain=_read(cert, "cert"))


def replica_channel_credentials(config: CoordinatorConfig, replica: int
                                ) -> grpc.ChannelCredentials | None:
    """What replica ``replica`` presents on its links to the others (None with TLS off)."""
    if not config.tls_enabled:
        return None
    return channel_credentials(config, config.tls_path("cert", replica),
                               config.tls_path("key", replica))


def client_channel_credentials(config: CoordinatorConfig, identity: str | None = None
                               ) -> grpc.ChannelCredentials | None:
    """What a client presents (None with TLS off): ``tls.client_cert``/``client_key``, or,
    with ``identity`` (e.g. ``site-dc-east``), ``<certs_dir>/<identity>.crt|key``."""
    if not config.tls_enabled:
        return None
    if identity is None:
        return channel_credentials(config, config.tls_path("client_cert"),
                                   config.tls_path("client_key"))
    if config.tls.certs_dir is None:
        raise ValueError(f"tls.certs_dir: needed for the client identity {identity!r}")
    folder = config.path(config.tls.certs_dir)
    return channel_credentials(config, folder / f"{identity}.crt", folder / f"{identity}.key")


def channel_options(config: CoordinatorConfig | None) -> list[tuple[str, object]]:
    """CHANNEL_OPTIONS, plus the TLS name override the config asks for."""
    if config is not None and config.tls_enabled and config.tls.server_name:
        return CHANNEL_OPTIONS + [("grpc.ssl_target_name_override", config.tls.server_name)]
    return CHANNEL_OPTIONS


def open_channel(address: str, credentials: grpc.ChannelCredentials | None,
                 options=None) -> grpc.aio.Channel:
    """A grpc.aio channel to ``address``: TLS with ``credentials``, plaintext without."""
    options = CHANNEL_OPTIONS if options is None else options
    if credentials is None:
        return grpc.aio.insecure_channel(address, options=options)
    return grpc.aio.secure_channel(address, credentials, options=options)


KICK_S = 0.1
"""``PeerLinks.peer_alive`` retries a down link at most this often."""
CONNECT_GRACE_S = 1.0
"""A connection attempt this young is not replaced by a kick (``PeerLinks._link``)."""


class PeerLinks:
    """Outbound links of replica ``index`` to every other address of ``addresses``.

    ``credentials``: TLS channel credentials for every link (None: plaintext);
    ``options``: channel options (default CHANNEL_OPTIONS); ``on_bytes(n)``: called with the
    serialized size of every batch written (wire metrics)."""

    def __init__(self, *, index: int, addresses: tuple[str, ...], batch_max: int = 256,
                 on_count: Callable[[str], None] | None = None,
                 credentials: grpc.ChannelCredentials | None = None, options=None,
                 on_bytes: Callable[[int], None] | None = None) -> None:
        self.index = index
        self.addresses = addresses
        self.batch_max = batch_max
        self.queues: list[deque[bytes]] = [deque() for _ in addresses]
        self.ready: list[asyncio.Event] = [asyncio.Event() for _ in addresses]
        self.connected: list[bool] = [False] * len(addresses)
        self.sent_batches = 0
        self.sent_envelopes = 0
        self._count = on_count or (lambda _: None)
        self._on_bytes = on_bytes
        self.credentials = credentials
        self.options = CHANNEL_OPTIONS if options is None else options
        self._tasks: list[asyncio.Task] = []
        self._channels: list[grpc.aio.Channel | None] = [None] * len(addresses)
        self._closed = False
        self._kick = [asyncio.Event() for _ in addresses]
        self._kicked = [0.0] * len(addresses)

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
                # the replica's pump hands over a whole round's actions at once, so what it
                # sends this peer in a round is queued by the time this runs: one write
                ev.clear()
                await ev.wait()
                continue
            # by count and by bytes: packed by count alone, a batch of large envelopes
            # (pre-prepares of large requests, state transfers) outgrew the 64 MiB a message
            # may hold, and the whole batch was lost
            out = [q.popleft()]
            size = len(out[0])
            while q and len(out) < self.batch_max and size + len(q[0]) <= PEER_BATCH_BYTES:
                size += len(q[0])
                out.append(q.popleft())
            n = len(out)
            batch = pb.PeerBatch(sender=self.index, envelopes=out)
            self.sent_batches += 1
            self.sent_envelopes += n
            if self._on_bytes is not None:
                self._on_bytes(batch.ByteSize())
            yield batch

    def peer_alive(self, j: int) -> None:
        """Something from replica ``j`` just arrived: if the link to it is down (it was
        restarted), try again now instead of after the back-off -- a restarted replica
        catches up only once its peers can answer it. At most one retry per KICK_S."""
        if 0 <= j < len(self.addresses) and j != self.index and not self.connected[j]:
            now = time.monotonic()
            if now - self._kicked[j] >= KICK_S:
                self._kicked[j] = now
                self._kick[j].set()

    async def _link(self, j: int) -> None:
        backoff = 0.05
        kick = self._kick[j]
        while not self._closed:
            channel = open_channel(self.addresses[j], self.credentials, self.options)
            self._channels[j] = channel
            try:
                kick.clear()
                ready = asyncio.ensure_future(channel.channel_ready())
                kicked = None
                try:
                    # a kick (the peer spoke) replaces an attempt that is slow to connect --
                    # a channel made while the peer was down may sit in gRPC's own back-off
                    # -- but not one younger than CONNECT_GRACE_S: a kick every 0.1 s cut
                    # every attempt on a link slower than that to connect (a WAN link, a
                    # busy peer), which then never connected while the peer kept talking
                    await asyncio.wait({ready}, timeout=CONNECT_GRACE_S)
                    if not ready.done():
                        kicked = asyncio.ensure_future(kick.wait())
                        await asyncio.wait({ready, kicked}, timeout=2.0 - CONNECT_GRACE_S,
                                           return_when=asyncio.FIRST_COMPLETED)
                finally:
                    if kicked is not None:
                        kicked.cancel()
                    ready.cancel()
                if not ready.done() or ready.cancelled():
                    raise asyncio.TimeoutError     # a fresh channel connects at once
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
            try:
                await asyncio.wait_for(kick.wait(), backoff)
            except asyncio.TimeoutError:
                pass
            backoff = min(backoff * 2, 1.0)

    async def close(self) -> None:
        self._closed = True
        for ev in self.ready:
            ev.set()
        await cancel_and_wait(self._tasks)

"""The cluster engine's ``Exchange``: agent-to-agent codes over gRPC
(``protos/agora/v1/agent.proto``).

Every site agent serves ``PeerExchange``; for each peer it keeps one long-lived client
stream, opened when the agent starts (so the first round pays no connection set-up), and
writes a ``SiteCode`` on it when its trigger fires. A stream is reliable and ordered, so no
code is acknowledged: a send is a queue append, and the agent never waits on its peers. A
stream that breaks (the peer restarted: new process, new port) is reopened at the address the
registry now gives for that peer, tries spaced out to ``RETRY_MAX_S`` while it fails at once;
every stream opened first carries the latest code (the peer may have restarted with none),
then the codes queued meanwhile, only the latest one counting. Channels ping their peers
(``KEEPALIVE``). The receiving side keeps each peer's codes in a ``CodeBook`` (a code of round r
counts from round r + 1) and refuses -- counting, never raising -- a code from an unknown
sender, from itself, or of the wrong size.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Awaitable, Callable

import grpc
import numpy as np

from agora.agents.aio import cancel_and_wait
from agora.agents.keepalive import SERVER_OPTIONS as KEEPALIVE_SERVER
from agora.agents.keepalive import client_options
from agora.agents.step.codes import CodeBook
from agora.agents.step.neighbours import listeners_of
from agora.protos.agora.v1 import agent_pb2 as pb
from agora.protos.agora.v1 import agent_pb2_grpc as rpc

log = logging.getLogger(__name__)


class PeerService(rpc.PeerExchangeServicer):
    """The receiving side: every accepted code goes into ``book``; ``on_code`` is told."""

    def __init__(self, site: str, sites: list[str], book: CodeBook, code_bytes: int,
                 on_code: Callable[[int, int], None] | None = None,
                 hears: list[str] | None = None) -> None:
        self.site = site
        self.index = {s: i for i, s in enumerate(sites)}
        self.hears = None if hears is None else set(hears)
        """the sites this agent listens to (``step.neighbours``; None: every other)"""
        self.excluded: set[str] = set()
        """sites whose codes are refused: the ones the operator removed (their certificates
        are still the CA's; ``GrpcExchange.exclude``)"""
        self.book = book
        self.code_bytes = code_bytes
        self.on_code = on_code
        self.received = 0
        self.refused = 0
        self.bytes_in = 0
        self._streams: dict[str, list[asyncio.Event]] = {}
        """each certified peer's open streams, oldest first (``STREAMS_PER_PEER``)"""

    def check(self, m: pb.SiteCode, certified: list[bytes] | None = None) -> str:
        """Why code ``m`` is refused ("" when it is taken). ``certified``: the common names
        of the certificate the stream came with (mutual TLS; None without TLS): a code must
        name the site of that certificate, ``site-<name>`` -- a site's certificate (or the
        commands' ``client``) can speak for no other site."""
        if m.site not in self.index:
            shown = repr(m.site) if len(m.site) <= 64 else f"of {len(m.site)} characters"
            return f"site: unknown sender {shown}; expected one of {sorted(self.index)}"
        if certified is not None and f"site-{m.site}".encode() not in certified:
            names = ", ".join(n.decode(errors="replace") for n in certified) or "none"
            return (f"site: {m.site!r} is not the site of this stream's certificate "
                    f"(common name {names}); expected the sender's own site, site-<name>")
        if m.site == self.site:
            return f"site: {m.site!r} is this agent itself"
        if m.site in self.excluded:
            return (f"site: {m.site!r} was removed by the operator; expected a member site "
                    f"(its codes are taken again once it is admitted back)")
        if self.hears is not None and m.site not in self.hears:
            return (f"site: {m.site!r} is not among the {len(self.hears)} sites this agent "
                    f"listens to (its nearest); expected one of {sorted(self.hears)}")
        if len(m.code) != self.code_bytes:
            return (f"code: {len(m.code)} bytes; expected {self.code_bytes} (one int8 per "
                    f"latent dimension)")
        if m.round < 0:
            return f"round: {m.round}; expected >= 0"
        return ""

    def owner(self, certified: list[bytes]) -> str | None:
        """The site this agent listens to whose certificate a stream came with, if any."""
        for s in self.index:
            if s != self.site and (self.hears is None or s in self.hears) \
                    and f"site-{s}".encode() in certified:
                return s
        return None

    async def Send(self, request_iterator, context):
        receipt = pb.CodeReceipt()
        auth = context.auth_context()
        certified = auth.get("x509_common_name", []) \
            if auth.get("transport_security_type") == [b"ssl"] else None
        if certified is None:
            return await self._read(request_iterator, None, receipt)
        # whose stream it is: the site of its certificate this agent listens to, or, for any
        # other certificate of the CA (sites it does not listen to, the commands' client;
        # they send no code it takes), one bucket shared by them all
        owner = self.owner(certified) or ""
        # the server's streams are bounded as a whole (maximum_concurrent_rpcs): one peer's
        # newest streams end its own oldest, never another peer's (a review: one site's 44
        # idle streams refused every other peer's, for as long as it kept them)
        replaced = asyncio.Event()
        mine = self._streams.setdefault(owner, [])
        mine.append(replaced)
        while len(mine) > STREAMS_PER_PEER:
            mine.pop(0).set()
        reader = asyncio.ensure_future(self._read(request_iterator, certified, receipt))
        ended = asyncio.ensure_future(replaced.wait())
        try:
            await asyncio.wait({reader, ended}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            ended.cancel()
            if replaced in mine:
                mine.remove(replaced)
            if not reader.done():
                reader.cancel()
        if not reader.done() or reader.cancelled():
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                                f"streams: a newer stream of {owner or 'no site heard here'!r} "
                                f"replaced this one "
                                f"(at most {STREAMS_PER_PEER} a peer)")
        return reader.result()

    async def _read(self, request_iterator, certified, receipt):
        async for m in request_iterator:
            self.bytes_in += m.ByteSize()
            why = self.check(m, certified)
            if why:
                self.refused += 1
                receipt.refused += 1
                if not receipt.reason:
                    receipt.reason = why
                continue
            sender = self.index[m.site]
            self.book.put(sender, m.round, np.frombuffer(m.code, dtype=np.int8))
            self.received += 1
            receipt.accepted += 1
            if self.on_code is not None:
                self.on_code(sender, m.round)
        return receipt


STREAMS_PER_PEER = 2
"""streams one certified peer holds open at an agent's server: its stream, and the one it
reopened while the server still held the broken one; a newer one ends its oldest"""
KEEPALIVE = client_options()
"""A peer stream's channel pings its peer (``agents.keepalive``): one whose host vanished
without closing its connections (no FIN) left the stream "open" for good, its codes going
nowhere, and the peer's new address never looked up (a review)."""
SERVER_OPTIONS = KEEPALIVE_SERVER + [("grpc.max_receive_message_length", 64 * 1024)]
"""An agent's peer server takes its peers' pings, and no message larger than a code needs."""
RETRY_MAX_S = 2.0
"""Longest wait between two tries to open a stream (doubling from ``retry_s``)."""
HEALTHY_S = 5.0
"""A stream up this long broke afresh: it is reopened after ``retry_s`` again."""
READY_S = 3.0
"""How long a try waits for its channel; then the registry is asked again (a restarted peer
has a new address: the old one was waited on for 10 s)."""


class _Link:
    """One stream to one peer, fed from a queue by its own task."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[pb.SiteCode] = asyncio.Queue()
        self.task: asyncio.Task | None = None
        self.channel: grpc.aio.Channel | None = None
        self.call = None
        self.last: pb.SiteCode | None = None
        """the latest code, written first on every stream opened: one in flight as a
        stream broke was lost, and a restarted peer had none until this site spoke again
        (a review)"""


async def _ended(call) -> None:
    try:
        await call
    except (grpc.aio.AioRpcError, asyncio.CancelledError):
        pass


class PeerLinks:
    """The sending side: one stream per peer, (re)opened through ``resolve``."""

    def __init__(self, site: str, peers: list[str],
                 resolve: Callable[[str], Awaitable[str | None]],
                 credentials: grpc.ChannelCredentials | None = None,
                 retry_s: float = 0.5, options: list | None = None) -> None:
        """``options``: the channels' (default ``KEEPALIVE``)."""
        self.site = site
        self.options = KEEPALIVE if options is None else options
        self.peers = peers
        self.resolve = resolve
        self.credentials = credentials
        self.retry_s = retry_s
        self._links: dict[str, _Link] = {}
        self.excluded: set[str] = set()
        """peers sent nothing: the sites the operator removed (``GrpcExchange.exclude``)"""
        self.sent = 0
        self.dropped = 0
        self.reconnects = 0
        self.bytes_out = 0
        self.connected: set[str] = set()

    def start(self) -> None:
        """Open a stream to every peer now (before the first round)."""
        for p in self.peers:
            link = self._links[p] = _Link()
            link.task = asyncio.create_task(self._pump(p, link), name=f"peer-{p}")

    async def wait_connected(self, timeout_s: float, absent=()) -> tuple[int, int]:
        """Until the stream of every peer but the ``absent`` ones (sites the operator
        removed: no agent runs for them) is open, or ``timeout_s`` passes: (how many of
        those are open, how many there are)."""
        want = set(self.peers) - set(absent)
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout_s
        while not want <= self.connected and loop.time() < end:
            await asyncio.sleep(0.05)
        return len(want & self.connected), len(want)

    def broadcast(self, round: int, code: np.ndarray, epoch: int) -> None:
        """Queue ``code`` for every peer (never blocks)."""
        msg = pb.SiteCode(site=self.site, round=round, code=code.astype(np.int8).tobytes(),
                          epoch=epoch)
        for peer, link in self._links.items():
            if peer in self.excluded:
                continue
            if link.queue.qsize() > 64:          # a peer that is away: keep only the latest
                self.dropped += link.queue.qsize()
                while not link.queue.empty():
                    link.queue.get_nowait()
            link.queue.put_nowait(msg)
            link.last = msg
        self.sent += 1

    async def _pump(self, peer: str, link: _Link) -> None:
        first, delay, opened_at = True, self.retry_s, None
        while True:
            try:
                addr = await self.resolve(peer)
                if addr is None:
                    await asyncio.sleep(delay)
                    delay = min(RETRY_MAX_S, delay * 2)
                    continue
                # the server must hold site-<peer>'s certificate, not merely one for the
                # address the registry gave (any Ray caller may register an address: a
                # review had site a answer, with its own certificate, for b)
                link.channel = (grpc.aio.secure_channel(addr, self.credentials, options=[
                                    *self.options,
                                    ("grpc.ssl_target_name_override", f"site-{peer}")])
                                if self.credentials else
                                grpc.aio.insecure_channel(addr, options=self.options))
                await asyncio.wait_for(link.channel.channel_ready(), READY_S)
                link.call = rpc.PeerExchangeStub(link.channel).Send()
                if not first:
                    self.reconnects += 1
                first = False
                if link.last is not None:
                    await link.call.write(link.last)
                    self.bytes_out += link.last.ByteSize()
                self.connected.add(peer)
                opened_at = asyncio.get_running_loop().time()
                # the call's own end (the peer went away) is watched beside the queue, so a
                # broken stream is reopened at once, not at the next code
                ended = asyncio.ensure_future(_ended(link.call))
                get = None
                try:
                    while True:
                        get = asyncio.ensure_future(link.queue.get())
                        done, _ = await asyncio.wait({get, ended},
                                                     return_when=asyncio.FIRST_COMPLETED)
                        if ended in done:
                            raise ConnectionError("the peer closed the stream")
                        msg = get.result()
                        await link.call.write(msg)
                        self.bytes_out += msg.ByteSize()
                finally:
                    ended.cancel()
                    if get is not None:
                        get.cancel()
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001 - a broken stream is reopened
                log.info("%s -> %s: stream broke (%s); reopening", self.site, peer,
                         type(e).__name__)
            finally:
                self.connected.discard(peer)
                if link.channel is not None:
                    await link.channel.close(grace=None)
                    link.channel = None
            if opened_at is not None and \
                    asyncio.get_running_loop().time() - opened_at > HEALTHY_S:
                delay = self.retry_s       # it was up a while: a fresh break
            opened_at = None
            await asyncio.sleep(delay)      # a peer that refuses at once: not every 0.5 s
            delay = min(RETRY_MAX_S, delay * 2)

    async def close(self) -> None:
        await cancel_and_wait(link.task for link in self._links.values())
        self._links.clear()


class GrpcExchange:
    """The cluster engine's ``Exchange`` of one site: ``PeerService`` (its server side) and
    ``PeerLinks`` (its streams to every peer) around one ``CodeBook``."""

    def __init__(self, *, site: str, sites: list[str], code_dim: int, code_bytes: int,
                 resolve: Callable[[str], Awaitable[str | None]], epoch: int,
                 credentials: grpc.ChannelCredentials | None = None,
                 on_code: Callable[[int, int], None] | None = None,
                 listen: np.ndarray | None = None) -> None:
        """``listen``: ``step.neighbours.listening`` of the cluster -- codes go only to the
        sites that listen to this one and come only from those it listens to (None: every
        site listens to every other)."""
        self.book = CodeBook(len(sites), code_dim)
        me = sites.index(site)
        if listen is None:
            send_to, hears = [s for s in sites if s != site], None
        else:
            send_to = [sites[r] for r in listeners_of(listen, me)]
            hears = [sites[s] for s in np.flatnonzero(listen[me])]
        self.service = PeerService(site, sites, self.book, code_bytes, on_code=on_code,
                                   hears=hears)
        self.links = PeerLinks(site, send_to, resolve, credentials=credentials)
        self.epoch = epoch
        self.sent = 0

    def exclude(self, sites: set[str]) -> None:
        """Hear nothing from ``sites`` and send them nothing, for as long as they are in it:
        the clearinghouse's set of the sites the operator removed, kept up to date in place
        from the committed schedule. A removed site's certificate is still the CA's and its
        agent may go on sending: its codes moved its old listeners' decisions for good, and
        it went on hearing theirs (a review)."""
        self.service.excluded = self.links.excluded = sites

    def publish(self, site: int, round: int, code: np.ndarray) -> None:
        self.book.put(site, round, code)          # its own (never attended: masked out)
        self.links.broadcast(round, code, self.epoch)
        self.sent += 1

    def wire(self) -> tuple[int, int]:
        """(bytes received, bytes sent) of peer codes on the wire so far."""
        return self.service.bytes_in, self.links.bytes_out

    def codes(self, round: int) -> tuple[np.ndarray, np.ndarray]:
        codes, has = self.book.codes(round)
        for s in self.service.excluded:         # what it said before its removal, too
            if (i := self.service.index.get(s)) is not None:
                has[i] = False
        return codes, has

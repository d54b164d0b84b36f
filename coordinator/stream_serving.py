"""A replica's side of the ``Requests`` stream (``CoordinatorService.Requests``): each
``StreamRequest`` of every ``StreamRequests`` message is admitted as its unary RPC would be
(``CoordinatorService._admit``) and answered with its id, in completion order, what is ready
together in one ``StreamReplies``; a refusal answers that request only. What a stream may
hold is bounded: requests open on it, replies its client has not read, streams per replica
and per address (docs/security.md, "Limits"). The client's side is
``coordinator/request_stream.py``."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import grpc

from agora.coordinator.pbft.messages import op_key
from agora.coordinator.request_stream import MAX_OPEN_PER_STREAM, MAX_STREAM_BATCH
from agora.coordinator.schedule_codec import unknown_bytes, unknown_problem
from agora.coordinator.validate import RPC_KINDS, Refusal
from agora.protos.agora.v1 import coordinator_pb2 as pb

SWEEP_S = 0.25
"""How often a request stream cancels its requests past ``request_timeout_s``."""
STREAM_BACKLOG = MAX_STREAM_BATCH
"""Replies a ``Requests`` stream holds that its client has not read yet; past it the replica
reads no more of the stream's requests until the client reads."""
UNREAD_S = 30.0
"""A client that reads none of its stream's replies for this long while they are held loses
them: the replica drops them, cancels the stream's open requests and ends it,
RESOURCE_EXHAUSTED (a probe's abandoned streams held ~2 MB each at a replica, with no key)."""
MAX_REQUEST_STREAMS = 1024
"""``Requests`` streams open at one replica at once (a client process holds one); more are
refused, RESOURCE_EXHAUSTED."""
MAX_REQUEST_STREAMS_PER_HOST = 256
"""... from one network address while no signed request proved them (a replay of 64 sites
runs every agent on one host) ..."""
MAX_REQUEST_STREAMS_PER_CLIENT = 64
"""... and proved by one client's signed request (a client process holds one per replica).
A stream counts against its address until a new request on it verifies with a client's
key (no copy of one executed or waiting here: ``_prove``), then against that client (a
review: idle streams with no key held every slot of their address for good, and under
``agora up`` every site connects from 127.0.0.1)."""
PROVE_S = 10.0
"""A stream on which no new request verified with a client's key within this long of its
opening ends, UNAUTHENTICATED (a client opens its stream to send a request)."""


@dataclass(frozen=True)
class _Unread:
    """The stream's replies were not read for ``UNREAD_S``: it ends."""
    dropped: int


@dataclass(frozen=True)
class _Unproven:
    """No new request on the stream verified within ``PROVE_S``: it ends."""


@dataclass(frozen=True)
class _Failed:
    """Reading the stream raised (a message that is no StreamRequests:
    ``protos/undecodable.py``): the handler raises it, from its own task."""
    error: Exception


@dataclass(frozen=True)
class _Oversized:
    """A ``StreamRequests`` message over ``MAX_STREAM_BATCH``: the stream is refused."""
    count: int


def _stream_slot(svc, peer: str) -> str | None:
    """Take a ``Requests`` stream slot for ``peer`` (gRPC's ``context.peer()``): its
    address, or None when the replica holds as many streams as it takes."""
    where = peer.rsplit(":", 1)[0] if peer.count(":") > 1 else peer
    held = svc.request_streams.get(where, 0)
    total = sum(svc.request_streams.values()) + sum(svc.client_streams.values())
    if total >= MAX_REQUEST_STREAMS or held >= MAX_REQUEST_STREAMS_PER_HOST:
        return None
    svc.request_streams[where] = held + 1
    return where

def _stream_gone(counts: dict[str, int], key: str) -> None:
    left = counts.get(key, 1) - 1
    if left > 0:
        counts[key] = left
    else:
        counts.pop(key, None)


def _may_prove(svc, client_id: str) -> None:
    """Refusal when ``client_id`` holds as many streams as it may (checked before its
    request is admitted: a read-only request admitted once is refused as a copy after, and
    the client asks again by a unary call with the same bytes)."""
    held = svc.client_streams.get(client_id, 0)
    if held >= MAX_REQUEST_STREAMS_PER_CLIENT:
        raise Refusal(grpc.StatusCode.RESOURCE_EXHAUSTED, "too_many_streams",
                      f"client {client_id!r} holds {held} request streams at this replica "
                      f"(at most {MAX_REQUEST_STREAMS_PER_CLIENT}); close one")


def _prove(svc, where: str, client_id: str) -> None:
    """A new request of ``client_id`` (signed with its key, and no copy of one executed or
    waiting: ``CoordinatorService._admit_verified``'s ``fresh``) came on a stream from
    ``where``: the stream counts against the client from now on, not its address. A copy
    proves nothing: every replica sees a client's requests, and a faulty one replaying a
    site's old request on 64 streams held every stream slot of the site at a correct
    replica, for as long as it kept them open (a review)."""
    svc.client_streams[client_id] = svc.client_streams.get(client_id, 0) + 1
    _stream_gone(svc.request_streams, where)


async def serve_requests(self, request_iterator, context):
    """The request stream: each StreamRequest (of every StreamRequests batch) is admitted
    as its unary RPC would be and answered with its id, in completion order, what is
    ready together in one StreamReplies; a refusal answers that request only."""
    host = self.host
    where = _stream_slot(self, context.peer() or "")
    if where is None:
        self._refused(Refusal(grpc.StatusCode.RESOURCE_EXHAUSTED, "too_many_streams", ""),
                      "Requests")
        await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                            f"this replica holds {MAX_REQUEST_STREAMS} request streams "
                            f"(at most {MAX_REQUEST_STREAMS_PER_HOST} from one address); "
                            f"close one, or retry later")
    out: asyncio.Queue = asyncio.Queue()
    drained = asyncio.Event()     # set each time the client's replies were taken
    loop = asyncio.get_running_loop()
    timers: dict[int, tuple[float, asyncio.Future]] = {}
    """open requests: id -> (when it times out, its waiter); one sweep a stream cancels
    the late ones (a timer handle per request filled the loop's timer heap)"""

    def answer(sr: pb.StreamRequest, req, fut: asyncio.Future) -> None:
        timers.pop(sr.id, None)
        host.forget(req.client_id, req.timestamp, fut)
        if cut:                   # the stream's replies went unread: it is ending
            return
        if fut.cancelled():       # timed out, or the replica is closing
            out.put_nowait(pb.StreamReply(id=sr.id, code="UNAVAILABLE",
                                          details=self._timed_out(sr.rpc)))
        elif fut.exception() is not None:       # a later request of its client executed
            r = fut.exception()
            self._refused(r, sr.rpc)
            out.put_nowait(pb.StreamReply(id=sr.id, code=r.code.name, details=r.message))
        else:
            out.put_nowait(pb.StreamReply(id=sr.id,
                                          reply=self._replied(fut.result(), sr.rpc)))
        if ended and not timers:
            out.put_nowait(None)

    def admit(sr: pb.StreamRequest, unknown: str | None):
        if unknown is None and odd:
            unknown = unknown_problem(sr)
        if unknown is not None:     # as the unary RPC refuses them in its ClientRequest
            raise Refusal(grpc.StatusCode.INVALID_ARGUMENT, "invalid_argument",
                          f"request: {unknown}; expected only the fields of "
                          f"{sr.DESCRIPTOR.full_name}")
        if sr.rpc not in RPC_KINDS:
            raise Refusal(grpc.StatusCode.INVALID_ARGUMENT, "invalid_argument",
                          f"rpc: {sr.rpc[:64]!r}; expected one of {sorted(RPC_KINDS)}")
        if sr.id in timers:
            raise Refusal(grpc.StatusCode.INVALID_ARGUMENT, "invalid_argument",
                          f"id: {sr.id} is already open on this stream; expected a "
                          f"fresh id")
        if len(timers) >= MAX_OPEN_PER_STREAM:
            raise Refusal(grpc.StatusCode.RESOURCE_EXHAUSTED, "stream_full",
                          f"{len(timers)} requests of this stream wait for their "
                          f"replies (at most {MAX_OPEN_PER_STREAM}); retry later")
        env, req = self._verified(sr.envelope, sr.rpc)
        if proven is not None:
            return self._admit_verified(env, req, sr.rpc)
        _may_prove(self, req.client_id)
        return self._admit_verified(env, req, sr.rpc, fresh=prove)

    def prove(req) -> None:
        nonlocal proven
        if proven is None:
            _prove(self, where, req.client_id)
            proven = req.client_id

    odd = False
    """the message being read holds unknown fields somewhere"""
    proven: str | None = None
    """the client of the first new request admitted on this stream (``_prove``)"""
    opened = loop.time()
    ended = False
    """the client finished sending: the stream ends once its open requests are
    answered"""
    cut = False
    """its replies went unread for UNREAD_S: dropped, and the stream ends"""

    async def unread_backlog_goes() -> bool:
        """Wait while more than STREAM_BACKLOG replies are unread; False: none was taken
        for UNREAD_S."""
        while out.qsize() > STREAM_BACKLOG:
            drained.clear()
            try:
                await asyncio.wait_for(drained.wait(), UNREAD_S)
            except asyncio.TimeoutError:
                return False
        return True

    async def read() -> None:
        nonlocal ended, cut, odd
        try:
            async for batch in request_iterator:
                if len(batch.requests) > MAX_STREAM_BATCH:
                    out.put_nowait(_Oversized(len(batch.requests)))
                    return
                if out.qsize() > STREAM_BACKLOG and not await unread_backlog_goes():
                    dropped = out.qsize()
                    while not out.empty():
                        out.get_nowait()
                    cut = True
                    out.put_nowait(_Unread(dropped))
                    for _when, fut in list(timers.values()):
                        fut.cancel()
                    return
                # unknown fields: in a request, it is refused as its unary RPC would be
                # (they were taken here); around them, every request of the message is
                total, around = unknown_bytes(batch), None
                odd = total > 0
                if odd:     # its own: the message rebuilt of its requests is smaller
                    own = batch.ByteSize() - pb.StreamRequests(
                        requests=batch.requests).ByteSize()
                    if own:
                        around = (f"{own:,} bytes of unknown fields in the StreamRequests "
                                  f"message around it")
                for sr in batch.requests:
                    try:
                        env, req = admit(sr, around)
                    except Refusal as r:
                        self._refused(r, sr.rpc if sr.rpc in RPC_KINDS else "Requests")
                        out.put_nowait(pb.StreamReply(id=sr.id, code=r.code.name,
                                                      details=r.message))
                        continue
                    fut = host.waiter(req.client_id, req.timestamp, op_key(req))
                    timers[sr.id] = (loop.time() + host.config.request_timeout_s, fut)
                    fut.add_done_callback(lambda f, sr=sr, req=req: answer(sr, req, f))
                    host.feed(env)
                await asyncio.sleep(0)       # the loop runs between two messages
        except Exception as e:      # noqa: BLE001 - raised again by the handler (_Failed)
            out.put_nowait(_Failed(e))
        finally:
            ended = True
            if not timers:
                out.put_nowait(None)

    async def sweep() -> None:
        every = min(SWEEP_S, host.config.request_timeout_s / 4)
        while True:
            await asyncio.sleep(every)
            now = loop.time()
            for _when, fut in [t for t in timers.values() if t[0] <= now]:
                fut.cancel()            # answered as timed out (``answer``)
            if proven is None and now - opened > PROVE_S:
                out.put_nowait(_Unproven())
                return

    reader = asyncio.ensure_future(read())
    sweeper = asyncio.ensure_future(sweep())
    try:
        done = False
        while not done:
            # everything answered by now goes in one write (a batch's replies resolve
            # together)
            items = [await out.get()]
            while not out.empty():
                items.append(out.get_nowait())
            drained.set()
            failed = next((x for x in items if isinstance(x, _Failed)), None)
            if failed is not None:      # ended by the handler's task, never the reader's:
                raise failed.error      # aborted there, the call hung (a review)
            unread = next((x for x in items if isinstance(x, _Unread)), None)
            if unread is not None:
                self._refused(Refusal(grpc.StatusCode.RESOURCE_EXHAUSTED, "unread", ""),
                              "Requests")
                await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                                    f"this stream's replies were not read for "
                                    f"{UNREAD_S:g} s; {unread.dropped} were dropped and "
                                    f"its open requests cancelled (they may still "
                                    f"execute); open a new stream")
            if any(isinstance(x, _Unproven) for x in items):
                self._refused(Refusal(grpc.StatusCode.UNAUTHENTICATED, "unproven_stream",
                                      ""), "Requests")
                await context.abort(grpc.StatusCode.UNAUTHENTICATED,
                                    f"no new request signed with a client's key (no copy "
                                    f"of one executed or waiting) came on this stream "
                                    f"within {PROVE_S:g} s of its opening; open a stream "
                                    f"when there is a signed request to send")
            big = next((x for x in items if isinstance(x, _Oversized)), None)
            if big is not None:
                self._refused(Refusal(grpc.StatusCode.RESOURCE_EXHAUSTED, "over_limit",
                                      ""), "Requests")
                await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                                    f"requests: {big.count} in one StreamRequests "
                                    f"message; the limit is {MAX_STREAM_BATCH}")
            done = items[-1] is None
            replies = [x for x in items if x is not None]
            if replies:
                yield pb.StreamReplies(replies=replies)
    finally:
        reader.cancel()
        sweeper.cancel()
        for _when, fut in list(timers.values()):   # the client left: forget its waits
            fut.cancel()
        if proven is None:
            _stream_gone(self.request_streams, where)
        else:
            _stream_gone(self.client_streams, proven)

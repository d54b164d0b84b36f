"""A client process's long-lived request stream to one replica (``Coordinator.Requests``).

A busy client pays a share of one stream write per request instead of a unary call (call
set-up, its own deadline and completion on both sides): requests queued in the same turn of
the event loop go out in one ``StreamRequests``, and the replica answers what it has ready
in one ``StreamReplies``. Each request carries an id, unique on the stream, that its answer
echoes. The stream opens on first use and again after it breaks; a break answers every
request still open on it with UNAVAILABLE, as a failed unary call would.

Several clients of one process may share the streams (``RequestStreams``, passed to
``CoordinatorClient(streams=...)``): each request is signed by its own client, so sharing
changes nothing a replica checks -- only how many connections and writes carry them (as the
bare PBFT skeleton's one client process carries its 32 logical clients). Share only among
clients that present the same TLS identity: the streams use one channel per replica.

    stream = RequestStream(channel)
    answer = await stream.request("SubmitRound", envelope_bytes)  # ClientReply | StreamError
    await stream.close()
"""

from __future__ import annotations

import asyncio
from collections import deque

import grpc

from agora.coordinator.transport import open_channel
from agora.protos.agora.v1 import coordinator_pb2 as pb

METHOD = "/agora.v1.Coordinator/Requests"
MAX_STREAM_BATCH = 1024
"""Requests in one ``StreamRequests`` message: a replica refuses a message with more (it
admits a message's requests in one go: one message of 2,000,000 bad requests, 18 MB, held a
replica's event loop 20 s and 2 GB), and a client sends no more in one."""
MAX_OPEN_PER_STREAM = 4096
"""Requests waiting for their replies on one stream; more are refused (retry later)."""


class StreamError:
    """An answer that is not a reply: the status the unary RPC would have ended with. It
    reads like ``grpc.aio.AioRpcError`` (``code()``, ``details()``) for the client's quorum
    logic."""

    def __init__(self, code: grpc.StatusCode, details: str, *, broken: bool = False) -> None:
        self._code, self._details = code, details
        self.broken = broken
        """the stream itself ended under the request (not the replica's answer to it)"""

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details

    def __repr__(self) -> str:
        return f"StreamError({self._code.name}: {self._details})"


UNARY_AFTER_REFUSAL_S = 30.0
"""How long a client's requests to a replica that refused its stream go by unary calls."""


def stream_refused(answer) -> bool:
    """The replica refused the request stream itself (it holds as many as it takes)."""
    return (isinstance(answer, StreamError)
            and answer.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            and "request streams" in answer.details())


def _status(name: str) -> grpc.StatusCode:
    return getattr(grpc.StatusCode, name, grpc.StatusCode.UNKNOWN) \
        if name.isupper() else grpc.StatusCode.UNKNOWN


class RequestStream:
    def __init__(self, channel: grpc.aio.Channel) -> None:
        self._method = channel.stream_stream(
            METHOD, request_serializer=pb.StreamRequests.SerializeToString,
            response_deserializer=pb.StreamReplies.FromString)
        self._outbox: deque[pb.StreamRequest] = deque()
        self._ready: asyncio.Event | None = None
        self._reader: asyncio.Task | None = None
        self._open: dict[int, asyncio.Future] = {}
        self._next_id = 0
        self.writes = 0
        """StreamRequests written so far (each carries one or more requests)"""

    async def request(self, rpc_name: str, envelope: bytes) -> pb.ClientReply | StreamError:
        """Send one request (its envelope bytes, for the unary RPC ``rpc_name``) and wait for
        this replica's answer. Cancelling the wait forgets the request."""
        if self._reader is None or self._reader.done():
            self._start()
        self._next_id += 1
        rid = self._next_id
        fut = asyncio.get_running_loop().create_future()
        self._open[rid] = fut
        self._outbox.append(pb.StreamRequest(id=rid, rpc=rpc_name, envelope=envelope))
        self._ready.set()
        try:
            answer = await fut
        finally:
            self._open.pop(rid, None)
        if isinstance(answer, StreamError):
            return answer
        if answer.code:
            return StreamError(_status(answer.code), answer.details)
        return answer.reply

    def _start(self) -> None:
        # each call its own outbox: a stream that ended left its generator waiting on the
        # old one for good (a task a break), or popping what the next call should send
        ready = self._ready = asyncio.Event()
        outbox = self._outbox = deque()

        async def batches():
            while True:
                if not outbox:
                    ready.clear()
                    await ready.wait()
                    # one more turn of the loop: what other clients queue meanwhile goes
                    # into the same write
                    await asyncio.sleep(0)
                    continue
                if outbox[0] is None:
                    return
                items = []
                while outbox and outbox[0] is not None and len(items) < MAX_STREAM_BATCH:
                    items.append(outbox.popleft())
                self.writes += 1
                yield pb.StreamRequests(requests=items)

        call = self._method(batches())
        self._reader = asyncio.ensure_future(self._read(call, outbox, ready))

    async def _read(self, call, outbox: deque, ready: asyncio.Event) -> None:
        why = StreamError(grpc.StatusCode.UNAVAILABLE, "the request stream ended", broken=True)
        try:
            async for batch in call:
                for answer in batch.replies:
                    fut = self._open.get(answer.id)
                    if fut is not None and not fut.done():
                        fut.set_result(answer)
        except grpc.aio.AioRpcError as e:
            why = StreamError(e.code(), e.details() or "the request stream broke", broken=True)
        except asyncio.CancelledError:
            raise
        except Exception as e:  # noqa: BLE001 - a reply that is no StreamReplies (a faulty
            why = StreamError(grpc.StatusCode.UNKNOWN,       # replica): this stream ends
                              f"a reply that could not be read ({type(e).__name__})",
                              broken=True)
        finally:
            call.cancel()             # (a call left open, a reply a stream: a review)
            outbox.clear()
            outbox.append(None)       # its generator ends
            ready.set()
            # whatever is still open was not answered on this stream: answer it as a
            # failed call would be (the client then asks other replicas)
            for fut in self._open.values():
                if not fut.done():
                    fut.set_result(why)

    async def close(self) -> None:
        if self._ready is not None:
            self._outbox.append(None)
            self._ready.set()
        if self._reader is not None and not self._reader.done():
            self._reader.cancel()
            try:
                await self._reader
            except (asyncio.CancelledError, Exception):
                pass
        self._reader = None


class RequestStreams:
    """One channel and one ``RequestStream`` per replica address, for the clients of one
    process that share them (same credentials). ``close()`` once every client is done."""

    def __init__(self, addresses: tuple[str, ...] | list[str],
                 credentials: grpc.ChannelCredentials | None = None, options=None) -> None:
        self.addresses = tuple(addresses)
        self.credentials, self.options = credentials, options
        self.channels: list[grpc.aio.Channel] = []
        self.streams: list[RequestStream] = []

    def open(self) -> list[RequestStream]:
        if not self.streams:
            self.channels = [open_channel(a, self.credentials, self.options)
                             for a in self.addresses]
            self.streams = [RequestStream(c) for c in self.channels]
        return self.streams

    async def close(self) -> None:
        for s in self.streams:
            await s.close()
        for c in self.channels:
            await c.close(grace=None)
        self.channels, self.streams = [], []

"""A client's long-lived request stream to one replica (``Coordinator.Requests``).

A busy client pays one stream write per request instead of a unary call (call set-up, its
own deadline and completion on both sides). Each request on the stream carries an id the
replica echoes in its answer; answers come in completion order. The stream opens on first
use and again after it breaks; a break answers every request still open on it with
UNAVAILABLE, as a failed unary call would.

    stream = RequestStream(channel)
    answer = await stream.request("SubmitRound", envelope_bytes)  # ClientReply | StreamError
    await stream.close()
"""

from __future__ import annotations

import asyncio

import grpc

from protos.agora.v1 import coordinator_pb2 as pb

METHOD = "/agora.v1.Coordinator/Requests"


class StreamError:
    """An answer that is not a reply: the status the unary RPC would have ended with. It
    reads like ``grpc.aio.AioRpcError`` (``code()``, ``details()``) for the client's quorum
    logic."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        self._code, self._details = code, details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details

    def __repr__(self) -> str:
        return f"StreamError({self._code.name}: {self._details})"


def _status(name: str) -> grpc.StatusCode:
    return getattr(grpc.StatusCode, name, grpc.StatusCode.UNKNOWN) \
        if name.isupper() else grpc.StatusCode.UNKNOWN


class RequestStream:
    def __init__(self, channel: grpc.aio.Channel) -> None:
        self._method = channel.stream_stream(
            METHOD, request_serializer=pb.StreamRequest.SerializeToString,
            response_deserializer=pb.StreamReply.FromString)
        self._outbox: asyncio.Queue | None = None
        self._reader: asyncio.Task | None = None
        self._open: dict[int, asyncio.Future] = {}
        self._next_id = 0

    async def request(self, rpc_name: str, envelope: bytes) -> pb.ClientReply | StreamError:
        """Send one request (its envelope bytes, for the unary RPC ``rpc_name``) and wait for
        this replica's answer. Cancelling the wait forgets the request."""
        if self._reader is None or self._reader.done():
            self._start()
        self._next_id += 1
        rid = self._next_id
        fut = asyncio.get_running_loop().create_future()
        self._open[rid] = fut
        self._outbox.put_nowait(pb.StreamRequest(id=rid, rpc=rpc_name, envelope=envelope))
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
        outbox: asyncio.Queue = asyncio.Queue()
        self._outbox = outbox

        async def requests():
            while True:
                item = await outbox.get()
                if item is None:
                    return
                yield item

        call = self._method(requests())
        self._reader = asyncio.ensure_future(self._read(call))

    async def _read(self, call) -> None:
        why = StreamError(grpc.StatusCode.UNAVAILABLE, "the request stream ended")
        try:
            async for answer in call:
                fut = self._open.get(answer.id)
                if fut is not None and not fut.done():
                    fut.set_result(answer)
        except grpc.aio.AioRpcError as e:
            why = StreamError(e.code(), e.details() or "the request stream broke")
        except asyncio.CancelledError:
            call.cancel()
            raise
        finally:
            # whatever is still open was not answered on this stream: answer it as a
            # failed call would be (the client then asks other replicas)
            for fut in self._open.values():
                if not fut.done():
                    fut.set_result(why)

    async def close(self) -> None:
        if self._outbox is not None:
            self._outbox.put_nowait(None)
        if self._reader is not None and not self._reader.done():
            self._reader.cancel()
            try:
                await self._reader
            except (asyncio.CancelledError, Exception):
                pass
        self._reader = None

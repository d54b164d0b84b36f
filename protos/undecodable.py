"""Request bytes that are not the RPC's message: refused with INVALID_ARGUMENT naming the
message type, with nothing logged.

gRPC's own path for a request deserializer that raises is a traceback in the server's log
and ``UNKNOWN`` "Unexpected <class 'DecodeError'>" to the caller, for every such call: a
message that names nothing, and a log anyone who reaches the port can fill. The coordinator
replicas' and the site agents' servers are built with ``RefuseUndecodable``, a server
interceptor that gives every method a deserializer that never raises (it returns an
``Undecodable`` in place of the message) and a behaviour that refuses one before the
servicer sees it -- for a streamed request, the message that does not parse raises
``UndecodableMessage`` where the stream is read, and the behaviour ends the call with the
refusal (a servicer that reads its stream in a task of its own hands the exception on to
its handler).
"""

from __future__ import annotations

import inspect
from typing import Callable

import grpc


class Undecodable:
    """What a request's bytes parsed to when they are not the method's message."""

    __slots__ = ("problem",)

    def __init__(self, problem: str) -> None:
        self.problem = problem


def _type_name(deserialize: Callable) -> str:
    owner = getattr(deserialize, "__self__", None)
    descriptor = getattr(owner, "DESCRIPTOR", None)
    return getattr(descriptor, "full_name", "the method's request message")


def _tolerant(deserialize: Callable) -> Callable:
    def parse(data: bytes):
        try:
            return deserialize(data)
        except Exception as e:      # DecodeError, or whatever a parser raises on bad bytes
            return Undecodable(str(e) or type(e).__name__)
    return parse


def _details(name: str, bad: Undecodable) -> str:
    return (f"request: cannot be parsed as {name} ({bad.problem}); expected the bytes of a "
            f"{name}")


async def _refuse(context, name: str, bad: Undecodable) -> None:
    await context.abort(grpc.StatusCode.INVALID_ARGUMENT, _details(name, bad))


class UndecodableMessage(Exception):
    """Raised by a request stream at a message that did not parse; the method's behaviour
    (``_guard``) ends the call with the refusal, from the handler's own task. Aborted where
    the stream was read -- another task of the servicer (``Coordinator.Requests`` reads its
    stream in one) -- the status went out while the handler still wrote a reply: the
    client got the reply, then nothing, until its deadline (a review)."""

    def __init__(self, details: str) -> None:
        super().__init__(details)
        self.details = details


def _checked(it, name: str):
    async def messages():
        async for m in it:
            if isinstance(m, Undecodable):
                raise UndecodableMessage(_details(name, m))
            yield m
    return messages()


def _guard(handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
    """``handler`` with a deserializer that never raises and a behaviour that refuses what
    did not parse."""
    deserialize = handler.request_deserializer
    if deserialize is None:
        return handler
    name = _type_name(deserialize)
    if not handler.request_streaming:
        kind = "unary_stream" if handler.response_streaming else "unary_unary"
        inner = getattr(handler, kind)
        if inspect.isasyncgenfunction(inner):
            async def behaviour(request, context):
                if isinstance(request, Undecodable):
                    await _refuse(context, name, request)
                async for m in inner(request, context):
                    yield m
        else:
            async def behaviour(request, context):
                if isinstance(request, Undecodable):
                    await _refuse(context, name, request)
                return await inner(request, context)
    else:
        kind = "stream_stream" if handler.response_streaming else "stream_unary"
        inner = getattr(handler, kind)
        if inspect.isasyncgenfunction(inner):
            async def behaviour(it, context):
                try:
                    async for m in inner(_checked(it, name), context):
                        yield m
                except UndecodableMessage as e:
                    await context.abort(grpc.StatusCode.INVALID_ARGUMENT, e.details)
        else:
            async def behaviour(it, context):
                try:
                    return await inner(_checked(it, name), context)
                except UndecodableMessage as e:
                    await context.abort(grpc.StatusCode.INVALID_ARGUMENT, e.details)
    return handler._replace(request_deserializer=_tolerant(deserialize), **{kind: behaviour})


class RefuseUndecodable(grpc.aio.ServerInterceptor):
    """Every method of the server refuses request bytes that do not parse (see the module
    doc). Each method's guarded handler is built once."""

    def __init__(self) -> None:
        self._guarded: dict[int, tuple[grpc.RpcMethodHandler, grpc.RpcMethodHandler]] = {}

    async def intercept_service(self, continuation, handler_call_details):
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        hit = self._guarded.get(id(handler))
        if hit is None or hit[0] is not handler:
            hit = self._guarded[id(handler)] = (handler, _guard(handler))
        return hit[1]

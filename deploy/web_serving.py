"""How the web view's HTTP server holds up against clients that misbehave (a probe, with
aiohttp 3.14): connections that never send a request were kept for good -- 20,000 of them
took the ``agora up`` process's file descriptors, and every refused accept logged a
traceback (260 MB of log in 70 s) -- and request bodies the view never reads were read and
thrown away without end (26 GB in 15 s of an endless chunked body, on the service's loop).

- ``IDLE_S``: a connection that sends no (complete) request for this long is closed,
  kept-alive or new (aiohttp's ``keepalive_timeout``, which also times the first request);
- ``MAX_CONNECTIONS``: past this many open connections a new one is closed at once
  (``CappedSite``);
- a request that comes with a body is answered 413 and its connection closed, what is
  left of the body read for at most ``LINGER_S`` (aiohttp's ``lingering_time``: a close
  with unread data would reset the connection before the client read the answer).
"""

from __future__ import annotations

import asyncio

from aiohttp import web

IDLE_S = 10.0
"""Seconds a connection may stay without a request (the page asks every few seconds)."""
MAX_CONNECTIONS = 256
"""Open connections the view holds at once; a browser needs a few."""
LINGER_S = 1.0
"""Seconds a refused body is still read (and dropped) before its connection closes."""


class _Refused(asyncio.Protocol):
    """A connection over the cap: closed as soon as it is made."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.abort()


class CappedSite(web.TCPSite):
    """``web.TCPSite`` whose server holds at most ``MAX_CONNECTIONS`` connections."""

    async def start(self) -> None:
        await web.BaseSite.start(self)
        server = self._runner.server

        def factory():
            if len(server.connections) >= MAX_CONNECTIONS:
                return _Refused()
            return server()
        self._server = await asyncio.get_running_loop().create_server(
            factory, self._host, self._port, backlog=self._backlog,
            reuse_address=self._reuse_address, reuse_port=self._reuse_port)
        self._bound_port = self._server.sockets[0].getsockname()[1]


def body_refused(request: web.Request) -> web.Response | None:
    """A 413 that closes the connection for a request with a body (the view takes none),
    or None."""
    if not request.body_exists:
        return None
    response = web.Response(status=413, text="this view takes no request body\n")
    response.force_close()
    return response

"""A loopback TCP proxy that can freeze: it keeps every connection open and stops passing
bytes either way -- what a peer whose host vanished without closing its connections (no
FIN, no RST) looks like to the sender. For tests of keepalive (a fake network, not a fake
of Agora)."""

from __future__ import annotations

import asyncio


class FrozenProxy:
    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.frozen = asyncio.Event()
        self.server: asyncio.base_events.Server | None = None
        self.port = 0
        self._tasks: list[asyncio.Task] = []
        self._writers: list[asyncio.StreamWriter] = []

    async def start(self) -> "FrozenProxy":
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def _handle(self, r, w) -> None:
        ur, uw = await asyncio.open_connection("127.0.0.1", self.target_port)
        self._writers += [w, uw]

        async def pipe(a, b):
            try:
                while data := await a.read(65536):
                    if self.frozen.is_set():
                        await asyncio.Event().wait()      # holds the bytes and the socket
                    b.write(data)
                    await b.drain()
            except (ConnectionError, OSError):
                pass
        self._tasks += [asyncio.ensure_future(pipe(r, uw)), asyncio.ensure_future(pipe(ur, w))]

    def freeze(self) -> None:
        self.frozen.set()

    async def close(self) -> None:
        for t in self._tasks:
            t.cancel()
        for w in self._writers:
            w.close()
        if self.server is not None:
            self.server.close()

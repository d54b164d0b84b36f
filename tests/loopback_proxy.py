"""A loopback TCP proxy for tests of links (a fake network, not a fake of Agora): with
``delay_s`` a slow link (a new connection waits ``delay_s``, every hop of bytes a third of
it); ``freeze()`` keeps every connection open and passes nothing more either way -- what a
peer whose host vanished without closing its connections (no FIN, no RST) looks like."""

from __future__ import annotations

import asyncio


class LoopbackProxy:
    def __init__(self, target_port: int, delay_s: float = 0.0) -> None:
        self.target_port = target_port
        self.delay_s = delay_s
        self.frozen = asyncio.Event()
        self.server: asyncio.base_events.Server | None = None
        self.port = 0
        self._tasks: list[asyncio.Task] = []
        self._writers: list[asyncio.StreamWriter] = []

    async def start(self) -> "LoopbackProxy":
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def _handle(self, r, w) -> None:
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        ur, uw = await asyncio.open_connection("127.0.0.1", self.target_port)
        self._writers += [w, uw]

        async def pipe(a, b):
            try:
                while data := await a.read(65536):
                    if self.frozen.is_set():
                        await asyncio.Event().wait()      # holds the bytes and the socket
                    if self.delay_s:
                        await asyncio.sleep(self.delay_s / 3)
                    b.write(data)
                    await b.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                b.close()
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

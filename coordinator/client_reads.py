"""What a coordinator client says and reads outside the ordered protocol: its heartbeat (a
site alive, to every replica, not ordered), each replica's status, and the watch of committed
schedule changes (signed reads: ``coordinator/read_auth.py``; f+1 identical streams:
``watch_merge.py``). A mixin of ``coordinator.client.CoordinatorClient``, whose channels,
stubs, keys and quorum it uses."""

from __future__ import annotations

import asyncio
import time
from typing import AsyncIterator

import grpc

from agora.coordinator.read_auth import sign_read
from agora.coordinator.site_lapses import sign_heartbeat
from agora.coordinator.watch_merge import merged_watch
from agora.protos.agora.v1 import coordinator_pb2 as pb


class ClientReads:
    """Heartbeat, status and watch of ``CoordinatorClient`` (module doc)."""

    async def heartbeat(self, wait_s: float | None = None) -> int:
        """Tell every replica this client (a site) is alive (not ordered); returns how many
        beats replicas took since the last call: this call's within ``wait_s`` (default the
        calls' timeout), and any earlier one answered late. A replica whose last beat is
        still unanswered is not sent another, and waits for it no one: a hung replica held
        every beat of the site for the call's timeout (12 s), past the replicas' 10 s
        ``site_timeout_s``, and the healthy replicas voted the site lapsed (a probe: the
        primary stopped with SIGSTOP; two healthy sites' runs killed and run again)."""
        self.open()
        ts = max(self._hb_ts + 1, time.time_ns() // 1000)
        self._hb_ts = ts
        msg = sign_heartbeat(self.auth.signer, self.client_id, ts)

        async def one(stub) -> bool:
            try:
                await stub.Heartbeat(msg, timeout=self.timeout_s)
                return True
            except grpc.aio.AioRpcError:
                return False
        for i, stub in enumerate(self._stubs):
            if i not in self._hb_pending:
                self._hb_pending[i] = asyncio.ensure_future(one(stub))
        waiting = [t for t in self._hb_pending.values() if not t.done()]
        if waiting:
            await asyncio.wait(waiting, timeout=self.timeout_s if wait_s is None else wait_s)
        took = 0
        for i, t in list(self._hb_pending.items()):
            if t.done():
                del self._hb_pending[i]
                took += bool(not t.cancelled() and t.result())
        return took

    def read_auth(self, method: str, since: int = 0, replica: int = 0) -> pb.ReadAuth:
        """A ReadAuth for ``method`` at replica ``replica`` (each is signed for one)."""
        return sign_read(self.auth.signer, self.client_id, method, since, replica=replica)

    async def status(self) -> list[pb.ReplicaStatus | str]:
        """Each replica's own status, or the error reaching it."""
        self.open()

        async def one(i, stub):
            request = pb.StatusRequest(auth=self.read_auth("GetStatus", replica=i))
            for attempt in (1, 2):
                try:
                    return await stub.GetStatus(request, timeout=self.timeout_s)
                except grpc.aio.AioRpcError as e:
                    # a replica busy enough to drop a connection's handshake (seen under
                    # heavy load) is asked once more before it is reported
                    if e.code() != grpc.StatusCode.UNAVAILABLE or attempt == 2:
                        return f"{e.code().name}: {e.details()}"
                    await asyncio.sleep(0.5)
        return list(await asyncio.gather(*(one(i, s) for i, s in enumerate(self._stubs))))

    async def watch(self, since_version: int = 0, *, hedge_s: float = 0.25,
                    patience_s: float = 5.0) -> AsyncIterator[pb.ScheduleUpdate]:
        """Committed schedule changes from ``since_version`` on, each once f+1 replicas
        streamed it identically, strictly in (version, sub) order (``WatchMerger``: a
        confirmed update waits for a smaller one that can still be confirmed). Updates are
        matched as the bytes each replica sent and parsed once.

        It listens to f+1 replicas first (the ones that formed the last quorum, when known):
        with all of them correct that is enough, at half the cost of all n streams. When an
        update has waited ``hedge_s`` unconfirmed (a replica is slow, down, restarted or
        lying), it listens to every replica from then on. A stream that ends reconnects
        from the last version released. ``WatchRefused`` when more than 2f replicas refuse
        it: the history it would start from was compacted away (read the ledger, then watch
        from its version); a refusal from fewer opens every replica's stream."""
        self.open()
        async for u in merged_watch(self._channels, self.f, self._preferred, self.read_auth,
                                    since_version, hedge_s=hedge_s, patience_s=patience_s):
            yield u


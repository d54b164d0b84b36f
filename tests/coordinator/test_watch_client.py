"""The client's watch (coordinator/client.py ``CoordinatorClient.watch``): which replicas'
streams it listens to. The replicas are fakes in this unit test (channels whose streams the
test feeds by hand), so a replica can be made slow or silent at will; the real streams are
exercised by the gRPC and cluster tests."""

from __future__ import annotations

import asyncio

from agora.coordinator.client import CoordinatorClient
from agora.coordinator.config import config_from_dict
from agora.coordinator.pbft.keys import generate_keys
from agora.protos.agora.v1 import coordinator_pb2 as pb


class FakeChannel:
    """A replica's channel whose watch stream yields what the test puts in ``feed``."""

    def __init__(self) -> None:
        self.feed: asyncio.Queue = asyncio.Queue()
        self.calls = 0
        self.listening = False

    def unary_stream(self, path, request_serializer=None, response_deserializer=None):
        assert path.endswith("/WatchSchedule")

        async def stream(request: bytes):
            self.calls += 1
            self.listening = True
            try:
                while True:
                    yield await self.feed.get()
            finally:
                self.listening = False
        return stream


def update(version: int) -> bytes:
    return pb.ScheduleUpdate(version=version).SerializeToString()


def test_it_listens_to_f_plus_1_replicas_and_to_every_replica_once_an_update_waits():
    async def main():
        cfg = config_from_dict({"replicas": [f"127.0.0.1:{i + 1}" for i in range(4)]})
        keys = generate_keys(4, ["operator"], seed=b"watch")
        client = CoordinatorClient(cfg, keys.for_client("operator"), "operator")
        ch = [FakeChannel() for _ in range(4)]
        client._channels = ch                   # open() keeps channels it has
        got: list[int] = []

        async def follow():
            async for u in client.watch(0, hedge_s=0.05):
                got.append(u.version)

        task = asyncio.create_task(follow())
        await asyncio.sleep(0.02)
        assert [c.listening for c in ch] == [True, True, False, False]   # f+1 first
        for v in (1, 2):                        # both agree: released, nobody else asked
            ch[0].feed.put_nowait(update(v))
            ch[1].feed.put_nowait(update(v))
            await asyncio.sleep(0.02)
        assert got == [1, 2] and [c.calls for c in ch] == [1, 1, 0, 0]
        ch[0].feed.put_nowait(update(3))        # replica 1 falls silent: v3 waits...
        await asyncio.sleep(0.02)
        assert got == [1, 2]
        await asyncio.sleep(0.1)
        assert all(c.listening for c in ch)     # ...past hedge_s: every replica
        ch[3].feed.put_nowait(update(3))        # a second copy confirms it
        await asyncio.sleep(0.02)
        assert got == [1, 2, 3]
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(asyncio.wait_for(main(), 20))


def test_a_slow_consumer_leaves_the_backlog_in_the_streams_not_in_memory_and_loses_nothing():
    """A site agent on a saturated machine applies updates slower than four streams bring
    them; what it has not merged yet is bounded (``watch_merge.BACKLOG`` a stream), the rest
    waits in the streams (gRPC's flow control, then the replica's per-watcher queue). Before,
    the pumps read every stream into an unbounded queue: an agent's memory grew with its lag
    (a 64-site replay: +20 MiB of anonymous memory in its first four minutes)."""
    from agora.coordinator.watch_merge import BACKLOG

    async def main():
        cfg = config_from_dict({"replicas": [f"127.0.0.1:{i + 1}" for i in range(4)]})
        keys = generate_keys(4, ["operator"], seed=b"watch")
        client = CoordinatorClient(cfg, keys.for_client("operator"), "operator")
        ch = [FakeChannel() for _ in range(4)]
        client._channels = ch
        total = 1000
        for c in ch[:2]:
            for v in range(1, total + 1):
                c.feed.put_nowait(update(v))
        got: list[int] = []
        go = asyncio.Event()

        async def follow():
            async for u in client.watch(0, hedge_s=30.0):
                got.append(u.version)
                if len(got) == 1:
                    await go.wait()             # the consumer is busy elsewhere

        task = asyncio.create_task(follow())
        await asyncio.sleep(0.3)
        read = sum(total - c.feed.qsize() for c in ch[:2])
        assert got == [1]
        # the queue's BACKLOG x n, one held by each pump, and as many again that the merge
        # took from the queue and released at once (before it yielded the first)
        assert read <= 2 * BACKLOG * 4 + 8, read    # unbounded, this was all 2,000
        go.set()
        for _ in range(200):
            if len(got) == total:
                break
            await asyncio.sleep(0.02)
        assert got == list(range(1, total + 1))
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(asyncio.wait_for(main(), 30))

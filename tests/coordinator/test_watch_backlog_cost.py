"""What a watch from long ago costs a replica (``WatchSchedule``; a review): the versions
older than the updates the replica keeps are rebuilt from its state's rows. They were built
whole before the first was sent -- 100,000 rows of each kind held the replica's event loop
~1 s and 125 MB per watch, kept for as long as the watcher left its stream unread (16 such
streams a reader) -- and charged to nobody, while a reader's queries are charged to its
read budget. Now each update is built as it is sent, the time is charged to the reader (never
the operator), and a reader in debt is not sent rebuilt history until it is back under.

One replica in this process (n = 1), its state given rows of a long history (what
allocations and instance ends of 10,000 finished jobs leave behind) before it serves."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import grpc
import pytest
from nacl.signing import SigningKey

from agora.protos.agora.v1 import coordinator_pb2 as pb
from agora.protos.agora.v1 import coordinator_pb2_grpc as rpc

CLUSTER = Path(__file__).parents[1] / "fixtures" / "cluster_small.yaml"
CLIENTS = ["site:east", "operator"]

pytestmark = pytest.mark.timeout(120)


def _rss_mb() -> int:
    with open("/proc/self/status") as f:
        return next(int(x.split()[1]) // 1024 for x in f if x.startswith("VmRSS"))


def _with_history(tmp_path, rows: int, body) -> None:
    """Run ``await body(channel, server, keys, version)`` against one replica whose state
    holds ``rows`` allocations and as many instance changes, one of each a version."""
    from agora.coordinator.config import config_from_dict
    from agora.coordinator.pbft.keys import generate_keys
    from agora.coordinator.schedule_state import ScheduleState
    from agora.coordinator.server import serve
    from agora.deploy.local_group import free_ports

    keys = generate_keys(1, CLIENTS, seed=b"watch-backlog")
    cfg = config_from_dict({"replicas": [f"127.0.0.1:{free_ports(1)[0]}"], "f": 0,
                            "data_dir": str(tmp_path / "data"), "cluster": str(CLUSTER)})
    app = ScheduleState.for_config(cfg)
    app.allocations.extend((f"old-{v // 8}", "map", v % 8, v % 8 + 1, "west", "west/a100-0",
                            v, v) for v in range(1, rows + 1))
    app.changes.extend((v, f"old-{v // 8}", "map", v % 8, v % 8 + 1, "west", "completed",
                        1.0, 2.0, 0, "") for v in range(1, rows + 1))
    app.version = rows

    async def go():
        server = await serve(cfg, 0, keys, app=app)
        try:
            async with grpc.aio.insecure_channel(cfg.replicas[0]) as ch:
                await body(ch, server, keys, rows)
        finally:
            await server.stop()
    asyncio.run(asyncio.wait_for(go(), 100))


def _watch(ch, keys, reader: str, since: int):
    from agora.coordinator.read_auth import sign_read

    auth = sign_read(SigningKey(keys.client_signing[reader]), reader, "WatchSchedule",
                     since=since, replica=0)
    return rpc.CoordinatorStub(ch).WatchSchedule(pb.WatchRequest(since_version=since,
                                                                 auth=auth))


@pytest.mark.timing
def test_unread_watches_from_long_ago_hold_neither_the_loop_nor_the_history(tmp_path):
    """Four watches from version 0 that read one update each: the replica answers a status
    request meanwhile at once, and holds far less than four copies of its history (it was
    ~4 s and +500 MB here)."""
    async def body(ch, server, keys, rows):
        before = _rss_mb()
        t = time.monotonic()
        # the operator's: what its backlog costs is not charged, so none of the four is
        # refused as over a read budget whatever the machine's load (the charge: below)
        calls = [_watch(ch, keys, "operator", 0) for _ in range(4)]
        for call in calls:
            first = await call.read()
            assert first.version == 1
        from agora.coordinator.read_auth import sign_read
        status = await rpc.CoordinatorStub(ch).GetStatus(pb.StatusRequest(auth=sign_read(
            SigningKey(keys.client_signing["operator"]), "operator", "GetStatus",
            replica=0)), timeout=10)
        took = time.monotonic() - t
        await asyncio.sleep(0.5)
        grew = _rss_mb() - before
        for call in calls:
            call.cancel()
        assert status.replica == 0
        assert grew < 150 and took < 1.5, f"{grew} MB for four unread watches, {took:.1f} s"
    _with_history(tmp_path, 100_000, body)


def test_a_readers_rebuilt_history_is_charged_to_it_and_refused_while_in_debt(tmp_path):
    """A site that read a long history from version 0 (~0.4 s of the replica's time, past
    its 0.05 s a second) is refused another from long ago, RESOURCE_EXHAUSTED naming the
    budget, until it is back under; its watch from the present and the operator's from 0
    are served."""
    async def body(ch, server, keys, rows):
        got = 0
        call = _watch(ch, keys, "site:east", 0)
        async for u in call:
            got += 1
            if u.version == rows:
                break
        call.cancel()
        assert got == rows
        again = _watch(ch, keys, "site:east", 0)
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await again.read()
        assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, e.value
        assert "client_read_seconds_per_s" in e.value.details()
        assert e.value.details().startswith("auth.client_id: 'site:east'")
        live = _watch(ch, keys, "site:east", rows + 1)       # from the present: served
        op = _watch(ch, keys, "operator", 0)
        assert (await op.read()).version == 1
        await asyncio.sleep(0.3)
        assert live.done() is False                          # waiting for what comes next
        live.cancel()
        op.cancel()
    _with_history(tmp_path, 40_000, body)

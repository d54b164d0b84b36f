"""A replica that can go on no longer says so and stops (coordinator/replica_host.py): its pump
raising once left a process that answered health checks and ordered nothing, with nothing
in its log. Now the failure is logged with its cause, ``ReplicaHost.failed`` is set, and
``agora coordinator`` exits non-zero on it (so that it is seen and restarted)."""

from __future__ import annotations

import asyncio
import logging

import pytest

from agora.coordinator.server import serve
from agora.deploy.local_group import LocalGroup
from tests.coordinator.grpc_helpers import CLUSTER

pytestmark = pytest.mark.timeout(60)


def test_a_pump_that_raises_is_logged_with_its_cause_and_fails_the_replica(tmp_path, caplog):
    g = LocalGroup(tmp_path, n=1, clients=["operator"], cluster=str(CLUSTER))

    async def go() -> None:
        server = await serve(g.config, 0)
        try:
            assert not server.host.failed.is_set()

            def broken(*_args, **_kw):
                raise RuntimeError("injected fault")
            server.host.replica.receive = broken
            server.host.feed(b"\x00")
            await asyncio.wait_for(server.host.failed.wait(), 10)
        finally:
            await server.stop()

    with caplog.at_level(logging.CRITICAL, logger="agora.coordinator.replica_host"):
        asyncio.run(go())
    assert "pump failed" in caplog.text and "injected fault" in caplog.text

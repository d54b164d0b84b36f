"""A replica that did not run (stopped, or its event loop held) does not count that time as
the sites' silence (``coordinator/site_lapses.py``, ``SiteLapses._discount_stall``). The
keeper's clock is the test's."""

from __future__ import annotations

import asyncio

import pytest

from tests.coordinator.test_round_keeper import owing_keeper


def test_a_replica_that_did_not_run_does_not_count_that_time_as_the_sites_silence():
    """A probe: two replicas stopped for 60 s (SIGSTOP) voted every healthy site lapsed once
    resumed -- f+1 votes -- and the sites' runs were killed and run again. A gap of more than
    ``STALL_S`` between two checks moves when each site was last heard on by the gap; a site
    silent after that is voted lapsed as before."""
    from agora.coordinator.site_lapses import STALL_S

    async def main():
        _run, k, votes = owing_keeper()
        t0 = k.started
        k.heard["a"] = t0 + 1.0
        await k.check(t0 + 2.0)
        await k.check(t0 + 62.0)                               # stopped for a minute
        await asyncio.sleep(0)
        assert [v for v in votes if v[0] == "site_lapsed"] == []
        assert k.heard["a"] == pytest.approx(t0 + 61.0)
        lapsed = lambda: [v[1].site for v in votes if v[0] == "site_lapsed"]  # noqa: E731
        for t in range(63, 71):                                # 0.25 s apart: no stall
            for q in range(4):
                await k.check(t0 + t + q * 0.25)
        await asyncio.sleep(0)
        assert "a" not in lapsed()                  # heard 9.75 s ago, the stall discounted
        await k.check(t0 + 71.25)
        await asyncio.sleep(0)
        assert "a" in lapsed() and STALL_S < 10.0
    asyncio.run(main())

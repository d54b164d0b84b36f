"""A lone client's latency at the default batching (batch_size 16, batch_timeout 2 ms)
against no batching at all (batch_size 1), interleaved in one run: with Castro & Liskov's
rule -- a primary with nothing in flight proposes at once -- a lone request waits for no
batch to fill, so the two should match; before that rule every lone request waited the
2 ms timeout at the primary.

    python -m bench.lone_request [--pairs 3] [--requests 300]

Each request is a site's (empty) ``SiteRound``: ordered, executed, answered by f+1.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from agora.coordinator.client import CoordinatorClient
from agora.deploy.local_group import LocalGroup
from agora.protos.agora.v1 import coordinator_pb2 as pb

CLUSTER = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "cluster_small.yaml"


async def _latencies(g: LocalGroup, requests: int) -> list[float]:
    async with CoordinatorClient(g.config, g.keys, "site:east", timeout_s=30.0) as c:
        for _ in range(20):                                   # warm up
            await c.submit_round(pb.SiteRound(site="east"))
        out = []
        for _ in range(requests):
            t = time.perf_counter()
            await c.submit_round(pb.SiteRound(site="east"))
            out.append(1000 * (time.perf_counter() - t))
        return out


def run(batch_size: int, batch_timeout_s: float, requests: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="agora-lone-") as tmp:
        g = LocalGroup(Path(tmp), n=4, clients=["site:east", "operator"], cluster=str(CLUSTER),
                       batch_size=batch_size, batch_timeout_s=batch_timeout_s,
                       round_timeout_s=60.0, site_timeout_s=3600.0)
        with g.serving():
            lat = asyncio.run(_latencies(g, requests))
    lat.sort()
    return {"p50": statistics.median(lat), "p99": lat[int(0.99 * (len(lat) - 1))]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--pairs", type=int, default=3)
    p.add_argument("--requests", type=int, default=300)
    a = p.parse_args()
    rows = {"default (16, 2 ms)": [], "no batching (1, 0 ms)": []}
    for _ in range(a.pairs):
        rows["default (16, 2 ms)"].append(run(16, 0.002, a.requests))
        rows["no batching (1, 0 ms)"].append(run(1, 0.0, a.requests))
    print("| batching | p50 ms (median of pairs) | p99 ms |\n| --- | ---: | ---: |")
    for name, runs in rows.items():
        print(f"| {name} | {statistics.median(r['p50'] for r in runs):.2f} | "
              f"{statistics.median(r['p99'] for r in runs):.2f} |")


if __name__ == "__main__":
    main()

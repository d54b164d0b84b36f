"""Simulator speed: the whole Alibaba openb pod list (8,152 pods) on its 1,523 nodes split into
8 sites, replayed on its own clock under each baseline; median wall time of ``--repeat`` runs
and events per second. The target (issue 2) is under 5 s wall with a heuristic policy.

    python -m bench.sim_speed [--traces ../shared/workloads] [--repeat 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

from agora.agents.baselines import BASELINES
from agora.agents.sim.report import markdown_table
from agora.agents.sim.runner import run_one
from bench.scenarios import DEFAULT_TRACES, alibaba_asis


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--traces", type=Path, default=DEFAULT_TRACES)
    p.add_argument("--repeat", type=int, default=3)
    a = p.parse_args(argv)
    t0 = time.perf_counter()
    cluster, wl = alibaba_asis(a.traces).build(0)
    load_s = time.perf_counter() - t0
    rows = []
    for name in BASELINES:
        walls, eps = [], []
        for _ in range(a.repeat):
            t = time.perf_counter()
            r = run_one(cluster, wl, name)
            walls.append(time.perf_counter() - t)
            eps.append(r.metrics["events"] / r.metrics["wall_s"])
        rows.append([name, f"{statistics.median(walls):.2f}", f"{min(walls):.2f}",
                     f"{statistics.median(eps):,.0f}", str(r.metrics["events"]),
                     str(r.metrics["decisions"]), "yes" if statistics.median(walls) < 5 else "NO"])
    print(f"Alibaba openb: {len(wl.jobs)} pods, {len(cluster.nodes)} nodes in "
          f"{len(cluster.sites)} sites; traces read in {load_s:.2f} s; {a.repeat} runs each\n")
    print(markdown_table(["policy", "wall s (median)", "wall s (min)", "events/s (median)",
                          "events", "decisions", "< 5 s"], rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())

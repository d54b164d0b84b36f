"""Simulator speed: the whole Alibaba openb pod list (8,152 pods) on its 1,523 nodes split into
8 sites, replayed on its own clock under each baseline; median wall time of ``--repeat`` runs
and events per second. The target (issue 2) is under 5 s wall with a heuristic policy.

``--backlog 2000,10000`` instead times a deep backlog: one job of N one-instance tasks (three
shapes, 5-7 s) on 2 sites x 4 nodes x 8 cpus, under each baseline at each N; the last column
is how the wall time grows against the task count from the smallest N to the largest (1.0:
linear; a policy that walks the whole backlog at every event grows with N).

``--workload SPEC [--jobs N]`` instead times any workload the loader reads (e.g. a v2018
``batch_task.csv`` of DAG jobs, whose many demand shapes are what ``Decision.fits_any`` scans)
on the default cluster: CPU seconds per baseline, median of ``--repeat`` runs.

    python -m bench.sim_speed [--traces ../shared/workloads] [--repeat 3] [--backlog N,N]
        [--workload SPEC [--jobs N]]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

from agora.agents.baselines import BASELINES
from agora.agents.domain import Cluster, Demand, Job, Node, Site, Task, Workload
from agora.agents.sim.report import markdown_table
from agora.agents.sim.runner import run_one
from bench.scenarios import DEFAULT_TRACES, alibaba_asis


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--traces", type=Path, default=DEFAULT_TRACES)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--backlog", type=lambda v: [int(x) for x in v.split(",")], default=None,
                   help="task counts of the one-job backlog to time instead (e.g. 2000,10000)")
    p.add_argument("--workload", default=None,
                   help="a workload spec to time on the default cluster instead")
    p.add_argument("--jobs", type=int, default=None, help="with --workload: its first N jobs")
    a = p.parse_args(argv)
    if a.workload:
        return workload_cpu(a.workload, a.jobs, a.repeat)
    if a.backlog:
        return backlog(sorted(a.backlog), a.repeat)
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


def workload_cpu(spec: str, jobs: int | None, repeat: int) -> int:
    from agora.agents.workloads.loader import load_cluster, load_workload

    cluster = load_cluster("default")
    wl = load_workload(spec, cluster)
    wl = Workload(wl.jobs[:jobs] if jobs else wl.jobs, source=wl.source)
    shapes = len({t.demand.key for j in wl.jobs for t in j.tasks})
    rows = []
    for name in BASELINES:
        cpu = []
        for _ in range(repeat):
            t = time.process_time()
            r = run_one(cluster, wl, name)
            cpu.append(time.process_time() - t)
        rows.append([name, f"{statistics.median(cpu):.2f}", f"{r.metrics['jct_mean_s']:.1f}"])
    print(f"{spec}: {len(wl.jobs)} jobs, {wl.instance_count:,} instances, {shapes} demand "
          f"shapes, default cluster; median of {repeat} runs\n")
    print(markdown_table(["policy", "CPU s (median)", "mean JCT s"], rows))
    return 0


def backlog(sizes: list[int], repeat: int) -> int:
    sites = [Site(s, tuple(Node(f"{s}/n{k}", s, 8000, 1 << 20) for k in range(4)))
             for s in ("a", "b")]
    cluster = Cluster(tuple(sites))
    rows = []
    for name in BASELINES:
        walls = []
        for n in sizes:
            wl = Workload((Job("wide", 0.0, "a", tuple(
                Task(f"t{i}", 5.0 + i % 3, Demand(1000 * (1 + i % 3), 1024))
                for i in range(n))),))
            runs = []
            for _ in range(repeat):
                t = time.perf_counter()
                run_one(cluster, wl, name)
                runs.append(time.perf_counter() - t)
            walls.append(statistics.median(runs))
        growth = (walls[-1] / walls[0]) / (sizes[-1] / sizes[0]) if len(sizes) > 1 else 1.0
        rows.append([name, *(f"{w:.2f}" for w in walls), f"{growth:.1f}"])
    print(f"One job of N one-instance tasks, 8 nodes of 8 cpus; median of {repeat} runs\n")
    print(markdown_table(["policy", *(f"N={n:,} wall s" for n in sizes),
                          "growth vs linear"], rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())

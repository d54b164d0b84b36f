"""Gap to bound. Small instances: every baseline against the CP-SAT optimum (or proven bound)
for makespan and for Σ weight·(completion − arrival). Large scenarios: against the analytic
lower bounds (work / capacity, critical path). Gap = (value − bound) / bound.

Small instances are seeded synthetic workloads on a 2-site, 4-node cluster with integer
durations and no data to transfer, so the solver's integer-time bound is a true bound on the
simulator's schedules.

    python -m bench.bounds [--seeds 5] [--jobs 8] [--time-limit 20]
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import replace

from agora.agents.baselines import BASELINES
from agora.agents.bounds import analytic_lower_bounds, cpsat_schedule, gap_to_bound
from agora.agents.domain import Cluster, Link, Node, Site, Workload
from agora.agents.sim.report import markdown_table, mean_ci
from agora.agents.sim.runner import run_one
from agora.agents.workloads.synthetic import generate
from bench.scenarios import synthetic_dag

SMALL = Cluster(sites=(
    Site("a", (Node("a/n0", "a", 8000, 32768, 1, "T4"), Node("a/n1", "a", 4000, 16384))),
    Site("b", (Node("b/n0", "b", 8000, 32768), Node("b/n1", "b", 4000, 16384)))),
    default_link=Link(latency_ms=0.0, bandwidth_mbps=1e6))


def small_workload(seed: int, jobs: int) -> Workload:
    wl = generate(SMALL, seed=seed, jobs=jobs, load=1.2, short_mean=20, long_mean=90,
                  max_instances=3, max_stages=3, data_mb_mean=0, deadline_frac=0)
    jobs_ = tuple(replace(j, arrival=float(math.floor(j.arrival)), tasks=tuple(
        replace(t, duration=float(math.ceil(t.duration))) for t in j.tasks)) for j in wl.jobs)
    return replace(wl, jobs=jobs_)


def weighted_completion(r) -> float:
    return sum(j.job.weight * (j.completion - j.job.arrival) for j in r.jobs
               if j.completion is not None)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--jobs", type=int, default=8)
    p.add_argument("--time-limit", type=float, default=20.0)
    a = p.parse_args(argv)
    gaps = {n: {"makespan": [], "wct": []} for n in BASELINES}
    solver_rows = []
    for seed in range(a.seeds):
        wl = small_workload(seed, a.jobs)
        ms = cpsat_schedule(wl, SMALL, objective="makespan", time_limit_s=a.time_limit, seed=seed)
        wc = cpsat_schedule(wl, SMALL, objective="weighted_completion",
                            time_limit_s=a.time_limit, seed=seed)
        solver_rows.append([str(seed), str(wl.instance_count),
                            f"{ms.best_bound:g} ({ms.status})", f"{wc.best_bound:g} ({wc.status})",
                            f"{ms.solve_time_s + wc.solve_time_s:.1f}"])
        for n in BASELINES:
            r = run_one(SMALL, wl, n, seed=seed)
            gaps[n]["makespan"].append(gap_to_bound(r.metrics["makespan_s"], ms.best_bound))
            gaps[n]["wct"].append(gap_to_bound(weighted_completion(r), wc.best_bound))
    print(f"### Small instances: {a.jobs} jobs on 2 sites × 2 nodes, {a.seeds} seeds\n")
    print(markdown_table(["seed", "instances", "CP-SAT makespan bound",
                          "CP-SAT Σw·JCT bound", "solve s"], solver_rows))
    print()
    fmt = lambda v: "{:.1%} ± {:.1%}".format(*mean_ci(v))
    print(markdown_table(["policy", "makespan gap to CP-SAT", "Σw·JCT gap to CP-SAT"],
                         [[n, fmt(g["makespan"]), fmt(g["wct"])] for n, g in gaps.items()]))
    print("\n### Large: synthetic DAG, high load (default 8 sites), analytic bounds\n")
    rows = []
    sc = synthetic_dag()
    per = {n: {"mk": [], "jct": []} for n in BASELINES}
    for seed in range(a.seeds):
        cluster, wl = sc.build(seed)
        lb = analytic_lower_bounds(wl, cluster)
        for n in BASELINES:
            m = run_one(cluster, wl, n, seed=seed).metrics
            per[n]["mk"].append(gap_to_bound(m["makespan_s"], lb["makespan_span"]))
            per[n]["jct"].append(gap_to_bound(m["jct_mean_s"], lb["mean_jct"]))
    rows = [[n, fmt(v["mk"]), fmt(v["jct"])] for n, v in per.items()]
    print(markdown_table(["policy", "makespan gap to analytic bound",
                          "mean JCT gap to analytic bound"], rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())

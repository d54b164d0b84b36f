"""How much better than the best heuristic a scheduler could do on a workload: a lower bound
and a search oracle on mean JCT, so a learning target is only set where there is room.

- :func:`pooled_srpt_bound`: a lower bound on Σ (C_j − arrival_j). For each resource r, pool
  the cluster's capacity of r into one machine that may split itself among jobs; job j
  needs volume Σ demand_r × duration over its instances. Any real schedule gives such a
  machine a feasible preemptive schedule with the same completions, and preemptive SRPT is
  optimal for 1 | r_j, pmtn | Σ C_j (Schrage 1968; Baker 1974), so SRPT's Σ C_j on the
  pooled machine is a bound. The critical-path bound (Σ critical path) is another; the
  bound is the larger. Jobs that fit no node are left out (they never complete).
- :func:`rollout_oracle`: a policy-switching rollout with full knowledge of the future
  (arrivals, durations, faults: the simulator is deterministic given the decisions). The
  run is cut into epochs; at each, every candidate heuristic is tried on a copy of the
  simulator for the epoch, the copy is finished with the base heuristic, and the candidate
  with the least total JCT runs the epoch for real. Choosing the base every time gives the
  base's own run, so the oracle is never worse than the base (Bertsekas' rollout
  improvement); it is a schedule a clairvoyant meta-heuristic reaches, not an optimum.
"""

from __future__ import annotations

import copy
import heapq
import math

import numpy as np

from agora.agents.baselines import make_policy
from agora.agents.bounds import job_work
from agora.agents.domain import Cluster, Workload, why_unschedulable
from agora.agents.sim.config import SimConfig
from agora.agents.sim.engine import Simulator


def _srpt_total_completion(releases: list[float], volumes: list[float]) -> float:
    """Σ (C_j − r_j) of preemptive SRPT on one unit-speed machine."""
    order = sorted(range(len(releases)), key=lambda i: releases[i])
    heap: list[tuple[float, int]] = []          # (remaining volume, job)
    now, total, k = 0.0, 0.0, 0
    while k < len(order) or heap:
        if not heap:
            now = max(now, releases[order[k]])
        while k < len(order) and releases[order[k]] <= now:
            i = order[k]
            heapq.heappush(heap, (volumes[i], i))
            k += 1
        rem, i = heapq.heappop(heap)
        next_release = releases[order[k]] if k < len(order) else math.inf
        if now + rem <= next_release:
            now += rem
            total += now - releases[i]
        else:
            heapq.heappush(heap, (rem - (next_release - now), i))
            now = next_release
    return total


def pooled_srpt_bound(workload: Workload, cluster: Cluster) -> dict[str, float]:
    """Lower bounds on the mean JCT of the jobs that can complete (module docstring):
    ``critical_path``, ``pooled_srpt`` (the largest over resources) and ``mean_jct`` (the
    larger); ``jobs``: how many jobs the bound covers."""
    fits: dict[tuple, bool] = {}                 # per demand shape: does some node hold it?

    def placeable(d) -> bool:
        if d.key not in fits:
            fits[d.key] = why_unschedulable(d, cluster) is None
        return fits[d.key]

    jobs = [j for j in workload.jobs if all(placeable(t.demand) for t in j.tasks)]
    out = {"jobs": float(len(jobs)), "critical_path": 0.0, "pooled_srpt": 0.0, "mean_jct": 0.0}
    if not jobs:
        return out
    cp = sum(j.critical_path() for j in jobs) / len(jobs)
    caps = cluster.capacity()
    releases = [j.arrival for j in jobs]
    pooled = 0.0
    works = [job_work(j) for j in jobs]
    for r, cap in enumerate(caps):
        if cap <= 0:
            continue
        vol = [w[r] / cap for w in works]
        pooled = max(pooled, _srpt_total_completion(releases, vol) / len(jobs))
    out.update(critical_path=cp, pooled_srpt=pooled, mean_jct=max(cp, pooled))
    return out


def _fresh(name: str, sim: Simulator):
    p = make_policy(name)
    p.reset(sim)
    return p


def _clone(sim: Simulator, shared: dict) -> Simulator:
    return copy.deepcopy(sim, dict(shared))


def _total_jct(sim: Simulator) -> float:
    return sum(j.completion - j.job.arrival for j in sim.jobs if j.outcome == "completed")


def rollout_oracle(cluster: Cluster, workload: Workload, *, candidates: list[str], base: str,
                   epochs: int = 16, config: SimConfig | None = None) -> dict:
    """The oracle's run (module docstring): its metrics, and which heuristic ran each epoch.
    Epochs split the arrival span evenly; the last runs to the end."""
    if base not in candidates:
        candidates = [base, *candidates]
    sim = Simulator(cluster, workload, config or SimConfig())
    # the immutable inputs are shared by every copy
    shared = {id(cluster): cluster, id(workload): workload}
    for j in workload.jobs:
        shared[id(j)] = j
        for t in j.tasks:
            shared[id(t)] = t
            shared[id(t.demand)] = t.demand
    arrivals = [j.arrival for j in workload.jobs] or [0.0]
    a0, a1 = min(arrivals), max(arrivals)
    ends = [a0 + (a1 - a0) * (k + 1) / epochs for k in range(epochs - 1)] + [math.inf]
    chosen: list[str] = []
    for until in ends:
        best, best_cost = base, math.inf
        for name in candidates:
            trial = _clone(sim, shared)
            trial.advance(_fresh(name, trial), until)
            trial.advance(_fresh(base, trial))
            cost = _total_jct(trial)
            if cost < best_cost - 1e-9 or (name == base and cost <= best_cost + 1e-9):
                best, best_cost = name, cost
        sim.advance(_fresh(best, sim), until)
        chosen.append(best)
    if len(sim.pool):
        raise RuntimeError("the oracle's run left tasks open")
    return {"metrics": sim.result("oracle").metrics, "epochs": chosen,
            "switches": int(np.sum([a != b for a, b in zip(chosen, chosen[1:])]))}

"""The bounds on random instances: the analytic lower bounds never exceed CP-SAT's optimum
nor what the simulator reaches with any baseline; the serial hint alone is a valid schedule;
larger instances solve within the limit; the same seed gives the same schedule (split from
test_bounds.py, whose helpers it uses)."""

from __future__ import annotations

import random

import pytest

from agora.agents.bounds import MAX_INSTANCES, analytic_lower_bounds, cpsat_schedule
from agora.agents.domain import Cluster, Demand, Job, Link, Task, Workload
from tests.agents.test_bounds import (LIMIT_S, check_schedule, cluster, job, node, solve, task,
                                      workload)


def random_instance(rng: random.Random, scale: int = 1) -> tuple[Workload, Cluster]:
    """1-3 (+ scale // 2) nodes, 1-3 (x scale) jobs of 1-3 tasks; integral times throughout."""
    link = Link(latency_ms=1000.0, bandwidth_mbps=8000.0)  # integral transfer times
    nodes = [node(f"n{i}", site=rng.choice("pq"), cpu=rng.choice([2000, 4000]),
                  mem=rng.choice([4096, 8192]), gpus=rng.choice([0, 1, 2]), model="T4")
             for i in range(rng.randint(1, 3) + scale // 2)]
    nodes[0] = node("n0", site="p", cpu=4000, mem=8192, gpus=2, model="T4")  # fits everything
    jobs = []
    for j in range(rng.randint(1, 3) * scale):
        tasks = []
        for t in range(rng.randint(1, 3)):
            after = [f"t{p}" for p in range(t) if rng.random() < 0.5]
            tasks.append(task(f"t{t}", rng.randint(1, 5), after=after,
                              cpu=rng.choice([500, 1000, 2000, 4000]),
                              mem=rng.choice([0, 1024, 4096]),
                              gpu=rng.choice([0, 0, 300, 700, 1000, 2000]),
                              instances=rng.randint(1, 2), data_mb=rng.choice([0.0, 1000.0])))
        jobs.append(job(f"j{j}", *tasks, arrival=100 + rng.randint(0, 4 * scale),
                        origin=rng.choice("pq"), weight=rng.choice([0.5, 1.0, 2.0])))
    return workload(*jobs), cluster(*nodes, link=link)


@pytest.mark.parametrize("seed", range(10))
def test_analytic_bounds_never_exceed_the_optimum(seed):
    wl, cl = random_instance(random.Random(seed))
    lb = analytic_lower_bounds(wl, cl)
    ms = solve(wl, cl)
    wc = solve(wl, cl, objective="weighted_completion")
    assert ms.status == wc.status == "OPTIMAL", (ms.status, wc.status)
    assert lb["makespan_span"] <= ms.value + 1e-9
    assert lb["makespan"] <= lb["first_arrival"] + ms.value + 1e-9
    assert lb["sum_weighted_completion"] <= wc.value + 1e-9
    # The release-aware work bound, the slow way: every arrival a, every resource.
    caps = cl.capacity()

    def work_after(a: float, r: int) -> float:
        return sum(t.instances * (t.demand.cpu, t.demand.mem, t.demand.gpu)[r] * t.duration
                   for j in wl.jobs if j.arrival >= a for t in j.tasks)

    naive = max(j.arrival + work_after(j.arrival, r) / caps[r]
                for j in wl.jobs for r in range(3) if caps[r])
    assert lb["makespan_work_release"] == pytest.approx(naive)


@pytest.mark.parametrize("seed", range(10))
def test_the_serial_hint_alone_is_a_valid_schedule(seed):
    # No time to search: the result is the list schedule the solver was hinted with.
    wl, cl = random_instance(random.Random(seed), scale=3)
    res = cpsat_schedule(wl, cl, time_limit_s=0.0)
    assert res.status == "FEASIBLE" and "hint" in res.message
    check_schedule(res, wl, cl)
    assert res.value >= analytic_lower_bounds(wl, cl)["makespan_span"]


def test_a_larger_instance_gives_a_valid_schedule_within_the_time_limit():
    wl, cl = random_instance(random.Random(42), scale=12)
    assert 60 <= wl.instance_count <= MAX_INSTANCES
    res = cpsat_schedule(wl, cl, time_limit_s=1.0, seed=3)
    assert res.status in ("OPTIMAL", "FEASIBLE") and res.solve_time_s < 1.5
    check_schedule(res, wl, cl)
    assert analytic_lower_bounds(wl, cl)["makespan_span"] <= res.best_bound <= res.value


def test_same_seed_same_schedule():
    wl, cl = random_instance(random.Random(7), scale=2)
    a, b = (cpsat_schedule(wl, cl, time_limit_s=LIMIT_S, workers=1, seed=5) for _ in range(2))
    assert a.status == "OPTIMAL" and a.placements == b.placements


@pytest.mark.parametrize("seed", range(6))
def test_the_simulator_never_beats_the_analytic_bounds(seed):
    # every baseline on random DAG workloads (some tasks too big for the cluster, so some
    # jobs are refused): the mean JCT and makespan it reaches are never below the bounds
    from agora.agents.baselines import make_policy
    from agora.agents.sim.engine import Simulator
    from agora.agents.workloads.synthetic import generate
    from tests.simkit import cluster as sim_cluster, node as sim_node, site as sim_site

    cl = sim_cluster(sim_site("a", sim_node("a", "n0", 8), sim_node("a", "n1", 4, gpus=1,
                                                                   model="T4")),
                     sim_site("b", sim_node("b", "n0", 16)))
    wl = generate(cl, seed=seed, jobs=25, load=0.9)
    if seed % 2:      # a job the cluster cannot hold (more cpus than any node) is left out
        big = Job(id="big", arrival=wl.jobs[0].arrival, origin="a",
                  tasks=(Task(id="t", duration=5, demand=Demand(cpu=64_000, mem=1)),))
        wl = Workload(jobs=tuple(sorted(wl.jobs + (big,), key=lambda j: (j.arrival, j.id))))
    lb = analytic_lower_bounds(wl, cl)
    assert lb["jobs_left_out"] == seed % 2
    for policy in ("fifo", "sjf", "tetris", "random"):
        m = Simulator(cl, wl).run(make_policy(policy)).metrics
        assert m["jobs_completed"] == len(wl.jobs) - seed % 2
        assert m["jct_mean_s"] >= lb["mean_jct"] - 1e-6, policy
        assert m["makespan_s"] >= lb["makespan_span"] - 1e-6, policy

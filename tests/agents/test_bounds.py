"""Tests of agents.bounds: hand-checked CP-SAT optima, an independent schedule checker (used
by test_bounds_random.py too), hand values of the analytic bounds, refusals and edge cases."""

from __future__ import annotations

import pytest

from agora.agents.bounds import (MAX_INSTANCES, CpSatResult, analytic_lower_bounds, cpsat_schedule,
                                 gap_to_bound, runnable)
from agora.agents.domain import (MILLI, Cluster, Demand, Job, Link, Node, Site, Task, Workload,
                                 fits_node)

LIMIT_S = 5.0  # every instance here solves to optimality in well under a second


# ---- builders ----------------------------------------------------------------------------
def node(name: str, site: str = "s", cpu: int = 10_000, mem: int = 1_000_000, gpus: int = 0,
         model: str | None = None) -> Node:
    return Node(name=name, site=site, cpu=cpu, mem=mem, gpus=gpus, gpu_model=model)


def cluster(*nodes: Node, link: Link | None = None) -> Cluster:
    sites: dict[str, list[Node]] = {}
    for n in nodes:
        sites.setdefault(n.site, []).append(n)
    return Cluster(sites=tuple(Site(name=s, nodes=tuple(ns)) for s, ns in sites.items()),
                   default_link=link or Link())


def task(tid: str, dur: float, cpu: int = 0, mem: int = 0, gpu: int = 0, after=(),
         instances: int = 1, models=None, data_mb: float = 0.0) -> Task:
    return Task(id=tid, duration=dur, demand=Demand(cpu=cpu, mem=mem, gpu=gpu,
                                                   gpu_models=models),
                instances=instances, after=tuple(after), data_mb=data_mb)


def workload(*jobs: Job) -> Workload:
    return Workload(jobs=tuple(sorted(jobs, key=lambda j: (j.arrival, j.id))))


def job(jid: str, *tasks: Task, arrival: float = 0.0, origin: str = "s",
        weight: float = 1.0) -> Job:
    return Job(id=jid, arrival=arrival, origin=origin, tasks=tasks, weight=weight)


# ---- an independent checker: trusts nothing the solver says ------------------------------
def check_schedule(res: CpSatResult, wl: Workload, cl: Cluster) -> None:
    assert res.status in ("OPTIMAL", "FEASIBLE")
    by_node = {n.name: n for n in cl.nodes}
    place = {(p.job_id, p.task_id, p.instance_index): p for p in res.placements}
    expected = {(j.id, t.id, k) for j in wl.jobs for t in j.tasks for k in range(t.instances)}
    assert set(place) == expected and len(res.placements) == len(expected)
    jobs = {j.id: j for j in wl.jobs}
    for (jid, tid, k), p in place.items():
        j = jobs[jid]
        t = next(t for t in j.tasks if t.id == tid)
        n = by_node[p.node]
        assert fits_node(t.demand, n), f"{jid}/{tid} placed on {n.name} where it cannot fit"
        link = cl.link(j.origin, n.site)
        need = t.duration + (link.transfer_s(t.data_mb) if link else 0.0)
        assert p.start >= j.arrival - 1e-9
        assert p.end - p.start >= need - 1e-9, f"{jid}/{tid} runs shorter than {need}"
        for parent in t.after:
            for q in (q for q in res.placements if (q.job_id, q.task_id) == (jid, parent)):
                assert p.start >= q.end - 1e-9, f"{jid}/{tid} starts before {parent} ends"
        if t.demand.gpu:
            want = 1 if t.demand.gpu < MILLI else t.demand.gpu // MILLI
            assert len(set(p.gpus)) == len(p.gpus) == want
            assert all(0 <= g < n.gpus for g in p.gpus)
    # Load peaks at some start time, so checking every start time checks all times.
    demand = {(j.id, t.id): t.demand for j in wl.jobs for t in j.tasks}
    for p in res.placements:
        t = p.start
        live = [q for q in res.placements if q.node == p.node and q.start <= t < q.end]
        n = by_node[p.node]
        assert sum(demand[(q.job_id, q.task_id)].cpu for q in live) <= n.cpu
        assert sum(demand[(q.job_id, q.task_id)].mem for q in live) <= n.mem
        for g in range(n.gpus):
            used = sum(min(demand[(q.job_id, q.task_id)].gpu, MILLI) for q in live if g in q.gpus)
            assert used <= MILLI, f"gpu {g} of {n.name} over-committed at t={t}"
    # The reported value is what the schedule achieves.
    a0 = min(j.arrival for j in wl.jobs)
    ends = {}
    for p in res.placements:
        ends[p.job_id] = max(ends.get(p.job_id, -1e300), p.end)
    if res.objective == "makespan":
        assert res.value == pytest.approx(max(ends.values()) - a0)
    else:
        assert res.value == pytest.approx(sum(j.weight * (ends[j.id] - j.arrival)
                                              for j in wl.jobs if j.id in ends))
    assert res.best_bound is not None and res.best_bound <= res.value + 1e-9
    assert res.proven_optimal == (res.best_bound >= res.value - 1e-9)


def solve(wl: Workload, cl: Cluster, objective: str = "makespan", **kw) -> CpSatResult:
    res = cpsat_schedule(wl, cl, objective=objective, time_limit_s=LIMIT_S, seed=1, **kw)
    check_schedule(res, wl, cl)
    return res


# ---- the hand-checked instance -----------------------------------------------------------
def dag_instance() -> tuple[Workload, Cluster]:
    wl = workload(job("j", task("A", 4, cpu=6000), task("B", 3, cpu=5000, after=["A"]),
                      task("C", 2, cpu=4000, after=["A"]), task("D", 5, cpu=5000),
                      task("E", 1, cpu=10_000, after=["B", "C"])))
    return wl, cluster(node("n"))


def test_hand_checked_dag_optimum_is_10():
    # One node of 10 cpus. Which pairs may overlap? A+D = 11 > 10: never. E takes all 10
    # cpus: overlaps nothing. A precedes B, C. B+C = 9, B+D = 10, C+D = 9: each pair may
    # overlap, but B+C+D = 14: never all three at once. Critical path A-B-E = 8, work
    # 24+15+8+25+10 = 82 cpu-s -> 8.2 s, so both bounds say >= 9; the truth is larger:
    # - D before A: A starts >= 5, B ends >= 12, E ends >= 13.
    # - A before D: D starts >= end of A >= 4.
    #   - D after E: E starts >= end of B >= end of A + 3 >= 7, so D ends >= 8 + 5 = 13.
    #   - D before E: E starts >= end of D >= 9, so the makespan is >= 10, and
    #     A [0,4], D [4,9], B [4,7] (5+5 = 10 cpus), C [7,9] (4+5 = 9), E [9,10] achieves it.
    # Optimum = 10.
    wl, cl = dag_instance()
    res = solve(wl, cl)
    assert res.status == "OPTIMAL" and res.proven_optimal
    assert res.value == 10 and res.best_bound == 10
    start = {p.task_id: p.start for p in res.placements}
    assert start["A"] == 0 and start["E"] == 9  # forced by the case analysis above
    lb = analytic_lower_bounds(wl, cl)
    assert lb["makespan_work"] == pytest.approx(8.2)
    assert lb["makespan_critical_path"] == 8
    assert lb["makespan_span"] == pytest.approx(8.2) and lb["makespan_span"] < res.value
    assert gap_to_bound(res.value, lb["makespan_span"]) == pytest.approx(10 / 8.2 - 1)


def test_weighted_completion_follows_smiths_rule():
    # Three one-task jobs each taking the whole node, so they run one after the other.
    # Smith's rule (WSPT): sort by weight / duration, highest first:
    # y (2/1 = 2), z (3/2 = 1.5), x (1/3 = 0.33): C_y = 1, C_z = 3, C_x = 6,
    # sum w*C = 2*1 + 3*3 + 1*6 = 17 (the next best order, z y x, gives 3*2 + 2*3 + 6 = 18).
    wl = workload(job("x", task("t", 3, cpu=1000), weight=1.0),
                  job("y", task("t", 1, cpu=1000), weight=2.0),
                  job("z", task("t", 2, cpu=1000), weight=3.0))
    res = solve(wl, cluster(node("n", cpu=1000)), objective="weighted_completion")
    assert res.status == "OPTIMAL" and res.value == pytest.approx(17)
    assert [p.job_id for p in sorted(res.placements, key=lambda p: p.start)] == ["y", "z", "x"]
    assert analytic_lower_bounds(wl, cluster(node("n", cpu=1000)))[
        "sum_weighted_completion"] == pytest.approx(1 * 3 + 2 * 1 + 3 * 2)


# ---- gpus ----------------------------------------------------------------------------------
@pytest.mark.parametrize("share, gpus, makespan", [
    (600, 1, 10),  # 600 + 600 > 1000: the two shares take turns on the one gpu
    (400, 1, 5),   # 400 + 400 <= 1000: they share it
    (600, 2, 5),   # two gpus: one share on each
])
def test_gpu_shares_sit_on_one_gpu(share, gpus, makespan):
    wl = workload(job("j", task("a", 5, gpu=share), task("b", 5, gpu=share)))
    res = solve(wl, cluster(node("n", gpus=gpus, model="T4")))
    assert res.status == "OPTIMAL" and res.value == makespan


@pytest.mark.parametrize("whole, makespan", [
    (2000, 15),  # both gpus entirely free: not while the 500-share holds one -> serial
    (1000, 10),  # one whole gpu: the other gpu is free beside the share
])
def test_whole_gpus_need_entirely_free_gpus(whole, makespan):
    wl = workload(job("j", task("share", 10, gpu=500), task("whole", 5, gpu=whole)))
    res = solve(wl, cluster(node("n", gpus=2, model="A100")))
    assert res.status == "OPTIMAL" and res.value == makespan


def test_a_whole_gpu_is_not_the_sum_of_leftover_shares():
    # 3 gpus, three 600-shares (one per gpu, no two fit together): 1200 milli-gpus are free
    # in total, but no gpu is entirely free, so the whole gpu waits for a share to end.
    wl = workload(job("j", *(task(f"s{i}", 10, gpu=600) for i in range(3)),
                      task("whole", 5, gpu=1000)))
    res = solve(wl, cluster(node("n", gpus=3, model="A100")))
    assert res.status == "OPTIMAL" and res.value == 15


def test_gpu_model_constraint_is_respected():
    cl = cluster(node("t4", gpus=1, model="T4"), node("a100", gpus=1, model="A100"))
    picky = workload(job("j", *(task(t, 5, gpu=1000, models=frozenset({"A100"})) for t in "ab")))
    res = solve(picky, cl)
    assert res.value == 10 and {p.node for p in res.placements} == {"a100"}
    anyone = workload(job("j", *(task(t, 5, gpu=1000) for t in "ab")))
    assert solve(anyone, cl).value == 5


def test_transfer_delay_counts_when_the_only_fit_is_remote():
    # 1000 MB over 8000 Mb/s = 1 s, plus 1000 ms latency: 2 s of transfer.
    link = Link(latency_ms=1000.0, bandwidth_mbps=8000.0)
    cl = cluster(node("home", site="home", cpu=4000), node("away", site="away", gpus=1), link=link)
    # prep fits both nodes: at home it takes 3 s, away 3 + 2 s. train needs the gpu away.
    wl = workload(job("j", task("prep", 3, cpu=4000, data_mb=1000.0),
                      task("train", 10, cpu=1000, gpu=1000, data_mb=1000.0, after=["prep"]),
                      origin="home"))
    res = solve(wl, cl)
    where = {p.task_id: p for p in res.placements}
    assert where["prep"].node == "home" and where["prep"].end - where["prep"].start == 3
    assert where["train"].node == "away" and where["train"].end - where["train"].start == 12
    assert res.status == "OPTIMAL" and res.value == 3 + 12
    assert analytic_lower_bounds(wl, cl)["makespan_span"] == 13  # transfers ignored


def test_fractional_times_round_up_for_the_schedule_and_down_for_the_bound():
    wl = workload(job("j", task("a", 2.5, cpu=1000), task("b", 1.25, cpu=1000, after=["a"]),
                      arrival=0.3))
    coarse = solve(wl, cluster(node("n")))
    # schedule: 2.5 -> 3 and 1.25 -> 2 units; relaxation: 2 + 1 = 3 s, below the critical
    # path 3.75 s, which is then the bound. The true optimum, 3.75, lies in between.
    assert coarse.value == pytest.approx(5) and coarse.best_bound == pytest.approx(3.75)
    assert coarse.status == "OPTIMAL" and not coarse.proven_optimal  # optimal when rounded
    fine = solve(wl, cluster(node("n")), resolution_s=0.25)  # exact at this resolution
    assert fine.value == fine.best_bound == pytest.approx(3.75) and fine.proven_optimal


def test_the_bound_stays_below_the_real_optimum_with_tiny_transfers():
    # Default link: 20 ms latency. One 1-cpu node per site; two 10 s jobs at site p. The
    # real optimum runs one at p and one at q: 10.02 s. Rounded up, the remote one takes
    # 11 units (value 11); rounded down the relaxation says 10, which is a true bound.
    cl = cluster(node("p", site="p", cpu=1000), node("q", site="q", cpu=1000))
    wl = workload(job("x", task("t", 10, cpu=1000), origin="p"),
                  job("y", task("t", 10, cpu=1000), origin="p"))
    res = solve(wl, cl)
    assert res.value == 11 and res.best_bound == 10 <= 10.02
    tight = solve(wl, cl, resolution_s=0.01)
    assert tight.value == pytest.approx(10.02) and tight.proven_optimal


def test_weights_that_do_not_scale_to_integers_keep_a_valid_bound():
    # Same Smith's-rule shape with weights 1/3, 2/3 and 1 (ratios 1/9, 2/3, 1/2): y z x,
    # C = 1, 3, 6: 2/3 + 3 + 6/3 = 17/3.
    wl = workload(job("x", task("t", 3, cpu=1000), weight=1 / 3),
                  job("y", task("t", 1, cpu=1000), weight=2 / 3),
                  job("z", task("t", 2, cpu=1000), weight=1.0))
    res = solve(wl, cluster(node("n", cpu=1000)), objective="weighted_completion")
    assert res.value == pytest.approx(17 / 3) and res.best_bound <= 17 / 3 + 1e-9
    assert res.best_bound >= 17 / 3 - 0.01  # weights rounded down to 1/1000 for the bound


def test_instances_and_dependencies_across_instances():
    # 3 instances of a (4 cpus each, node of 10): two at a time, so a ends at 4;
    # b (2 instances) starts after every instance of a.
    wl = workload(job("j", task("a", 2, cpu=4000, instances=3),
                      task("b", 1, cpu=1000, instances=2, after=["a"]), arrival=7.0))
    res = solve(wl, cluster(node("n")))
    assert res.status == "OPTIMAL" and res.value == 5
    assert min(p.start for p in res.placements if p.task_id == "b") == 11


# ---- analytic bounds -------------------------------------------------------------------------
def test_analytic_bounds_hand_values():
    # One node of 2 cpus. x: 1 s x 1 cpu at t=0. y: 3 instances of 4 s x 2 cpus at t=10.
    # work: (1*1000 + 3*4*2000) / 2000 = 12.5 -> 0 + 12.5; with releases: y's work alone
    # after t=10: 10 + 24000/2000 = 22. critical paths 1 and 4 -> max(0+1, 10+4) = 14.
    # Each job alone: x takes >= 1 s (its path), y >= 24000/2000 = 12 s (its own work on the
    # whole cluster; its path is 4) -> weighted 1*1 + 0.5*12 = 7, mean (1 + 12) / 2 = 6.5.
    wl = workload(job("x", task("t", 1, cpu=1000)),
                  job("y", task("t", 4, cpu=2000, instances=3), arrival=10.0, weight=0.5))
    cl = cluster(node("n", cpu=2000))
    lb = analytic_lower_bounds(wl, cl)
    assert lb == pytest.approx(dict(first_arrival=0.0, makespan_work=12.5,
                                    makespan_work_release=22.0, makespan_critical_path=14.0,
                                    makespan=22.0, makespan_span=22.0,
                                    sum_weighted_completion=1 * 1 + 0.5 * 12, mean_jct=6.5,
                                    jobs_left_out=0))
    assert solve(wl, cl).value == 22  # tight here: y's instances run back to back from 10
    # C_x = 1, C_y = 22: 1*1 + 0.5*(22 - 10) = 7 -- the bound is tight here too
    assert solve(wl, cl, objective="weighted_completion").value == pytest.approx(7)
    assert analytic_lower_bounds(workload(), cl)["makespan_span"] == 0.0


# ---- refusals and edge cases --------------------------------------------------------------
def test_oversized_instance_is_refused():
    wl = workload(job("big", task("t", 1, cpu=1, instances=MAX_INSTANCES + 1)))
    with pytest.raises(ValueError, match="use agents.bounds.analytic_lower_bounds"):
        cpsat_schedule(wl, cluster(node("n")))


def test_a_task_that_fits_nowhere_is_infeasible():
    wl = workload(job("j", task("t", 1, gpu=1000)))
    res = cpsat_schedule(wl, cluster(node("n")), time_limit_s=LIMIT_S)
    assert res.status == "INFEASIBLE" and "fits no node" in res.message and not res.placements


def test_gap_to_bound():
    assert gap_to_bound(12.0, 10.0) == pytest.approx(0.2)
    assert gap_to_bound(10.0, 10.0) == 0.0
    with pytest.raises(ValueError, match="bound > 0"):
        gap_to_bound(1.0, 0.0)


def test_a_job_with_a_task_that_fits_no_node_is_left_out_of_the_bounds_and_named():
    # the simulator refuses "g" (a gpu task on a cluster without gpus) at its arrival and
    # runs "c" alone from t=1: its mean JCT is 10 and its makespan (from t=0) 11. Counting
    # "g" (path 15) made the bounds 12.5 and 15, above what the simulator achieved.
    wl = workload(job("g", task("prep", 5, cpu=1000), task("train", 10, cpu=1000, gpu=500,
                                                           after=["prep"])),
                  job("c", task("t", 10, cpu=1000), arrival=1.0))
    cl = cluster(node("n", cpu=8000))
    kept, out = runnable(wl, cl)
    assert [j.id for j in kept.jobs] == ["c"]
    assert out == [("g", "train", "needs a gpu; the cluster has none")]
    lb = analytic_lower_bounds(wl, cl)
    assert (lb["mean_jct"], lb["makespan_span"], lb["jobs_left_out"]) == (10.0, 10.0, 1.0)
    assert runnable(kept, cl) == (kept, [])


def test_an_exact_optimal_weighted_solve_is_proven_though_its_arrivals_are_far_apart():
    """A review: the bound subtracts the weighted arrivals again, so its float noise grows with
    them, not with the value: 1.07e-12 of the value called an exact optimum unproven."""
    import random
    rnd = random.Random(6)
    base = rnd.choice([0.0, 12345.0, 1.6e9])
    jobs = [job(f"j{i}", task("t", float(rnd.randint(1, 9)), cpu=600),
                arrival=base + rnd.randint(0, 40) + rnd.randint(0, 1) * 1e5,
                weight=rnd.randint(1, 3000) / 1000) for i in range(14)]
    r = cpsat_schedule(workload(*jobs), cluster(node("n", cpu=1000), node("m", cpu=1000)),
                       objective="weighted_completion", time_limit_s=5, seed=1)
    assert r.status == "OPTIMAL" and r.proven_optimal, (r.value, r.best_bound)


def test_a_hint_that_meets_the_bound_says_it_is_optimal_not_only_unsolved():
    # a probe: "proven_optimal": true beside "CP-SAT found no schedule in time; this is its
    # hint" -- both true (the hint met the lower bound), the message said only the second
    from tests.simkit import cluster, job, node, site, task, workload

    one = cluster(site("s", node("s", "n", 10, mem=1000)))
    r = cpsat_schedule(workload(job("a", 0, "s", task("t", 100, 5))), one, time_limit_s=1e-9)
    assert r.status == "FEASIBLE" and r.proven_optimal
    assert r.message.endswith("its hint, and it meets the lower bound: optimal")

"""Each baseline's defining behaviour, on an instance where it shows."""

from __future__ import annotations

import pytest

from agora.agents.baselines import BASELINES, make_policy
from agora.agents.domain import Link, PowerModel
from agora.agents.sim.config import SimConfig
from agora.agents.sim.engine import Simulator
from agora.agents.sim.verify import verify
from tests.simkit import cluster, job, node, site, task, workload


def run(cl, wl, policy, seed=0):
    r = Simulator(cl, wl, SimConfig(seed=seed, check_invariants=True)).run(make_policy(policy))
    assert verify(r) == [] and r.metrics["tasks_lost"] == 0
    return r


def starts(r):
    return {a.task.job.job.id: a.start for a in r.attempts}


def sites(r):
    return {a.task.job.job.id: a.site for a in r.attempts}


def test_unknown_policy_names_the_choices():
    with pytest.raises(ValueError, match="choose one of random, round-robin"):
        make_policy("nope")


# A 4-cpu node runs a 3-cpu job; then a 4-cpu job (head) and two 1-cpu jobs queue.
BLOCKING = workload(job("long", 0, "s", task("t", 10, 3)),
                    job("head", 1, "s", task("t", 5, 4)),
                    job("small", 2, "s", task("t", 2, 1)))
ONE_NODE = cluster(site("s", node("s", "n", 4)))


def test_fifo_blocks_behind_the_head_sjf_does_not():
    assert starts(run(ONE_NODE, BLOCKING, "fifo"))["small"] == 15     # after head
    assert starts(run(ONE_NODE, BLOCKING, "sjf"))["small"] == 2       # jumps ahead


def test_srpt_orders_by_the_jobs_work_left_not_the_tasks_duration():
    # "wide": 3 one-cpu tasks of 4 s each (12 s of work) in a chain-free job, arriving with
    # "small" (one 6 s task). One cpu. SJF takes the 4 s tasks first (small waits 12 s);
    # job-level SRPT runs small (6 s of work) first.
    cl = cluster(site("s", node("s", "n", 1)))
    wl = workload(job("wide", 0, "s", task("t", 4, 1, instances=3)),
                  job("small", 0, "s", task("t", 6, 1)))
    assert starts(run(cl, wl, "sjf"))["small"] == 12
    s = starts(run(cl, wl, "srpt"))
    assert s["small"] == 0 and s["wide"] == 14          # wide's last instance: 6, 10, 14


def test_easy_backfills_only_what_does_not_delay_the_head():
    # Head reserved at t=10 on the node; 'small' (2 s) ends before 10, so it backfills;
    # 'late' (1 cpu, 20 s) would still hold a cpu at 10, and the head needs all 4: it waits.
    wl = workload(*BLOCKING.jobs, job("late", 3, "s", task("t", 20, 1)))
    s = starts(run(ONE_NODE, wl, "easy-backfill"))
    assert s["head"] == 10 and s["small"] == 2 and s["late"] == 15


def test_easy_backfills_into_the_extra_left_beside_the_head():
    # An 8-cpu node: head needs 6 at t=10, leaving 2 extra, so a long 1-cpu job may start now.
    cl = cluster(site("s", node("s", "n", 8)))
    wl = workload(job("long", 0, "s", task("t", 10, 5)), job("head", 1, "s", task("t", 5, 6)),
                  job("late", 2, "s", task("t", 50, 1)))
    s = starts(run(cl, wl, "easy-backfill"))
    assert s["late"] == 2 and s["head"] == 10


TWO_SITES = cluster(site("a", node("a", "n", 8)), site("b", node("b", "n", 8)),
                    site("c", node("c", "n", 8)))
SPREAD = workload(*[job(f"j{i}", i, "a", task("t", 100, 1)) for i in range(6)])


def test_round_robin_cycles_through_sites():
    s = sites(run(TWO_SITES, SPREAD, "round-robin"))
    assert [s[f"j{i}"] for i in range(6)] == [0, 1, 2, 0, 1, 2]


def test_order_only_baselines_stay_at_the_origin():
    for p in ("fifo", "sjf", "srpt", "drf", "easy-backfill"):
        assert set(sites(run(TWO_SITES, SPREAD, p)).values()) == {0}, p


def test_random_is_seeded():
    a = sites(run(TWO_SITES, SPREAD, "random", seed=1))
    assert a == sites(run(TWO_SITES, SPREAD, "random", seed=1))
    assert len({tuple(sites(run(TWO_SITES, SPREAD, "random", seed=s)).values())
                for s in range(5)}) > 1


def test_least_loaded_spreads_over_nodes():
    cl = cluster(site("a", node("a", "n0", 8), node("a", "n1", 8)))
    wl = workload(*[job(f"j{i}", 0, "a", task("t", 10, 2)) for i in range(2)])
    assert len({a.node for a in run(cl, wl, "least-loaded").attempts}) == 2
    assert len({a.node for a in run(cl, wl, "fifo").attempts}) == 1     # best-fit packs


def test_tetris_aligns_demand_with_free_resources():
    # Two 8-cpu/8-GiB nodes. Fillers leave n0 with (1 cpu, 7 GiB) free and n1 with
    # (7 cpu, 1 GiB). By hand, a cpu-heavy task (1 cpu, 0.5 GiB) aligns better with n1
    # (1/8·7/8 + 1/16·1/8 = 0.117 vs 0.070) and a memory-heavy one (0.25 cpu, 1 GiB) with n0
    # (0.113 vs 0.043). Best-fit (FIFO's rule) sends both to the tighter node instead.
    cl = cluster(site("a", node("a", "n0", 8, mem=8192), node("a", "n1", 8, mem=8192)))
    fillers = [job("f1", 0, "a", task("t", 100, 7, mem=1024)),
               job("f2", 0, "a", task("t", 100, 1, mem=7168))]
    for probe, want in ((task("t", 10, 1, mem=512), 1), (task("t", 10, 0.25, mem=1024), 0)):
        wl = workload(*fillers, job("p", 1, "a", probe))
        placed = {a.task.job.job.id: a.node for a in run(cl, wl, "tetris").attempts}
        assert (placed["f1"], placed["f2"]) == (0, 1)
        assert placed["p"] == want, probe


def test_drf_equalises_dominant_shares():
    # Job x asks cpu-heavy, y memory-heavy instances; both have plenty. DRF gives each the
    # same dominant share: 4 cpu-instances (4/12 cpu) vs 4 mem-instances (4/12 mem)...
    cl = cluster(site("a", node("a", "n", 12, mem=12 * 1024)))
    wl = workload(job("x", 0, "a", task("t", 10, 1, mem=100, instances=20)),
                  job("y", 0, "a", task("t", 10, 0.1, mem=1024, instances=20)))
    r = run(cl, wl, "drf")
    at0 = [a.task.job.job.id for a in r.attempts if a.start == 0]
    # x: 1 cpu each -> share n/12; y: 1 GiB each -> share n/12. Equal counts, until full.
    assert abs(at0.count("x") - at0.count("y")) <= 1 and len(at0) >= 10
    fifo0 = [a.task.job.job.id for a in run(cl, wl, "fifo").attempts if a.start == 0]
    assert fifo0.count("x") > fifo0.count("y") + 2   # FIFO favours the first job


@pytest.mark.parametrize("policy", list(BASELINES))
def test_every_baseline_finishes_a_dag_workload(policy):
    cl = cluster(site("a", node("a", "n", 8)), site("b", node("b", "g", 8, gpus=2, model="T4")))
    wl = workload(*[job(f"j{i}", i * 2.0, "a" if i % 2 else "b",
                        task("x", 3, 2, instances=3), task("y", 2, 1, after=["x"]),
                        task("z", 1, 1, gpu=0.5, after=["x"])) for i in range(8)])
    assert run(cl, wl, policy).metrics["jobs_completed"] == 8


# Site "dear" draws 25 W a busy core (200 W over 8), "cheap" 6.25 W (50 W over 8).
DEAR, CHEAP = PowerModel(node_idle_w=100, node_peak_w=300), PowerModel(node_idle_w=100,
                                                                        node_peak_w=150)
TWO_POWERS = cluster(site("dear", node("dear", "n", 8), power=DEAR),
                     site("cheap", node("cheap", "n", 8), power=CHEAP))
DEAR_SITE, CHEAP_SITE = 0, 1


def test_energy_first_places_on_the_node_that_draws_least_and_saves_energy():
    wl = workload(*[job(f"j{i}", i, "dear", task("t", 100, 2)) for i in range(3)])
    green, srpt = run(TWO_POWERS, wl, "energy-first:inf"), run(TWO_POWERS, wl, "srpt")
    assert set(sites(green).values()) == {CHEAP_SITE}
    assert set(sites(srpt).values()) == {DEAR_SITE}      # the origin first
    assert green.metrics["energy_kwh"] < srpt.metrics["energy_kwh"]
    # the same completion times, but for the link's latency off the origin (data_mb 0)
    assert green.metrics["jct_mean_s"] == pytest.approx(srpt.metrics["jct_mean_s"] + 0.02)


def test_energy_first_with_a_threshold_waits_for_an_efficient_node():
    # "cheap" is full until t=50; a node 4x dearer is free at once.
    wl = workload(job("filler", 0, "cheap", task("t", 50, 8)),
                  job("p", 1, "dear", task("t", 10, 2)))
    never = run(TWO_POWERS, wl, "energy-first:inf")
    hold = run(TWO_POWERS, wl, "energy-first:0.5")
    loose = run(TWO_POWERS, wl, "energy-first:4")     # 25 <= 6.25 * 5: dear is close enough
    assert (sites(never)["p"], starts(never)["p"]) == (DEAR_SITE, 1)
    assert (sites(hold)["p"], starts(hold)["p"]) == (CHEAP_SITE, 50)
    assert (sites(loose)["p"], starts(loose)["p"]) == (DEAR_SITE, 1)


@pytest.mark.parametrize("bad", ["energy-first:-1", "energy-first:x"])
def test_energy_first_refuses_a_bad_threshold_naming_it(bad):
    with pytest.raises(ValueError, match="energy-first"):
        make_policy(bad)


@pytest.mark.parametrize("policy", ["energy-first:inf", "energy-first:0.2", "srpt-cap:2",
                                    "weighted-fair:0.5"])
def test_every_family_finishes_a_dag_workload(policy):
    test_every_baseline_finishes_a_dag_workload(policy)


def _routing_case(busy_s: float):
    """Site a (the origin) runs a job for ``busy_s`` seconds; then a 10 s task with 1,000 MB
    of inputs arrives there. Site b is idle behind a 100 Mbit/s link: moving the inputs takes
    80 s."""
    cl = cluster(site("a", node("a", "n", 1)), site("b", node("b", "n", 1)),
                 link=Link(latency_ms=0.0, bandwidth_mbps=100.0))
    wl = workload(job("busy", 0.0, "a", task("t", busy_s, 1)),
                  job("data", 1.0, "a", task("t", 10.0, 1, data_mb=1000.0)))
    return cl, wl


def test_srpt_eft_waits_for_the_origin_when_moving_the_inputs_takes_longer():
    cl, wl = _routing_case(busy_s=30.0)       # the origin frees in 29 s < 80 s of transfer
    assert sites(run(cl, wl, "srpt"))["data"] == 1          # greedy: moved, ends at 91 s
    r = run(cl, wl, "srpt-eft")
    assert sites(r)["data"] == 0 and starts(r)["data"] == 30.0   # waited: ends at 40 s


def test_srpt_eft_moves_the_work_when_the_origin_frees_later_than_the_transfer():
    cl, wl = _routing_case(busy_s=500.0)      # the origin frees in 499 s > 80 s
    r = run(cl, wl, "srpt-eft")
    assert sites(r)["data"] == 1 and starts(r)["data"] == 1.0


def test_srpt_eft_does_not_wait_for_an_origin_that_could_never_hold_the_task():
    cl = cluster(site("a", node("a", "n", 1)), site("b", node("b", "n", 4)),
                 link=Link(latency_ms=0.0, bandwidth_mbps=100.0))
    wl = workload(job("busy", 0.0, "a", task("t", 30.0, 1)),
                  job("wide", 1.0, "a", task("t", 10.0, 2, data_mb=1000.0)))
    assert sites(run(cl, wl, "srpt-eft"))["wide"] == 1


def test_srpt_delay_takes_a_fixed_wait_whatever_the_origin_runs():
    for busy_s in (30.0, 500.0):              # it cannot tell the two cases apart
        cl, wl = _routing_case(busy_s)
        assert sites(run(cl, wl, "srpt-delay:60"))["data"] == 0    # 80 s transfer >= 60 s
        assert sites(run(cl, wl, "srpt-delay:120"))["data"] == 1   # 80 s < 120 s
    with pytest.raises(ValueError, match="srpt-delay:120"):
        make_policy("srpt-delay:-1")


def test_srpt_reserve_keeps_a_gpu_nodes_cpus_for_the_gpu_work_that_follows():
    """A 4-cpu gpu node; a cpu-only job of 4 one-cpu instances (100 s) arrives first, a gpu job
    needing 2 cpus a little later. SRPT fills the gpu node and the gpu job waits 100 s;
    srpt-reserve:0.5 leaves half of it free, and the gpu job starts on arrival."""
    cl = cluster(site("a", node("a", "g", 4, gpus=1, model="T4")))
    wl = workload(job("cpu", 0.0, "a", task("t", 100.0, 1, instances=4)),
                  job("gpu", 1.0, "a", task("t", 10.0, 2, gpu=1.0)))
    assert starts(run(cl, wl, "srpt"))["gpu"] == 100.0
    r = run(cl, wl, "srpt-reserve:0.5")
    assert starts(r)["gpu"] == 1.0
    cpu_starts = sorted(a.start for a in r.attempts if a.task.job.job.id == "cpu")
    assert cpu_starts == [0.0, 0.0, 100.0, 100.0]     # two held back, run when the first end


def test_srpt_reserve_keeps_a_models_gpus_for_the_work_bound_to_it():
    """Site a has one A100 and one T4. A job bound to the A100 is queued behind a running one;
    a job that runs on any model arrives: SRPT puts it on whichever node is free first
    (the A100 when it frees), the reserve keeps the A100 for the bound work."""
    cl = cluster(site("a", node("a", "a100", 8, gpus=1, model="A100"),
                      node("a", "t4", 8, gpus=1, model="T4")))
    wl = workload(job("t4-busy", 0.0, "a", task("t", 50.0, 1, gpu=1.0, models=["T4"])),
                  job("a100-busy", 0.0, "a", task("t", 20.0, 1, gpu=1.0, models=["A100"])),
                  job("bound", 1.0, "a", task("t", 30.0, 1, gpu=1.0, models=["A100"])),
                  job("any", 2.0, "a", task("t", 5.0, 1, gpu=1.0)))
    # srpt: at 20 s the A100 frees; "any" (5 s of work left) goes before "bound" (30 s)
    assert starts(run(cl, wl, "srpt"))["bound"] == 25.0
    r = run(cl, wl, "srpt-reserve:1")
    assert starts(r)["bound"] == 20.0 and starts(r)["any"] == 50.0


def test_srpt_reserve_never_holds_work_for_good():
    """A cpu-only instance too big for a gpu node with its reserve kept, on a cluster of gpu
    nodes only, runs as SRPT runs it (no wait on an idle cluster)."""
    cl = cluster(site("a", node("a", "g", 4, gpus=1)))
    wl = workload(job("wide", 0.0, "a", task("t", 10.0, 3)))
    assert starts(run(cl, wl, "srpt-reserve:0.5"))["wide"] == 0.0
    with pytest.raises(ValueError, match="srpt-reserve:0.5"):
        make_policy("srpt-reserve:-1")


def test_srpt_eft_counts_only_the_origin_nodes_that_could_hold_the_task():
    """A review: the origin's wait was estimated over every node -- an idle T4 and cpu work
    ending every 10 s made a task bound to the origin's busy A100 wait 1,000 s for it instead
    of moving its inputs (50 s) to site b's idle A100; a permanently down big node likewise."""
    from agora.agents.domain import Faults, NodeOutage

    cl = cluster(site("a", node("a", "a100", 8, gpus=1, model="A100"),
                      node("a", "t4", 8, gpus=1, model="T4"), node("a", "c", 100)),
                 site("b", node("b", "a100", 8, gpus=1, model="A100")),
                 link=Link(latency_ms=0.0, bandwidth_mbps=100.0))
    wl = workload(job("long", 0.0, "a", task("t", 1000.0, 1, gpu=1.0, models=["A100"])),
                  *[job(f"c{i:03d}", 0.0, "a", task("t", 10.0 * (i + 1), 1))
                    for i in range(100)],
                  job("bound", 1.0, "a", task("t", 10.0, 1, gpu=1.0, models=["A100"],
                                               data_mb=625.0)))
    r = run(cl, wl, "srpt-eft")
    assert (starts(r)["bound"], sites(r)["bound"]) == (1.0, 1)

    cl = cluster(site("a", node("a", "big", 4), *[node("a", f"s{i}", 2) for i in range(50)]),
                 site("b", node("b", "n", 4)), link=Link(latency_ms=0.0, bandwidth_mbps=100.0),
                 faults=Faults(outages=(NodeOutage(at=0.0, until=None, node="a/big"),)))
    wl = workload(*[job(f"c{i:03d}", 0.0, "a", task("t", 20.0 * (i + 1), 2))
                    for i in range(50)],
                  job("big", 1.0, "a", task("t", 10.0, 4, data_mb=625.0)))
    r = run(cl, wl, "srpt-eft")
    assert (starts(r)["big"], sites(r)["big"]) == (1.0, 1)


def test_srpt_reserve_holds_nothing_on_gpus_of_no_model_nor_for_nodes_down_for_good():
    """A review: a gpu node of no stated model was never allowed to gpu work, and a node down
    for good counted as a place held cpu work could run some day (both waited 1,000 s)."""
    from agora.agents.domain import Faults, NodeOutage

    cl = cluster(site("a", node("a", "c", 4), node("a", "g", 4, gpus=1)))
    wl = workload(job("cpu", 0.0, "a", task("t", 1000.0, 4)),
                  job("gpu", 1.0, "a", task("t", 10.0, 1, gpu=1.0)))
    assert starts(run(cl, wl, "srpt-reserve:0.5"))["gpu"] == 1.0

    cl = cluster(site("a", node("a", "c", 4), node("a", "g", 4, gpus=1, model="T4")),
                 site("b", node("b", "n", 1)),
                 faults=Faults(outages=(NodeOutage(at=0.0, until=None, node="a/c"),)))
    wl = workload(job("far", 0.0, "b", task("t", 1000.0, 1)),
                  job("cpu", 1.0, "a", task("t", 10.0, 3)))
    assert starts(run(cl, wl, "srpt-reserve:0.5"))["cpu"] == 1.0

"""The simulator's mechanisms, each on an instance small enough to compute by hand, and its
invariants on every baseline under injected faults (checked by agents.sim.verify)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from agora.agents.baselines import BASELINES, make_policy
from agora.agents.baselines.ordering import Fifo
from agora.agents.domain import Faults, Link, NodeOutage, PowerModel
from agora.agents.sim.config import SimConfig
from agora.agents.sim.engine import SimulationError, Simulator
from agora.agents.sim.verify import verify
from agora.agents.workloads.synthetic import generate
from tests.simkit import cluster, job, node, site, task, workload

CHECKED = SimConfig(check_invariants=True)


def run(cl, wl, policy="fifo", **cfg):
    r = Simulator(cl, wl, replace(CHECKED, **cfg)).run(make_policy(policy))
    assert verify(r) == []
    return r


def by_task(r):
    return {(a.task.job.job.id, a.task.task.id, a.instance): a for a in r.attempts
            if a.outcome == "completed"}


def test_dag_on_one_node_matches_hand_schedule():
    # One 10-cpu node. A(4s, 6cpu) then B(3s, 5cpu) and C(2s, 4cpu) after A, E(1s) after both.
    # FIFO/best-fit: A 0-4; B and C together 4-7 / 4-6 (9 cpus); E at 7-8. JCT 8.
    cl = cluster(site("s", node("s", "n", 10)))
    wl = workload(job("j", 0.0, "s", task("A", 4, 6), task("B", 3, 5, after=["A"]),
                      task("C", 2, 4, after=["A"]), task("E", 1, 10, after=["B", "C"])))
    r = run(cl, wl)
    t = by_task(r)
    assert [(t[("j", x, 0)].start, t[("j", x, 0)].end) for x in "ABCE"] == \
        [(0, 4), (4, 7), (4, 6), (7, 8)]
    assert r.metrics["jct_mean_s"] == 8 and r.metrics["makespan_s"] == 8
    assert r.metrics["slowdown_mean"] == pytest.approx(1.0)  # 8 / critical path 8
    assert r.metrics["tasks_lost"] == 0


def test_instances_queue_when_the_site_is_full():
    cl = cluster(site("s", node("s", "n", 4)))
    wl = workload(job("j", 0.0, "s", task("t", 10, 2, instances=5)))
    r = run(cl, wl)
    starts = sorted(a.start for a in r.attempts)
    assert starts == [0, 0, 10, 10, 20]
    assert r.metrics["util_cpu"] == pytest.approx(5 * 2 * 10 / (4 * 30))


def test_transfer_delay_when_running_away_from_origin():
    # The origin has no node big enough at the time: the task runs remotely and pays
    # latency + data / bandwidth = 0.1 s + 800 MB * 8 / 6400 Mb/s = 1.1 s.
    cl = cluster(site("home", node("home", "n", 2)), site("far", node("far", "n", 8)),
                 link=Link(latency_ms=100, bandwidth_mbps=6400))
    wl = workload(job("j", 0.0, "home", task("t", 5, 4, data_mb=800)))
    r = run(cl, wl)
    a = r.attempts[0]
    assert (a.site, a.transfer, a.end) == (1, pytest.approx(1.1), pytest.approx(6.1))
    assert r.metrics["remote_runs"] == 1


def test_gpu_shares_pack_on_one_gpu_only_when_they_fit():
    cl = cluster(site("s", node("s", "g", 8, gpus=1, model="T4")))
    halves = workload(job("a", 0, "s", task("t", 10, 1, gpu=0.5)),
                      job("b", 0, "s", task("t", 10, 1, gpu=0.5)))
    assert sorted(a.start for a in run(cl, halves).attempts) == [0, 0]
    big = workload(job("a", 0, "s", task("t", 10, 1, gpu=0.6)),
                   job("b", 0, "s", task("t", 10, 1, gpu=0.6)))
    assert sorted(a.start for a in run(cl, big).attempts) == [0, 10]


def test_gpu_model_constraint_sends_work_to_the_right_site():
    cl = cluster(site("a", node("a", "g", 8, gpus=2, model="T4")),
                 site("b", node("b", "g", 8, gpus=2, model="A100")))
    wl = workload(job("j", 0, "a", task("t", 5, 1, gpu=1, models=["A100"], instances=2)))
    r = run(cl, wl)
    assert {a.site for a in r.attempts} == {1}


def test_whole_gpus_need_entirely_free_devices():
    cl = cluster(site("s", node("s", "g", 16, gpus=2, model="V100")))
    wl = workload(job("share", 0, "s", task("t", 10, 1, gpu=0.2)),
                  job("whole", 0, "s", task("t", 5, 1, gpu=2)))
    t = by_task(run(cl, wl))
    assert t[("whole", "t", 0)].start == 10  # waits for the share to leave gpu 0


def test_unschedulable_task_is_reported_with_reason_and_never_lost():
    cl = cluster(site("s", node("s", "n", 8)))
    wl = workload(job("ok", 0, "s", task("t", 1, 2)),
                  job("huge", 0, "s", task("a", 1, 1), task("b", 1, 64, after=["a"])))
    r = run(cl, wl)
    reasons = {(j, t): why for j, t, why in r.unschedulable}
    assert "needs 64 cpu cores; the largest node has 8" in reasons[("huge", "b")]
    assert "job rejected" in reasons[("huge", "a")]
    m = r.metrics
    assert (m["jobs_completed"], m["jobs_unschedulable"], m["tasks_lost"]) == (1, 1, 0)
    assert m["instances_unschedulable"] == 2


def test_a_task_every_dimension_of_which_fits_some_node_but_none_all_says_what_is_missing():
    # 32 cores fit the big node, 1 gpu the small one: the reason was the generic "no single
    # node offers cpu, memory and gpu together", naming neither the demand nor a node
    cl = cluster(site("s", node("s", "big", 64), node("s", "gpu", 8, gpus=2, model="V100")))
    wl = workload(job("j", 0, "s", task("t", 1, 32, gpu=1, models=["V100"])))
    why = {(j, t): w for j, t, w in run(cl, wl).unschedulable}[("j", "t")]
    assert "needs 32 cpu cores and 0 MiB memory and 1 gpu (model ['V100']) on one node" in why
    assert "the closest, s/big, has only 0 gpus" in why


def test_task_failures_retry_then_report_failed_with_descendants():
    # Every attempt fails: after max_attempts the task is failed, its child too, none lost.
    f = Faults(seed=1, task_failure_prob=0.999999, max_attempts=3)
    cl = cluster(site("s", node("s", "n", 8)), faults=f)
    wl = workload(job("j", 0, "s", task("a", 10, 1, instances=2), task("b", 1, 1, after=["a"])))
    r = run(cl, wl)
    m = r.metrics
    assert m["tasks_lost"] == 0 and m["jobs_failed"] == 1
    assert m["instances_failed"] == 3 and m["retries"] >= 3
    assert any(t == "b" and "depends on task a" in why for _, t, why in r.failed)


def test_outage_kills_running_work_which_is_rescheduled():
    f = Faults(outages=(NodeOutage(at=5, until=50, node="a/n"),))
    cl = cluster(site("a", node("a", "n", 4)), site("b", node("b", "n", 4)), faults=f)
    wl = workload(job("j", 0, "a", task("t", 20, 4)))
    r = run(cl, wl)
    assert [(a.site, a.outcome) for a in r.attempts] == [(0, "killed"), (1, "completed")]
    assert r.attempts[0].end == 5 and r.metrics["preemptions"] == 1
    assert r.metrics["jobs_completed"] == 1


def test_permanent_outage_makes_work_unschedulable_not_lost():
    f = Faults(outages=(NodeOutage(at=1, until=None, site="g"),))
    cl = cluster(site("c", node("c", "n", 8)), site("g", node("g", "n", 8, gpus=1, model="T4")),
                 faults=f)
    wl = workload(job("cpu", 0, "c", task("t", 5, 1)),
                  job("gpu", 2, "c", task("t", 5, 1, gpu=1)))
    r = run(cl, wl)
    assert r.metrics["tasks_lost"] == 0 and r.metrics["jobs_unschedulable"] == 1
    assert "permanent outages" in r.unschedulable[0][2]


def test_energy_matches_the_power_model_by_hand():
    # One node, idle 100 W, peak 300 W, PUE 1.5; one task uses half the cores for 10 s:
    # (100 + 200 * 0.5) W * 10 s * 1.5 = 3000 J. Ideal dynamic energy = 200 * 0.5 * 10 * 1.5.
    p = PowerModel(node_idle_w=100, node_peak_w=300, pue=1.5)
    cl = cluster(site("s", node("s", "n", 8), power=p))
    r = run(cl, workload(job("j", 0, "s", task("t", 10, 4))))
    assert r.metrics["energy_kwh"] * 3.6e6 == pytest.approx(3000)
    assert r.metrics["energy_efficiency"] == pytest.approx(1500 / 3000)


def test_deadline_misses_and_score_are_bounded():
    cl = cluster(site("s", node("s", "n", 1)))
    wl = workload(job("a", 0, "s", task("t", 10, 1), deadline=10),
                  job("b", 0, "s", task("t", 10, 1), deadline=15))
    m = run(cl, wl).metrics
    assert m["deadline_miss_rate"] == 0.5
    assert 0 < m["qos"] <= 1 and 0 < m["score"] <= 1


def test_qos_is_bounded_and_still_ranks_under_heavy_queueing():
    from agora.agents.sim.metrics import qos_of
    assert qos_of([1.0, 1.0]) == 1.0 and qos_of([]) == 0.0
    # 1 / mean slowdown gave 0.005 and 0.001 here (both ~0); the log form keeps them apart.
    heavy, heavier = qos_of([200.0] * 4), qos_of([1000.0] * 4)
    assert 0.15 < heavy < 0.17 and heavier < heavy - 0.02
    # a mean of per-job terms: one job waiting long does not erase the others
    assert qos_of([1.0, 1.0, 1.0, 10_000.0]) > 0.75


class Stubborn:
    """A policy that never allocates anything (a fake for the stall check)."""

    name = "stubborn"

    def reset(self, sim):
        pass

    def schedule(self, ctx):
        pass


def test_a_policy_that_never_allocates_is_an_error_not_lost_work():
    cl = cluster(site("s", node("s", "n", 8)))
    sim = Simulator(cl, workload(job("j", 0, "s", task("t", 1, 1))))
    with pytest.raises(SimulationError, match="left 1 tasks open"):
        sim.run(Stubborn())


FAULTY = Faults(seed=7, task_failure_prob=0.05, overrun_prob=0.1, max_attempts=4,
                outages=(NodeOutage(at=300, until=900, site="b"),
                         NodeOutage(at=200, until=2500, node="a/n1")))


def faulty_scenario():
    cl = cluster(site("a", node("a", "n0", 16, gpus=2, model="T4"), node("a", "n1", 16)),
                 site("b", node("b", "n0", 32), node("b", "n1", 8, gpus=4, model="V100")),
                 site("c", node("c", "n0", 16)), faults=FAULTY)
    return cl, generate(cl, seed=5, jobs=150, load=0.95)


@pytest.mark.parametrize("policy", list(BASELINES))
def test_every_baseline_keeps_the_invariants_under_faults(policy):
    cl, wl = faulty_scenario()
    r = run(cl, wl, policy)          # run() asserts verify() finds nothing
    m = r.metrics
    assert m["tasks_lost"] == 0
    assert m["instances_completed"] + m["instances_failed"] + m["instances_unschedulable"] \
        + m["instances_cancelled"] == wl.instance_count
    assert m["preemptions"] > 0 and m["retries"] > 0


def test_runs_are_deterministic_and_faults_do_not_depend_on_the_policy():
    cl, wl = faulty_scenario()
    a = run(cl, wl, "random", seed=3).metrics
    b = run(cl, wl, "random", seed=3).metrics
    assert {k: v for k, v in a.items() if k not in ("wall_s", "events_per_s")} == \
        {k: v for k, v in b.items() if k not in ("wall_s", "events_per_s")}

    def failed_runs(policy):
        r = run(cl, wl, policy)
        return {(a.task.rank, a.instance) for a in r.attempts if a.outcome == "failed"}
    # The same instances are unlucky whichever policy runs (keyed draws, not a stream).
    common = failed_runs("fifo") & failed_runs("tetris")
    assert len(common) >= 0.8 * min(len(failed_runs("fifo")), len(failed_runs("tetris")))


def test_verifier_catches_an_overfull_node():
    cl = cluster(site("s", node("s", "n", 4)))
    r = Simulator(cl, workload(job("a", 0, "s", task("t", 10, 3)),
                               job("b", 0, "s", task("t", 10, 3)))).run(Fifo())
    assert verify(r) == []
    r.attempts[1].start = 0.0       # pretend the second ran alongside the first
    assert any("over capacity" in v for v in verify(r))


def test_paired_bootstrap_interval_is_seeded_and_sees_a_consistent_gain():
    from agora.agents.sim.report import paired_bootstrap, paired_table
    assert paired_bootstrap([0.1] * 5) == pytest.approx((0.1, 0.1, 0.1))
    m, lo, hi = paired_bootstrap([0.10, 0.12, 0.08, 0.11, 0.09])
    assert 0 < lo < m < hi and paired_bootstrap([0.10, 0.12, 0.08, 0.11, 0.09]) == (m, lo, hi)
    m, lo, hi = paired_bootstrap([0.2, -0.2, 0.1, -0.1])
    assert lo < 0 < hi
    runs = {"learned": [{"jct_mean_s": 90.0}, {"jct_mean_s": 80.0}, {"jct_mean_s": 85.0}],
            "sjf": [{"jct_mean_s": 100.0}, {"jct_mean_s": 100.0}, {"jct_mean_s": 100.0}]}
    t = paired_table(runs, "learned")
    assert "+15.0%" in t and "[+10.0%, +20.0%]" in t and "| lower" in t
    two = paired_table({k: v[:2] for k, v in runs.items()}, "learned")
    assert "n/a (fewer than 3 seeds)" in two and "[+" not in two
    # nothing to pair (every JCT 0: no job completed): n/a with why, never "nan" (a probe)
    none = paired_table({k: [{"jct_mean_s": 0.0}] * 3 for k in runs}, "learned")
    assert "nan" not in none.lower() and "no seed to pair: sjf's jct_mean_s is 0" in none


def test_a_verdict_needs_the_paired_t_interval_to_exclude_zero_too():
    # a probe: at three seeds the percentile bootstrap is about [min, max] of the
    # differences, so any three of one sign said "lower" (bootstrap [+7.3%, +75.2%]; the
    # paired t interval on the same values is [-57%, +124%])
    from agora.agents.sim.report import paired_t, paired_table

    assert paired_t([0.10, 0.20, 0.15]) == pytest.approx((0.15 - 0.1242, 0.15 + 0.1242),
                                                         abs=1e-3)
    lo, hi = paired_t([0.1] * 25 + [0.2] * 25)      # past the table: the approximation
    assert lo == pytest.approx(0.15 - 2.0096 * 0.05051 / 50 ** 0.5, abs=1e-4) and hi > lo
    ref = [{"jct_mean_s": 100.0}] * 3
    wide = [{"jct_mean_s": 100.0 / (1 - d)} for d in (0.752, 0.073, 0.176)]
    t = paired_table({"learned": ref, "fifo": wide}, "learned")
    row = next(line for line in t.splitlines() if line.startswith("| fifo"))
    assert "[+7.3%, +75.2%]" in row and row.rstrip(" |").endswith("no difference"), row


def test_a_failed_task_cancels_its_jobs_other_tasks_and_none_is_counted_lost():
    # x fails on its only attempt (failure probability ~1); z, independent of x, has not
    # started (one 1-cpu node, FIFO puts x first): it is cancelled with the job, counted
    # cancelled and named, not "lost"; x's line is not repeated for what never started
    cl = cluster(site("a", node("a", "n", 1)),
                 faults=Faults(seed=1, task_failure_prob=0.999999, max_attempts=1))
    wl = workload(job("j", 0.0, "a", task("x", 10, 1, instances=3), task("z", 10, 1)))
    r = run(cl, wl)
    m = r.metrics
    assert m["tasks_lost"] == 0
    assert (m["instances_failed"], m["instances_cancelled"]) == (3, 1)
    assert [(j, t) for j, t, _ in r.cancelled] == [("j", "z")]
    assert "the job failed: task x" in r.cancelled[0][2]
    assert len(set(r.failed)) == len(r.failed), r.failed
    assert ("j", "x", "2 instances not started: instance 0 failed 1 times") in r.failed


def test_verify_names_instances_the_metrics_lost():
    cl = cluster(site("a", node("a", "n", 1)))
    r = run(cl, workload(job("j", 0.0, "a", task("x", 1, 1))))
    r.metrics["tasks_lost"] = 1
    assert any("1 instances lost" in v for v in verify(r))

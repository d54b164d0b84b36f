"""Workload transforms: offered load, arrival scaling, inflation, windows."""

from __future__ import annotations

import pytest

from agora.agents.workloads.transform import at_load, inflate, offered_load, scale_arrivals, window
from tests.simkit import cluster, job, node, site, task, workload

CL = cluster(site("s", node("s", "n", 10, mem=1000)))
# Two 5-cpu jobs of 100 s arriving 100 s apart on a 10-cpu node: cpu work 1000 cpu·s over a
# 100 s span and 10 cpus -> offered cpu load 1.0 (mem: 0).
WL = workload(job("a", 0, "s", task("t", 100, 5)),
              job("b", 100, "s", task("t", 100, 5), deadline=400))


def test_offered_load_by_hand():
    assert offered_load(WL, CL) == {"cpu": pytest.approx(1.0), "mem": 0.0}


def test_the_offered_load_leaves_out_jobs_no_node_can_hold():
    # a probe: "load 0.9" of a rigid SWF trace whose jobs wider than any node (reported
    # unschedulable) held 63% of the core-seconds ran at 0.3
    wide = job("w", 50, "s", task("ok", 100, 5), task("t", 1000, 64))   # 64 cpus: no node
    w = workload(*WL.jobs, wide)
    assert offered_load(w, CL) == {"cpu": pytest.approx(1.0), "mem": 0.0}
    assert offered_load(at_load(w, CL, 0.5), CL)["cpu"] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="no job of it fits a node"):
        at_load(workload(wide, job("v", 9, "s", task("t", 1, 64))), CL, 0.5)


def test_scale_arrivals_moves_deadlines_with_their_job():
    w = scale_arrivals(WL, 2.0)
    assert [j.arrival for j in w.jobs] == [0, 200] and w.jobs[1].deadline == 500
    assert offered_load(w, CL)["cpu"] == pytest.approx(0.5)
    # The span is floored at the mean duration (100 s), so a burst has a finite load.
    assert offered_load(scale_arrivals(WL, 0.5), CL)["cpu"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="must be > 0"):
        scale_arrivals(WL, 0)


def test_at_load_hits_the_target():
    assert offered_load(at_load(WL, CL, 0.25), CL)["cpu"] == pytest.approx(0.25)
    with pytest.raises(ValueError, match="target load"):
        at_load(WL, CL, -1)


def test_inflate_clones_with_seeded_arrivals_in_the_window():
    w = inflate(WL, 3, seed=1)
    assert len(w.jobs) == 6 and w == inflate(WL, 3, seed=1) and w != inflate(WL, 3, seed=2)
    assert all(0 <= j.arrival <= 100 for j in w.jobs)
    assert [j.arrival for j in w.jobs] == sorted(j.arrival for j in w.jobs)
    assert len({j.id for j in w.jobs}) == 6 and "seed=1" in w.source
    assert inflate(WL, 1) is WL


def test_window_keeps_jobs_arriving_inside():
    assert [j.id for j in window(WL, 50, 150).jobs] == ["b"]


def test_clones_never_take_an_id_the_workload_has():
    # a probe: a job named 'a~0' beside 'a' made a clone 'a~0' twice ("already in the ledger")
    wl = workload(job("a", 0, "s", task("t", 100, 5)), job("a~0", 10, "s", task("t", 100, 5)),
                  job("a~0~0", 20, "s", task("t", 100, 5)))
    for seed in range(20):
        ids = [j.id for j in inflate(wl, 4, seed=seed).jobs]
        assert len(ids) == len(set(ids)) == 12


def test_scaling_arrivals_that_all_come_at_once_is_refused_not_ignored():
    # a probe: --load and --arrival-window on jobs that all arrive at 0 did nothing, silently
    from agora.agents.workloads.transform import TransformError, arrival_window

    burst = workload(job("a", 0, "s", task("t", 100, 5)), job("b", 0, "s", task("t", 100, 5)))
    for do in (lambda: at_load(burst, CL, 0.5), lambda: arrival_window(burst, 100)):
        with pytest.raises(TransformError, match="all arrive at 0 s") as e:
            do()
        assert "arrive over time" in e.value.expected
    assert [j.arrival for j in arrival_window(WL, 50).jobs] == [0, 50]

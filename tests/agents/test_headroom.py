"""The headroom tools: the pooled-SRPT bound by hand and never above a real schedule, and the
rollout oracle never worse than its base heuristic."""

from __future__ import annotations

import pytest

from agora.agents.headroom import _srpt_total_completion, pooled_srpt_bound, rollout_oracle
from agora.agents.sim.config import SimConfig
from agora.agents.sim.runner import run_one
from agora.agents.workloads.synthetic import generate
from tests.simkit import cluster, job, node, site, task, workload


def test_srpt_on_one_machine_by_hand():
    # job 0 (3 units) from 0; job 1 (1 unit) at 1 preempts it: ends 2 (1), job 0 ends 4 (4)
    assert _srpt_total_completion([0.0, 1.0], [3.0, 1.0]) == pytest.approx(5.0)
    # idle gap: job 1 arrives after job 0 is done
    assert _srpt_total_completion([0.0, 10.0], [2.0, 2.0]) == pytest.approx(4.0)


def test_pooled_bound_by_hand_and_jobs_that_fit_nowhere_are_left_out():
    # 2 cores; three 2-core jobs of 10 s at t=0: pooled volumes 10 each → 10 + 20 + 30.
    cl = cluster(site("s", node("s", "n", 2)))
    wl = workload(*[job(f"j{i}", 0, "s", task("t", 10, 2)) for i in range(3)],
                  job("wide", 0, "s", task("t", 10, 4)))
    b = pooled_srpt_bound(wl, cl)
    assert b["jobs"] == 3 and b["critical_path"] == pytest.approx(10)
    assert b["pooled_srpt"] == pytest.approx(20) and b["mean_jct"] == pytest.approx(20)


SMALL = cluster(site("a", node("a", "n0", 4), node("a", "n1", 8, gpus=1, model="T4")),
                site("b", node("b", "n0", 8)))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_no_heuristic_beats_the_bound_and_the_oracle_never_loses_to_its_base(seed):
    wl = generate(SMALL, seed=seed, jobs=40, load=0.95, dag=0.6)
    bound = pooled_srpt_bound(wl, SMALL)["mean_jct"]
    jct = {p: run_one(SMALL, wl, p, seed=seed).metrics["jct_mean_s"]
           for p in ("srpt", "sjf", "fifo", "tetris")}
    assert all(v >= bound - 1e-6 for v in jct.values()), (jct, bound)
    base = min(jct, key=jct.get)
    orc = rollout_oracle(SMALL, wl, candidates=["srpt", "sjf", "fifo", "tetris"], base=base,
                         epochs=4, config=SimConfig(seed=seed))
    m = orc["metrics"]
    assert m["tasks_lost"] == 0 and len(orc["epochs"]) == 4
    assert m["jct_mean_s"] <= jct[base] + 1e-6
    assert m["jct_mean_s"] >= bound - 1e-6


def test_an_oracle_that_always_picks_the_base_replays_the_base():
    wl = generate(SMALL, seed=5, jobs=30, load=0.9, dag=0.5)
    orc = rollout_oracle(SMALL, wl, candidates=["sjf"], base="sjf", epochs=3,
                         config=SimConfig(seed=5))
    assert orc["epochs"] == ["sjf"] * 3
    assert orc["metrics"]["jct_mean_s"] == pytest.approx(
        run_one(SMALL, wl, "sjf", seed=5).metrics["jct_mean_s"])

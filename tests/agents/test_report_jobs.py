"""Tables people read never leave out work that did not run (agents/sim/report.py): once,
`agora baselines` on a workload with an unschedulable job read exactly as without it, and a
workload where no job could run showed JCT 0.0 and slowdown 0.00 -- a perfect-looking row.
Now every comparison row says how many jobs completed (and how many were unschedulable or
failed), the JSON has the counts, and a run that completed no job has no JCT ('-')."""

from __future__ import annotations

from agora.agents.domain import Cluster, Demand, Job, Node, Site, Task, Workload
from agora.agents.sim.config import SimConfig
from agora.agents.sim.report import comparison_table, metrics_table, summarise
from agora.agents.sim.runner import run_one

CLUSTER = Cluster(sites=(Site(name="a", nodes=(Node("a/n0", "a", cpu=4000, mem=4096),)),))


def job(jid: str, cpu: int) -> Job:
    return Job(jid, 0.0, "a", (Task("t", 5.0, Demand(cpu, 64)),))


def metrics(jobs: list[Job]) -> dict:
    wl = Workload(jobs=tuple(jobs), source="test")
    return run_one(CLUSTER, wl, "fifo", seed=0, config=SimConfig()).metrics


def row(table: str, policy: str) -> list[str]:
    line = next(x for x in table.splitlines() if x.startswith(f"| {policy} "))
    return [c.strip() for c in line.strip("|").split("|")]


def test_an_unschedulable_job_is_counted_in_the_row_and_the_json():
    fits, too_big = job("fits", 1000), job("big", 64_000)
    runs = {"fifo": [metrics([fits, too_big])], "alone": [metrics([fits])]}
    table = comparison_table(runs)
    assert row(table, "fifo")[-1] == "1 of 2, 1 unschedulable"
    assert row(table, "alone")[-1] == "1 of 1"
    s = summarise(runs)
    assert s["fifo"]["jobs_unschedulable"]["values"] == [1]
    assert s["fifo"]["jobs_completed"]["values"] == [1] and s["fifo"]["jobs"]["values"] == [2]


def test_a_run_that_completed_no_job_has_no_jct():
    m = metrics([job("big", 64_000)])
    assert m["jobs_completed"] == 0
    table = comparison_table({"fifo": [m]})
    cells = dict(zip([c.strip() for c in table.splitlines()[0].strip("|").split("|")],
                     row(table, "fifo")))
    assert cells["JCT mean s"] == "-" and cells["slowdown"] == "-"
    assert cells["jobs completed"] == "0 of 1, 1 unschedulable"
    assert "jct_mean_s" not in summarise({"fifo": [m]})["fifo"]
    one = {r.split("|")[1].strip(): r.split("|")[2].strip()
           for r in metrics_table(m).splitlines()[2:]}
    assert one["JCT mean s"] == "-" and one["jobs completed"] == "0 of 1"

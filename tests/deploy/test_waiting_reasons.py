"""``agora jobs`` says why work waits (a probe: a 2-cpu task stayed "open" for 40 s with no
word): a task after others names those not completed; an open task says whether a live node
has room for it now (it waits for a bid) or none has (the most free one named), from the
committed ledger and the nodes' sizes."""

from __future__ import annotations

from agora.coordinator.queries import ledger_query
from agora.deploy.job_table import job_rows, print_jobs
from agora.protos.agora.v1 import coordinator_pb2 as pb
from tests.coordinator.state_helpers import Run, cluster, decide, job, op, submit


def view_of(r: Run) -> pb.LedgerView:
    return pb.QueryResult.FromString(r.state.query("operator", op(query=ledger_query()))).ledger


def test_open_and_waiting_tasks_say_why(capsys):
    r = Run()
    r("operator", submit(job("cfill", "c", n=2, cpu=16000, dag=False)))
    r("site:a", decide("a", 0))
    r("site:b", decide("b", 0))
    r("site:c", decide("c", 0, ("cfill", "map", 2, 1)))        # both c nodes full now
    r("operator", submit(job("wide", "c", n=1, cpu=16000, dag=False),
                         job("dag", "a", n=2, cpu=1000)))
    cl = cluster()
    nodes = [n.name for n in cl.nodes]
    rows = {x["job"]: x for x in job_rows(view_of(r), nodes, None, cluster=cl)}
    assert "waits" not in rows["cfill"]["tasks"][0]            # all running: no reason
    # --json says running where the table does (a probe: "pending" and "open")
    assert (rows["cfill"]["outcome"], rows["cfill"]["state"]) == ("pending", "running")
    assert [(t["outcome"], t["state"]) for t in rows["cfill"]["tasks"]] == [("open",
                                                                            "running")]
    assert rows["wide"]["state"] == "pending" and rows["wide"]["tasks"][0]["state"] == "open"
    wide = rows["wide"]["tasks"][0]["waits"]
    assert wide.startswith("no live node has 16 cpu, 1024 MiB free now; the most free: "), wide
    assert "a/n0 with 8 cpu" in wide or "a/g0 with 8 cpu" in wide
    dag = {t["task"]: t for t in rows["dag"]["tasks"]}
    assert dag["map"]["waits"].startswith("room on 3 live node(s) now")   # not c's
    assert dag["reduce"]["waits"] == "waits for task(s) map to complete"
    print_jobs(list(rows.values()), per_instance=False)
    assert "-> waits for task(s) map to complete" in capsys.readouterr().out
    # its nodes down: no longer room there
    r("site:a", op(site_round=pb.SiteRound(site="a", nodes=[
        pb.NodeState(node="a/n0", up=False), pb.NodeState(node="a/g0", up=False)])))
    rows = {x["job"]: x for x in job_rows(view_of(r), nodes, None, cluster=cl)}
    assert {t["task"]: t for t in rows["dag"]["tasks"]}["map"]["waits"].startswith(
        "room on 1 live node(s) now")                         # b/n0 only
    # a site's reader does not see where others' work runs: nothing claimed
    view = pb.QueryResult.FromString(r.state.query("site:b", op(query=ledger_query()))).ledger
    rows = {x["job"]: x for x in job_rows(view, nodes, None, reader_site="b", cluster=cl)}
    assert "waits" not in rows["wide"]["tasks"][0]

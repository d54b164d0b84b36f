"""What one command may cost every replica, and who may submit -- found by a review that
drove the replicated schedule with hostile commands (2026-12-02):

- one job of 1,000 tasks x 1,000,000 instances (28 KB) took 42 s and a GB on each replica:
  a job and a command now hold at most 1,000,000 instances, refused before any job is parsed
  (and the per-instance walks run in C);
- a site part naming one node 4,096 times flipped it 4,096 times, each flip scanning the
  ledger (26 s): a node once a part;
- a decision for a stale round skipped closing the round that the same part's node states
  had completed;
- any client but a replica or a site counted as the operator for ``submit_jobs`` (an
  auditor's signed write, ordered by a faulty primary, was admitted);
- the live service admitted a task that asks for no cpu and no memory: a million instances
  on one node.
"""

from __future__ import annotations

import time

import pytest

from agora.agents.domain import Demand, Job, Run, Task
from agora.coordinator.schedule_rules import (MAX_INSTANCES_PER_COMMAND, MAX_INSTANCES_PER_JOB,
                                              instances_over_limit, submission_chunks)
from agora.coordinator.schedule_state import ScheduleState
from agora.coordinator.validate import Refusal, check_command
from agora.protos.agora.v1 import coordinator_pb2 as pb
from tests.coordinator.state_helpers import Run as StateRun
from tests.coordinator.state_helpers import cluster, decide, job, op, submit

pytestmark = pytest.mark.timeout(60)


def wide(jid: str, tasks: int, instances: int) -> Job:
    return Job(jid, 0.0, "a", tuple(Task(f"t{k}", 1.0, Demand(1000, 64), instances=instances)
                                    for k in range(tasks)))


def test_a_job_or_command_over_its_instance_budget_is_refused_fast_and_changes_nothing():
    r = StateRun()
    before = r.state.schedule_bytes()
    t0 = time.process_time()
    out = r("operator", submit(wide("huge", 1000, 1_000_000)))
    assert time.process_time() - t0 < 5.0            # was 42 s
    assert out.accepted == 0 and "expected at most 1000000 a job" in out.rejections[0].reason
    out = r("operator", submit(*(wide(f"w{i}", 1, 600_000) for i in range(2))))
    assert out.accepted == 0 and "per command" in out.rejections[0].reason
    assert r.state.schedule_bytes() == before
    # the replica that receives such a request refuses it before ordering, naming the field
    cmd = pb.Command.FromString(submit(wide("huge", 2, MAX_INSTANCES_PER_JOB)))
    with pytest.raises(Refusal) as e:
        check_command(cmd, "operator", "command")
    assert "jobs[0].tasks: 2000000 instances" in e.value.message
    # within the budget: admitted, and a million instances open in well under a second
    t0 = time.process_time()
    assert r("operator", submit(wide("big", 1, MAX_INSTANCES_PER_JOB))).accepted == 1
    assert time.process_time() - t0 < 2.0
    assert r.state.ledger.tasks[("big", "t0")].open == MAX_INSTANCES_PER_JOB


def test_submissions_are_chunked_within_the_budgets():
    jobs = [wide(f"j{i}", 1, 300_000) for i in range(7)] + [wide("s", 1, 1)] * 3
    chunks = submission_chunks(jobs, most_jobs=4)
    assert [j for c in chunks for j in c] == jobs
    assert all(len(c) <= 4 and instances_over_limit(c) is None for c in chunks)
    assert [len(c) for c in chunks] == [3, 3, 4]   # 900,000 + 900,000 + 300,003 instances
    assert instances_over_limit([wide("x", 1, MAX_INSTANCES_PER_COMMAND + 1)])[0] == \
        "jobs[0].tasks"
    # and by bytes, given each job's size (a job over the budget alone goes alone)
    small = [wide(f"b{i}", 1, 1) for i in range(6)]
    chunks = submission_chunks(small, sizes=[40, 40, 40, 90, 10, 10], most_bytes=100)
    assert [len(c) for c in chunks] == [2, 1, 2, 1]   # 80 | 40 | 90 + 10 | 10


def test_a_node_named_twice_in_a_part_is_refused_once_flipped():
    r = StateRun()
    r("site:a", submit(job("j", "a", n=2, dag=False)))
    flips = [pb.NodeState(node="a/n0", up=k % 2 == 1) for k in range(4096)]
    t0 = time.process_time()
    out = r("site:a", op(site_round=pb.SiteRound(site="a", nodes=flips)))
    assert time.process_time() - t0 < 2.0
    assert sum(x.field.endswith(".node") for x in out.rejections) == 256   # listed ...
    assert out.rejections[-1].reason.startswith("3839 more rejections")  # ... and counted
    assert sum(r.state.rejected.values()) == 4095
    assert "a/n0" in {r.state.node_names[n] for n in r.state.nodes_down}


def test_a_stale_decision_does_not_keep_a_completed_round_open():
    r = StateRun()
    r("site:a", submit(job("j", "a", n=2, dag=False)))
    r("site:a", decide("a", 0, ("j", "map", 1, 1)))
    r("site:b", decide("b", 0))
    assert r.state.round == 0, "site c is still expected"
    down = [pb.NodeState(node="c/n0", up=False), pb.NodeState(node="c/n1", up=False)]
    out = r("site:c", op(site_round=pb.SiteRound(site="c", nodes=down, bidding=True, round=7)))
    assert any("round" in x.field for x in out.rejections)       # the decision is stale
    assert r.state.round == 1, "c's nodes went down: a and b decided, the round closes"


@pytest.mark.parametrize("client", ["auditor:x", "", "anyone", "replica:0"])
def test_only_the_operator_and_sites_submit_even_when_ordered(client):
    r = StateRun()
    out = r(client, submit(job("j", "b")))
    assert out.accepted == 0 and out.rejections[0].field == "command.submit_jobs.jobs"
    assert "j" not in r.state.ledger.jobs


def test_the_live_service_refuses_a_task_that_asks_for_nothing():
    st = ScheduleState(cluster(), n_replicas=4, require_run=True)
    j = Job("z", 0.0, "a", (Task("t", 1.0, Demand(0, 0), instances=1000,
                                 run=Run(argv=("true",))),))
    out = pb.Result.FromString(st.execute("operator", submit(j), 1))
    assert out.accepted == 0 and out.rejections[0].field.endswith("tasks[0].demand")


def test_restoring_a_snapshot_never_takes_the_key_change_count_back():
    """The replica compares the count with the last value it saw: back at 0 after a state
    transfer, it could repeat that value and hide the next admission or removal."""
    st = ScheduleState(cluster(), n_replicas=4)
    st.member_changes = 3                       # as after three admissions
    st.restore(st.snapshot())
    assert st.member_changes == 4


@pytest.mark.parametrize("query, field", [
    (pb.Query(job_status=pb.JobStatusQuery(job_id="y" * 4_000_000)), "job_status.job_id"),
    (pb.Query(schedule=pb.ScheduleQuery(job_id="y" * 129)), "schedule.job_id"),
    (pb.Query(schedule=pb.ScheduleQuery(site="s" * 65)), "schedule.site"),
    (pb.Query(schedule=pb.ScheduleQuery(task=pb.TaskRef(job_id="j", task_id="t" * 200))),
     "schedule.task.task_id"),
    (pb.Query(job_status=pb.JobStatusQuery(job_id="")), "job_status.job_id"),
])
def test_a_query_for_an_id_no_job_can_have_is_refused_before_ordering_and_not_echoed(
        query, field):
    # a probe: a query for a 4,000,000-character job id was ordered, written to every
    # replica's log and echoed whole in each replica's reply
    with pytest.raises(Refusal) as e:
        check_command(pb.Command(query=query), "site:a", "command.query")
    assert e.value.code.name == "INVALID_ARGUMENT"
    assert e.value.message.startswith(f"command.query.{field}") and len(e.value.message) < 400


def test_nodes_going_down_in_one_part_cost_one_walk_and_stop_node_by_node():
    """A review: a part naming a site's 4,096 nodes down walked the whole ledger once per
    node -- 14-18 s on every replica over 20,000 tasks, repeatable by flipping them back. One
    walk now serves every node of the part; instances still stop node by node in the part's
    order, each node's in admission order."""
    from agora.agents.domain import Cluster, Faults, Node, Site
    from agora.protos.convert import job_to_proto

    r = StateRun()
    r("site:c", submit(job("x", "c", n=4, cpu=8000, dag=False)))
    r("site:a", decide("a", 0))
    r("site:b", decide("b", 0))
    r("site:c", decide("c", 0, ("x", "map", 4, 1)))
    ts = r.state.ledger.tasks[("x", "map")]
    names = [n.name for n in r.state.cluster.nodes]
    on = {i: names[p[0]] for i, p in ts.placements.items()}
    assert sorted(set(on.values())) == ["c/n0", "c/n1"]
    r.updates.clear()
    r("site:c", op(site_round=pb.SiteRound(site="c", nodes=[
        pb.NodeState(node="c/n1", up=False), pb.NodeState(node="c/n0", up=False)])))
    lost = [(i, c.reason) for u in r.updates for c in u.changes
            for i in range(c.instance_begin, c.instance_end)]
    want = sorted((i for i in on if on[i] == "c/n1")) + sorted(i for i in on if on[i] == "c/n0")
    assert [i for i, _ in lost] == want
    assert lost[0][1] == "node c/n1 went down" and lost[-1][1] == "node c/n0 went down"
    # the cost: 4,096 nodes down over 5,000 tasks in one part
    cl = Cluster(sites=(Site("a", (Node("a/n0", "a", cpu=8000, mem=16384),)),
                        Site("c", tuple(Node(f"c/n{i}", "c", cpu=1000, mem=1024)
                                        for i in range(4096)))), faults=Faults(max_attempts=3))
    st = ScheduleState(cl, n_replicas=4)
    jobs = [Job(f"j{i}", 0.0, "c", (Task("t", 1.0, Demand(100, 64), 1),)) for i in range(5000)]
    st.execute("site:c", op(submit_jobs=pb.SubmitJobs(jobs=[job_to_proto(j) for j in jobs])), 1)
    down = pb.SiteRound(site="c", nodes=[pb.NodeState(node=f"c/n{i}", up=False)
                                         for i in range(4096)])
    t0 = time.process_time()
    st.execute("site:c", op(site_round=down), 2)
    assert time.process_time() - t0 < 0.5           # 4,096 walks of the ledger: ~1.6 s


def test_instances_over_a_budget_are_refused_naming_the_task_the_job_or_the_request():
    """A probe: a task of 1,000,001 instances was refused as ``jobs[0].tasks: ... per
    request``: the budget broken is named, and the field that breaks it."""
    import grpc

    from agora.protos.agora.v1 import workload_pb2 as w

    def refusal(*jobs) -> Refusal:
        cmd = pb.Command(submit_jobs=pb.SubmitJobs(jobs=[
            w.Job(id=f"j{i}", origin="a", tasks=[w.Task(id=f"t{k}", instances=n)
                                                 for k, n in enumerate(sizes)])
            for i, sizes in enumerate(jobs)]))
        with pytest.raises(Refusal) as e:
            check_command(cmd, "operator", "op.submit_jobs")
        assert e.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED   # final: names its limit
        return e.value.message

    most = MAX_INSTANCES_PER_COMMAND
    assert refusal([2, most + 1]) == (f"op.submit_jobs.jobs[0].tasks[1].instances: "
                                      f"{most + 1} instances; the limit is {most} per task")
    assert refusal([600_000, 600_000]).startswith(
        "op.submit_jobs.jobs[0].tasks: 1200000 instances over the job's tasks; the limit is")
    assert refusal([600_000], [600_000]).endswith("per request")
    assert refusal([600_000], [600_000]).startswith("op.submit_jobs.jobs: 1200000 instances")

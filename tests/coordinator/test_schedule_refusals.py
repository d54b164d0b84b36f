"""What the replicated schedule refuses, naming the field: decisions that over-allocate a site
or speak for another site, bad jobs one by one; and no byte string (arbitrary bytes, mutated
valid commands, arbitrary bids, ends, node states and jobs) can raise or change the schedule."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agora.coordinator.validate import Refusal, check_command
from agora.protos.agora.v1 import coordinator_pb2 as pb
from agora.protos.convert import job_to_proto
from tests.coordinator.state_helpers import (CLIENTS, SETTINGS, Run, _check_never_raises,
                                             allocate, decide, end, job, lapse, op, report,
                                             submit, vote)


# ---- mediation ----

def test_over_allocating_and_wrong_site_decisions_are_refused_with_the_field():
    r = Run()
    r("site:b", submit(job("big", "b", n=8, cpu=1000, dag=False)))
    out = r("site:b", decide("b", 0, ("big", "map", 5, 1)))            # b has 4 cores
    assert out.accepted == 0
    assert out.rejections[0].field == "command.site_round.bids[0].instances"
    assert "over-allocate site 'b'" in out.rejections[0].reason
    out = r("site:a", decide("b", 0, ("big", "map", 1, 1)))
    assert out.rejections[0].field == "command.site_round.site"
    assert "may not act for site 'b'" in out.rejections[0].reason
    assert r("operator", decide("a", 0)).rejections
    assert r("site:b", decide("b", 3, ("big", "map", 1, 1))).rejections[0].field == \
        "command.site_round.round"


def test_jobs_rejected_one_by_one_with_the_field():
    r = Run()
    bad = job_to_proto(job("bad"))
    bad.tasks[0].instances = 0
    huge = job("huge", n=1, cpu=64000, dag=False)
    out = r("site:a", op(submit_jobs=pb.SubmitJobs(jobs=[
        job_to_proto(job("ok")), bad, job_to_proto(job("ok")), job_to_proto(huge),
        job_to_proto(job("elsewhere", "c"))])))
    assert out.accepted == 1
    assert [x.field for x in out.rejections] == [
        "command.submit_jobs.jobs[1].tasks[0].instances", "command.submit_jobs.jobs[2].id",
        "command.submit_jobs.jobs[3].tasks[0]", "command.submit_jobs.jobs[4].origin"]
    assert "fits no node" in out.rejections[2].reason


# ---- no bytes can raise or change the schedule ----

@SETTINGS
@given(st.binary(max_size=200), st.sampled_from(CLIENTS))
def test_arbitrary_bytes_never_raise(data, client):
    _check_never_raises(data, client)


VALID = [submit(job("new")), decide("a", 3, ("j0", "map", 1, 1)), vote(3),
         report("c", end("j2", "map", 0)), report("c", end("j2", "map", 0, "failed", "x")),
         lapse("b", 2), op(cancel_job=pb.CancelJob(job_id="j1", reason="r")),
         op(query=pb.Query(schedule=pb.ScheduleQuery(all=True)))]


@SETTINGS
@given(st.sampled_from(VALID), st.data())
def test_mutated_commands_never_raise_and_report_the_field(data, draw):
    buf = bytearray(data)
    for _ in range(draw.draw(st.integers(1, 4))):
        if not buf:
            break
        i = draw.draw(st.integers(0, len(buf) - 1))
        buf[i] = draw.draw(st.integers(0, 255))
    _check_never_raises(bytes(buf), draw.draw(st.sampled_from(CLIENTS)))


def test_an_end_of_a_run_that_is_over_ends_nothing():
    """A review: an end named no run, so the copy an agent sends again after an unconfirmed
    message (maybe executed, maybe not) ended the *next* run of its instance once it was
    placed at the same site again -- a failed attempt counted that never happened, and the
    running instance ended in the ledger. An end names its run; a stale one is refused."""
    r = Run()
    r("site:c", submit(job("j", "c", n=1, dag=False, cpu=12000)))   # only c holds it, so
    allocate(r, "j", "c", 1, rnd=0)                      # c gets it again after a failure
    ts = r.state.ledger.tasks[("j", "map")]
    first = ts.placed_at[0]
    copy = report("c", end("j", "map", 0, "failed", "exit code 1", run=first))
    assert r("site:c", copy).accepted == 1 and ts.failures[0] == 1
    allocate(r, "j", "c", 1, rnd=r.state.round)            # placed at c again: a new run
    second = ts.placed_at[0]
    assert second != first
    version = r.state.version
    out = r("site:c", copy)                                 # the agent's resent copy
    assert out.accepted == 0 and ts.failures[0] == 1 and ts.placements.get(0) is not None
    assert out.rejections[0].field == "command.site_round.ends[0].run"
    why = out.rejections[0].reason
    assert f"run {first} " in why and f"run {second};" in why
    assert r.state.version == version
    # the run that runs ends; an end that names no run (0) still ends the current one
    assert r("site:c", report("c", end("j", "map", 0, "failed", run=second))).accepted == 1
    allocate(r, "j", "c", 1, rnd=r.state.round)
    assert r("site:c", report("c", end("j", "map", 0))).accepted == 1
    assert ts.done == 1


@SETTINGS
@given(job_id=st.text(max_size=5), task_id=st.text(max_size=5),
       instances=st.integers(-2**31, 2**31 - 1), price=st.integers(-2**63, 2**63 - 1),
       site=st.sampled_from(["a", "b", "c", "", "zz"]), rnd=st.integers(-5, 5))
def test_arbitrary_bid_fields_are_checked(job_id, task_id, instances, price, site, rnd):
    _check_never_raises(decide(site, rnd, (job_id, task_id, instances, price)), f"site:{site}")


@SETTINGS
@given(inst=st.integers(-2**31, 2**31 - 1), kind=st.integers(0, 5),
       site=st.sampled_from(["a", "b", "c", "x"]), reason=st.text(max_size=3),
       t0=st.floats(allow_nan=True, allow_infinity=True),
       t1=st.floats(allow_nan=True, allow_infinity=True), node=st.text(max_size=6),
       run=st.integers(-2**63, 2**63 - 1))
def test_arbitrary_ends_and_node_states_are_checked(inst, kind, site, reason, t0, t1, node,
                                                    run):
    e = pb.End(job_id="j2", task_id="map", instance=inst, kind=kind, start_s=t0, end_s=t1,
               reason=reason, run=run)
    _check_never_raises(report(site, e, nodes=[pb.NodeState(node=node, up=inst % 2 == 0)]),
                        f"site:{site}")


@SETTINGS
@given(jid=st.text(max_size=4), origin=st.sampled_from(["a", "c", "zz", ""]),
       weight=st.floats(allow_nan=True), n=st.integers(-3, 5), cpu=st.integers(-5, 10**6),
       after=st.lists(st.sampled_from(["map", "reduce", "x"]), max_size=2))
def test_arbitrary_jobs_are_checked(jid, origin, weight, n, cpu, after):
    from agora.protos.agora.v1 import resources_pb2, workload_pb2
    t = workload_pb2.Task(id="map", duration_s=1.0, instances=n, after=after,
                          demand=resources_pb2.Demand(resources=resources_pb2.Resources(
                              cpu_milli=cpu, mem_mib=1)))
    msg = workload_pb2.Job(id=jid, origin=origin, weight=weight, tasks=[t])
    _check_never_raises(op(submit_jobs=pb.SubmitJobs(jobs=[msg])), f"site:{origin}")


def test_an_id_in_another_sites_namespace_is_refused_and_the_site_keeps_its_ids():
    """A review: job ids are one namespace -- site a submitted the id site b meant to use
    next, and b's job was refused ("exists"). Ids '<site>:<name>' are that site's: no job of
    another origin takes one, whoever submits it; b's own are admitted."""
    r = Run()
    out = r("site:a", submit(job("b:train", "a")))
    assert out.accepted == 0 and out.rejections[0].field == "command.submit_jobs.jobs[0].id"
    # (said "site 'b''s namespace" once: two quotes)
    assert "in the namespace of site 'b' ('b:...')" in out.rejections[0].reason
    assert "'a:<name>'" in out.rejections[0].reason
    assert r("operator", submit(job("b:train", "a"))).accepted == 0   # by anyone
    assert r("site:b", submit(job("b:train", "b"))).accepted == 1
    assert r("site:a", submit(job("a:train", "a"))).accepted == 1
    assert r("site:a", submit(job("nosite:x", "a"))).accepted == 1   # no site of that name
    assert r.state.rejected["submit.namespace"] == 2


def test_an_end_naming_a_negative_run_is_refused_before_ordering():
    cmd = pb.Command(site_round=pb.SiteRound(site="b", ends=[end("j", "map", 0, run=-1)]))
    with pytest.raises(Refusal) as e:
        check_command(cmd, "site:b", "command")
    assert e.value.code.name == "INVALID_ARGUMENT"
    assert e.value.message.startswith("command.ends[0].run: -1; expected the run's version")

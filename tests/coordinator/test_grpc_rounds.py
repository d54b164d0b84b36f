"""A round's life over real gRPC on loopback (four `agora coordinator` replica processes):
the health service, jobs submitted and decided, the schedule read with f+1 matching answers,
a round a site stays silent in closed by the replicas' own votes (never a site's), a decision
that over-allocates a site rejected, a job cancelled (by its origin or the operator only), and
the CLI and the watch stream reading what was committed. The tests share one group and run in
order: the CLI and watch tests read what the first one committed."""

from __future__ import annotations

import asyncio
import time

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from agora.coordinator.client import CoordinatorError
from agora.protos.agora.v1 import coordinator_pb2 as pb
from tests.coordinator.grpc_helpers import (ROUND_TIMEOUT_S, close_round, completed, current_round,
                                            decision, job, run, settled)

pytestmark = pytest.mark.timeout(180)


def test_health_service_reports_serving_on_every_replica(group):
    for addr in group.config.replicas:
        with grpc.insecure_channel(addr) as ch:
            stub = health_pb2_grpc.HealthStub(ch)
            for svc in ("", "agora.v1.Coordinator", "agora.v1.Peer"):
                r = stub.Check(health_pb2.HealthCheckRequest(service=svc), timeout=5)
                assert r.status == health_pb2.HealthCheckResponse.SERVING


def test_submit_decide_and_read_the_schedule_with_f_plus_1_answers(group):
    async def go():
        async with group.client("site:east") as east, group.client("operator") as op:
            r = await east.submit_jobs([job("g1")])
            assert r.accepted == 1 and not r.rejections
            rnd = r.round
            t = await close_round(group, rnd, {
                "east": decision("east", rnd, ("g1", "map", 2, 5)),
                "west": decision("west", rnd, ("g1", "map", 4, 9))})
            # edge's decision closed the round: east's job placed at west is not edge's
            # business (read_scope.py), so edge's result says that it runs, not where
            assert [(a.site, a.node, a.instance_begin, a.instance_end, a.round) for a in
                    t.allocations] == [("", "", 0, 4, rnd)]
            q = await east.schedule(job_id="g1")      # east's own job: in full
            assert [(a.site, a.instance_begin, a.instance_end, a.round)
                    for a in q.schedule.allocations] == [("west", 0, 4, rnd)]
            t_version = q.schedule.allocations[0].version
            by_site = await op.schedule(site="west")
            assert any(a.job_id == "g1" for a in by_site.schedule.allocations)
            since = await op.schedule(since_version=t_version)
            assert [a.job_id for a in since.schedule.allocations] == ["g1"]
            task = await op.schedule(task=("g1", "map"))
            assert len(task.schedule.allocations) == 1
            async with group.client("site:west") as west:
                done = await west.submit_round(pb.SiteRound(
                    site="west", ends=completed("g1", "map", 0, 1, 2, 3)))
            assert done.accepted == 4
            st = await op.job_status("g1")
            assert [(x.task_id, x.done, x.open) for x in st.job_status.tasks] == \
                [("map", 4, 0), ("reduce", 0, 1)]
            led = await op.ledger()
            assert [tr.states for tr in next(j for j in led.jobs if j.job.id == "g1").tasks] \
                == [bytes([3, 3, 3, 3]), bytes([1])]
            # every replica holds the same schedule
            ss = await settled(op, lambda ss: len({(s.allocations, s.round) for s in ss}) == 1)
            assert ss[0].allocations == 1
    run(go())


def test_a_round_a_site_stays_silent_in_is_closed_by_the_replicas_votes(group):
    """Only edge can hold the job; west also decides (it can too), east decides nothing.
    The replicas' round timers fire and f+1 of their CloseRound votes close the round."""
    async def go():
        async with group.client("site:edge") as edge, group.client("operator") as op:
            r = await edge.submit_jobs([job("quiet", "edge", n=1)])
            rnd = r.round
            await edge.submit_round(decision("edge", rnd, ("quiet", "map", 1, 3)))
            t0 = time.monotonic()
            while await current_round(group) == rnd and time.monotonic() - t0 < 30:
                await asyncio.sleep(0.1)
            waited = time.monotonic() - t0
            assert await current_round(group) == rnd + 1, "the replicas did not close it"
            assert ROUND_TIMEOUT_S - 0.1 <= waited < ROUND_TIMEOUT_S + 10, waited
            rows = (await op.schedule(job_id="quiet")).schedule.allocations
            assert [(a.site, a.round) for a in rows] == [("edge", rnd)]
    run(go())


def test_a_decision_that_over_allocates_a_site_is_rejected_end_to_end(group):
    async def go():
        async with group.client("site:edge") as edge, group.client("operator") as op:
            # edge has one 16-core node; 9 instances of 2 cores would need 18.
            await edge.submit_jobs([job("big", "edge", n=9)])
            rnd = await current_round(group)
            before = (await op.schedule(site="edge")).schedule.allocations
            r = await edge.submit_round(decision("edge", rnd, ("big", "map", 9, 7)))
            assert r.accepted == 0
            assert r.rejections[0].field == "command.site_round.bids[0].instances"
            assert "over-allocate site 'edge'" in r.rejections[0].reason
            assert (await op.schedule(site="edge")).schedule.allocations == before
            await settled(op, lambda ss: all(any(
                c.name == "bid.over_allocation" for c in s.schedule_rejected) for s in ss))
    run(go())


@pytest.mark.timeout(90)
def test_cancel_job_stops_running_instances_and_another_sites_cancel_is_refused(group):
    async def go():
        async with group.client("site:east") as east, group.client("site:west") as west, \
                group.client("operator") as op:
            r = await east.submit_jobs([job("cx"), job("cy", n=1)])
            assert r.accepted == 2
            await close_round(group, r.round, {
                "east": decision("east", r.round, ("cx", "map", 2, 5))})
            rows = (await op.schedule(job_id="cx")).schedule.allocations
            assert sum(a.instance_end - a.instance_begin for a in rows) == 2
            with pytest.raises(CoordinatorError) as e:
                await west.cancel_job("cx")
            assert e.value.code == grpc.StatusCode.FAILED_PRECONDITION
            assert e.value.message.startswith("command.cancel_job.job_id: ")
            assert "may not cancel job 'cx'" in e.value.message
            assert (await op.job_status("cx")).job_status.outcome == "pending"
            res = await east.cancel_job("cx", "not needed")
            assert res.accepted == 1 and not res.rejections
            await op.cancel_job("cy")
            async for u in op.watch(res.version):      # what the sites see
                if u.cancelled:
                    break
            assert [(c.job_id, c.reason) for c in u.cancelled] == [("cx", "not needed")]
            assert [(c.kind, c.site, c.instance_end - c.instance_begin) for c in u.changes] \
                == [("cancelled", "east", 1), ("cancelled", "east", 1)]
            st_ = (await op.job_status("cx")).job_status
            assert (st_.outcome, st_.reason) == ("cancelled", "not needed")
            assert all(x.running == 0 and x.open == 0 for x in st_.tasks)
            assert (await op.job_status("cy")).job_status.reason == "cancelled by operator"
            with pytest.raises(CoordinatorError) as e:
                await op.cancel_job("cy")
            assert "job 'cy' is already cancelled" in e.value.message
            with pytest.raises(CoordinatorError) as e:     # refused before ordering
                await op.cancel_job("cy", "x" * 201)
            assert e.value.code == grpc.StatusCode.INVALID_ARGUMENT
            assert "cancel_job.reason" in e.value.message
            async with group.client("replica:0") as rep:
                with pytest.raises(CoordinatorError) as e:
                    await rep.cancel_job("cy")
            assert e.value.code == grpc.StatusCode.PERMISSION_DENIED
    run(go())


def test_cli_schedule_get_and_status_answer_from_the_running_group(group, capsys):
    from agora.deploy.cli_coordinator import main
    cfg = str(group.tmp / "coordinator.yaml")
    assert main(["schedule", "get", "--config", cfg, "--job", "g1", "--json"]) == 0
    import json
    out = json.loads(capsys.readouterr().out)
    assert out["allocations"][0]["job"] == "g1"
    assert main(["status", "--config", cfg]) == 0
    text = capsys.readouterr().out
    assert "agreed by f+1: view=" in text
    assert main(["status", "--config", cfg, "--json"]) == 0
    st = json.loads(capsys.readouterr().out)
    r0 = st["replicas"][0]
    assert isinstance(r0["last_executed"], int) and "last_executed" in r0 and "n" in r0
    assert main(["schedule", "get", "--config", cfg, "--task", "nojob"]) == 2
    assert "JOB/TASK" in capsys.readouterr().err


def test_watch_streams_committed_changes_confirmed_by_f_plus_1(group):
    async def go():
        async with group.client("operator") as op:
            got = []
            async for u in op.watch(0):
                got.append(u)
                if any(a.job_id == "g1" for x in got for a in x.allocations) and \
                        any(c.job_id == "g1" and c.kind == "completed" for x in got
                            for c in x.changes):
                    break
            versions = [(u.version, u.sub) for u in got]
            assert versions == sorted(versions)
    run(go())

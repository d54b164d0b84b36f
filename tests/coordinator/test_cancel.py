"""Cancelling a job in the replicated schedule (``cancel_job``), and the ``require_run`` rule.

The operator, or a client of the job's origin site, cancels a pending job: what has not
started never will, its running instances stop at once (changes of kind "cancelled"), its
standing bids are dropped, and the update names the job in ``cancelled``. Anyone else is
refused naming the field; so are unknown and finished jobs and over-long reasons, changing
nothing. A site agent applying the coordinator's updates makes the same transitions; a
snapshot taken after a cancel restores to the same bytes."""

from __future__ import annotations

import hashlib
import random

from hypothesis import given
from hypothesis import strategies as st

from agora.agents.domain import Demand, Job, Task
from agora.agents.domain import Run as TaskRun
from agora.agents.ledger import GAVE_UP, Ledger
from agora.agents.ledger_codec import apply_update
from agora.coordinator.schedule_state import MAX_CANCEL_REASON, ScheduleState
from agora.protos.agora.v1 import coordinator_pb2 as pb
from tests.coordinator.state_helpers import (CLIENTS, SETTINGS, Run, _check_never_raises,
                                             allocate, cluster, decide, end, job, op, report,
                                             script, submit)


def cancel(job_id: str, reason: str = "") -> bytes:
    return op(cancel_job=pb.CancelJob(job_id=job_id, reason=reason))


def with_state(**kw) -> Run:
    r = Run()
    r.state = ScheduleState(cluster(), n_replicas=4, **kw)
    r.state.listeners.append(r.updates.append)
    return r


def refused(r: Run, client: str, data: bytes) -> pb.Rejection:
    """``data`` from ``client`` is refused with one rejection and changes nothing."""
    before, published = r.state.schedule_bytes(), len(r.updates)
    out = r(client, data)
    assert out.accepted == 0 and len(out.rejections) == 1, out
    assert r.state.schedule_bytes() == before and len(r.updates) == published
    return out.rejections[0]


# ---- the effect ----

def test_the_operator_cancels_a_job_with_open_and_running_instances():
    r = Run()
    r("site:a", submit(job("j", n=4)))
    free = r.state.capacity.free_cpu.tolist()
    allocate(r, "j", "b", 2)
    assert r.running("j", "map") == [0, 1]
    out = r("operator", cancel("j", "no longer needed"))
    assert out.accepted == 1 and not out.rejections and out.kind == "cancel_job"
    js = r.state.ledger.jobs["j"]
    assert (js.outcome, js.reason) == ("cancelled", "no longer needed")
    for ts in js.tasks:                              # open, waiting and running: all given up
        assert bytes(ts.states) == bytes([GAVE_UP]) * ts.task.instances
        assert not ts.placements and ts.outcome == "cancelled"
    assert r.state.capacity.free_cpu.tolist() == free and not r.state.ledger.pool
    u = r.updates[-1]
    assert [(c.job_id, c.reason) for c in u.cancelled] == [("j", "no longer needed")]
    assert [(c.task_id, c.instance_begin, c.site, c.kind, c.start_s, c.end_s)
            for c in u.changes] == [("map", 0, "b", "cancelled", 0.0, 0.0),
                                    ("map", 1, "b", "cancelled", 0.0, 0.0)]
    assert [row[6] for row in r.state.changes] == ["cancelled", "cancelled"]
    # nothing of it starts or ends afterwards
    out = r("site:b", decide("b", r.state.round, ("j", "map", 1, 1)))
    assert out.accepted == 0 and out.rejections[0].field == "command.site_round.bids[0].task_id"
    out = r("site:b", report("b", end("j", "map", 0)))
    assert out.accepted == 0 and out.rejections[0].field == "command.site_round.ends[0].instance"
    assert not r.state.expected_sites()


def test_the_origin_site_cancels_with_the_default_reason_and_others_are_refused():
    r = Run()
    r("site:a", submit(job("j", n=2, dag=False)))
    why = refused(r, "site:c", cancel("j"))
    assert why.field == "command.cancel_job.job_id"
    assert "may not cancel job 'j' (origin 'a')" in why.reason and "site:a" in why.reason
    why = refused(r, "replica:0", cancel("j"))
    assert why.field == "command.cancel_job" and "is a replica" in why.reason
    assert refused(r, "bench", cancel("j")).field == "command.cancel_job.job_id"
    assert r.state.ledger.jobs["j"].outcome == "pending"
    assert r.state.rejected["cancel.wrong_site"] == 2
    assert r.state.rejected["cancel.not_allowed"] == 1
    out = r("site:a/1", cancel("j"))                 # any client of the origin site
    assert out.accepted == 1
    assert r.state.ledger.jobs["j"].reason == "cancelled by site:a/1"
    assert [(c.job_id, c.reason) for c in r.updates[-1].cancelled] == \
        [("j", "cancelled by site:a/1")]
    assert not r.updates[-1].changes                 # nothing was running


def test_unknown_finished_and_over_long_cancels_are_refused_naming_the_field():
    r = Run()
    r("site:a", submit(job("done", n=1, dag=False), job("j", n=1, dag=False)))
    allocate(r, "done", "a", 1)
    r("site:a", report("a", end("done", "map", 0)))
    assert r.state.ledger.jobs["done"].outcome == "completed"
    why = refused(r, "operator", cancel("nope"))
    assert why.field == "command.cancel_job.job_id" and "no job 'nope'" in why.reason
    why = refused(r, "operator", cancel("done"))
    assert why.field == "command.cancel_job.job_id"
    assert "job 'done' is already completed" in why.reason
    why = refused(r, "operator", cancel("j", "x" * (MAX_CANCEL_REASON + 1)))
    assert why.field == "command.cancel_job.reason" and "at most 200" in why.reason
    assert r("operator", cancel("j", "y" * MAX_CANCEL_REASON)).accepted == 1
    why = refused(r, "operator", cancel("j"))
    assert "job 'j' is already cancelled" in why.reason
    assert r.state.rejected["cancel.finished"] == 2


def test_a_cancelled_jobs_standing_bids_are_dropped_and_the_round_goes_on():
    r = Run()
    r("site:a", submit(job("j", n=2, dag=False), job("k", n=1, dag=False)))
    r("site:a", decide("a", 0, ("j", "map", 2, 9), ("k", "map", 1, 1)))
    r("operator", cancel("j"))
    assert [o.job_id for o in r.state.parts["a"].offers] == ["k"]
    assert [b.task.key for b in r.state.parts["a"].bids] == [("k", "map")]
    r("site:b", decide("b", 0))
    out = r("site:c", decide("c", 0))
    assert r.state.round == 1 and [a.job_id for a in out.allocations] == ["k"]


def test_the_last_decision_missing_only_for_the_cancelled_job_closes_the_round():
    """c alone can hold j (12 cores): once j is cancelled no one waits for c."""
    r = Run()
    r("operator", submit(job("j", "c", n=1, cpu=12000, dag=False),
                         job("k", n=1, gpu=500, dag=False)))       # k: only a's gpu node
    assert r.state.expected_sites() == ["a", "c"]
    r("site:a", decide("a", 0, ("k", "map", 1, 1)))
    assert r.state.round == 0
    out = r("operator", cancel("j"))
    assert r.state.round == 1 and [a.job_id for a in out.allocations] == ["k"]


# ---- snapshot, determinism, the agents' copy ----

def test_snapshot_after_a_cancel_restores_to_the_same_state_and_goes_on_identically():
    a, b = Run(), Run()
    a("site:a", submit(job("j", n=4), job("k", n=2, dag=False)))
    allocate(a, "j", "b", 2)
    a("site:a", decide("a", a.state.round, ("j", "map", 1, 3), ("k", "map", 1, 1)))
    a("operator", cancel("j", "stop"))                # a's bid for j stands no more
    snap = a.state.snapshot()
    b.state.restore(snap)
    b.seq = a.seq
    b.state.check_invariants()
    assert hashlib.sha256(b.state.snapshot()).digest() == hashlib.sha256(snap).digest()
    assert b.state.ledger.jobs["j"].outcome == "cancelled"
    assert b.state.changes == a.state.changes
    for client, data in (("site:b", decide("b", a.state.round)),
                         ("site:c", decide("c", a.state.round)),
                         ("operator", cancel("k"))):
        assert a(client, data) == b(client, data)
    assert a.state.snapshot() == b.state.snapshot()


def test_scripts_with_cancels_give_the_same_bytes_and_survive_a_restore_midway():
    cmds = script(random.Random(5), 240)
    cmds[80:80] = [("site:a", lambda st: cancel("j1", "midway"))]
    cmds[160:160] = [("site:c/1", lambda st: cancel("j2")), ("operator", lambda st: cancel("j0"))]
    a, b, c = Run(), Run(), Run()
    for client, mk in cmds[:120]:
        assert a(client, mk(a.state)) == b(client, mk(b.state))
    c.state.restore(a.state.snapshot())
    c.seq = a.seq
    for client, mk in cmds[120:]:
        out = a(client, mk(a.state))
        assert out == b(client, mk(b.state)) == c(client, mk(c.state))
    assert a.state.snapshot() == b.state.snapshot() == c.state.snapshot()
    outcomes = [js.outcome for js in a.state.ledger.jobs.values()]
    assert "pending" not in outcomes and "cancelled" in outcomes


def test_an_agent_applying_the_updates_makes_the_coordinators_transitions():
    r = Run()
    r("operator", submit(job("j", n=4), job("k", n=2), job("m", "c", n=3, dag=False)))
    allocate(r, "j", "b", 2)
    allocate(r, "k", "a", 2, r.state.round)
    allocate(r, "m", "c", 2, r.state.round)
    r("site:a", report("a", end("k", "map", 0), end("k", "map", 1, "failed", "exit 1")))
    r("operator", cancel("j", "by hand"))             # two running on b
    r("site:c", cancel("m"))                          # two running on c, one open
    allocate(r, "k", "b", 1, r.state.round)
    r("site:b", report("b", end("k", "map", 1)))
    assert sum(c.kind == "cancelled" for u in r.updates for c in u.changes) == 4
    st_ = r.state
    agent = Ledger(max_attempts=st_.cluster.faults.max_attempts)
    for u in r.updates:
        apply_update(agent, u, st_.site_index, st_.node_index)
    mine = st_.ledger
    assert list(agent.jobs) == list(mine.jobs)
    for jid, js in mine.jobs.items():
        other = agent.jobs[jid]
        assert (other.outcome, other.reason, other.completion) == \
            (js.outcome, js.reason, js.completion)
        for a, b in zip(js.tasks, other.tasks):
            assert bytes(a.states) == bytes(b.states), (jid, a.task.id)
            assert {i: p[0] for i, p in a.placements.items()} == \
                {i: p[0] for i, p in b.placements.items()}
            assert (a.open, a.running, a.done, a.failed, a.failures, a.outcome, a.reason) == \
                (b.open, b.running, b.done, b.failed, b.failures, b.outcome, b.reason)
            assert (a in mine.pool) == (b in agent.pool)
    assert agent.instances_gave_up == mine.instances_gave_up
    assert agent.gave_up == mine.gave_up


# ---- require_run ----

def running_job(jid: str, *, run_reduce: bool = True) -> Job:
    sh = TaskRun(argv=("sh", "-c", "sleep 1"))
    return Job(jid, 0.0, "a", (Task("map", 10.0, Demand(1000, 1024), instances=2, run=sh),
                               Task("reduce", 5.0, Demand(500, 512), after=("map",),
                                    run=sh if run_reduce else None)))


def test_require_run_refuses_a_task_without_run_naming_it_and_admits_one_with_runs():
    r = with_state(require_run=True)
    out = r("operator", submit(running_job("ok"), running_job("half", run_reduce=False),
                               job("sim")))
    assert out.accepted == 1 and list(r.state.ledger.jobs) == ["ok"]
    assert [x.field for x in out.rejections] == [
        "command.submit_jobs.jobs[1].tasks[1].run", "command.submit_jobs.jobs[2].tasks[0].run"]
    assert "task 'reduce' has no run" in out.rejections[0].reason
    assert "run: {argv: [...]}" in out.rejections[0].reason
    assert r.state.rejected["submit.no_run"] == 2
    assert r.state.ledger.jobs["ok"].job.tasks[0].run.argv == ("sh", "-c", "sleep 1")
    off = with_state()                                # the default admits both
    assert off("operator", submit(running_job("half", run_reduce=False), job("sim"))).accepted == 2


def test_require_run_survives_a_restore():
    r = with_state(require_run=True)
    r("operator", submit(running_job("ok")))
    r.state.restore(r.state.snapshot())
    assert r("operator", submit(job("sim"))).rejections[0].field == \
        "command.submit_jobs.jobs[0].tasks[0].run"


# ---- no bytes can raise ----

@SETTINGS
@given(job_id=st.one_of(st.sampled_from(["j0", "j1", "j2", ""]), st.text(max_size=4)),
       reason=st.one_of(st.text(max_size=8), st.text(min_size=195, max_size=205)),
       client=st.sampled_from(CLIENTS + ["site:c/3", "bench"]))
def test_arbitrary_cancels_are_checked(job_id, reason, client):
    _check_never_raises(cancel(job_id, reason), client)


def test_a_reason_with_control_characters_is_refused_before_ordering():
    """A probe: a site's cancel reason holding an escape sequence was taken, and ``agora
    jobs`` then cleared the operator's screen and printed a made-up line. The replicas'
    check before ordering refuses it (cancel and remove alike), naming the field."""
    import pytest

    from agora.coordinator.validate import Refusal, check_command

    for kind, msg in (("cancel_job", pb.CancelJob(job_id="j", reason="ok\x1b[2J fake")),
                      ("remove_site", pb.RemoveSite(site="b", reason="gone\nall done"))):
        with pytest.raises(Refusal) as e:
            check_command(pb.Command(**{kind: msg}), "operator", f"command.{kind}")
        assert e.value.code.name == "INVALID_ARGUMENT"
        assert f"command.{kind}.reason: holds the control character" in str(e.value), e.value
    check_command(pb.Command(cancel_job=pb.CancelJob(job_id="j", reason="plain, ünïcode ok")),
                  "operator", "command.cancel_job")



def test_a_cancelled_run_is_killed_naming_the_cancel():
    """A probe: an instance ``agora cancel`` killed read "the committed schedule no longer
    places it here" in ``agora jobs``; the site now kills it naming the cancel and its
    reason (``runtime._why_not_placed``, what the runner records as the run's end)."""
    from agora.agents.cluster.runtime import _why_not_placed

    r = Run()
    r("site:a", submit(job("j", n=2, dag=False), job("k", n=1, dag=False)))
    allocate(r, "j", "a", 2)
    ts = r.state.ledger.tasks[("j", "map")]
    assert _why_not_placed(ts) == "the committed schedule no longer places it here"
    r("operator", cancel("j", "probe cancel"))
    assert _why_not_placed(ts) == "the job was cancelled: probe cancel"
    assert _why_not_placed(None) == "the committed schedule no longer places it here"
    # a site running another site's job reads no reason of it (the read scope): no "...: "
    ts.job.reason = ""
    assert _why_not_placed(ts) == "the job was cancelled"

"""The one ledger of task instances (agents/ledger.py): transitions, what gives up and what
does not, and the record round trip a site agent rebuilds its view with."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agora.agents.ledger import DONE, GAVE_UP, OPEN, RUNNING, WAITING, Ledger
from agora.agents.ledger_codec import job_record_bytes, restore_job
from agora.protos.agora.v1 import coordinator_pb2 as pb
from tests.simkit import job, task


def dag():
    return job("j", 5.0, "a", task("map", 10.0, 1, instances=3),
               task("reduce", 4.0, 1, instances=1, after=("map",)))


def test_admission_opens_the_roots_and_completion_opens_the_children():
    led = Ledger(max_attempts=2)
    js = led.admit(dag(), 0, 5.0)
    m, r = js.by_id["map"], js.by_id["reduce"]
    assert list(m.states) == [OPEN] * 3 and list(r.states) == [WAITING]
    assert m.ready_at == 5.0 and r.ready_at is None and js.work_left == 34.0
    for i in m.open_indices(3):
        led.start(m, i, node=0)
    assert m.open == 0 and m not in led.pool and m.running == 3
    for i in range(3):
        led.complete(m, i, 20.0 + i)
    assert m.outcome == "completed" and r.outcome == "open" and r.ready_at == 22.0
    led.start(r, 0, node=1)
    led.complete(r, 0, 30.0)
    assert js.outcome == "completed" and js.completion == 30.0 and js.work_left == 0.0


def test_a_failed_attempt_reopens_until_max_attempts_then_the_job_gives_up():
    led = Ledger(max_attempts=2)
    js = led.admit(dag(), 0, 0.0)
    m = js.by_id["map"]
    led.start(m, 1, node=0)
    _, reopened = led.fail(m, 1, 3.0, count=True, reason="exit 1")
    assert reopened and m.states[1] == OPEN and m.failures == {1: 1}
    led.start(m, 0, node=0)                   # another instance, running when the task fails
    led.start(m, 1, node=0)
    _, reopened = led.fail(m, 1, 4.0, count=True, reason="exit 1")
    assert not reopened and m.outcome == "failed" and js.outcome == "failed"
    assert m.states[1] == GAVE_UP and m.states[2] == GAVE_UP and m.states[0] == RUNNING
    assert js.by_id["reduce"].outcome == "failed"          # downstream gives up too
    led.complete(m, 0, 5.0)                   # it ends fine, but its task already gave up
    assert m.states[0] == DONE and m.outcome == "failed" and not led.pool
    assert led.instances_gave_up == {"failed": 3}          # 2 of map + 1 of reduce


def test_a_lost_run_is_requeued_without_counting_an_attempt():
    led = Ledger(max_attempts=1)
    js = led.admit(dag(), 0, 0.0)
    m = js.by_id["map"]
    for _ in range(5):
        led.start(m, 0, node=0)
        _, reopened = led.fail(m, 0, 1.0, count=False, reason="node down")
        assert reopened
    assert m.failures == {} and m.outcome == "open"


def test_cancel_gives_up_what_has_not_started_and_returns_what_runs():
    led = Ledger()
    js = led.admit(dag(), 0, 0.0)
    m = js.by_id["map"]
    led.start(m, 2, node=0)
    running = led.cancel(js, "by the operator")
    assert [(t.task.id, i) for t, i in running] == [("map", 2)]
    assert js.outcome == "cancelled" and not led.pool
    _, reopened = led.fail(m, 2, 1.0, count=False, reason="killed")
    assert not reopened and m.states[2] == GAVE_UP


def test_a_failed_job_starts_nothing_more_and_what_still_runs_can_be_cancelled():
    # a probe: a job reported failed went on starting instances of its other tasks (and of
    # their children) for seconds after `agora submit --follow` had said "failed"
    led = Ledger(max_attempts=1)
    js = led.admit(job("j", 0.0, "a", task("x", 1.0, 1), task("y", 1.0, 1, instances=3),
                       task("z", 1.0, 1, after=("y",))), 0, 0.0)
    x, y, z = js.by_id["x"], js.by_id["y"], js.by_id["z"]
    led.start(x, 0, node=0)
    led.start(y, 0, node=0)
    led.fail(x, 0, 1.0, count=True, reason="exit 3")
    assert js.outcome == "failed" and "exit 3" in js.reason
    # y's instances not started and its child z never start; y[0] runs on
    assert (y.outcome, z.outcome) == ("cancelled", "cancelled") and not led.pool
    assert list(y.states) == [RUNNING, GAVE_UP, GAVE_UP] and "the job failed: task x" in y.reason
    assert Ledger.cancellable(js)
    running = led.cancel(js, "stop it")
    assert [(t.task.id, i) for t, i in running] == [("y", 0)]
    assert js.outcome == "failed" and "exit 3" in js.reason     # the first outcome stays
    led.fail(y, 0, 2.0, count=False, reason="cancelled")
    assert not Ledger.cancellable(js) and led.cancel(js, "again") == []



def test_a_task_whose_every_instance_completed_after_its_job_failed_completed():
    # a probe: a task running when its job failed finished with exit 0, and read "cancelled"
    led = Ledger(max_attempts=1)
    js = led.admit(job("j", 0.0, "a", task("x", 1.0, 1), task("side", 1.0, 1, instances=2)),
                   0, 0.0)
    x, side = js.by_id["x"], js.by_id["side"]
    led.start(x, 0, node=0)
    led.start(side, 0, node=0)
    led.start(side, 1, node=0)
    led.fail(x, 0, 1.0, count=True, reason="exit 3")
    assert (js.outcome, side.outcome) == ("failed", "cancelled")
    led.complete(side, 0, 2.0)
    assert side.outcome == "cancelled"                    # one still runs
    led.complete(side, 1, 3.0)
    assert (side.outcome, side.reason) == ("completed", "")
    # the job keeps its end; the task counts as done, as a ledger restored from records
    # counts it (tests/coordinator/test_restored_ledger_counts.py)
    assert js.outcome == "failed" and js.done_tasks == 1

ops = st.lists(st.tuples(st.sampled_from(["start", "complete", "fail", "lose"]),
                         st.integers(0, 3), st.integers(0, 5)), max_size=60)


@settings(max_examples=150, deadline=None)
@given(ops)
def test_a_recorded_ledger_restores_to_the_same_states_and_pool(script):
    led = Ledger(max_attempts=3)
    jobs = [led.admit(job(f"j{k}", float(k), "a", task("a", 2.0, 1, instances=3),
                          task("b", 1.0, 1, instances=2, after=("a",))), 0, float(k))
            for k in range(3)]
    tasks = [t for js in jobs for t in js.tasks]
    for op, which, inst in script:
        ts = tasks[which % len(tasks)]
        i = inst % ts.task.instances
        if op == "start" and ts.states[i] == OPEN:
            led.start(ts, i, node=which % 2, slots=((0, 500),) if inst % 2 else ())
        elif ts.states[i] == RUNNING:
            if op == "complete":
                led.complete(ts, i, 9.0)
            else:
                led.fail(ts, i, 9.0, count=op == "fail")
    again = Ledger(max_attempts=3)
    for js in jobs:
        rec = pb.JobRecord.FromString(job_record_bytes(js, 1))
        restore_job(again, rec, {"a": 0}, 2, "jobs")
    for js in jobs:
        other = again.jobs[js.job.id]
        assert (other.outcome, other.completion, other.work_left) == \
            (js.outcome, js.completion, pytest.approx(js.work_left))
        assert (other.running, other.held) == (js.running, js.held)   # kept, not summed
        for a, b in zip(js.tasks, other.tasks):
            assert bytes(a.states) == bytes(b.states) and a.placements == b.placements
            assert (a.open, a.running, a.done, a.failed, a.failures, a.outcome, a.ready_at) == \
                (b.open, b.running, b.done, b.failed, b.failures, b.outcome, b.ready_at)
            assert (a in led.pool) == (b in again.pool)
    assert again.instances_gave_up == led.instances_gave_up


def test_an_inconsistent_record_is_refused_naming_the_field():
    led = Ledger()
    js = led.admit(dag(), 0, 0.0)
    rec = pb.JobRecord.FromString(job_record_bytes(js, 1))
    rec.tasks[0].states = bytes([RUNNING, OPEN, OPEN])      # running, but placed nowhere
    with pytest.raises(ValueError, match=r"jobs\[0\]\.tasks"):
        restore_job(Ledger(), rec, {"a": 0}, 2, "jobs[0]")

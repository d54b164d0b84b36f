"""What a replica admits of a request beyond PBFT's order, each found by a probe of a live
service: timestamps far ahead (coordinator/request_clock.py), copies and stale read-only
requests, a job of too many tasks refused before it is parsed, refusal messages that fit in
gRPC's status header, a client that gets past the other processes signing as it, and a
schedule query for ``all: false`` (it read everything)."""

from __future__ import annotations

import grpc
import pytest

from agora.agents.domain import Demand, Job, Task
from agora.coordinator.client import CoordinatorError
from agora.coordinator.request_clock import (WINDOW_US, ReadOnce, ahead_refusal,
                                             stale_floor)
from agora.coordinator.schedule_rules import MAX_TASKS_PER_JOB
from agora.coordinator.validate import MAX_REFUSAL_CHARS, Refusal, check_command, invalid
from agora.protos.agora.v1 import coordinator_pb2 as pb
from agora.protos.agora.v1 import workload_pb2
from agora.protos.convert import ProtoError, job_from_proto, job_to_proto

NOW = 1_800_000_000_000_000


def test_an_ordered_request_far_ahead_of_the_clock_is_refused_naming_the_field():
    assert ahead_refusal(NOW + WINDOW_US, NOW) is None
    assert ahead_refusal(5, NOW) is None                 # old: PBFT's floor decides
    why = ahead_refusal(2**63 - 1, NOW).message
    assert ahead_refusal(2**63 - 1, NOW).kind == "timestamp_ahead"
    assert why.startswith("envelope.payload.request.timestamp: 9223372036854775807 is ")
    assert "ahead of the replicas' clocks" in why and "check the client's clock" in why


def test_a_read_only_request_is_admitted_once_within_the_window():
    once = ReadOnce()
    assert once.refusal("site:a", NOW, NOW) is None
    copy = once.refusal("site:a", NOW, NOW + 5)
    assert copy.kind == "read_copy" and "a copy of a read-only request" in copy.message
    assert once.refusal("site:b", NOW, NOW) is None      # another client's own
    assert once.refusal("site:a", NOW + 1, NOW + 5) is None
    for far in (NOW - WINDOW_US - 1, NOW + WINDOW_US + 1):
        assert "s from the replicas' clocks" in once.refusal("site:a", far, NOW).message


def test_read_only_timestamps_kept_are_bounded_and_the_floor_rises():
    once = ReadOnce(most=3)
    for k in range(5):
        assert once.refusal("site:a", NOW + k, NOW) is None
    order, seen = once._kept["site:a"]
    assert len(order) == len(seen) == 3
    for k in range(5):                       # forgotten ones are refused by the floor
        assert once.refusal("site:a", NOW + k, NOW) is not None
    # timestamps past the window are dropped as time goes on
    assert once.refusal("site:a", NOW + 2 * WINDOW_US, NOW + 2 * WINDOW_US) is None
    assert len(once._kept["site:a"][0]) == 1


def test_a_stale_refusal_names_the_floor_a_client_restamps_past():
    def err(code, message):
        return CoordinatorError(code, message, {})
    stale = err(grpc.StatusCode.FAILED_PRECONDITION, "envelope.payload.request.timestamp: 5 "
                "is older than the client's last executed request (1234); expected a larger")
    assert stale_floor(stale) == 1234
    assert stale_floor(err(grpc.StatusCode.FAILED_PRECONDITION,
                           "envelope.payload.request.timestamp: 5 is the timestamp of "
                           "another request")) == 0
    assert stale_floor(err(grpc.StatusCode.INVALID_ARGUMENT,
                           "envelope.payload.request.timestamp: far ahead")) is None


def chain(n: int, last_after: str) -> workload_pb2.Job:
    msg = job_to_proto(Job("big", 0.0, "a", tuple(
        Task(f"t{k}", 1.0, Demand(1, 1), after=(f"t{k - 1}",) if k else ())
        for k in range(n))))
    msg.tasks[-1].after[:] = [last_after]
    return msg


def test_a_job_of_too_many_tasks_is_refused_before_it_is_parsed():
    # 30,000 chained tasks took each replica ~30 s to check before ordering (a quadratic
    # search), stalling every replica: the count is refused first -- here even though the
    # job is also malformed (an unknown parent), which a parse would have named
    cmd = pb.Command(submit_jobs=pb.SubmitJobs(jobs=[chain(MAX_TASKS_PER_JOB + 1, "nope")]))
    with pytest.raises(Refusal) as e:
        check_command(cmd, "operator", "op.submit_jobs")
    assert e.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert e.value.message == (f"op.submit_jobs.jobs[0].tasks: {MAX_TASKS_PER_JOB + 1} tasks; "
                               f"the limit is {MAX_TASKS_PER_JOB} per job")


def test_an_unknown_parent_is_named_with_a_bounded_message():
    with pytest.raises(ProtoError) as e:
        job_from_proto(chain(5000, "nope"))
    said = str(e.value)
    assert said.startswith("job.tasks[4999].after[0]: unknown task 'nope'")
    assert "the job's 5000 task ids ('t0', 't1'" in said and len(said) < 400


def test_a_refusal_message_fits_in_a_status_header_and_keeps_the_field_first():
    r = invalid("op.submit_jobs.jobs[0].id", "x" * 100_000, "a short id")
    assert len(r.message) <= MAX_REFUSAL_CHARS
    assert r.message.startswith("op.submit_jobs.jobs[0].id: xxx")
    assert r.message.endswith("(100,048 characters in all)")


def test_a_schedule_query_for_all_false_is_refused_not_read_as_everything():
    cmd = pb.Command(query=pb.Query(schedule=pb.ScheduleQuery(all=False)))
    with pytest.raises(Refusal) as e:
        check_command(cmd, "site:a", "op.query")
    assert e.value.message.startswith("op.query.schedule.all: false; expected true")
    check_command(pb.Command(query=pb.Query(schedule=pb.ScheduleQuery(all=True))), "site:a",
                  "op.query")

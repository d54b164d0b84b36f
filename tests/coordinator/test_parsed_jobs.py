"""A job is parsed once per replica (coordinator/parsed_jobs.py): the checks before
ordering keep the parse, execution takes it back; a replica that never checked the request
parses it itself and ends in the same state, byte for byte; the cache stays bounded."""

from __future__ import annotations

from agora.agents.domain import Demand, Job, Task
from agora.coordinator import parsed_jobs
from agora.coordinator.parsed_jobs import ParsedJobs
from agora.coordinator.schedule_state import ScheduleState
from agora.coordinator.validate import check_command
from agora.protos.agora.v1 import coordinator_pb2 as pb
from agora.protos.convert import job_to_proto
from tests.coordinator.state_helpers import cluster


def submission(n: int) -> pb.Command:
    jobs = [Job(f"j{k}", 0.0, "a", (Task("map", 5.0, Demand(1000, 512), instances=3),
                                     Task("red", 1.0, Demand(500, 256), after=("map",))))
            for k in range(n)]
    return pb.Command(submit_jobs=pb.SubmitJobs(jobs=[job_to_proto(j) for j in jobs]))


def test_execution_takes_the_checked_parse_and_an_unchecked_replica_agrees(monkeypatch):
    cache = ParsedJobs()
    monkeypatch.setattr(parsed_jobs, "JOBS", cache)
    monkeypatch.setattr("agora.coordinator.validate.JOBS", cache)
    monkeypatch.setattr("agora.coordinator.job_commands.JOBS", cache)
    cmd = submission(5)
    check_command(cmd, "site:a", "op.submit_jobs")        # the receiving replica's check
    assert len(cache) == 5 and cache.hits == 0
    checked = ScheduleState(cluster())
    checked.execute("site:a", cmd.SerializeToString(), 1)
    assert cache.hits == 5 and len(cache) == 0
    other = ScheduleState(cluster())                       # never saw the request itself
    other.execute("site:a", cmd.SerializeToString(), 1)
    assert cache.misses == 5
    assert other.snapshot() == checked.snapshot()
    again = ScheduleState(cluster())
    again.restore(checked.snapshot())
    assert again.snapshot() == checked.snapshot()


def test_the_cache_is_bounded_by_entries_and_bytes():
    cache = ParsedJobs(max_entries=3, max_bytes=10**9)
    for jm in submission(10).submit_jobs.jobs:
        cache.check(jm, "x")
    assert len(cache) == 3
    small = ParsedJobs(max_entries=100, max_bytes=200)
    for jm in submission(10).submit_jobs.jobs:
        small.check(jm, "x")
    assert small._bytes <= 200 and len(small) >= 1

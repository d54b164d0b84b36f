"""A submission the replicas stop answering part-way (``deploy.api.submit_chunks``): the
chunk that got no answer may have been ordered all the same, so the replicas are asked which
of its jobs exist, and ``SubmissionCut`` tells the admitted jobs from those to submit again
and those it could not tell. A probe found that under load such a submission said only
"retry" -- and a retry of jobs already admitted was refused as "job exists". The client here
is a fake (it stands for the group's f+1 answers); the real client's errors are the ones
``CoordinatorError`` carries."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from agora.coordinator.client import CoordinatorError
from agora.deploy.api import SubmissionCut, submit_chunks
from agora.deploy.cli import main
from agora.protos.agora.v1 import coordinator_pb2 as pb
from tests.simkit import job, task


class FakeGroup:
    """Admits the first ``admit_first`` submit commands; the next one is ordered (its jobs
    exist) but answered by too few replicas; ``silent`` ids get no status answer either."""

    def __init__(self, admit_first: int, silent: set[str] = frozenset(), ordered: bool = True):
        self.admit_first, self.silent, self.ordered = admit_first, silent, ordered
        self.exists: set[str] = set()
        self.commands = 0

    async def submit_jobs(self, chunk):
        self.commands += 1
        if self.commands <= self.admit_first or self.ordered:
            self.exists.update(j.id for j in chunk)
        if self.commands <= self.admit_first:
            return pb.Result(accepted=len(chunk))
        raise CoordinatorError(grpc.StatusCode.UNAVAILABLE, "too few replicas answered",
                               {0: "UNAVAILABLE: connection attempt timed out"})

    async def job_status(self, job_id: str) -> pb.QueryResult:
        if job_id in self.silent:
            raise CoordinatorError(grpc.StatusCode.UNAVAILABLE, "too few replicas answered")
        if job_id in self.exists:
            return pb.QueryResult(job_status=pb.JobStatus(job_id=job_id))
        return pb.QueryResult(error=pb.Rejection(field="job_status.job_id",
                                                 reason=f"no job {job_id!r}"))


def jobs(n: int) -> list:
    return [job(f"j{i}", 0.0, "a", task("t", 1.0, 1)) for i in range(n)]


def test_a_chunk_answered_by_too_few_replicas_is_settled_by_asking_which_jobs_exist():
    g = FakeGroup(admit_first=1, silent={"j1003"})     # chunks of 1,000, 1,000 and 5 jobs
    with pytest.raises(SubmissionCut) as ei:
        asyncio.run(submit_chunks(g, jobs(2005)))
    e = ei.value
    assert e.accepted == [f"j{i}" for i in range(2000) if i != 1003]
    assert e.missing == [f"j{i}" for i in range(2000, 2005)]   # the chunk never sent
    assert e.unknown == ["j1003"]
    assert "connection attempt timed out" in str(e) and "j1003" in str(e)
    assert "agora jobs --job" in str(e)


def test_a_group_that_stops_answering_is_not_asked_of_every_job():
    # each unanswered question waits out the client's timeout: asking all 1,000 jobs of a
    # chunk of a group that went away took minutes
    g = FakeGroup(admit_first=0, silent={f"j{i}" for i in range(1000)})
    asked = []
    status = g.job_status

    async def counted(job_id):
        asked.append(job_id)
        return await status(job_id)

    g.job_status = counted
    with pytest.raises(SubmissionCut) as ei:
        asyncio.run(submit_chunks(g, jobs(1000)))
    assert len(asked) <= 32
    assert ei.value.unknown == [f"j{i}" for i in range(1000)] and ei.value.accepted == []


def test_jobs_never_ordered_and_later_chunks_are_to_be_submitted_again():
    g = FakeGroup(admit_first=0, ordered=False)
    with pytest.raises(SubmissionCut) as ei:
        asyncio.run(submit_chunks(g, jobs(1500)))
    e = ei.value
    assert e.accepted == [] and e.unknown == []
    assert e.missing == [f"j{i}" for i in range(1500)]    # the unsent chunk too
    assert "submit them again" in str(e) and "and 1490 more" in str(e)


def test_a_refusal_that_is_not_a_lost_answer_is_raised_as_it_was():
    class Refusing(FakeGroup):
        async def submit_jobs(self, chunk):
            raise CoordinatorError(grpc.StatusCode.PERMISSION_DENIED, "not yours")

    with pytest.raises(CoordinatorError) as ei:
        asyncio.run(submit_chunks(Refusing(0), jobs(3)))
    assert not isinstance(ei.value, SubmissionCut)


def test_the_command_prints_one_line_and_exits_1(monkeypatch, tmp_path, capsys):
    import agora.deploy.cli_jobs as cli_jobs

    def cut(*a, **k):
        raise SubmissionCut(["a"], ["b"], [], [], "UNAVAILABLE: timed out")

    monkeypatch.setattr(cli_jobs, "run_live", cut)
    monkeypatch.setattr("agora.deploy.api.prepare_jobs", lambda *a: [])
    f = tmp_path / "j.jsonl"
    f.write_text("{}\n")

    class T:
        coordinator = object()

        def load_cluster(self):
            return None

        def serving(self):
            return True

    monkeypatch.setattr(cli_jobs, "target", lambda c: T())
    assert main(["submit", str(f)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "admitted (they run): a" in err[0] and "again): b" in err[0]

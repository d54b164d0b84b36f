"""A submission the replicas stop answering part-way (``deploy.api.submit_chunks``): the
chunk that got no answer may have been ordered all the same, so the replicas are asked which
of its jobs exist, and ``SubmissionCut`` tells the admitted jobs from those to submit again
and those it could not tell. A probe found that under load such a submission said only
"retry" -- and a retry of jobs already admitted was refused as "job exists". The client here
is a fake (it stands for the group's f+1 answers); the real client's errors are the ones
``CoordinatorError`` carries."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from types import SimpleNamespace

import grpc
import pytest

from agora.agents.domain import Run
from agora.coordinator.client import CoordinatorError
from agora.coordinator.config import CoordinatorConfig
from agora.deploy.submission import (CHUNK_BYTES, REQUEST_MARGIN, SubmissionCut,
                                     SubmissionRefused, submit_chunks)
from agora.deploy.cli import main
from agora.protos.agora.v1 import coordinator_pb2 as pb
from agora.protos.convert import job_to_proto
from tests.simkit import job, task


class FakeGroup:
    """Admits the first ``admit_first`` submit commands; the next one is ordered (its jobs
    exist) but answered by too few replicas; ``silent`` ids get no status answer either.
    ``sent``: the chunks it was sent; ``config`` and ``client_id`` as the real client's."""

    def __init__(self, admit_first: int, silent: set[str] = frozenset(), ordered: bool = True,
                 client_id: str = "operator", max_request_bytes: int = 4 * 1024 * 1024):
        self.admit_first, self.silent, self.ordered = admit_first, silent, ordered
        self.exists: set[str] = set()
        self.commands = 0
        self.sent: list[list] = []
        self.client_id = client_id
        self.config = CoordinatorConfig(replicas=tuple(f"127.0.0.1:{k}" for k in (1, 2, 3, 4)),
                                        max_request_bytes=max_request_bytes)

    async def submit_jobs(self, chunk):
        self.commands += 1
        self.sent.append(list(chunk))
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


def big_jobs(n: int, argv_bytes: int) -> list:
    """One-task jobs whose run's argv holds ``argv_bytes`` characters."""
    return [replace(j, tasks=(replace(j.tasks[0], run=Run(argv=("echo", "x" * argv_bytes))),))
            for j in jobs(n)]


def test_a_chunk_holds_what_one_request_takes_in_bytes():
    # a probe: 1,000 valid 10 KB jobs (10 MB) were one request, refused whole (4 MiB)
    g = FakeGroup(admit_first=100)
    accepted, rejected = asyncio.run(submit_chunks(g, big_jobs(1000, 10_000)))
    assert len(accepted) == 1000 and rejected == [] and len(g.sent) >= 10
    most = min(g.config.max_request_bytes - REQUEST_MARGIN, CHUNK_BYTES)
    for chunk in g.sent:
        assert sum(job_to_proto(j).ByteSize() for j in chunk) <= most


def test_a_job_larger_than_a_request_is_refused_by_name_and_the_others_are_sent():
    g = FakeGroup(admit_first=100, max_request_bytes=256 * 1024)
    js = big_jobs(3, 100) + big_jobs(1, 300_000)[:1]
    js[3] = replace(js[3], id="huge")
    accepted, rejected = asyncio.run(submit_chunks(g, js))
    assert accepted == ["j0", "j1", "j2"]
    assert [j for j, _ in rejected] == ["huge"]
    assert "bytes encoded" in rejected[0][1] and "max_request_bytes" in rejected[0][1]


def test_a_site_clients_job_of_another_origin_is_refused_by_name_and_the_others_are_sent():
    # a probe: the coordinator refuses the whole request for one such job; the file's other
    # jobs were lost, exit 1, no line named
    g = FakeGroup(admit_first=100, client_id="site:a/2")
    js = jobs(3)
    js[1] = replace(js[1], origin="b")
    accepted, rejected = asyncio.run(submit_chunks(g, js))
    assert accepted == ["j0", "j2"] and [j for j, _ in rejected] == ["j1"]
    assert rejected[0][1].startswith("field 'origin': client 'site:a/2' may only submit")
    assert all(j.origin == "a" for c in g.sent for j in c)
    # the operator submits for any origin
    g = FakeGroup(admit_first=100)
    assert asyncio.run(submit_chunks(g, js))[0] == ["j0", "j1", "j2"]


def test_a_chunk_refused_whole_after_others_were_admitted_says_which_were():
    # a probe: "the coordinator refused", exit 1, and the 1,000 jobs admitted before unsaid
    class RefusingSecond(FakeGroup):
        async def submit_jobs(self, chunk):
            if self.commands >= 1:
                raise CoordinatorError(grpc.StatusCode.RESOURCE_EXHAUSTED, "too big")
            return await super().submit_jobs(chunk)

    with pytest.raises(SubmissionRefused) as ei:       # a ValueError: bad input, exit 2
        asyncio.run(submit_chunks(RefusingSecond(100), jobs(1500)))
    e = ei.value
    assert isinstance(e, ValueError) and not isinstance(e, SubmissionCut)
    assert e.accepted == [f"j{i}" for i in range(1000)]
    assert e.missing == [f"j{i}" for i in range(1000, 1500)] and e.unknown == []
    assert "refused a part of the submission (too big)" in str(e)
    # the refusal's own words, not a replica's UNAVAILABLE, and the jobs refused by name
    # before sending kept (a review: both were lost)

    class RefusingFirst(FakeGroup):
        async def submit_jobs(self, chunk):
            raise CoordinatorError(grpc.StatusCode.INVALID_ARGUMENT, "a bad job",
                                   {3: "UNAVAILABLE: replica 3 is down", 0: "a bad job"})

    js = jobs(3)
    js[0] = replace(js[0], origin="b")
    with pytest.raises(SubmissionRefused) as ei:
        asyncio.run(submit_chunks(RefusingFirst(0, client_id="site:a"), js))
    assert "(a bad job)" in str(ei.value) and [j for j, _ in ei.value.rejected] == ["j0"]


def test_a_small_max_request_bytes_still_takes_jobs():
    # a review: under a limit of 64 KiB or less the 64 KiB margin refused every job
    g = FakeGroup(admit_first=100, max_request_bytes=16 * 1024)
    accepted, rejected = asyncio.run(submit_chunks(g, big_jobs(20, 1000)))
    assert len(accepted) == 20 and rejected == [] and len(g.sent) >= 2


def test_the_command_prints_one_line_and_exits_1(monkeypatch, tmp_path, capsys):
    import agora.deploy.cli_jobs as cli_jobs

    def cut(*a, **k):
        raise SubmissionCut(["a"], ["b"], [], [], "UNAVAILABLE: timed out")

    monkeypatch.setattr(cli_jobs, "run_live", cut)
    monkeypatch.setattr("agora.deploy.api.prepare_jobs", lambda *a: [])
    f = tmp_path / "j.jsonl"
    f.write_text("{}\n")

    class T:
        coordinator = SimpleNamespace(replicas=["127.0.0.1:1"])

        def load_cluster(self):
            return None

        def serving(self):
            return True

    monkeypatch.setattr(cli_jobs, "target", lambda c: T())
    assert main(["submit", str(f)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "admitted (they run): a" in err[0] and "again): b" in err[0]

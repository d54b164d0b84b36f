"""What ``agora submit`` (and ``agora.submit``) reports as submitted is what the replicas
admitted: ``deploy.submission.rejected_indices`` over the real state machine's results.

A probe found a refusal of the whole command (a client that may not submit) reported as
"submitted" with exit 0: only refusals naming ``jobs[i]`` were mapped to jobs, and the job
was lost without a word."""

from __future__ import annotations

from agora.deploy.submission import rejected_indices
from agora.protos.agora.v1 import coordinator_pb2 as pb
from tests.coordinator.state_helpers import Run, job, submit


def test_a_client_that_may_not_submit_has_every_job_refused_with_the_reason():
    r = Run()
    res = r("replica:1", submit(job("j1"), job("j2")))
    assert res.accepted == 0
    bad = rejected_indices(res, 2)
    assert sorted(bad) == [0, 1]
    assert all("may not submit" in why and "command.submit_jobs.jobs" in why
               for why in bad.values()), bad
    assert "j1" not in r.state.ledger.jobs


def test_refusals_of_single_jobs_are_mapped_to_those_jobs_only():
    r = Run()
    r("operator", submit(job("dup")))
    res = r("operator", submit(job("new"), job("dup"), job("other", origin="nowhere")))
    assert res.accepted == 1
    bad = rejected_indices(res, 3)
    assert sorted(bad) == [1, 2]
    assert "exists" in bad[1] and "unknown site" in bad[2]


def test_a_result_admitting_fewer_jobs_than_it_refused_none_of_counts_none_as_submitted():
    # a reply that neither refuses a job nor admits it (a faulty or older coordinator)
    res = pb.Result(kind="submit_jobs", accepted=1)
    bad = rejected_indices(res, 2)
    assert sorted(bad) == [0, 1] and "admitted 1 of the 2" in bad[0]
    assert rejected_indices(pb.Result(kind="submit_jobs", accepted=2), 2) == {}


def test_a_refused_job_is_named_by_its_line_in_the_file_and_its_own_field(tmp_path):
    # the refusal's jobs[i] counts the request's jobs (sorted by arrival), not the file's
    # lines: the job on line 2 was reported as jobs[3] (a probe)
    from agora.agents.workloads.native import read_jobs
    from agora.deploy.cli_jobs import refusal_line
    from tests.simkit import cluster, node, site

    p = tmp_path / "jobs.jsonl"
    p.write_text("# two jobs\n" + "".join(
        f'{{"id": "{j}", "arrival": {t}, "origin": "a", "tasks": [{{"id": "t", '
        f'"duration": 1, "demand": {{"cpu": 1, "mem": 8}}}}]}}\n' for j, t in (("late", 9),
                                                                              ("early", 0))))
    lines: dict[str, int] = {}
    wl = read_jobs(p, cluster(site("a", node("a", "n", 2))), job_lines=lines)
    assert [j.id for j in wl.jobs] == ["early", "late"] and lines == {"late": 2, "early": 3}
    assert refusal_line(p, lines["late"], "late", "command.submit_jobs.jobs[1].id: job "
                        "'late' exists") == f"{p}:2: job 'late' refused: field 'id': job " \
        "'late' exists"
    assert refusal_line(p, 3, "early", "command: the client may not submit") == \
        f"{p}:3: job 'early' refused: command: the client may not submit"

"""``agora submit`` reads and checks its jobs file before it looks for a running Agora: a bad
file is told at once (exit 2, file, line and field) even when nothing runs -- once, a user
started the service (minutes) only to learn then that the file was bad. A good file with
nothing running is exit 1, "nothing is running"."""

from __future__ import annotations

import json

import pytest

from agora.deploy.cli import main

RUN = {"argv": ["true"]}
GOOD = {"id": "j1", "arrival": 0, "origin": "dc-east",
        "tasks": [{"id": "t", "duration": 1, "demand": {"cpu": 0.5, "mem": 64}, "run": RUN}]}


def as_served(tmp_path, monkeypatch):
    """This test's fake service: ``agora submit`` takes an Agora as serving there (its
    coordinator a stand-in, its cluster the up config's); returns a jobs file of j1 and j2."""
    import dataclasses
    from types import SimpleNamespace

    from agora.deploy import cli_jobs, service_client

    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text(json.dumps(GOOD) + "\n" + json.dumps({**GOOD, "id": "j2"}) + "\n")

    def serving_target(config):
        t = service_client.target(config)
        return dataclasses.replace(t, coordinator=SimpleNamespace(
            load_cluster=t.up.load_cluster, replicas=["127.0.0.1:1"]))

    monkeypatch.setattr(service_client.Target, "serving", lambda self: True)
    monkeypatch.setattr(cli_jobs, "target", serving_target)
    return jobs


@pytest.mark.parametrize("job,field", [
    ({**GOOD, "id": ".."}, "field 'id'"),
    ({**GOOD, "origin": "nowhere"}, "field 'origin'"),
    ({**GOOD, "tasks": [{**GOOD["tasks"][0], "run": None}]}, "run"),
])
def test_a_bad_file_is_refused_naming_its_line_and_field_with_nothing_running(
        tmp_path, up, capsys, job, field):
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text(json.dumps(GOOD) + "\n" + json.dumps(job) + "\n")
    assert main(["submit", str(jobs), "--config", str(up)]) == 2
    err = capsys.readouterr().err
    assert f"{jobs}:2:" in err and field in err and "nothing is running" not in err, err


def test_a_missing_file_is_named_and_a_good_one_waits_for_agora(tmp_path, up, capsys):
    assert main(["submit", str(tmp_path / "none.jsonl"), "--config", str(up)]) == 2
    assert "none.jsonl: cannot read the file" in capsys.readouterr().err
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text(json.dumps(GOOD) + "\n")
    assert main(["submit", str(jobs), "--config", str(up)]) == 1
    assert "nothing is running" in capsys.readouterr().err


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n"])
def test_a_file_of_no_jobs_is_refused_not_submitted_as_nothing(tmp_path, up, capsys, text):
    # once, an empty (truncated) jobs file exited 0 having submitted nothing, silently
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text(text)
    assert main(["submit", str(jobs), "--config", str(up)]) == 2
    err = capsys.readouterr().err
    assert f"{jobs}: no jobs" in err and "nothing is running" not in err, err


@pytest.mark.parametrize("ends,code", [
    ({"j1": {"outcome": "completed"}, "j2": {"outcome": "completed"}}, 0),
    ({"j1": {"outcome": "completed"}, "j2": {"outcome": "failed"}}, 1),
    ({"j1": {"outcome": "completed"}}, 1),           # --timeout gave up with j2 running
    ({}, 1),
])
def test_follow_exits_0_only_when_every_job_completed(tmp_path, up, capsys, monkeypatch,
                                                      ends, code):
    """A fake service (this test's): ``run_live`` answers as a follow that ended with
    ``ends``. Giving up at --timeout with a job still running exited 0 (probe)."""
    from agora.deploy import cli_jobs

    jobs = as_served(tmp_path, monkeypatch)
    monkeypatch.setattr(cli_jobs, "run_live", lambda *a, **k: (["j1", "j2"], [], ends))
    assert main(["submit", str(jobs), "--follow", "--timeout", "1", "--json",
                 "--config", str(up)]) == code
    out = json.loads(capsys.readouterr().out)
    assert out["unfinished"] == [j for j in ("j1", "j2") if j not in ends]


def test_a_task_no_node_can_hold_is_refused_at_its_line_before_submission(tmp_path, up,
                                                                         capsys):
    """Refused by the coordinator, after submitting, as an internal field path and exit 1
    (probe); now by the file check, line and field, exit 2, nothing submitted."""
    big = {**GOOD, "id": "big", "tasks": [{**GOOD["tasks"][0],
                                            "demand": {"cpu": 100000, "mem": 64}}]}
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text(json.dumps(GOOD) + "\n" + json.dumps(big) + "\n")
    assert main(["submit", str(jobs), "--config", str(up)]) == 2
    err = capsys.readouterr().err
    assert f"{jobs}:2:" in err and "tasks[0].demand" in err and "fits no node" in err, err


def test_the_python_api_checks_the_file_first_too(tmp_path, up):
    # a probe: agora.submit() said "nothing is running" for a bad file, where the command
    # names its line and field
    from agora.agents.workloads.errors import InputError
    from agora.deploy import api
    from agora.deploy.service_client import NotRunning

    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text(json.dumps(GOOD) + "\n" + json.dumps({**GOOD, "origin": "nowhere"}) + "\n")
    with pytest.raises(InputError) as e:
        api.submit(jobs, config=str(up))
    assert e.value.line == 2 and "origin" in str(e.value)
    jobs.write_text(json.dumps(GOOD) + "\n")
    with pytest.raises(NotRunning):
        api.submit(jobs, config=str(up))


def test_follow_says_what_was_submitted_before_following(tmp_path, up, capsys, monkeypatch):
    """A probe: ``agora submit --follow`` printed nothing until the jobs ended, and never
    their ids. Now the submitted ids (and any refusal, once) come first. A fake service (this
    test's): the submission and the follow are stand-ins."""
    import asyncio

    from agora.deploy import cli_jobs, submission

    jobs = as_served(tmp_path, monkeypatch)

    async def submitted(client, js):
        return ["j1"], [("j2", "job 'j2' exists")]

    async def follow(client, config, ids, a, serving, renewed):
        print("FOLLOWING", flush=True)
        return {"j1": {"outcome": "completed"}}

    monkeypatch.setattr(submission, "submit_chunks", submitted)
    monkeypatch.setattr(cli_jobs, "_follow", follow)
    monkeypatch.setattr(cli_jobs, "run_live", lambda t, fn, *a: asyncio.run(fn(None)))
    assert main(["submit", str(jobs), "--follow", "--config", str(up)]) == 2   # j2 refused
    got = capsys.readouterr()
    assert got.out.splitlines() == ["submitted 1 job(s): j1; following until they end "
                                    "(Ctrl-C stops following, not the jobs)", "FOLLOWING"]
    assert got.err.count("job 'j2' exists") == 1, got.err

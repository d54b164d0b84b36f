"""What ``agora jobs``, ``agora logs`` and ``agora schedule`` answer where a probe of the
running service found them silent or unclear: a ``--job`` that names no job printed an empty
table and exit 0; ``agora logs`` of a run that could not start printed nothing and exit 0; a
version past the log's integers was "Value out of range" without the option's name."""

from __future__ import annotations

import json

import pytest

from agora.deploy.cli import main


def _empty_schedule(monkeypatch, cli_jobs, up) -> None:
    """This test's fake service: a cluster of no nodes and an empty ledger at version 7."""
    from types import SimpleNamespace

    from agora.protos.agora.v1 import coordinator_pb2 as pb

    cluster = SimpleNamespace(nodes=[])
    monkeypatch.setattr(cli_jobs, "target", lambda config: SimpleNamespace(
        coordinator=SimpleNamespace(load_cluster=lambda: cluster), out=up.parent / "out"))
    monkeypatch.setattr(cli_jobs, "_ledger_view",
                        lambda *a, **k: (pb.LedgerView(version=7), "live"))


@pytest.mark.parametrize("job", ["", "nosuch"])
def test_a_job_that_is_not_there_is_named_not_an_empty_table(up, capsys, monkeypatch, job):
    """A fake schedule (this test's): an empty ledger at version 7."""
    from agora.deploy import cli_jobs

    _empty_schedule(monkeypatch, cli_jobs, up)
    assert main(["jobs", "--job", job, "--config", str(up)]) == 2
    err = capsys.readouterr().err
    assert f"--job {job!r}: no such job" in err and "version 7" in err, err


def test_a_huge_job_id_is_not_echoed_whole(up, capsys, monkeypatch):
    # a probe: --job of 100,000 characters was echoed back whole
    from agora.deploy import cli_jobs

    _empty_schedule(monkeypatch, cli_jobs, up)
    assert main(["jobs", "--job", "R" * 100_000, "--config", str(up)]) == 2
    err = capsys.readouterr().err
    assert "no such job" in err and len(err) < 400, len(err)


@pytest.mark.parametrize("argv", [
    ["schedule", "get", "--since-version", "99999999999999999999999"],
    ["schedule", "get", "--version", "-1"],
    ["schedule", "watch", "--since-version", "x"],
    ["schedule", "watch", "--count", "0"],
])
def test_versions_and_counts_are_checked_naming_the_option(up, capsys, argv):
    with pytest.raises(SystemExit) as e:
        main(argv + ["--config", str(up)])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {argv[2]}" in err and "expected" in err, err


def test_the_jobs_table_says_why_a_task_of_a_failed_job_was_cancelled(capsys):
    # a probe: the instances a failed job never started showed as "gave up", the reason
    # ("the job failed: task bad: ...") only in --json
    from agora.deploy.job_table import print_jobs

    inst = {"instance": 0, "state": "gave up", "failed_attempts": 0}
    cause = "instance 0 failed 3 times: exit code 4"
    print_jobs([{"job": "j", "origin": "a", "outcome": "failed", "reason": f"task bad: {cause}",
                 "tasks": [
                     {"task": "bad", "outcome": "failed", "reason": cause, "instances": [inst]},
                     {"task": "sib", "outcome": "cancelled",
                      "reason": f"the job failed: task bad: {cause}", "instances": [inst]}]}],
               per_instance=False)
    out = capsys.readouterr().out.splitlines()
    assert [line.split()[1] for line in out if line.startswith("j ")] == ["bad", "sib"]
    assert sum("-> cancelled: the job failed: task bad" in line for line in out) == 1
    assert sum("-> failed: task bad: " + cause in line for line in out) == 1    # the job's
    assert not any("-> failed: " + cause == line.strip() for line in out)      # not twice


def test_a_cancelled_task_whose_instances_still_run_shows_them_running(capsys):
    # a probe: "cancelled" in the state column beside "2 running" (a failed job's other
    # tasks are cancelled; what runs of them finishes)
    from agora.deploy.job_table import print_jobs, task_state

    running = {"instance": 0, "state": "running", "failed_attempts": 0, "node": "b/n0"}
    assert task_state("cancelled", [running, dict(running, instance=1)]) == "running"
    assert task_state("cancelled", [dict(running, state="gave up")]) == "cancelled"
    print_jobs([{"job": "j", "origin": "a", "outcome": "failed", "reason": "task bad: exit 4",
                 "tasks": [{"task": "long", "outcome": "cancelled",
                            "reason": "the job failed: task bad: exit 4",
                            "instances": [running, dict(running, instance=1)]}]}],
               per_instance=False)
    out = capsys.readouterr().out.splitlines()
    row = next(line.split() for line in out if line.startswith("j "))
    assert row[:5] == ["j", "long", "running", "2", "running"], row
    assert any("-> cancelled: the job failed: task bad" in line for line in out)


@pytest.mark.parametrize("label, noted", [("offline (agreed by replicas 0-3)", True),
                                          ("live", False)])
def test_running_instances_read_offline_say_they_are_as_the_service_stopped(
        up, capsys, monkeypatch, label, noted):
    """A probe read "running" offline after agora down had stopped them (this test's fake
    rows: one instance running)."""
    from types import SimpleNamespace

    from agora.deploy import cli_jobs

    rows = [{"job": "j", "origin": "a", "outcome": "pending", "reason": "", "tasks": [
        {"task": "t", "outcome": "open", "reason": "", "instances": [
            {"instance": 0, "state": "running", "failed_attempts": 0, "node": "a/n0",
             "site": "a", "run": 3}]}]}]
    monkeypatch.setattr(cli_jobs, "job_rows_for", lambda *a, **k: (
        rows, SimpleNamespace(version=3, jobs=[1], compaction=SimpleNamespace(jobs=[])), label))
    assert main(["jobs", "--config", str(up)]) == 0
    out = capsys.readouterr().out
    assert ("what ran when the service stopped" in out) == noted


@pytest.mark.parametrize("code, rc", [("INVALID_ARGUMENT", 2), ("PERMISSION_DENIED", 1)])
def test_the_coordinators_invalid_argument_exits_2_as_bad_input(up, capsys, monkeypatch,
                                                                code, rc):
    """A probe: agora site remove '' was refused INVALID_ARGUMENT and exited 1 (this test's
    fake service answers every call with the refusal)."""
    import grpc

    from agora.coordinator.client import CoordinatorError
    from agora.deploy import cli_sites

    def refuse(*a, **k):
        raise CoordinatorError(getattr(grpc.StatusCode, code), "command.remove_site.site: "
                               "the reason", {})
    monkeypatch.setattr(cli_sites, "run_live", refuse)
    monkeypatch.setattr(cli_sites, "target", lambda config: None)
    assert main(["site", "remove", "x", "--config", str(up)]) == rc
    assert "command.remove_site.site: the reason" in capsys.readouterr().err


def test_jobs_says_how_many_finished_jobs_were_compacted_away(up, capsys, monkeypatch):
    """A fake schedule (this test's): no job listed, 12 compacted (retain_finished_jobs)."""
    from types import SimpleNamespace

    from agora.deploy import cli_jobs
    from agora.protos.agora.v1 import coordinator_pb2 as pb

    view = pb.LedgerView(version=9)
    view.compaction.jobs.add(name="completed", count=10)
    view.compaction.jobs.add(name="failed", count=2)
    monkeypatch.setattr(cli_jobs, "target", lambda config: SimpleNamespace(
        coordinator=SimpleNamespace(load_cluster=lambda: SimpleNamespace(nodes=[])),
        out=up.parent / "out"))
    monkeypatch.setattr(cli_jobs, "_ledger_view", lambda *a, **k: (view, "live"))
    assert main(["jobs", "--config", str(up)]) == 0
    out = capsys.readouterr().out
    assert "12 older finished jobs compacted away: 10 completed, 2 failed" in out, out
    assert main(["jobs", "--json", "--config", str(up)]) == 0
    assert json.loads(capsys.readouterr().out)["compacted"] == {"completed": 10, "failed": 2}
    assert main(["jobs", "--job", "old", "--config", str(up)]) == 2
    assert "compacted away with 12 other older" in capsys.readouterr().err


class _WatchClient:
    """This module's stand-in for ``agora schedule watch``'s coordinator client: the replicas'
    ``status`` answers as given, ``watch`` the given async generator function."""
    f = 1

    def __init__(self, statuses: list, watch) -> None:
        self.statuses, self.watch = statuses, watch

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        return False

    async def status(self):
        return self.statuses


def test_a_watch_whose_history_was_compacted_is_one_line_and_exit_2(up, capsys, monkeypatch):
    """This test's fake client: f+1 replicas answer the status; the watch is refused
    (``WatchRefused``: its history was compacted away)."""
    from agora.coordinator.watch_merge import WatchRefused
    from agora.deploy import cli_coordinator

    async def refused(since):
        raise WatchRefused(f"since_version: {since}; updates up to version 90 were "
                           f"compacted away (retain_finished_jobs)")
        yield                                          # an async generator

    client = _WatchClient([object(), object(), "UNAVAILABLE: down", object()], refused)
    monkeypatch.setattr(cli_coordinator, "_client", lambda a: (None, client))
    assert main(["schedule", "watch", "--since-version", "3", "--config", str(up)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["agora schedule: --since-version: since_version: 3; updates up to version "
                   "90 were compacted away (retain_finished_jobs)"]


def test_watch_count_counts_the_updates_it_prints(up, capsys, monkeypatch):
    """A probe: ``--count 3`` printed 2 lines, counting updates that print nothing (a job's
    admission, a round). This test's fake client streams such updates between printed
    ones."""
    from agora.deploy import cli_coordinator
    from agora.protos.agora.v1 import coordinator_pb2 as pb

    def alloc(v: int) -> pb.ScheduleUpdate:
        u = pb.ScheduleUpdate(version=v)
        u.allocations.add(job_id=f"j{v}", task_id="t", instance_begin=0, instance_end=1,
                          site="east", node="n0")
        return u

    async def updates(since):
        for v in range(1, 20):
            yield alloc(v) if v % 3 == 0 else pb.ScheduleUpdate(version=v)

    client = _WatchClient([object()] * 4, updates)
    monkeypatch.setattr(cli_coordinator, "_client", lambda a: (None, client))
    assert main(["schedule", "watch", "--count", "3", "--config", str(up)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [x.split()[0] for x in lines] == ["3", "6", "9"], lines


@pytest.mark.parametrize("flag", ["--job", "--site", "--task", "--client", "--keys"])
def test_an_empty_schedule_get_flag_is_one_line_naming_it(up, capsys, flag):
    """A probe: ``agora schedule get --job ''`` (and the other flags) ended in a traceback
    (the Python API's TypeError); now one line naming the flag, exit 2."""
    assert main(["schedule", "get", flag, "", "--config", str(up)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"agora schedule: {flag}: got ''; expected "), err


def test_the_jobs_table_escapes_control_characters_in_reasons(capsys):
    """What was ordered before the check (an older log), and the reasons ends carry (a
    command's own words), are shown escaped: no raw control character reaches the
    terminal."""
    from agora.deploy.job_table import print_jobs, shown

    assert shown("ok\x1b[2J\nfake") == "ok\\x1b[2J\\nfake" and shown("plain ü") == "plain ü"
    inst = {"instance": 0, "state": "failed", "ran_on": "a/n0", "exit_code": 1,
            "last_reason": "exit \x07", "failed_attempts": 0}
    print_jobs([{"job": "j", "outcome": "cancelled", "reason": "ok\x1b[2J\x1b[Hfake",
                 "tasks": [{"task": "t", "outcome": "cancelled", "reason": "x\ry",
                            "instances": [inst]}]}], per_instance=True)
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\r" not in out and "\x07" not in out, out
    assert "ok\\x1b[2J\\x1b[Hfake" in out and "x\\ry" in out


def test_an_instance_line_says_a_signal_and_its_exit_code_once(capsys):
    """A probe: "exit code 7, 0.0 s (exit code 7)" said the code twice, and cancelled or
    timed-out runs read "exit code -15"."""
    from agora.deploy.job_table import exit_said, print_jobs

    assert exit_said(-15) == "killed by SIGTERM" and exit_said(-9) == "killed by SIGKILL"
    assert exit_said(7) == "exit code 7" and exit_said(-999) == "exit code -999"
    ran = {"state": "gave up", "ran_on": "a/n0", "failed_attempts": 0, "last_start": 1.0,
           "last_end": 1.0}
    print_jobs([{"job": "j", "outcome": "failed", "reason": "", "tasks": [{
        "task": "t", "outcome": "failed", "instances": [
            {**ran, "instance": 0, "exit_code": 7, "last_reason": "exit code 7"},
            {**ran, "instance": 1, "exit_code": -15, "last_reason": "timed out after 3 s"}]}]}],
        per_instance=True)
    out = capsys.readouterr().out
    assert "[0] gave up   on a/n0, exit code 7, 0.0 s\n" in out, out
    assert "[1] gave up   on a/n0, killed by SIGTERM, 0.0 s (timed out after 3 s)" in out, out


def test_the_jobs_table_keeps_its_columns_with_wide_characters():
    """A probe: ids of CJK characters (two terminal columns each) put the table out of
    line."""
    from agora.deploy.job_table import padded

    assert padded("日本語", 10) == "日本語    " and padded("abc", 5) == "abc  "
    assert padded("x" * 30, 20) == "x" * 30


def test_the_jobs_table_says_a_failed_jobs_instances_still_run(capsys):
    """A probe: a failed job's running instances (they finish) were not said at the job's
    line; the operator took its resources for free."""
    from agora.deploy.job_table import print_jobs

    run = {"instance": 0, "state": "running", "failed_attempts": 0, "node": "a/n0"}
    print_jobs([{"job": "j", "outcome": "failed", "reason": "task f3: instance 0 failed",
                 "tasks": [{"task": "side", "outcome": "cancelled", "instances": [run]}]}],
               per_instance=False)
    out = capsys.readouterr().out
    assert "-> failed: task f3: instance 0 failed (1 instance(s) still running, to finish: " \
           "agora cancel j stops them)" in out, out


def test_submit_names_every_bad_line_and_submits_nothing(tmp_path, capsys):
    """A probe: a file's first bad line was all ``agora submit`` said, so a file with N bad
    lines took N tries. Every bad line is named (file:line: field), then that nothing was
    submitted -- before any service is asked (none runs here)."""
    def line(jid, **task):
        t = {"id": "a", "duration": 1, "demand": {"cpu": 1, "mem": 64},
             "run": {"argv": ["true"]}, **task}
        return json.dumps({"id": jid, "arrival": 0, "origin": "dc-east", "tasks": [t]})

    f = tmp_path / "jobs.jsonl"
    f.write_text("\n".join([line("ok1"), line("cyc", after=["a"]), "{not json",
                            line("ok2"), line("ok1"), line("nan", duration=-1)]) + "\n")
    up = tmp_path / "up.yaml"
    up.write_text(f"out: {tmp_path / 'out'}\n")
    assert main(["submit", str(f), "--config", str(up)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert [e.split(": ")[1] for e in err[:4]] == [f"{f}:{n}" for n in (2, 3, 5, 6)], err
    assert "already used on line 1" in err[2]
    assert err[4].startswith("agora submit: nothing submitted: a file is submitted whole "
                             "once its 4 bad line(s) are mended"), err
    assert len(err) == 5 and not any("nothing is running" in e for e in err)


def test_a_job_past_its_deadline_says_by_how_much(capsys):
    """A probe: a job with a 2 s deadline completed after 8.2 s and nothing said so."""
    import time

    from agora.agents.domain import Demand, Job, Task
    from agora.deploy.job_table import job_rows, print_jobs
    from agora.protos.agora.v1 import coordinator_pb2 as pb
    from agora.protos.convert import job_to_proto

    now = time.time()
    view = pb.LedgerView()
    for jid, deadline, outcome, completion in (("late", now - 100, "completed", now - 91.8),
                                               ("early", now - 100, "completed", now - 150),
                                               ("waiting", now - 30, "pending", None),
                                               ("none", None, "completed", now)):
        rec = view.jobs.add(outcome=outcome)
        task = Task("t", 1.0, Demand(1, 1))
        rec.job.CopyFrom(job_to_proto(Job(jid, now - 200, "a", (task,), deadline=deadline)))
        rec.tasks.add(outcome=outcome, states=bytes([3]))
        if completion is not None:
            rec.completion = completion
    rows = {r["job"]: r for r in job_rows(view, ["a/n0"], None)}
    assert rows["late"]["late_s"] == pytest.approx(8.2, abs=0.01)
    assert "late_s" not in rows["early"] and "deadline" not in rows["none"]
    assert rows["waiting"]["late_s"] >= 30
    print_jobs(list(rows.values()), per_instance=False)
    out = capsys.readouterr().out
    assert "-> completed 8.2 s past its deadline" in out
    assert "-> is 3" in out and out.count("past its deadline") == 2


@pytest.mark.parametrize("argv", [["cancel", "j"], ["site", "remove", "east"]])
@pytest.mark.parametrize("reason, words", [("x" * 5000, "5000 characters; expected at most 200"),
                                           ("a\x1b[2Jb", "control character")])
def test_a_reason_is_checked_before_anything_is_sent(up, capsys, argv, reason, words):
    # a probe: 5,000 characters went to the coordinator, whose refusal named a protocol
    # field (envelope.payload.request.op.cancel_job.reason); nothing runs here to ask
    assert main([*argv, "--reason", reason, "--config", str(up)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--reason: " in err[0] and words in err[0], err

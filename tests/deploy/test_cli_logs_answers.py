"""What ``agora logs`` answers where probes of the running service found it silent, unclear
or waiting for good: a run that wrote nothing printed nothing and exit 0; ``--follow`` of a
task not started exited at once, and of runs ``agora down`` cut short waited for good; a
task that will never run, or no such task, got one vague line; a huge argument was echoed
whole. (Split from test_cli_jobs_answers.py.)"""

from __future__ import annotations

import json

import pytest

from agora.deploy.cli import main


def test_logs_of_a_run_that_wrote_nothing_say_how_it_ended(tmp_path, capsys):
    from agora.deploy.cli_logs import _say_why_silent

    failed, done, wrote, running = (tmp_path / f"{i}-1" for i in range(4))
    for d, end in ((failed, {"kind": "failed", "exit_code": 127,
                             "reason": "cannot start '/no/such': No such file or directory"}),
                   (done, {"kind": "completed", "exit_code": 0, "reason": ""}),
                   (wrote, {"kind": "completed", "exit_code": 0, "reason": ""}),
                   (running, None)):
        d.mkdir()
        if end is not None:
            (d / "end.json").write_text(json.dumps(end))
    _say_why_silent({(0, 1): failed, (1, 1): done, (2, 1): wrote, (3, 1): running},
                    {(0, 1): 0, (1, 1): 0, (2, 1): 12, (3, 1): 0}, "stdout", "j/t")
    err = capsys.readouterr().err.splitlines()
    # a probe: a completed or unended run that wrote nothing printed nothing at all
    assert err == ["agora logs: j/t/0 (run 1) wrote nothing to stdout; it ended: cannot "
                   "start '/no/such': No such file or directory",
                   "agora logs: j/t/1 (run 1) wrote nothing to stdout; it ended: completed",
                   "agora logs: j/t/3 (run 1) wrote nothing to stdout; it has no end yet"]


@pytest.mark.timeout(30)
def test_logs_follow_of_runs_the_stopped_service_left_without_an_end_ends(
        tmp_path, capsys, monkeypatch):
    """A probe: after agora down the runs it cut short never get an end, and ``agora logs
    --follow`` waited for one for good (this test's fake service: never serving, a run's
    folder with output and no end)."""
    from types import SimpleNamespace

    from agora.agents.cluster.instance_run import run_folder
    from agora.deploy import cli_logs

    out = tmp_path / "out"
    folder = run_folder(out / "runs", "a/n0", "j", "t", 0, 1)
    folder.mkdir(parents=True)
    (folder / "stdout").write_text("begin\n")
    monkeypatch.setattr(cli_logs, "target", lambda config: SimpleNamespace(
        out=out, serving=lambda: False, running=lambda: False))
    assert main(["logs", "j/t", "--follow", "--config", str(tmp_path / "up.yaml")]) == 1
    captured = capsys.readouterr()
    assert captured.out == "begin\n"
    assert "no agora up is running: 1 run(s) of j/t have no end" in captured.err


def _end(folder, kind: str) -> None:
    (folder / "end.json").write_text(json.dumps({"kind": kind, "exit_code": kind != "completed",
                                                 "reason": ""}))


@pytest.mark.timeout(30)
@pytest.mark.parametrize("restart", [False, True], ids=["retried", "restarted"])
def test_logs_follow_goes_on_to_the_run_after_a_retry_or_a_restart(tmp_path, capsys,
                                                                   monkeypatch, restart):
    """A probe: following a task that failed once and was retried crashed (KeyError) once
    the retry's folder appeared; and ``--follow`` ended, exit 1, while the service's keeper
    started it again, which runs the cut-short run again. Now the output of the next run
    follows, and the follow ends with it. This test's fake service: the serving checks are
    stand-ins (``restart``: not serving, but starting again, until the second run
    appears); the run folders are real."""
    import threading
    import time
    from types import SimpleNamespace

    from agora.agents.cluster.instance_run import run_folder
    from agora.deploy import cli_logs

    out = tmp_path / "out"
    first = run_folder(out / "runs", "a/n0", "j", "t", 0, 1)
    first.mkdir(parents=True)
    (first / "stdout").write_text("first\n")
    up = [not restart]
    monkeypatch.setattr(cli_logs, "SERVING_CHECK_S", 0.1)
    monkeypatch.setattr(cli_logs, "target", lambda config: SimpleNamespace(
        out=out, serving=lambda: up[0], running=lambda: True))

    def later() -> None:
        time.sleep(1.0)
        if not restart:
            _end(first, "failed")     # a restart cuts the run short: it never gets an end
        second = run_folder(out / "runs", "a/n1", "j", "t", 0, 2)
        second.mkdir(parents=True)
        (second / "stdout").write_text("second\n")
        up[0] = True
        time.sleep(0.8)
        _end(second, "completed")

    threading.Thread(target=later, daemon=True).start()
    assert main(["logs", "j/t", "--follow", "--config", str(tmp_path / "up.yaml")]) == 0
    got = capsys.readouterr()
    assert "first\n" in got.out and got.out.endswith("second\n")
    assert got.out.count("==> j/t/0 (run 2) <==") == 1      # once, not before every chunk
    assert "j/t/0 runs again (run 2)" in got.err
    assert ("starting again" in got.err) == restart


@pytest.mark.timeout(30)
def test_logs_follow_of_a_run_killed_mid_way_says_so_and_exits_1(tmp_path, capsys,
                                                                 monkeypatch):
    """A probe: ``agora logs JOB/TASK --follow`` of a job cancelled mid-run stopped after
    the run's last line with exit 0, saying nothing of the kill. This test's fake service:
    the serving checks; the run folder is real."""
    import threading
    import time
    from types import SimpleNamespace

    from agora.agents.cluster.instance_run import run_folder
    from agora.deploy import cli_logs

    folder = run_folder(tmp_path / "runs", "a/n0", "j", "t", 0, 1)
    folder.mkdir(parents=True)
    (folder / "stdout").write_text("start 0\n")
    monkeypatch.setattr(cli_logs, "target", lambda config: SimpleNamespace(
        out=tmp_path, serving=lambda: True, running=lambda: True))

    def later() -> None:
        time.sleep(0.5)
        (folder / "end.json").write_text(json.dumps({
            "kind": "killed", "exit_code": -15, "reason": "cancelled by operator"}))

    threading.Thread(target=later, daemon=True).start()
    assert main(["logs", "j/t", "--follow", "--config", str(tmp_path / "up.yaml")]) == 1
    got = capsys.readouterr()
    assert got.out == "start 0\n"
    assert "agora logs: j/t/0 (run 1) ended: cancelled by operator" in got.err


@pytest.mark.parametrize("what", ["z" * 100_000, "a/" + "z" * 100_000, "a/b/" + "9x" * 50_000])
def test_a_huge_logs_argument_is_not_echoed_whole(up, capsys, what):
    """A probe: ``agora logs`` with a 100,000-character argument echoed it back whole."""
    assert main(["logs", what, "--config", str(up)]) == 2
    err = capsys.readouterr().err
    assert len(err) < 400 and f"({len(what):,} characters)" in err, err[:400]


def test_logs_follow_waits_for_a_task_to_start_and_stops_when_it_never_will(tmp_path,
                                                                           monkeypatch,
                                                                           capsys):
    """A probe: ``agora logs JOB/TASK --follow`` of a task not started yet exited 2 at once,
    so following a downstream task meant polling by hand. It now waits while the job is
    pending, and gives up once the job ended without a run of it. A fake service (this
    test's): the ledger and the serving check are stand-ins; the run folder is real."""
    import threading
    from types import SimpleNamespace

    from agora.agents.cluster.instance_run import run_folder
    from agora.deploy import cli_jobs, cli_logs
    from agora.protos.agora.v1 import coordinator_pb2 as pb

    outcome = ["pending"]

    def view(*_a):
        rec = pb.JobRecord(outcome=outcome[0])
        rec.job.id = "j"
        rec.job.tasks.add(id="tick")
        return pb.LedgerView(jobs=[rec]), "live"

    monkeypatch.setattr(cli_jobs, "_ledger_view", view)
    t = SimpleNamespace(out=tmp_path, serving=lambda: True, running=lambda: True)
    folder = run_folder(tmp_path / "runs", "a/n0", "j", "tick", 0, 7)
    threading.Timer(1.0, lambda: folder.mkdir(parents=True)).start()
    runs = cli_logs._wait_for_a_run(t, "j", "tick", None, "j/tick", poll_s=0.05,
                                    check_s=0.1)
    assert runs == {(0, 7): folder}
    assert "waiting for j/tick to start" in capsys.readouterr().err
    outcome[0] = "failed"                                   # it will never run: not waited
    assert cli_logs._wait_for_a_run(t, "j", "tock", None, "j/tock", poll_s=0.05,
                                    check_s=0.1) == {}


def test_logs_of_a_task_with_no_run_say_why_as_the_schedule_does(monkeypatch):
    """A probe: one vague line ("not started yet, another job/task name, ...") for a task of
    a failed job that will never run, a task the job does not have, and an instance past
    the task's. A fake service (this test's): the ledger is a stand-in."""
    from types import SimpleNamespace

    from agora.deploy import cli_jobs, cli_logs
    from agora.protos.agora.v1 import coordinator_pb2 as pb

    rec = pb.JobRecord(outcome="failed", reason="task b failed: exit code 1")
    rec.job.id = "j"
    rec.job.tasks.add(id="a", instances=30)
    rec.job.tasks.add(id="c", instances=1)
    monkeypatch.setattr(cli_jobs, "_ledger_view", lambda *_a: (pb.LedgerView(jobs=[rec]),
                                                                "live"))
    t = SimpleNamespace()
    why = cli_logs._why_no_run
    # bad input (exit 2) where no such job, task or instance; a task that never ran is not
    # (exit 1: a probe saw exit 2, the code of bad input, for a task whose dependency failed)
    assert why(t, "nosuch", "a", None) == ("the schedule has no job 'nosuch'", True)
    assert why(t, "j", "x", None) == ("job 'j' has no task 'x'; its tasks: a, c", True)
    assert why(t, "j", "a", 99) == ("task j/a has 30 instance(s): 0..29", True)
    assert why(t, "j", "c", None) == ("the job failed (task b failed: exit code 1): this "
                                      "task never ran here", False)
    rec.outcome = "pending"
    assert why(t, "j", "c", None) is None                  # not started yet: said as before


def test_logs_of_a_task_that_never_ran_exit_1_and_of_no_such_task_2(tmp_path, monkeypatch,
                                                                    capsys):
    """A probe: ``agora logs`` of a task whose dependency failed exited 2, the code of bad
    input. A fake service (this test's): the ledger and the target are stand-ins."""
    from types import SimpleNamespace

    from agora.deploy import cli_jobs, cli_logs
    from agora.protos.agora.v1 import coordinator_pb2 as pb

    rec = pb.JobRecord(outcome="failed", reason="task x failed")
    rec.job.id = "j"
    rec.job.tasks.add(id="y", instances=1)
    monkeypatch.setattr(cli_jobs, "_ledger_view", lambda *_a: (pb.LedgerView(jobs=[rec]),
                                                                "live"))
    monkeypatch.setattr(cli_logs, "target", lambda config: SimpleNamespace(
        out=tmp_path, serving=lambda: True, running=lambda: True))
    cfg = str(tmp_path / "up.yaml")
    assert main(["logs", "j/y", "--config", cfg]) == 1
    assert "this task never ran here" in capsys.readouterr().err
    assert main(["logs", "j/nosuch", "--config", cfg]) == 2
    assert "job 'j' has no task 'nosuch'" in capsys.readouterr().err

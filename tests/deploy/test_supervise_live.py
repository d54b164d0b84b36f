"""``agora up``'s keeper with the real service (``deploy/supervise.py``): the serving process
killed while work runs is started again from its state, nothing of the dead one is left
running, and the work completes. Real processes throughout (the CLI, Ray, four replicas). The slow variant kills Ray's head raylet
instead (Ray then ends the serving process itself, ~35 s later)."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from tests.deploy.test_live_cli import agora, job_line, jobs_json, setup  # noqa: F401


def ready(out: Path) -> dict | None:
    try:
        return json.loads((out / "ready.json").read_text())
    except (OSError, ValueError):
        return None


def tree(pid: int, *, itself: bool = False) -> list[tuple[int, str]]:
    """(pid, start time) of ``pid``'s descendants (``itself``: and of ``pid``)."""
    parents, starts = {}, {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                stat = Path(f"/proc/{name}/stat").read_text()
            except OSError:
                continue
            fields = stat[stat.rindex(")") + 2:].split()
            parents[int(name)], starts[int(name)] = int(fields[1]), fields[19]
    found, todo = [pid] if itself else [], [pid]
    while todo:
        p = todo.pop()
        kids = [c for c, pp in parents.items() if pp == p]
        found += kids
        todo += kids
    return [(p, starts[p]) for p in found]


def still_running(procs: list[tuple[int, str]]) -> list[int]:
    left = []
    for pid, start in procs:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        if fields[19] == start and fields[0] != "Z":
            left.append(pid)
    return left


def wait_for(pred, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not (got := pred()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)
    return got


def jobs_when_answered(cfg: str) -> dict | None:
    """``agora jobs --json``, or None while too few replicas answer (the service says
    "retry": a restarted service on a busy machine); any other failure fails the test. A
    wait on it still times out if they never answer."""
    p = agora("jobs", "--json", "--config", cfg)
    if p.returncode != 0 and "too few replicas answered" in p.stderr:
        return None
    assert p.returncode == 0 and p.stdout, f"agora jobs failed ({p.returncode}): {p.stderr}"
    return json.loads(p.stdout)


def job_done(cfg: str) -> bool:
    jobs = jobs_when_answered(cfg)
    return jobs is not None and jobs["jobs"][0]["outcome"] == "completed"


def kill_and_recover(d: Path, victim, *, end: str = "down") -> None:
    """``end``: how the restarted service is stopped at the end: ``down`` (agora down) or
    ``kill-keeper`` (its keeper SIGKILLed: the service stops by itself)."""
    cfg = str(d / "up.yaml")
    p = agora("up", "--detach", "--config", cfg)
    assert p.returncode == 0, p.stderr + p.stdout
    out = d / "out"
    first = ready(out)
    keeper, serving = first["pid"], first["serving_pid"]
    assert keeper != serving and (out / "agora.pid").read_text().split()[0] == str(keeper)
    assert (out / "served").is_file()     # the schedule has begun (a restart resumes it)
    (d / "jobs.jsonl").write_text(job_line("through", ["sleep", "4"], instances=2) + "\n")
    assert agora("submit", str(d / "jobs.jsonl"), "--config", cfg).returncode == 0
    wait_for(lambda: any(i["state"] == "running" for i in jobs_json(cfg)["jobs"][0]["tasks"][0]
                         ["instances"]), 120, "an instance to run")
    old = tree(serving)
    victim(serving)
    again = wait_for(lambda: (r := ready(out)) and r["serving_pid"] != serving and r, 240,
                     "the service to serve again")
    assert again["pid"] == keeper
    assert still_running(old) == [], "a process of the dead service still runs"
    log = (out / "agora.log").read_text()
    assert "starting it again from its state" in log and "restart 1 of at most 5" in log
    wait_for(lambda: job_done(cfg), 180,
             "the job to complete after the restart")
    # the progress line goes on (a probe: a change silenced it and every warning)
    wait_for(lambda: "1 done" in (out / "agora.log").read_text(), 30, "the progress line")
    left = tree(again["serving_pid"], itself=True)
    if end == "down":
        p = agora("down", "--config", cfg)
        assert p.returncode == 0 and f"stopped pid {keeper}" in p.stdout, p.stdout + p.stderr
    else:
        # a probe: a keeper killed left its service serving unkept, which agora down then
        # said was not running
        os.kill(keeper, signal.SIGKILL)
        wait_for(lambda: ready(out) is None, 120, "the service to stop without its keeper")
        log = (out / "agora.log").read_text()
        assert f"stopping (its keeper, pid {keeper}, is gone)" in log, log[-2000:]
    wait_for(lambda: not (out / "agora.pid").exists() and ready(out) is None, 60,
             "the pid files to go")
    wait_for(lambda: still_running(left) == [], 60, "the service's processes to end")


@pytest.mark.slow        # ~70 s (two starts of the whole service): `make test-slow`; the
@pytest.mark.timeout(420)  # keeper's rules are tested with stand-ins in test_supervise.py
def test_the_serving_process_killed_is_started_again_and_its_work_completes(setup):
    kill_and_recover(setup, lambda pid: os.kill(pid, signal.SIGKILL), end="kill-keeper")


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_the_head_raylet_killed_ends_the_serving_process_and_it_is_started_again(setup):
    def kill_head_raylet(serving: int) -> None:
        for pid, _ in tree(serving):
            try:
                argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if argv[0].endswith(b"/raylet") and b"--head" in argv:
                os.kill(pid, signal.SIGKILL)
                return
        raise AssertionError("no head raylet under the serving process")
    kill_and_recover(setup, kill_head_raylet)

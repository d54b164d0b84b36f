"""``agora up``'s keeper (``deploy/supervise.py``): a service that dies after it served is
started again and what it left is killed; one that never served is not; restarts are
bounded; a stop is passed on. A fake service stands in for ``agora up --supervised`` here (a
script that writes ``ready.json`` as the real one does and leaves a process behind); the
keeper runs in a subprocess of its own, as ``agora up`` does (it becomes its children's
subreaper, which this test process must not). The real service: test_supervise_live.py."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.processes import alive, wait_for

pytestmark = [pytest.mark.timeout(120),
              pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc, prctl")]

FAKE = textwrap.dedent("""
    import json, os, signal, subprocess, sys, time
    from pathlib import Path
    out, plan = Path(sys.argv[1]), sys.argv[2].split(",")
    n = len(list(out.glob("start-*")))               # this is start n (0, 1, ...)
    mode = plan[min(n, len(plan) - 1)]
    (out / f"start-{n}").write_text(str(os.getpid()))
    if mode == "early":
        sys.exit(3)                                   # never served
    # something that outlives this process unless its keeper kills it (own session: no
    # signal to our group reaches it), as Ray's per-node agents outlived their raylet
    left = subprocess.Popen(["sleep", "300"], start_new_session=True)
    (out / f"left-{n}").write_text(str(left.pid))
    (out / "ready.json").write_text(json.dumps({"pid": os.getppid(), "serving_pid": os.getpid()}))
    if mode == "die":
        time.sleep(0.3)
        os._exit(1)
    if mode == "hang":                                # serves a moment, then stops for good
        (out / "alive").touch()
        os.kill(os.getpid(), signal.SIGSTOP)
    def stop(signum, _frame):
        if mode == "linger":                          # stops slowly, as Ray does
            time.sleep(4)
        (out / f"stopped-{n}").write_text(signal.Signals(signum).name)
        (out / "ready.json").unlink()
        sys.exit(0)
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    while True:
        time.sleep(0.1)
""")

KEEPER = textwrap.dedent("""
    import sys
    from pathlib import Path
    from types import SimpleNamespace
    from agora.deploy.supervise import supervise
    out, restarts, fake, plan = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
    cfg = SimpleNamespace(out=out, restarts=restarts, source="up.yaml")
    sys.exit(supervise(cfg, [sys.executable, fake, str(out), plan], backoff_s=0.05,
                       poll_s=0.05, hang_s=1.0))
""")


@pytest.fixture()
def keeper(tmp_path):
    """``keeper(plan, restarts=5)``: a keeper over the fake service in a subprocess, as
    ``agora up`` runs it; any still running at the test's end is killed."""
    started: list[subprocess.Popen] = []

    def start(plan: str, restarts: int = 5) -> subprocess.Popen:
        (tmp_path / "fake.py").write_text(FAKE)
        out = tmp_path / "out"
        out.mkdir(exist_ok=True)
        k = subprocess.Popen([sys.executable, "-c", KEEPER, str(out), str(restarts),
                              str(tmp_path / "fake.py"), plan],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        started.append(k)
        return k
    yield start
    for k in started:
        if k.poll() is None:
            k.kill()


def served_by(out: Path) -> int | None:
    try:
        return json.loads((out / "ready.json").read_text())["serving_pid"]
    except (OSError, ValueError, KeyError):
        return None


def test_a_service_that_died_after_serving_is_started_again_and_what_it_left_is_killed(
        keeper, tmp_path):
    k = keeper("die,serve")
    out = tmp_path / "out"
    wait_for(lambda: (out / "start-1").exists() and served_by(out) is not None,
             what="the second start to serve")
    second = int((out / "start-1").read_text())
    assert served_by(out) == second
    first_left = int((out / "left-0").read_text())
    assert not alive(first_left), "the dead service's leftover still runs"
    assert alive(int((out / "left-1").read_text())), "the running one's was killed"
    assert (out / "agora.pid").read_text().split()[0] == str(k.pid)
    k.send_signal(signal.SIGTERM)
    assert k.wait(30) == 0
    err = k.stderr.read()
    assert "stopped unexpectedly (exit status 1)" in err and "restart 1 of at most 5" in err
    assert "1 process(es) it left were killed" in err, err
    assert (out / "stopped-1").read_text() == "SIGTERM"     # the stop was passed on
    assert not (out / "start-2").exists()
    assert not (out / "agora.pid").exists()
    # and on the way out, what the stopped service left is killed too
    assert not alive(int((out / "left-1").read_text()))


def test_a_keeper_killed_stops_its_service_with_sigterm_not_sigkill(keeper, tmp_path):
    # a probe: a keeper SIGKILLed took its service down with SIGKILL (parent-death signal),
    # which left everything the service had started (Ray's processes) running
    k = keeper("serve")
    out = tmp_path / "out"
    wait_for(lambda: served_by(out) is not None, what="the service to serve")
    k.kill()
    k.wait(30)
    wait_for(lambda: (out / "stopped-0").exists(), what="the service to stop")
    assert (out / "stopped-0").read_text() == "SIGTERM"


def test_a_service_that_never_served_is_not_started_again(keeper, tmp_path):
    k = keeper("early")
    assert k.wait(30) == 3
    err = k.stderr.read()
    assert "could not start (exit status 3)" in err, err
    assert sorted(p.name for p in (tmp_path / "out").glob("start-*")) == ["start-0"]


def test_restarts_are_bounded_within_an_hour(keeper, tmp_path):
    k = keeper("die", restarts=2)
    assert k.wait(60) == 1
    err = k.stderr.read()
    out = tmp_path / "out"
    assert len(list(out.glob("start-*"))) == 3, err          # the first and 2 restarts
    assert "not started again: 2 restart(s) within the last hour" in err, err
    assert not (out / "ready.json").exists() and not (out / "agora.pid").exists()
    for f in out.glob("left-*"):
        assert not alive(int(f.read_text()))


def test_a_restart_that_fails_before_serving_counts_against_the_budget(keeper,
                                                                        tmp_path):
    # once the service has served, a start that fails (Ray not back yet) is tried again
    k = keeper("die,early,early,serve", restarts=5)
    out = tmp_path / "out"
    wait_for(lambda: served_by(out) is not None and (out / "start-3").exists(),
             what="the fourth start to serve")
    k.send_signal(signal.SIGINT)            # Ctrl-C: passed on as SIGINT
    assert k.wait(30) == 0
    assert (out / "stopped-3").read_text() == "SIGINT"
    assert "restart 3 of at most 5" in k.stderr.read()


def test_a_second_keeper_on_the_same_state_is_refused(keeper, tmp_path):
    k = keeper("serve")
    out = tmp_path / "out"
    wait_for(lambda: served_by(out) is not None, what="the service to serve")
    other = subprocess.run([sys.executable, "-c", KEEPER, str(out), "5",
                            str(tmp_path / "fake.py"), "serve"],
                           capture_output=True, text=True, timeout=30)
    assert other.returncode == 1
    assert f"already running from {out} (pid {k.pid})" in other.stderr
    assert len(list(out.glob("start-*"))) == 1
    os.kill(k.pid, signal.SIGTERM)
    assert k.wait(30) == 0


def test_a_service_stopped_by_a_signal_of_its_own_stops_the_keeper_saying_so(keeper,
                                                                              tmp_path):
    k = keeper("serve")
    out = tmp_path / "out"
    wait_for(lambda: served_by(out) is not None, what="the service to serve")
    os.kill(served_by(out), signal.SIGTERM)       # to the service, not to agora up
    assert k.wait(30) == 0
    assert "stopped on its own (a signal sent to it, not to agora up" in k.stderr.read()
    assert len(list(out.glob("start-*"))) == 1 and not (out / "agora.pid").exists()


def test_agora_down_kills_a_service_that_does_not_stop_and_everything_under_it(tmp_path):
    """A probe: `agora down` on a hung service killed the keeper alone, leaving Ray's agents
    (~850 MB), the runs and the pid files behind."""
    from types import SimpleNamespace

    from agora.deploy import live

    out = tmp_path / "out"
    out.mkdir()
    hung = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import signal, subprocess, time
        from agora.deploy import pid_file
        from pathlib import Path
        signal.signal(signal.SIGTERM, signal.SIG_IGN)      # it does not stop
        pid_file.write(Path({str(out)!r}) / "agora.pid")
        left = subprocess.Popen(["sleep", "300"], start_new_session=True)
        Path({str(out)!r}, "left").write_text(str(left.pid))
        time.sleep(300)
    """)])
    try:
        wait_for(lambda: (out / "left").exists(), what="the hung service to start")
        left = int((out / "left").read_text())
        assert live.down(SimpleNamespace(out=out), "up.yaml", timeout_s=1.0) == 1
        hung.wait(10)
        wait_for(lambda: not alive(left), timeout=10, what="what it started to be killed")
        assert not (out / "agora.pid").exists()
    finally:
        if hung.poll() is None:
            hung.kill()


def test_a_service_that_hangs_is_killed_and_started_again(keeper, tmp_path):
    """A probe: a SIGSTOPped service went unnoticed (its progress line stopped; `agora down`
    then waited 90 s). A serving child that has not touched its ``alive`` file for
    ``hang_s`` is killed, with what it started, and started again."""
    k = keeper("hang,serve")
    out = tmp_path / "out"
    wait_for(lambda: (out / "start-1").exists() and served_by(out) is not None,
             what="the second start")
    assert not alive(int((out / "start-0").read_text()))
    assert not alive(int((out / "left-0").read_text()))
    k.send_signal(signal.SIGTERM)
    assert k.wait(30) == 0
    err = k.stderr.read()
    assert "has not gone on for" in err and "(hung: stopped or deadlocked); killing it" in err
    assert "restart 1 of at most 5" in err


def test_the_keepers_flag_given_by_hand_is_refused(tmp_path):
    """`agora up --supervised` started by hand would have named its parent, a shell, as the
    service's owner in ready.json (what readers take for agora up's pid)."""
    (tmp_path / "up.yaml").write_text(f"out: {tmp_path / 'out'}\n")
    p = subprocess.run([sys.executable, "-m", "agora.deploy.cli", "up", "--config",
                        str(tmp_path / "up.yaml"), "--supervised"],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert "--supervised: agora up's own flag" in p.stderr
    assert not (tmp_path / "out" / "ready.json").exists()


CLAIM = ("import sys; from pathlib import Path; from agora.deploy import pid_file; "
         "sys.exit(0 if pid_file.claim(Path(sys.argv[1])) else 3)")


def claimed_elsewhere(lock: Path) -> bool:
    """Does a process other than this test's hold ``lock`` (a fresh process cannot take it)?"""
    return subprocess.run([sys.executable, "-c", CLAIM, str(lock)],
                          timeout=30).returncode == 3


def test_the_state_is_locked_from_before_the_pid_file_until_the_service_too_is_gone(
        keeper, tmp_path):
    """Two agora up started together both found no pid file and both started (a check, then
    a write); and a keeper killed before its service served left nothing to say the service
    was still there (a review). The keeper holds ``agora.lock`` first, and its service holds
    the same lock: a second start is refused while either runs."""
    out = tmp_path / "out"
    out.mkdir()
    from agora.deploy import pid_file
    held = subprocess.Popen([sys.executable, "-c", "import sys, time; from pathlib import "
                             "Path; from agora.deploy import pid_file; "
                             "pid_file.claim(Path(sys.argv[1])); print('held', flush=True); "
                             "time.sleep(60)", str(out / "agora.lock")],
                            stdout=subprocess.PIPE, text=True)
    assert held.stdout.readline() == "held\n"        # another start, before its pid file
    refused = subprocess.run([sys.executable, "-c", KEEPER, str(out), "5",
                              str(tmp_path / "fake.py"), "serve"],
                             capture_output=True, text=True, timeout=30)
    assert refused.returncode == 1 and "already starting from" in refused.stderr
    assert not list(out.glob("start-*")) and not (out / "agora.pid").exists()
    held.kill()
    held.wait(30)

    k = keeper("linger")
    wait_for(lambda: served_by(out) is not None, what="the service to serve")
    service = served_by(out)
    k.kill()                                         # SIGTERM reaches the service: it stops
    k.wait(30)
    assert claimed_elsewhere(out / "agora.lock"), "the service let go of the lock"
    assert alive(service)
    wait_for(lambda: not alive(service), what="the service to stop")
    assert not claimed_elsewhere(out / "agora.lock")  # the kernel let go: nothing stale
    assert pid_file.claims() == ()                   # this test process took none

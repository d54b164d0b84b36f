"""The per-node runner on a real local Ray: commands run as Ray tasks pinned to the runner's
node with their environment and logs, exit codes and timeouts are reported, kills stop the
process group, starts are idempotent, ends wait for acknowledgement, and a restarted runner
reports what its predecessor left."""

import json
import os
import signal
import sys
import time
from pathlib import Path

import pytest
import ray
from hypothesis import given, settings
from hypothesis import strategies as st

from agora.agents.cluster.node_runner import run_folder

from tests.cluster.runner_support import NODE, PY, req, wait_end


@pytest.mark.timeout(120)
def test_a_run_gets_its_identity_runs_on_the_node_and_keeps_its_output(runner):
    h, root = runner
    script = ("import os, ray; print(os.environ['AGORA_JOB'], os.environ['AGORA_INSTANCE'], "
              "os.environ['AGORA_NODE'], os.environ['AGORA_ATTEMPT'], os.environ['X'], "
              "os.environ['AGORA_RUN'])")
    assert ray.get(h.start.remote(req("j1", [PY, "-c", script], instance=2, attempt=3,
                                      env=[("X", "hello")]))) == "started"
    e = wait_end(h, "j1")
    assert (e.kind, e.exit_code) == ("completed", 0)
    assert e.ray_node == ray.get(h.ping.remote())
    folder = run_folder(root, NODE, "j1", "t", 2, 1)
    assert (folder / "stdout").read_text().split() == ["j1", "2", NODE, "3", "hello", "1"]
    assert json.loads((folder / "end.json").read_text())["kind"] == "completed"
    out, done = ray.get(h.read_log.remote("j1", "t", 2, 1))
    assert out.split() == [b"j1", b"2", NODE.encode(), b"3", b"hello", b"1"] and done


@pytest.mark.timeout(120)
def test_exit_codes_timeouts_and_missing_programs_are_failed_attempts(runner, tmp_path):
    h, _ = runner
    ray.get(h.start.remote(req("j2", [PY, "-c", "import sys; sys.exit(7)"])))
    e = wait_end(h, "j2")
    assert (e.kind, e.exit_code, e.reason) == ("failed", 7, "exit code 7")
    ray.get(h.start.remote(req("j3", ["sh", "-c", "sleep 60; echo no"], timeout_s=1.0)))
    e = wait_end(h, "j3")
    # killed at its timeout, not a kill grace (3 s) later: the zombie leader, and the
    # orphaned `sleep` a slow init leaves unreaped, once kept the group "alive" until then
    assert e.kind == "failed" and "timed out after 1 s" in e.reason and e.end - e.start < 3.5
    ray.get(h.start.remote(req("j4", ["/no/such/program"])))
    e = wait_end(h, "j4")
    assert (e.kind, e.exit_code) == ("failed", 127) and "cannot start" in e.reason
    # an executable file the kernel cannot exec (a script without "#!"): the reason says why
    script = tmp_path / "no-shebang.sh"
    script.write_text("echo hi\n")
    script.chmod(0o755)
    ray.get(h.start.remote(req("j4-noexec", [str(script)])))
    e = wait_end(h, "j4-noexec")
    assert (e.kind, e.exit_code) == ("failed", 126), e
    assert "cannot start" in e.reason and "format" in e.reason.lower(), e.reason


@pytest.mark.timeout(120)
def test_a_kill_stops_the_process_group_and_a_start_is_idempotent(runner, tmp_path):
    h, root = runner
    marker = tmp_path / "child.pid"
    script = (f"import os, subprocess, time; p = subprocess.Popen(['sleep', '60']); "
              f"open({str(marker)!r}, 'w').write(str(p.pid)); time.sleep(60)")
    r = req("j5", [PY, "-c", script])
    assert ray.get(h.start.remote(r)) == "started"
    assert ray.get(h.start.remote(r)) == "running"
    deadline = time.time() + 30
    while not marker.exists() and time.time() < deadline:
        time.sleep(0.1)
    assert ray.get(h.kill.remote("j5", "t", 0, 1, "cancelled"))
    e = wait_end(h, "j5")
    assert (e.kind, e.reason) == ("killed", "cancelled")
    # and on disk, where a restarted runner reads it (it said "failed", "killed by signal 15")
    end = json.loads((run_folder(root, NODE, "j5", "t", 0, 1) / "end.json").read_text())
    assert (end["kind"], end["reason"]) == ("killed", "cancelled")
    child = int(marker.read_text())              # the grandchild died with the group
    assert _gone(child, run_folder(root, NODE, "j5", "t", 0, 1))
    assert ray.get(h.start.remote(r)) == "ended"  # the same run never starts twice


@pytest.mark.timeout(120)
def test_a_run_whose_ray_worker_dies_under_it_is_lost_not_a_failed_attempt(runner):
    """A probe: runs cut short when agora up's service died ended "failed" ("the run's Ray
    worker failed: NodeDiedError"), each a failed attempt -- restarts could fail a job that
    never failed. The Ray worker running the instance is killed here: the run is lost."""
    h, root = runner
    assert ray.get(h.start.remote(req("j-worker", ["sleep", "60"]))) == "started"
    pid_file = run_folder(root, NODE, "j-worker", "t", 0, 1) / "pid"
    deadline = time.time() + 30
    while not pid_file.exists() and time.time() < deadline:
        time.sleep(0.1)
    stat = Path(f"/proc/{int(pid_file.read_text())}/stat").read_text()
    worker = int(stat[stat.rindex(")") + 2:].split()[1])      # the command's parent
    os.kill(worker, signal.SIGKILL)
    e = wait_end(h, "j-worker")
    assert e.kind == "lost" and "WorkerCrashedError" in e.reason, (e.kind, e.reason)


def _escaped_child(marker: Path) -> str:
    """A script that starts ``sleep 60`` in a session of its own (out of the run's process
    group, reparented once the script ends) and writes its pid to ``marker``."""
    return (f"import subprocess; p = subprocess.Popen(['sleep', '60'], "
            f"start_new_session=True); open({str(marker)!r}, 'w').write(str(p.pid))")


def _gone(pid: int, folder: Path, within_s: float = 5.0) -> bool:
    """No process ``pid`` of the run of ``folder`` is left: none, a zombie, or another
    process that was given the pid since (a busy machine reuses pids: the suite once saw
    this fail, most likely on a reused one)."""
    from agora.agents.cluster.run_groups import run_marker

    deadline = time.time() + within_s
    while time.time() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                    return True                  # dead, waiting for its parent to reap it
            with open(f"/proc/{pid}/environ", "rb") as f:
                if run_marker(folder) not in f.read().split(b"\0"):
                    return True                  # not the run's any more
        except (FileNotFoundError, ProcessLookupError):
            return True
        time.sleep(0.1)
    return False


@pytest.mark.timeout(120)
def test_processes_a_run_moved_out_of_its_group_end_with_it(runner, tmp_path):
    """A run's child in a session of its own survived the run and a cancel (probe: a
    cancelled job's ``setsid sleep`` kept running); it carries the run's AGORA_RUN_DIR and
    ends with the run -- whether the run exits or is killed."""
    h, root = runner
    marker = tmp_path / "escaped.pid"
    ray.get(h.start.remote(req("j9", [PY, "-c", _escaped_child(marker)])))
    e = wait_end(h, "j9")
    assert e.kind == "completed"
    assert _gone(int(marker.read_text()), run_folder(root, NODE, "j9", "t", 0, 1)), \
        "the escaped child outlived its completed run"
    end = json.loads((run_folder(root, NODE, "j9", "t", 0, 1) / "end.json").read_text())
    assert end["strays_killed"] == 1
    marker.unlink()
    script = _escaped_child(marker) + "; import time; time.sleep(60)"
    ray.get(h.start.remote(req("j10", [PY, "-c", script])))
    deadline = time.time() + 30
    while not marker.exists() and time.time() < deadline:
        time.sleep(0.1)
    assert ray.get(h.kill.remote("j10", "t", 0, 1, "cancelled"))
    assert wait_end(h, "j10").kind == "killed"
    assert _gone(int(marker.read_text()), run_folder(root, NODE, "j10", "t", 0, 1)), \
        "the escaped child outlived its cancelled run"


@pytest.mark.timeout(120)
def test_a_process_left_in_the_runs_group_ends_with_it(runner, tmp_path):
    """A review: a child left in the run's process group with a cleaned environment (``env
    -i``: no AGORA_RUN_DIR to find it by) ran on after its run completed."""
    h, root = runner
    marker = tmp_path / "child.pid"
    ray.get(h.start.remote(req("j11", ["sh", "-c",
                                       f"env -i /bin/sleep 60 & echo $! > {marker}"])))
    assert wait_end(h, "j11").kind == "completed"
    pid = int(marker.read_text())
    deadline = time.time() + 5
    while time.time() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                    break
        except FileNotFoundError:
            break
        time.sleep(0.1)
    else:
        os.kill(pid, signal.SIGKILL)
        pytest.fail("a process of the run's group outlived its end")
    end = json.loads((run_folder(root, NODE, "j11", "t", 0, 1) / "end.json").read_text())
    assert end["strays_killed"] == 1


@pytest.mark.timeout(120)
def test_ends_stay_until_acknowledged_and_a_restarted_runner_reports_what_was_left(
        runner, tmp_path):
    h, root = runner
    ray.get(h.start.remote(req("j6", [PY, "-c", "pass"])))
    e = wait_end(h, "j6")
    _inc, again = ray.get(h.ends.remote(0, 0.1))
    assert any(x.seq == e.seq for x in again)
    ray.get(h.ack.remote([e.seq]))
    _inc, after = ray.get(h.ends.remote(0, 0.1))
    assert all(x.job != "j6" for x in after)
    # a run in flight and an unacknowledged end survive the runner's death
    ray.get(h.start.remote(req("j7", [PY, "-c", "pass"])))
    wait_end(h, "j7")
    # j8 also leaves a child in a session of its own, which outlives the runner's death
    escaped = tmp_path / "escaped8.pid"
    script = _escaped_child(escaped) + "; import time; time.sleep(60)"
    ray.get(h.start.remote(req("j8", [PY, "-c", script])))
    folder = run_folder(root, NODE, "j8", "t", 0, 1)
    deadline = time.time() + 30
    while not ((folder / "pid").exists() and escaped.exists()) and time.time() < deadline:
        time.sleep(0.1)
    inc0 = ray.get(h.snapshot.remote())["incarnation"]
    ray.kill(h, no_restart=False)
    deadline = time.time() + 60
    while True:
        try:
            snap = ray.get(h.snapshot.remote(), timeout=5)
            if snap["incarnation"] != inc0:
                break
        except Exception:  # noqa: BLE001 - restarting
            pass
        assert time.time() < deadline, "the runner did not come back"
        time.sleep(0.5)
    ended = {x.job: x for x in snap["ended"]}
    assert ended["j7"].kind == "completed"             # reported again: never acknowledged
    assert ended["j8"].kind == "lost"                  # it died with its owner
    assert "j6" not in ended                           # acknowledged: gone for good
    assert snap["running"] == []
    assert _gone(int(escaped.read_text()), folder), \
        "a lost run's escaped child outlived the runner's restart"


@settings(max_examples=300, deadline=None)
@given(names=st.lists(st.text(max_size=6) | st.sampled_from([".", "..", "%2E", "a/..", "/"]),
                      min_size=3, max_size=3))
def test_a_run_folder_stays_inside_its_root_whatever_the_names(names):
    """Ids may not be '.' or '..' (agents/limits.py), and run_folder quotes them anyway: no
    node, job or task name makes a run's folder leave ``<root>`` or land on another level."""
    root = Path("/srv/out/runs")
    folder = run_folder(root, *names, 3, 7)
    assert folder.parent.parent.parent.parent == root
    assert all(part not in (".", "..") for part in folder.relative_to(root).parts)
    assert folder.name == "3-7"


@settings(max_examples=200, deadline=None)
@given(ids=st.lists(st.text(st.characters(blacklist_categories=("Cs", "Cc", "Zs")),
                            min_size=100, max_size=128) | st.just(":" * 128),
                    min_size=2, max_size=2, unique=True))
def test_a_run_folder_of_the_longest_ids_can_be_made_and_found_again(ids, tmp_path_factory):
    """A 128-character id (the most ids may have) %-quotes to up to 1,152 bytes: its folder
    could not be made ("File name too long"), so the run never started nor ended and its
    start was sent again every second for good (a review). Long names are shortened with a
    digest: each fits, two ids never share one, and ``agora logs`` finds the run again."""
    from agora.deploy.run_folders import task_runs

    root = tmp_path_factory.mktemp("runs")
    job, task = ids
    folder = run_folder(root, NODE, job, task, 0, 4)
    assert all(len(part.encode()) <= 200 for part in folder.relative_to(root).parts)
    folder.mkdir(parents=True)
    assert run_folder(root, NODE, task, job, 0, 4) != folder
    assert run_folder(root, NODE, job + "x", task, 0, 4).parent != folder.parent
    assert task_runs(root, job, task) == {0: [(4, NODE, folder)]}


_SLOW_REAPER = """
import ctypes, signal, subprocess, sys, time
from agora.agents.cluster.run_groups import kill_group
# this process adopts orphans and does not reap them: an init that is slow to reap (a
# container's; the probe saw ~1.9 s), made deterministic (SIGCHLD at its default: ignored,
# the kernel would reap them at once)
signal.signal(signal.SIGCHLD, signal.SIG_DFL)
ctypes.CDLL("libc.so.6").prctl(36, 1)                 # PR_SET_CHILD_SUBREAPER
p = subprocess.Popen(["sh", "-c", "sleep 30; echo no"], start_new_session=True)
time.sleep(0.3)
t0 = time.monotonic()
kill_group(p.pid, grace_s=10.0, leader=p)
print(time.monotonic() - t0, p.wait(timeout=5))
"""


@pytest.mark.timing
@pytest.mark.timeout(60)
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl: Linux")
def test_a_group_whose_members_ended_unreaped_is_not_waited_on_for_the_grace():
    # `sh` with a child: SIGTERM ends both; the leader's zombie and the orphaned `sleep`,
    # left unreaped, used to keep the group "alive" for the whole grace (a timeout_s of 2 s
    # killed at ~4-5 s)
    import subprocess

    out = subprocess.run([PY, "-c", _SLOW_REAPER], capture_output=True, text=True, timeout=50)
    assert out.returncode == 0, out.stderr[-600:]
    elapsed, code = out.stdout.split()
    assert float(elapsed) < 1.0 and int(code) == -15

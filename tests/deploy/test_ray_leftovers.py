"""After ``agora down`` stops Ray, what was left of the Ray session it started is killed (a
probe: Ray's DashboardAgent and RuntimeEnvAgent, ~870 MB, outlived 2 of 5 stops). The
session's processes are found by the folder in their command line and by parentage (Ray's
agents and workers rename themselves). A process tree of ``sleep``s stands for a session."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from agora.deploy.ray_runtime import kill_leftovers, session_processes

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc")


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except OSError:
        return False


@pytest.mark.timeout(60)
def test_a_sessions_processes_and_their_renamed_children_are_found_and_killed(tmp_path):
    marker = str(tmp_path / "session_2026-12-03_fake")
    # a "raylet" naming the session, with a child that renamed itself, as Ray's agents
    # do; and an unrelated process
    rename = "import os; os.execvp('sleep', ['ray::Agent', '60'])"
    root = subprocess.Popen(["sh", "-c", f": {marker}; {sys.executable} -c \"{rename}\" & "
                             f"sleep 60"])
    other = subprocess.Popen(["sleep", "60"])
    try:
        deadline = time.time() + 10
        while len(found := session_processes(marker)) < 3 and time.time() < deadline:
            time.sleep(0.1)
        pids = [p for p, _ in found]
        assert root.pid in pids and other.pid not in pids and os.getpid() not in pids
        assert len(pids) >= 3, found               # sh, its sleep, the renamed agent
        root.kill()                                # the "shutdown" ends the root only
        root.wait()
        assert kill_leftovers(found) >= 2
        deadline = time.time() + 5
        while any(_alive(p) for p in pids) and time.time() < deadline:
            time.sleep(0.1)
        assert not any(_alive(p) for p in pids)
        assert _alive(other.pid)
        assert kill_leftovers([(other.pid, b"not its start time")]) == 0   # a reused pid
        assert _alive(other.pid)
    finally:
        other.kill()
        root.kill()


def test_the_local_rays_dashboard_takes_another_port_when_8265_is_held():
    """`make run` failed to start ("Failed to bind to 127.0.0.1:8265 because it's already
    occupied") while another Ray on the machine held Ray's fixed dashboard port: the local
    Ray's dashboard now takes a free port then (agora up prints its address)."""
    import socket

    from agora.deploy.ray_runtime import dashboard_port

    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        taken = held.getsockname()[1]
        other = dashboard_port(taken)
        assert other != taken and 0 < other < 65536
    assert dashboard_port(taken) == taken          # free again: the preferred one

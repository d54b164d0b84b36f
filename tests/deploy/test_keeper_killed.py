"""``agora up``'s keeper killed (SIGKILL, the OOM killer): its serving process gets SIGTERM
and stops (the replicas, the agents, the runners and Ray: seconds to tens of seconds), but
``agora.pid`` names the dead keeper. Meanwhile:

- ``agora up`` (a systemd restart, the operator at once) read "nothing is running" and
  started a second service on the same ``out`` -- its replicas on the same logs, its runners
  on the same run folders -- while the old one was still there;
- ``agora down`` said "nothing is running" and left it to run;
- the old service's last act, removing ``ready.json``, removed the NEW service's: ``agora
  submit`` then says nothing runs, and the new keeper never learns it served (a later crash
  is taken for a failed start and not restarted).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from types import SimpleNamespace

import pytest

from agora.deploy import live, pid_file


@pytest.fixture()
def old_service(tmp_path):
    """The out folder as a SIGKILLed keeper leaves it while its serving child still stops:
    agora.pid and ready.json name the dead keeper; ready.json's serving_pid is alive."""
    agora = tmp_path / "bin" / "agora"              # looks like an Agora process
    agora.parent.mkdir()
    agora.symlink_to(sys.executable)
    serving = subprocess.Popen([str(agora), "-c", "import time; time.sleep(60)"])
    keeper = subprocess.Popen([sys.executable, "-c", "pass"])
    keeper_start = pid_file.start_ticks(keeper.pid)
    keeper.wait()                                   # the keeper is gone
    out = tmp_path / "out"
    out.mkdir()
    (out / live.PID).write_text(f"{keeper.pid} {keeper_start}\n")
    (out / live.READY).write_text(json.dumps({
        "pid": keeper.pid, "pid_start": keeper_start, "serving_pid": serving.pid,
        "serving_start": pid_file.start_ticks(serving.pid), "config": "up.yaml",
        "out": str(out)}))
    yield out, serving
    serving.kill()
    serving.wait()


def test_up_refuses_while_the_old_service_still_runs(old_service):
    out, serving = old_service
    line = live.already_running(out, "up.yaml", os.getpid())
    assert line is not None and str(serving.pid) in line, \
        "agora up would start a second service beside one still running from this out"


@pytest.mark.timeout(30)
def test_down_stops_the_old_service(old_service, capsys):
    out, serving = old_service
    live.down(SimpleNamespace(out=str(out)), "up.yaml", timeout_s=5)
    said = capsys.readouterr().out
    assert "nothing is running" not in said, said
    assert serving.wait(timeout=10) is not None


def test_a_service_closing_leaves_another_services_ready_file(old_service):
    out, serving = old_service
    # this process is a service that closes (an old one, a refused one): the ready file is
    # the other one's (serving_pid)
    live._close(None, out)
    assert (out / live.READY).is_file(), "a closing service removed another's ready.json"

"""A run whose node's raylet died stops itself (``instance_run.wait_fenced``): a Ray worker is
the raylet's child, so a worker whose parent is gone runs for a dead node, and the schedule
has placed its run elsewhere. A probe of ``agora up``: a site node's raylet killed, its Ray
workers lived on and so did their runs -- two instances ran to completion twice. Here a
plain process stands in for the raylet (it starts a "worker" that waits for a command as a
run's Ray task does) and is killed; no Ray is involved."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.processes import alive, wait_for

pytestmark = [pytest.mark.timeout(60),
              pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc")]

WORKER = textwrap.dedent("""
    import json, subprocess, sys
    from pathlib import Path
    from agora.agents.cluster.instance_run import wait_fenced
    out = Path(sys.argv[1])
    p = subprocess.Popen(["sleep", "60"], start_new_session=True)
    (out / "command").write_text(str(p.pid))
    code, why = wait_fenced(p, float(sys.argv[2]) if sys.argv[2] != "-" else None)
    (out / "end").write_text(json.dumps([code, why]))
""")

RAYLET = textwrap.dedent("""
    import subprocess, sys, time
    subprocess.Popen([sys.executable, "-c", sys.argv[1], *sys.argv[2:]])
    time.sleep(60)
""")


def written(path: Path) -> bool:
    """The file is there with its content: read between create and write it is "" (a flake
    in CI: the end read empty)."""
    return path.exists() and bool(path.read_text())


def run(tmp_path: Path, timeout: str) -> subprocess.Popen:
    raylet = subprocess.Popen([sys.executable, "-c", RAYLET, WORKER, str(tmp_path), timeout])
    wait_for(lambda: written(tmp_path / "command"))
    return raylet


def test_a_run_whose_raylet_died_kills_its_command_and_says_orphaned(tmp_path):
    raylet = run(tmp_path, "-")
    command = int((tmp_path / "command").read_text())
    assert alive(command)
    raylet.send_signal(signal.SIGKILL)
    raylet.wait()
    wait_for(lambda: written(tmp_path / "end"), what="the run's end")
    code, why = json.loads((tmp_path / "end").read_text())
    assert why == "orphaned" and code != 0
    assert not alive(command)


def test_a_run_past_its_timeout_is_killed_and_one_that_ends_is_waited_for(tmp_path):
    raylet = run(tmp_path, "0.5")
    try:
        wait_for(lambda: written(tmp_path / "end"), what="the run's end")
        assert json.loads((tmp_path / "end").read_text())[1] == "timeout"
    finally:
        raylet.kill()
    from agora.agents.cluster.instance_run import wait_fenced
    p = subprocess.Popen([sys.executable, "-c", "import sys; sys.exit(3)"])
    assert wait_fenced(p, None) == (3, None)


def test_a_run_stopped_for_its_dead_raylet_takes_what_it_left_outside_its_group(tmp_path):
    """A re-probe: `setsid` helpers of runs stopped for their dead raylet ran on to the end,
    beside the copies placed elsewhere."""
    from agora.agents.cluster.instance_run import end_orphaned
    from agora.agents.cluster.run_groups import run_marker, strays

    folder = tmp_path / "run"
    folder.mkdir()
    env = {"PATH": "/usr/bin:/bin",
           run_marker(folder).split(b"=", 1)[0].decode(): str(folder.resolve())}
    stray = subprocess.Popen(["sleep", "60"], env=env, start_new_session=True)
    try:
        # Popen returns once the child's exec released the parent (vfork), which can be
        # before the kernel sets the new environment /proc shows: a stray of a real run has
        # run for a while (a flake: it was not seen, and not killed)
        wait_for(lambda: stray.pid in strays(run_marker(folder)), what="the stray's environ")
        end = end_orphaned(folder, -9, 1.0)
        stray.wait(10)
    finally:
        if stray.poll() is None:
            stray.kill()
    assert end["kind"] == "lost" and end["strays_killed"] == 1
    assert json.loads((folder / "end.json").read_text())["kind"] == "lost"


def test_a_process_whose_parent_dies_ends_itself(tmp_path):
    """``exit_with_parent``, which a site agent and a node runner start in their Ray worker:
    their raylet gone, they would speak and run for a dead node (a re-probe: a dead node's
    agent and runner lived on beside the ones started again)."""
    actor = ("import sys, time; from pathlib import Path; "
             "from agora.agents.process import exit_with_parent; "
             "exit_with_parent(every_s=0.1); "
             "import os; Path(sys.argv[1], 'actor').write_text(str(os.getpid())); "
             "time.sleep(60)")
    raylet = subprocess.Popen([sys.executable, "-c", RAYLET, actor, str(tmp_path)])
    wait_for(lambda: written(tmp_path / "actor"))
    pid = int((tmp_path / "actor").read_text())
    assert alive(pid)
    raylet.kill()
    raylet.wait()
    wait_for(lambda: not alive(pid), timeout=10, what="the orphaned actor to end")


def test_a_worker_holding_a_run_ends_only_once_the_run_is_fenced(tmp_path):
    """Every Ray worker of agora's Ray ends with its raylet (``end_with_raylet``), but a run's
    worker first fences its run itself (``wait_fenced`` kills its command's group and
    records it lost): until the run lets go (``holding``) the worker stays."""
    actor = ("import sys, time; from pathlib import Path; "
             "from agora.agents.process import exit_with_parent, holding; "
             "exit_with_parent(every_s=0.1); d = Path(sys.argv[1]); "
             "import os; (d / 'actor').write_text(str(os.getpid())); "
             "cm = holding(); cm.__enter__(); "
             "end = time.time() + 60; "    # bounded: a failed test leaves no process
             "[time.sleep(0.05) for _ in iter(lambda: (d / 'release').exists() "
             "or time.time() > end, True)]; "
             "cm.__exit__(None, None, None); time.sleep(60)")
    raylet = subprocess.Popen([sys.executable, "-c", RAYLET, actor, str(tmp_path)])
    wait_for(lambda: written(tmp_path / "actor"))
    pid = int((tmp_path / "actor").read_text())
    raylet.kill()
    raylet.wait()
    time.sleep(1.0)
    assert alive(pid), "the worker ended while it held a run"
    (tmp_path / "release").touch()
    wait_for(lambda: not alive(pid), timeout=10, what="the worker to end once let go")

"""Review finding: a restarted runner (the next `agora up` after `agora down`, a runner
restarted by Ray, a crashed run worker) kills the process group named by a run's stale
``pid`` file without checking that the group is still the run's. Process ids are reused
(pid_max is 32768 on many hosts; a reboot starts over), so the group signalled -- SIGTERM,
then SIGKILL, as root when ``run_as`` is used -- may be any unrelated session: a shell, a
daemon, another run. Here a stale folder names the pid of an unrelated session leader (what
pid reuse gives)."""

import os
import signal
import subprocess
import sys
import time
from collections import OrderedDict
from pathlib import Path

import asyncio

from agora.agents.cluster.instance_run import RunRequest, run_folder, write_json
from agora.agents.cluster.run_groups import stop_run
from agora.agents.cluster.node_runner import NodeRunner

NODE = "site-a/n0"


def _unrelated_session():
    """An unrelated process in a session (and process group) of its own, as any daemon or
    login shell is: it does not carry any run's AGORA_RUN_DIR."""
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"],
                            start_new_session=True, env={"PATH": os.environ["PATH"]})


def _stale_run(root: Path, job: str, pid: int) -> Path:
    """What `agora down` leaves of a run (NodeRunner.shutdown): run.json, pid, stopping,
    and no end.json; its processes are long gone."""
    req = RunRequest(job=job, task="t", instance=0, run_id=7, attempt=1,
                     argv=("sleep", "100"), env=(), cwd=None, timeout_s=None, cpu=0.5,
                     mem_mib=16, gpus=0.0, site="site-a", node=NODE)
    folder = run_folder(root, NODE, job, "t", 0, 7)
    folder.mkdir(parents=True)
    from dataclasses import asdict
    write_json(folder / "run.json", asdict(req))
    (folder / "pid").write_text(str(pid))        # the run's pid then; another's now
    (folder / "stopping").touch()
    old = time.time() - 3600
    for name in ("run.json", "pid", "stopping"):
        os.utime(folder / name, (old, old))
    return folder


def _alive(p: subprocess.Popen) -> bool:
    return p.poll() is None


def test_stop_run_leaves_a_group_that_only_reuses_a_stale_pid(tmp_path):
    other = _unrelated_session()
    try:
        time.sleep(0.2)
        folder = _stale_run(tmp_path, "old", other.pid)
        stop_run(folder, grace_s=0.5)
        time.sleep(0.2)
        assert _alive(other), f"an unrelated process group was killed: {other.returncode}"
    finally:
        other.kill()
        other.wait()


def test_a_restarted_runner_recovering_old_runs_kills_no_unrelated_process(tmp_path):
    """The path `agora up` takes after `agora down` (resumed: the runs' folders are kept):
    the new runner's ``_recover`` stops what each ended-less run left -- by its old pid."""
    other = _unrelated_session()
    try:
        time.sleep(0.2)
        _stale_run(tmp_path, "old", other.pid)
        r = NodeRunner.__new__(NodeRunner)        # the runner's state, without Ray
        r.node, r.root, r.keep_runs = NODE, tmp_path, 10
        r._acked, r.finished, r.ended, r.seq = OrderedDict(), set(), {}, 0
        r._news, r.ray_node = asyncio.Event(), "ray-node"
        r._recover()
        ends = list(r.ended.values())
        assert [e.kind for e in ends] == ["lost"]     # as before: the run is reported lost
        time.sleep(0.2)
        assert _alive(other), f"an unrelated process group was killed: {other.returncode}"
    finally:
        other.kill()
        other.wait()


def test_stop_run_still_kills_the_runs_own_group(tmp_path):
    """The fix must keep this: a run whose group still lives (a runner restarted under a
    live run) is stopped, its leader and a child of it that dropped its environment."""
    folder = tmp_path / "run"
    folder.mkdir()
    env = {"PATH": os.environ["PATH"], "AGORA_RUN_DIR": str(folder.resolve())}
    p = subprocess.Popen(["sh", "-c", "env -i sleep 60 & sleep 60"], start_new_session=True,
                         env=env)
    try:
        time.sleep(0.3)
        (folder / "pid").write_text(str(p.pid))
        stop_run(folder, grace_s=0.5)
        p.wait(timeout=5)
        from agora.agents.cluster.run_groups import group_members
        deadline = time.time() + 3
        while group_members(p.pid) and time.time() < deadline:
            time.sleep(0.05)
        assert group_members(p.pid) == 0
    finally:
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

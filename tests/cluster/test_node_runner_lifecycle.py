"""The node runner on a real local Ray, over its life: stopping the runners kills a run's whole
tree and leaves it lost (not failed), a node keeps the folders of its last ``keep_runs``
acknowledged runs, and a run started as another user can neither read the site's key nor
forge its run's files."""

import os
import time
from pathlib import Path

import pytest
import ray

from agora.agents.cluster.node_runner import (RayNodeRunner, RunRequest, node_resource, run_folder,
                                              runner_name)
from tests.cluster.runner_support import NODE, PY, wait_end


@pytest.mark.timeout(120)
def test_stopping_the_runners_kills_a_runs_grandchildren_and_leaves_it_lost_not_failed(
        runner):
    # a probe: after `agora down` a run's grandchildren (the `sleep` of `sh -c "sleep 61;
    # ..."`) ran on, reparented to init: only the run's direct child got PDEATHSIG
    from agora.agents.cluster.run_groups import run_marker, strays
    from agora.agents.cluster.runner_fleet import stop_runners

    _, root = runner
    node = "site-a/n9"                      # a runner of its own (on the fixture's Ray node)
    opts = dict(name=runner_name(node), num_cpus=0, resources={node_resource(NODE): 0.001},
                max_restarts=-1, max_concurrency=100)
    h = RayNodeRunner.options(**opts).remote(node, str(root))
    r = RunRequest(job="orphan", task="t", instance=0, run_id=5, attempt=1,
                   argv=("sh", "-c", "sleep 61; echo end"), env=(), cwd=None, timeout_s=None,
                   cpu=0.5, mem_mib=16, gpus=0.0, site="site-a", node=node)
    ray.get(h.start.remote(r))
    folder = run_folder(root, node, "orphan", "t", 0, 5)
    marker = run_marker(folder)
    deadline = time.time() + 30
    while len(strays(marker)) < 2 and time.time() < deadline:     # sh and its sleep
        time.sleep(0.2)
    assert len(strays(marker)) >= 2
    # this runner stands on the fixture's Ray node, which carries NODE's resource, not its own
    stop_runners([node], "agora-test-runner", carried=lambda: {node_resource(node)})
    stopped = time.time()
    assert strays(marker) == []                                    # nothing of it runs
    assert not (folder / "end.json").exists()
    time.sleep(1.0)
    h = RayNodeRunner.options(**opts).remote(node, str(root))     # the next start
    e = wait_end(h, "orphan")
    assert (e.kind, e.reason) == ("lost", "the service was stopped (agora down) while it ran")
    assert e.start < e.end <= stopped       # from when it started to when it was stopped
    ray.kill(h, no_restart=True)



@pytest.mark.timeout(60)
def test_stopping_a_runner_no_live_ray_node_can_hold_does_not_wait_for_it(runner):
    """A probe: agora down with one node's Ray node dead took 16.5-20 s instead of 1.6 --
    the shutdown of that node's runner (unplaced, waiting for a Ray node with its resource)
    was waited for its whole timeout. It is now killed without waiting; the runners of live
    nodes are still asked to stop what they run (the test above)."""
    from agora.agents.cluster.runner_fleet import stop_runners

    node = "site-a/gone"                     # no Ray node carries its resource
    RayNodeRunner.options(name=runner_name(node), num_cpus=0,
                          resources={node_resource(node): 0.001}, max_restarts=-1,
                          lifetime="detached").remote(node, "/nonexistent")
    t0 = time.monotonic()
    stop_runners([node], "agora-test-runner", timeout_s=15.0)
    assert time.monotonic() - t0 < 5.0
    with pytest.raises(ValueError):          # killed: its name is free
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            ray.get_actor(runner_name(node), namespace="agora-test-runner")
            time.sleep(0.2)


@pytest.mark.timeout(120)
def test_a_node_keeps_the_folders_of_its_last_keep_runs_acknowledged_runs(runner):
    """A node running for months: only the newest ``keep_runs`` acknowledged runs keep
    their folders (and logs); an unacknowledged end and a live run keep theirs whatever
    their age; a restarted runner trims what its predecessor left, oldest acknowledged
    first."""
    _, root = runner
    node = "site-a/n8"                      # a runner of its own (on the fixture's Ray node)
    opts = dict(name=runner_name(node), num_cpus=0, resources={node_resource(NODE): 0.001},
                max_restarts=-1, max_concurrency=100)
    h = RayNodeRunner.options(**opts).remote(node, str(root), 0, None, 2)

    def run(job, argv=(PY, "-c", "print('out')")):
        r = RunRequest(job=job, task="t", instance=0, run_id=1, attempt=1, argv=tuple(argv),
                       env=(), cwd=None, timeout_s=None, cpu=0.5, mem_mib=16, gpus=0.0,
                       site="site-a", node=node)
        assert ray.get(h.start.remote(r)) == "started"

    def folder(job):
        return run_folder(root, node, job, "t", 0, 1)

    run("unacked")
    wait_end(h, "unacked")                  # ended, never acknowledged: kept
    run("live", (PY, "-c", "import time; time.sleep(60)"))
    for k in range(4):
        run(f"k{k}")
        ray.get(h.ack.remote([wait_end(h, f"k{k}").seq]))
        time.sleep(0.05)                    # acknowledged in order, a mtime apart
    assert [j for j in ("k0", "k1", "k2", "k3") if folder(j).exists()] == ["k2", "k3"]
    assert not folder("k0").parent.parent.exists(), "the job's empty folders go too"
    assert (folder("unacked") / "end.json").exists() and (folder("live") / "run.json").exists()
    out, done = ray.get(h.read_log.remote("k3", "t", 0, 1))
    assert out == b"out\n" and done
    # a restart with a smaller bound trims what was left, oldest acknowledged first
    ray.kill(h, no_restart=True)
    h = RayNodeRunner.options(**opts).remote(node, str(root), 0, None, 1)
    ray.get(h.ping.remote())
    assert [j for j in ("k2", "k3") if folder(j).exists()] == ["k3"]
    assert folder("unacked").exists()
    assert ray.get(h.start.remote(RunRequest(
        job="k3", task="t", instance=0, run_id=1, attempt=1, argv=(PY, "-c", "pass"), env=(),
        cwd=None, timeout_s=None, cpu=0.5, mem_mib=16, gpus=0.0, site="site-a",
        node=node))) == "ended"             # a kept run is not run again
    ray.kill(h, no_restart=True)


@pytest.mark.timeout(120)
def test_a_runs_command_and_what_it_starts_run_at_the_instance_niceness(runner):
    """The runner raises each run's command to its niceness as it starts (the work yields to
    the scheduler's own processes, which run at the Ray workers' 0 under agora up; this
    fixture's Ray keeps its own 15, so the test asks for more); what the command starts
    inherits it."""
    if os.getpriority(os.PRIO_PROCESS, 0) != 0:
        pytest.skip("the expected niceness assumes the tests run at niceness 0")
    _, root = runner
    node = "site-a/n5"                      # a runner of its own (on the fixture's Ray node)
    opts = dict(name=runner_name(node), num_cpus=0, resources={node_resource(NODE): 0.001},
                max_restarts=-1, max_concurrency=100)
    h = RayNodeRunner.options(**opts).remote(node, str(root), 0, None, 10, 17)
    r = RunRequest(job="nice", task="t", instance=0, run_id=1, attempt=1,
                   argv=("sh", "-c", "nice; sh -c nice"), env=(), cwd=None, timeout_s=None,
                   cpu=0.5, mem_mib=16, gpus=0.0, site="site-a", node=node)
    assert ray.get(h.start.remote(r)) == "started"
    wait_end(h, "nice")
    out, done = ray.get(h.read_log.remote("nice", "t", 0, 1))
    assert done and out == b"17\n17\n", out     # from its first instruction on
    ray.kill(h, no_restart=True)


def test_nicer_raises_a_niceness_and_never_lowers_it():
    import subprocess

    from agora.agents.process import nicer

    base = os.getpriority(os.PRIO_PROCESS, 0)
    if base > 15:
        pytest.skip("the tests run too nice to raise a niceness by 4")
    p = subprocess.Popen(["sleep", "5"])
    try:
        nicer(p.pid, base + 4)
        assert os.getpriority(os.PRIO_PROCESS, p.pid) == base + 4
        nicer(p.pid, base + 1)
        assert os.getpriority(os.PRIO_PROCESS, p.pid) == base + 4
    finally:
        p.kill()
        p.wait()
    nicer(p.pid, 5)                         # gone: left alone, no error


def _euid_logger(tmp_path: Path, shared: Path) -> Path | None:
    """A shared object that appends its process's effective uid to $EUID_LOG when loaded
    (None without a C compiler); world-readable, for a run as another user."""
    import shutil
    import subprocess

    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        return None
    src = tmp_path / "euid.c"
    src.write_text('#include <stdio.h>\n#include <stdlib.h>\n#include <unistd.h>\n'
                   '__attribute__((constructor)) static void log_euid(void) {\n'
                   '  const char *p = getenv("EUID_LOG"); FILE *f;\n'
                   '  if (p && (f = fopen(p, "a"))) { fprintf(f, "%d\\n", geteuid()); '
                   'fclose(f); } }\n')
    out = shared / "euid.so"
    subprocess.run([cc, "-shared", "-fPIC", "-o", str(out), str(src)], check=True,
                   capture_output=True, timeout=60)
    out.chmod(0o755)
    return out


def _shared_root() -> Path:
    """A runs folder another user can reach (pytest's tmp folders are root's alone)."""
    import tempfile

    root = Path(tempfile.mkdtemp(prefix="agora-runs-", dir="/tmp"))
    root.chmod(0o755)
    return root


@pytest.mark.timeout(120)
@pytest.mark.skipif(os.geteuid() != 0, reason="switching users needs root")
def test_a_run_as_another_user_cannot_read_the_sites_key_nor_forge_its_runs_files(runner,
                                                                                 tmp_path):
    """A review: a job of another site, run on this site's node, read the site's key (a 0600
    file of the runner's user) and could sign as the site. With ``run_as`` the run has that
    user's rights only: the key is unreadable, its run folder's markers are not its to
    write, Ray's variables are not inherited, and it writes in a folder of its own."""
    import pwd
    import shutil

    try:
        nobody = pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("no user 'nobody'")
    key = tmp_path / "site-a.key"
    key.write_text("THE-SITES-SECRET")
    key.chmod(0o600)
    root = _shared_root()
    node = "site-a/n7"
    h = RayNodeRunner.options(name=runner_name(node), num_cpus=0,
                              resources={node_resource(NODE): 0.001}, max_restarts=-1,
                              max_concurrency=100).remote(node, str(root), 1, "nobody")
    try:
        script = (f"id -u; cat {key}; echo ray=${{RAY_RAYLET_PID:-none}}; "
                  f"echo 1 > ../pid && echo forged; echo out > result.txt")
        r = RunRequest(job="theft", task="t", instance=0, run_id=3, attempt=1,
                       argv=("sh", "-c", script), env=(), cwd=None, timeout_s=None, cpu=0.5,
                       mem_mib=16, gpus=0.0, site="site-a", node=node)
        ray.get(h.start.remote(r))
        e = wait_end(h, "theft")
        folder = run_folder(root, node, "theft", "t", 0, 3)
        out = (folder / "stdout").read_text()
        assert out.splitlines()[0] == str(nobody.pw_uid), out
        assert "THE-SITES-SECRET" not in out and "forged" not in out
        assert "ray=none" in out
        assert "Permission denied" in (folder / "stderr").read_text()
        assert (folder / "pid").read_text().strip() != "1"
        assert e.kind == "completed"                          # its own folder is writable
        assert (folder / "work" / "result.txt").stat().st_uid == nobody.pw_uid
        # a cwd its user may not enter: refused, not entered by the runner on its behalf
        # (Popen entered it as root before the switch: below /root lies Ray's token)
        secret_dir = tmp_path / "private"
        secret_dir.mkdir()
        (secret_dir / "token").write_text("RAY-TOKEN")
        r2 = RunRequest(**{**r.__dict__, "job": "cwdtheft", "argv": ("cat", "token"),
                           "cwd": str(secret_dir)})
        ray.get(h.start.remote(r2))
        e2 = wait_end(h, "cwdtheft")
        out2 = (run_folder(root, node, "cwdtheft", "t", 0, 3) / "stdout").read_text()
        assert e2.kind == "failed" and "may not enter" in e2.reason, e2.reason
        assert "RAY-TOKEN" not in out2
        # nothing runs as root with the job's environment: an LD_PRELOAD the job names is
        # loaded by its own processes only (setpriv, run as root with it, loaded it)
        so = _euid_logger(tmp_path, root)
        if so is not None:
            log = root / "euids"
            r3 = RunRequest(**{**r.__dict__, "job": "preload", "argv": ("true",),
                               "env": (("LD_PRELOAD", str(so)), ("EUID_LOG", str(log)))})
            log.parent.chmod(0o777)
            ray.get(h.start.remote(r3))
            assert wait_end(h, "preload").kind == "completed"
            euids = set(log.read_text().split())
            assert euids and "0" not in euids, euids
        # a user this node lacks fails the run, saying so
        bad = RayNodeRunner.options(name=runner_name("site-a/n8"), num_cpus=0,
                                    resources={node_resource(NODE): 0.001},
                                    max_concurrency=10).remote("site-a/n8", str(root), 0,
                                                               "no-such-user-x")
        ray.get(bad.start.remote(RunRequest(**{**r.__dict__, "job": "nouser",
                                               "node": "site-a/n8"})))
        e = wait_end(bad, "nouser")
        assert e.kind == "failed" and "no such user on this node" in e.reason
        ray.kill(bad, no_restart=True)
    finally:
        ray.kill(h, no_restart=True)
        shutil.rmtree(root, ignore_errors=True)

"""Review finding (low): with ``run_as``, the runner checks a run's program as root before it
switches users (``cannot_start``: ``os.path.exists`` / ``os.access`` / ``shutil.which``), and
the run's end -- read by the job's origin site -- says which: "No such file or directory"
(127) for a path that does not exist, "Permission denied" (126) for one that does. So another
site's job learns what exists in folders its user may not enter (``/root/.ssh``, the site's
key folder) -- the same folders ``cwd`` refuses to enter."""

import os
import pwd
import shutil
import tempfile
from pathlib import Path
from types import SimpleNamespace

import pytest

from agora.agents.cluster import instance_run
from agora.agents.cluster.instance_run import RunRequest

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="switching users needs root")


@pytest.fixture(autouse=True)
def no_ray(monkeypatch):
    ctx = SimpleNamespace(get_node_id=lambda: "ray-node-x")
    monkeypatch.setattr(instance_run, "ray", SimpleNamespace(get_runtime_context=lambda: ctx))


@pytest.fixture
def shared_root():
    root = Path(tempfile.mkdtemp(prefix="rv-runs-", dir="/tmp"))
    root.chmod(0o755)
    yield root
    shutil.rmtree(root, ignore_errors=True)


def _end(root: Path, name: str, argv, env=()) -> dict:
    folder = root / name
    folder.mkdir()
    req = RunRequest(job=name, task="t", instance=0, run_id=1, attempt=1, argv=tuple(argv),
                     env=tuple(env), cwd=None, timeout_s=30, cpu=0.5, mem_mib=16, gpus=0.0,
                     site="site-a", node="site-a/n0")
    return instance_run._execute_run(req, str(folder), "nobody")


def test_a_run_as_another_user_learns_nothing_of_folders_it_may_not_enter(shared_root):
    try:
        pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("no user 'nobody'")
    private = shared_root / "site-keys"
    private.mkdir(mode=0o700)
    (private / "site-a.key").write_text("SECRET")
    (private / "site-a.key").chmod(0o600)
    there = _end(shared_root, "probe1", [str(private / "site-a.key")])
    absent = _end(shared_root, "probe2", [str(private / "site-b.key")])
    assert (there["exit_code"], there["reason"].replace("site-a", "X")) == \
        (absent["exit_code"], absent["reason"].replace("site-b", "X")), (there, absent)
    # the same through PATH
    (private / "tool").write_text("#!/bin/sh\n")
    (private / "tool").chmod(0o700)
    there = _end(shared_root, "probe3", ["tool"], env=[("PATH", str(private))])
    absent = _end(shared_root, "probe4", ["tool2"], env=[("PATH", str(private))])
    assert there["exit_code"] == absent["exit_code"], (there, absent)

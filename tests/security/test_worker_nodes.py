"""Finding 2 (issue 16), the part about worker nodes: ``agora up`` against a Ray cluster
(``ray.address``) whose worker nodes -- one per site, started with ``ray start`` as an
operator would -- run with a working directory, a Ray temp dir and a home directory of their
own, none of them the head's. The site agents and the work land on those nodes, make their
keys there and run jobs to completion: nothing an agent or a runner needs is a head-node
path relative to the head's folders, the head's temp dir or its home. The Ray processes use
token authentication with a token made for the test. Slow (its own Ray cluster and a whole
``agora up``): ``make test-slow``."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml

from tests.cluster.test_replay import random_checkpoint
from tests.deploy.test_live_cli import CLUSTER, job_line

ROOT = Path(__file__).resolve().parents[2]
RAY = str(Path(sys.executable).parent / "ray")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
@pytest.mark.timeout(480)
def test_agents_and_work_run_on_worker_nodes_with_their_own_folders(tmp_path):
    from agora.agents.workloads.native import read_cluster
    from agora.deploy.ray_runtime import node_resources

    (tmp_path / "cluster.yaml").write_text(CLUSTER)
    cluster = read_cluster(tmp_path / "cluster.yaml")
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(16),
           "RAY_USAGE_STATS_ENABLED": "0"}
    port = free_port()
    head = tmp_path / "head"
    for d in ("cwd", "home"):
        (head / d).mkdir(parents=True)

    short = Path(tempfile.mkdtemp(prefix="agw", dir="/tmp"))   # Ray's sockets: < 108 bytes

    def ray_start(where: Path, *args: str) -> None:
        (short / where.name).mkdir()
        (where / "ray").symlink_to(short / where.name)          # shown where it lives
        p = subprocess.run([RAY, "start", f"--temp-dir={short / where.name}", *args],
                           cwd=where / "cwd", env={**env, "HOME": str(where / "home")},
                           capture_output=True, text=True, timeout=180)
        assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]

    def agora(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "agora.deploy.cli", *args],
                              cwd=head / "cwd", env={**env, "HOME": str(head / "home")},
                              capture_output=True, text=True, timeout=timeout)

    workers = {}
    try:
        ray_start(head, "--head", f"--port={port}", "--num-cpus=1",
                  "--include-dashboard=false")
        for site in cluster.site_names:
            w = workers[site] = tmp_path / f"worker-{site}"
            for d in ("cwd", "home"):
                (w / d).mkdir(parents=True)
            res = node_resources(cluster, site)
            ray_start(w, f"--address=127.0.0.1:{port}", f"--num-cpus={res['num_cpus']}",
                      f"--memory={res['memory']}", f"--resources={json.dumps(res['resources'])}")
        cfg = {"cluster": str(tmp_path / "cluster.yaml"),
               "policy": str(random_checkpoint(tmp_path / "r.pt")),
               "out": str(tmp_path / "out"), "round_timeout_s": 1.0,
               "metrics": {"enabled": False}, "web": {"enabled": False},
               "ray": {"address": f"127.0.0.1:{port}", "dashboard": False}}
        (tmp_path / "up.yaml").write_text(yaml.safe_dump(cfg))
        up = str(tmp_path / "up.yaml")
        p = agora("up", "--detach", "--config", up)
        assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
        try:
            # each instance reports where it ran: its node's folders, never the head's
            argv = [sys.executable, "-c", "import os, tempfile; print(os.environ.get('HOME'), "
                    "os.environ.get('RAY_TMPDIR', ''), tempfile.gettempdir())"]
            lines = [job_line(f"where-{k}", argv) for k in range(4)]
            (tmp_path / "jobs.jsonl").write_text("\n".join(lines) + "\n")
            p = agora("submit", str(tmp_path / "jobs.jsonl"), "--follow", "--timeout", "240",
                      "--config", up)
            assert p.returncode == 0, p.stdout + p.stderr
            homes = set()
            for k in range(4):
                p = agora("logs", f"where-{k}/t", "--config", up)
                assert p.returncode == 0, p.stderr
                homes.add(p.stdout.split()[0])
            assert homes <= {str(w / "home") for w in workers.values()}, homes
            assert str(head / "home") not in homes
            p = agora("site", "list", "--json", "--config", up)
            assert p.returncode == 0, p.stderr
            assert all(s["key"] for s in json.loads(p.stdout)["sites"])
        finally:
            p = agora("down", "--config", up)
            assert p.returncode == 0, p.stderr
    finally:
        _stop_own_ray(short)
        shutil.rmtree(short, ignore_errors=True)


def _stop_own_ray(temp_root: Path) -> None:
    """Stop the Ray processes this test started, found by its temp dir on their command
    lines (their workers end with their raylet). Not ``ray stop --force``: that kills every
    Ray on the machine -- it killed a long soak of ``agora up`` running beside the suite."""
    import signal
    import time

    import psutil

    def ours() -> list[psutil.Process]:
        found = []
        for p in psutil.process_iter(["cmdline"]):
            try:
                if any(str(temp_root) in a for a in p.info["cmdline"] or ()):
                    found.append(p)
            except (psutil.Error, TypeError):
                continue
        return found

    for sig in (signal.SIGTERM, signal.SIGKILL):
        procs = ours()
        for p in procs:
            try:
                p.send_signal(sig)
            except psutil.Error:
                pass
        psutil.wait_procs(procs, timeout=15)
        if not ours():
            return
        time.sleep(0.5)

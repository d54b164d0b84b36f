"""Finding 2 (issue 16), as closely as one machine allows: ``agora up`` with its replicas
bound to a non-loopback address -- the root end of a veth pair whose other end lives in a
network namespace this test creates -- and a user in that namespace (another "host": its own
interfaces and its own loopback) submitting jobs, following them to their end and reading
the schedule over mutual TLS, through nothing but that link. Slow (a whole ``agora up``):
``make test-slow``. Needs root and iproute2; skipped, saying so, without them."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.cluster.test_replay import random_checkpoint
from tests.deploy.test_live_cli import CLUSTER, agora, job_line

ROOT = Path(__file__).resolve().parents[2]
NS = f"agora-t{os.getpid()}"
HOST_IF, NS_IF = f"agv{os.getpid() % 100000}a", f"agv{os.getpid() % 100000}b"
NET = f"10.231.{os.getpid() % 250}"
HOST_IP, NS_IP = f"{NET}.1", f"{NET}.2"


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True, timeout=30)


@pytest.fixture()
def namespace():
    if shutil.which("ip") is None or os.geteuid() != 0:
        pytest.skip("needs root and iproute2 to make a network namespace")
    try:
        _ip("netns", "add", NS)
    except subprocess.CalledProcessError as e:
        pytest.skip(f"cannot make a network namespace here: {e.stderr.strip()}")
    try:
        _ip("link", "add", HOST_IF, "type", "veth", "peer", "name", NS_IF)
        _ip("link", "set", NS_IF, "netns", NS)
        _ip("addr", "add", f"{HOST_IP}/24", "dev", HOST_IF)
        _ip("link", "set", HOST_IF, "up")
        _ip("netns", "exec", NS, "ip", "addr", "add", f"{NS_IP}/24", "dev", NS_IF)
        _ip("netns", "exec", NS, "ip", "link", "set", NS_IF, "up")
        _ip("netns", "exec", NS, "ip", "link", "set", "lo", "up")
        yield NS
    finally:
        subprocess.run(["ip", "link", "del", HOST_IF], capture_output=True, timeout=30)
        subprocess.run(["ip", "netns", "del", NS], capture_output=True, timeout=30)


def in_namespace(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    """``agora *args`` run inside the namespace."""
    return subprocess.run(["ip", "netns", "exec", NS, sys.executable, "-m", "agora.deploy.cli",
                           *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
@pytest.mark.timeout(420)
def test_a_user_in_another_network_namespace_runs_jobs_through_replicas_on_its_link(
        namespace, tmp_path):
    (tmp_path / "cluster.yaml").write_text(CLUSTER)
    cfg = {"cluster": "cluster.yaml", "policy": str(random_checkpoint(tmp_path / "r.pt")),
           "out": "out", "round_timeout_s": 1.0, "replica_host": HOST_IP,
           "metrics": {"enabled": False}, "web": {"enabled": False},
           "ray": {"num_cpus": 2, "dashboard": False}}
    (tmp_path / "up.yaml").write_text(yaml.safe_dump(cfg))
    up = str(tmp_path / "up.yaml")
    p = agora("up", "--detach", "--config", up)
    assert p.returncode == 0, p.stderr + p.stdout
    try:
        coordinator = yaml.safe_load((tmp_path / "out" / "coordinator" /
                                      "coordinator.yaml").read_text())
        assert all(r.startswith(f"{HOST_IP}:") for r in coordinator["replicas"])
        assert coordinator["tls"]["enabled"] is True
        # the namespace has its own loopback: nothing of Agora's is there
        port = coordinator["replicas"][0].rsplit(":", 1)[1]
        probe = subprocess.run(["ip", "netns", "exec", NS, sys.executable, "-c",
                                f"import socket; socket.create_connection(('127.0.0.1', {port}),"
                                f" timeout=2)"], capture_output=True, text=True, timeout=30)
        assert probe.returncode != 0 and "refused" in probe.stderr.lower(), probe.stderr

        (tmp_path / "jobs.jsonl").write_text(job_line("over-the-link", ["true"]) + "\n")
        p = in_namespace("submit", str(tmp_path / "jobs.jsonl"), "--follow", "--timeout",
                         "180", "--config", up)
        assert p.returncode == 0 and "over-the-link: completed" in p.stdout, \
            p.stdout + p.stderr
        p = in_namespace("schedule", "get", "--job", "over-the-link", "--json", "--config", up)
        assert p.returncode == 0, p.stderr
        answer = json.loads(p.stdout)
        assert answer["source"] == "live" and answer["allocations"], answer
        assert answer["allocations"][0]["site"] in ("east", "west")
    finally:
        agora("down", "--config", up)

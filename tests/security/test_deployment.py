"""Finding 2 (issue 16): a real multi-node deployment failed at start. Replicas were bound to
127.0.0.1, and agents were handed head-node paths. Now the replicas' address is
configuration (``replica_host``; with ``ray.address`` the head's address as Ray sees it), the
certificates ``agora up`` writes name it, and each agent gets what it needs through Ray as
bytes -- its own site's key and certificate only, never another site's.

What this machine allows: replicas bound to its non-loopback address, served over mutual TLS
whose certificates name that address; and (test_network_namespace.py, slow) a whole ``agora
up`` whose replicas are bound to a veth address, used by a client in another network
namespace. Worker nodes with their own working and temp directories are not tested."""

from __future__ import annotations

import asyncio
import socket
from dataclasses import replace

import pytest

from agora.deploy.local_group import LocalGroup
from agora.deploy.launch import _peer_credentials, _site_pem, replica_host
from agora.deploy.up_config import load_up_config
from tests.coordinator.test_coordinator_grpc import CLUSTER, job

CLIENTS = ["site:east", "site:west", "site:edge", "operator"]


def non_loopback_address() -> str | None:
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("192.0.2.1", 9))         # no packet is sent
            addr = s.getsockname()[0]
    except OSError:
        return None
    return None if addr.startswith("127.") else addr


def test_replica_host_is_configuration(tmp_path):
    (tmp_path / "u.yaml").write_text("out: o\n")
    cfg = load_up_config(tmp_path / "u.yaml")
    assert replica_host(cfg) == "127.0.0.1"                          # a local Ray
    assert replica_host(replace(cfg, replica_host="10.1.2.3")) == "10.1.2.3"
    on_cluster = replace(cfg, ray=replace(cfg.ray, address="auto"))
    from ray.util import get_node_ip_address
    assert replica_host(on_cluster) == get_node_ip_address()          # dialled from elsewhere
    (tmp_path / "bad.yaml").write_text("replica_host: 7\n")
    with pytest.raises(Exception, match="replica_host"):
        load_up_config(tmp_path / "bad.yaml")


def test_each_agent_gets_its_own_sites_key_only(tmp_path):
    (tmp_path / "u.yaml").write_text("out: o\n")
    cfg = load_up_config(tmp_path / "u.yaml")
    from agora.deploy.certs import ensure_all
    ensure_all(cfg.tls.certs_dir, ["east", "west"], replicas=4)
    ca, cert, key = _site_pem(cfg, "east")
    assert key == (cfg.tls.certs_dir / "site-east.key").read_bytes()
    assert key != (cfg.tls.certs_dir / "site-west.key").read_bytes()
    assert set(_peer_credentials(cfg, ["east"]).pairs) == {"east"}
    off = replace(cfg, tls=replace(cfg.tls, enabled=False))
    assert _site_pem(off, "east") is None and _peer_credentials(off, ["east"]) is None


@pytest.mark.timeout(120)
def test_replicas_on_a_non_loopback_address_serve_over_tls_naming_it(tmp_path):
    host = non_loopback_address()
    if host is None:
        pytest.skip("this machine has no non-loopback IPv4 address")
    g = LocalGroup(tmp_path, n=4, clients=CLIENTS, cluster=str(CLUSTER), key_seed=b"host",
                   tls_dir=tmp_path / "certs", host=host, round_timeout_s=1.0,
                   site_timeout_s=3600.0)
    assert all(a.startswith(f"{host}:") for a in g.config.replicas)

    async def go():
        async with g.client("operator") as op:
            res = await op.submit_jobs([job("far", origin="east")])
            assert res.accepted == 1
            return [r.job.id for r in (await op.ledger()).jobs]
    with g.serving():
        assert asyncio.run(asyncio.wait_for(go(), 60)) == ["far"]

"""Finding 2 (issue 16): a real multi-node deployment failed at start. Replicas were bound to
127.0.0.1, and agents were handed head-node paths. Now the replicas' address is
configuration (``replica_host``; with ``ray.address`` the head's address as Ray sees it), the
certificates ``agora up`` writes name it, and each agent makes its own keys on its node
(item 1: the operator admits the public key and certifies the TLS key from a certificate
request; nothing secret crosses), with everything else it needs handed over through Ray as
bytes.

What this machine allows: replicas bound to its non-loopback address, served over mutual TLS
whose certificates name that address; and (test_network_namespace.py, slow) a whole ``agora
up`` whose replicas are bound to a veth address, used by a client in another network
namespace; and (test_worker_nodes.py, slow) ``agora up`` on a Ray cluster whose worker
nodes run with their own working, temp and home directories."""

from __future__ import annotations

import asyncio
import base64
import socket
from dataclasses import replace

import pytest

from agora.deploy.local_group import LocalGroup
from agora.deploy.launch import replica_host
from agora.deploy.up_config import load_up_config
from tests.coordinator.grpc_helpers import CLUSTER, job

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


def test_a_sites_tls_key_is_made_on_its_node_and_only_a_request_leaves_it(tmp_path):
    """The agent's half (``NodeIdentity``, on the site's node) and the operator's half
    (``certs.sign_request``, where the CA is): what crosses is a public key, a certificate
    request and the certificate; the TLS and signing keys stay in 0600 files on the node."""
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    from agora.coordinator.site_key import NodeIdentity
    from agora.deploy.certs import make_ca, sign_request

    ca_dir, other_ca = tmp_path / "ca", tmp_path / "other-ca"
    make_ca(ca_dir)
    make_ca(other_ca)
    node = NodeIdentity(site="east", key_dir=str(tmp_path / "node"),
                        ca=(ca_dir / "ca.crt").read_bytes())
    assert node.certificate() is None and node.tls_pem() is None
    csr = node.tls_request()
    assert b"PRIVATE" not in csr
    files = sorted(p.name for p in (tmp_path / "node").iterdir())
    assert files == ["site-east.tls.key"]
    assert (tmp_path / "node" / "site-east.tls.key").stat().st_mode & 0o777 == 0o600
    with pytest.raises(ValueError, match="not for this node"):   # another CA's certificate
        node.install(sign_request(other_ca, "site-east", csr))
    cert = sign_request(ca_dir, "site-east", csr, ("localhost", "10.9.8.7"))
    node.install(cert)
    assert node.certificate() == cert
    c = x509.load_pem_x509_certificate(cert)
    assert "CN=site-east" in c.subject.rfc4514_string()
    sans = c.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "10.9.8.7" in [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)]
    ca, got, key = node.tls_pem()
    assert got == cert and key == (tmp_path / "node" / "site-east.tls.key").read_bytes()
    server, channel = node.build("east")
    assert server is not None and channel is not None
    der = bytearray(x509.load_pem_x509_csr(csr).public_bytes(Encoding.DER))
    der[-1] ^= 1                                      # the request's signature, tampered
    forged = b"-----BEGIN CERTIFICATE REQUEST-----\n" + base64.encodebytes(bytes(der)) + \
        b"-----END CERTIFICATE REQUEST-----\n"
    with pytest.raises(ValueError, match="signature"):
        sign_request(ca_dir, "site-east", forged)
    # the signing key beside it: made there, 0600, its public half is what is admitted
    pub = node.public_key()
    assert len(pub) == 32 and (tmp_path / "node" / "site-east.key").stat().st_mode \
        & 0o777 == 0o600


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


def test_a_damaged_or_readable_tls_key_on_the_node_is_refused_naming_the_file(tmp_path):
    from agora.coordinator.site_key import NodeIdentity

    node = NodeIdentity(site="east", key_dir=str(tmp_path / "node"), ca=None)
    node.tls_request()
    key = tmp_path / "node" / "site-east.tls.key"
    key.chmod(0o644)
    with pytest.raises(ValueError, match="0600"):
        node.tls_request()
    key.chmod(0o600)
    key.write_bytes(b"junk")
    with pytest.raises(ValueError, match="site-east.tls.key: not a PEM private key"):
        node.tls_request()

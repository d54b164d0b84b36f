"""Tests of deploy/certs.py: the CA and component certificates, and mutual TLS with them on a
real gRPC server on loopback (the standard health service): a client with a certificate from
the CA gets through; one without a certificate, or with one from another CA, is refused."""

from __future__ import annotations

from concurrent import futures

import grpc
import pytest
from cryptography import x509
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from agora.deploy.certs import channel_credentials, issue, make_all, make_ca, server_credentials

pytestmark = pytest.mark.timeout(60)


def test_make_all_issues_one_certificate_per_component_signed_by_the_ca(tmp_path):
    made = make_all(tmp_path, ["east", "west"], replicas=4)
    assert [m.name for m in made] == ["ca", "site-east", "site-west", "replica-0", "replica-1",
                                      "replica-2", "replica-3", "client"]
    ca = x509.load_pem_x509_certificate((tmp_path / "ca.crt").read_bytes())
    for m in made[1:]:
        cert = x509.load_pem_x509_certificate(m.cert.read_bytes())
        cert.verify_directly_issued_by(ca)
        assert cert.subject.rfc4514_string().startswith(f"CN={m.name}")
        assert oct(m.key.stat().st_mode & 0o777) == "0o600"


def test_issue_refuses_a_name_that_is_not_a_file_name(tmp_path):
    make_ca(tmp_path)
    with pytest.raises(ValueError, match="name: '../x'"):
        issue(tmp_path, "../x")


@pytest.fixture
def tls_server(tmp_path):
    certs = tmp_path / "certs"
    make_all(certs, ["a"], replicas=1)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    health_pb2_grpc.add_HealthServicer_to_server(health.HealthServicer(), server)
    port = server.add_secure_port("127.0.0.1:0", server_credentials(certs, "replica-0"))
    server.start()
    yield certs, f"localhost:{port}"
    server.stop(None)


def _check(target: str, creds) -> int:
    with grpc.secure_channel(target, creds) as ch:
        return health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(),
                                                    timeout=5).status


def test_a_client_with_a_certificate_from_the_ca_is_served(tls_server):
    certs, target = tls_server
    assert _check(target, channel_credentials(certs, "client")) == \
        health_pb2.HealthCheckResponse.SERVING


def test_a_client_without_a_certificate_is_refused(tls_server):
    certs, target = tls_server
    creds = grpc.ssl_channel_credentials(root_certificates=(certs / "ca.crt").read_bytes())
    with pytest.raises(grpc.RpcError) as e:
        _check(target, creds)
    assert e.value.code() == grpc.StatusCode.UNAVAILABLE


def test_a_client_with_another_cas_certificate_is_refused(tls_server, tmp_path):
    certs, target = tls_server
    other = tmp_path / "other"
    make_all(other, [], replicas=0)
    creds = grpc.ssl_channel_credentials(root_certificates=(certs / "ca.crt").read_bytes(),
                                         private_key=(other / "client.key").read_bytes(),
                                         certificate_chain=(other / "client.crt").read_bytes())
    with pytest.raises(grpc.RpcError) as e:
        _check(target, creds)
    assert e.value.code() == grpc.StatusCode.UNAVAILABLE


def test_agora_certs_writes_the_ca_and_one_pair_per_component(tmp_path, capsys):
    from agora.deploy.cli import main
    assert main(["certs", "--sites", "a,b", "--replicas", "4", "--out", str(tmp_path)]) == 0
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == sorted(["ca.crt", "ca.key"] + [f"{n}.{e}" for n in
                           ("site-a", "site-b", "replica-0", "replica-1", "replica-2",
                            "replica-3", "client") for e in ("crt", "key")])
    assert "wrote 8 certificates" in capsys.readouterr().out

"""Mutual TLS between coordinator replicas and their clients: four `agora coordinator`
processes with certificates from `deploy/certs.make_all` (LocalGroup(tls_dir=...)). Their
peer links run over TLS (nothing commits otherwise); a client with a certificate from the
CA gets its requests committed; a client with no certificate, with another CA's
certificate, or speaking plaintext is refused in the handshake (gRPC UNAVAILABLE) and
changes nothing. Also the ``tls`` section of the configuration."""

from __future__ import annotations

import asyncio
import time

import grpc
import pytest
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc

from agora.agents.workloads.errors import InputError
from agora.coordinator.client import INSECURE, CoordinatorError
from agora.coordinator.config import load_config
from agora.deploy.local_group import LocalGroup
from agora.coordinator.transport import client_channel_credentials, server_credentials
from agora.deploy.certs import make_all
from agora.protos.agora.v1 import coordinator_pb2_grpc as rpc
from tests.coordinator.grpc_helpers import CLUSTER, decision, job

CLIENTS = ["site:east", "site:west", "operator"]
pytestmark = pytest.mark.timeout(180)


# ---- the tls section ----

def _cfg(tmp_path, tls):
    data = {"replicas": ["127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3", "127.0.0.1:4"],
            "tls": tls}
    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump(data))
    return load_config(p)


def test_tls_paths_default_to_the_agora_certs_layout_relative_to_the_config(tmp_path):
    c = _cfg(tmp_path, {"enabled": True, "certs_dir": "certs"})
    assert c.tls_enabled
    assert c.tls_path("ca") == tmp_path / "certs" / "ca.crt"
    assert c.tls_path("cert", 2) == tmp_path / "certs" / "replica-2.crt"
    assert c.tls_path("key", 2) == tmp_path / "certs" / "replica-2.key"
    assert c.tls_path("client_cert") == tmp_path / "certs" / "client.crt"
    c = _cfg(tmp_path, {"enabled": True, "ca": "/pki/ca.pem", "cert": "r{replica}.pem",
                        "key": "r{replica}.key", "client_cert": "me.pem",
                        "client_key": "me.key"})
    assert str(c.tls_path("ca")) == "/pki/ca.pem"     # absolute paths stay as they are
    assert c.tls_path("cert", 3) == tmp_path / "r3.pem"


def test_tls_off_means_plaintext(tmp_path):
    for tls in (None, {"enabled": False}, {"enabled": False, "certs_dir": "x"}):
        c = _cfg(tmp_path, tls)
        assert not c.tls_enabled
        assert server_credentials(c, 0) is None and client_channel_credentials(c) is None


@pytest.mark.parametrize("tls, field", [
    ({"enabled": True}, "tls.ca"),
    ({"enabled": "yes", "certs_dir": "c"}, "tls.enabled"),
    ({"enabled": True, "certs_dir": ""}, "tls.certs_dir"),
    ({"enabled": True, "certs_dir": "c", "bogus": 1}, "tls.bogus"),
    (["x"], "tls"),
])
def test_bad_tls_sections_name_the_field(tmp_path, tls, field):
    with pytest.raises(InputError) as e:
        _cfg(tmp_path, tls)
    assert e.value.field == field


def test_a_missing_certificate_file_is_named(tmp_path):
    c = _cfg(tmp_path, {"enabled": True, "certs_dir": "nowhere"})
    with pytest.raises(ValueError, match=r"tls\.(key|cert): cannot read .*replica-1\.(key|crt)"):
        server_credentials(c, 1)


# ---- four replica processes with mutual TLS ----

@pytest.fixture(scope="module")
def group(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tls")
    g = LocalGroup(tmp, n=4, clients=CLIENTS, key_seed=b"test-tls", cluster=str(CLUSTER),
                   tls_dir=tmp / "certs", batch_size=8, batch_timeout_s=0.001,
                   checkpoint_interval=4, watermark_window=16, view_change_timeout_s=0.5,
                   request_timeout_s=8.0)
    with g.serving():
        yield g


def _executed(g: LocalGroup) -> list[int]:
    out = []
    for i in range(4):
        with g.channel(i) as ch:
            out.append(rpc.CoordinatorStub(ch).GetStatus(g.status_request(replica=i),
                                                         timeout=5).last_executed)
    return out


def test_the_group_writes_certificates_for_replicas_clients_and_sites(group):
    names = sorted(p.name for p in group.tls_dir.glob("*.crt"))
    assert names == sorted(["ca.crt", "client.crt", "site-east.crt", "site-west.crt"] +
                           [f"replica-{i}.crt" for i in range(4)])
    assert group.config.tls_enabled


def test_a_client_with_a_certificate_from_the_ca_gets_its_request_committed(group):
    async def go():
        # the default client certificate, and a site's own certificate
        async with group.client("site:east") as east, \
                group.client("site:west", tls_identity="site-west") as west:
            r = await east.submit_jobs([job("t1")])
            assert r.accepted == 1 and r.version > 0
            rnd = r.round
            assert (await west.submit_round(decision("west", rnd, ("t1", "map", 4, 9)))
                    ).accepted == 1
            q = await west.schedule(job_id="t1")
            assert q.version >= r.version
            statuses = await east.status()
            assert all(not isinstance(s, str) for s in statuses)
            return r.version
    version = asyncio.run(asyncio.wait_for(go(), 60))
    # committed on every replica: the peer links run over mutual TLS too
    end = time.monotonic() + 20
    while min(_executed(group)) < version and time.monotonic() < end:
        time.sleep(0.1)
    assert min(_executed(group)) >= version


def test_health_over_tls_reports_serving(group):
    with group.channel(3) as ch:
        r = health_pb2_grpc.HealthStub(ch).Check(
            health_pb2.HealthCheckRequest(service="agora.v1.Coordinator"), timeout=5)
    assert r.status == health_pb2.HealthCheckResponse.SERVING


def _refused_credentials(group, tmp_path):
    ca = (group.tls_dir / "ca.crt").read_bytes()
    other = tmp_path / "other-ca"
    make_all(other, [], replicas=0)
    return {
        "no certificate": grpc.ssl_channel_credentials(root_certificates=ca),
        "another CA's certificate": grpc.ssl_channel_credentials(
            root_certificates=ca, private_key=(other / "client.key").read_bytes(),
            certificate_chain=(other / "client.crt").read_bytes()),
        "plaintext": INSECURE,
    }


@pytest.mark.parametrize("kind", ["no certificate", "another CA's certificate", "plaintext"])
def test_a_client_without_a_certificate_from_the_ca_is_refused(group, tmp_path, kind):
    creds = _refused_credentials(group, tmp_path)[kind]
    before = _executed(group)

    async def go():
        async with group.client("site:east", credentials=creds, timeout_s=10) as c:
            with pytest.raises(CoordinatorError) as e:
                await c.submit_jobs([job(f"refused-{len(kind)}")])
            return e.value
    err = asyncio.run(asyncio.wait_for(go(), 60))
    assert err.code == grpc.StatusCode.UNAVAILABLE
    # every replica refused it at the connection, none answered
    assert sorted(err.errors) == [0, 1, 2, 3]
    assert all(m.startswith("UNAVAILABLE") for m in err.errors.values()), err.errors

    # the same with a bare stub: the RPC fails with UNAVAILABLE
    address = group.config.replicas[0]
    with (grpc.insecure_channel(address) if creds == INSECURE
          else grpc.secure_channel(address, creds)) as ch:
        with pytest.raises(grpc.RpcError) as e:
            rpc.CoordinatorStub(ch).GetStatus(group.status_request(), timeout=5)
    assert e.value.code() == grpc.StatusCode.UNAVAILABLE
    assert _executed(group) == before


def test_agora_status_connects_with_the_configs_client_certificate(group, capsys):
    from agora.deploy.cli_coordinator import main
    assert main(["status", "--config", str(group.tmp / "coordinator.yaml")]) == 0
    out = capsys.readouterr().out
    assert "agreed by f+1: view=" in out and "no answer" not in out

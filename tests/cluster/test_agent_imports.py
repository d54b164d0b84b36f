"""What a site agent's process loads (issue 11: an agent's memory at 64 sites). The agent is
a long-lived Ray actor on every site's node, so a library it loads for a few calls at
start-up stays resident for the whole run in each one: ``cryptography`` (about 7 MiB) is
used only to make the node's TLS key, its certificate request, and to check the
certificate, and that runs in a short-lived child process (``coordinator.site_tls``); the
replica and its SQLite log (``coordinator.pbft`` exports them lazily) are not loaded."""

from __future__ import annotations

import subprocess
import sys

AGENT_MODULES = ("agora.agents.cluster.site_actor", "agora.coordinator.clearinghouse",
                 "agora.coordinator.site_key", "agora.agents.cluster.ray_executor",
                 "agora.agents.cluster.replay_clock")

NODE_SIDE = """
import importlib, sys
for m in {modules!r}:
    importlib.import_module(m)
from agora.coordinator.site_key import NodeIdentity
node = NodeIdentity(site="east", key_dir={key_dir!r}, ca=open({ca!r}, "rb").read())
if sys.argv[1] == "request":
    assert node.certificate() is None
    sys.stdout.write(node.tls_request().decode())
else:
    node.install(open(sys.argv[2], "rb").read())
    pem = node.tls_pem()
    assert pem is not None and node.certificate() == pem[1]
    node.build("east", pem)
assert "cryptography" not in sys.modules, "the agent's process loaded cryptography"
assert "sqlite3" not in sys.modules, "the agent's process loaded the replicas' log (SQLite)"
"""


def _node(tmp_path, *args: str) -> str:
    code = NODE_SIDE.format(modules=AGENT_MODULES, key_dir=str(tmp_path / "node"),
                            ca=str(tmp_path / "ca" / "ca.crt"))
    r = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    return r.stdout


def test_an_agents_process_makes_and_checks_its_tls_key_without_loading_cryptography(
        tmp_path):
    from agora.deploy.certs import make_ca, sign_request

    make_ca(tmp_path / "ca")
    csr = _node(tmp_path, "request").encode()
    assert csr.startswith(b"-----BEGIN CERTIFICATE REQUEST-----")
    key = tmp_path / "node" / "site-east.tls.key"
    assert key.stat().st_mode & 0o777 == 0o600
    (tmp_path / "east.crt").write_bytes(sign_request(tmp_path / "ca", "site-east", csr))
    _node(tmp_path, "install", str(tmp_path / "east.crt"))
    assert (tmp_path / "node" / "site-east.tls.crt").read_bytes() == \
        (tmp_path / "east.crt").read_bytes()


def test_a_certificate_is_checked_once_an_hour_not_at_every_question(tmp_path, monkeypatch):
    """The operator's supervisor asks every agent for its identity every 5 s, and each
    question checked the certificate in a fresh child process: 64 agents' children took both
    cores of a 2-core machine and the replay stalled (sites lapsed, unheard)."""
    from agora.coordinator import site_key
    from agora.coordinator.site_key import NodeIdentity
    from agora.deploy.certs import make_ca, sign_request

    make_ca(tmp_path / "ca")
    node = NodeIdentity(site="east", key_dir=str(tmp_path / "node"),
                        ca=(tmp_path / "ca" / "ca.crt").read_bytes())
    calls = []
    real = NodeIdentity._child
    monkeypatch.setattr(NodeIdentity, "_child",
                        lambda self, op, **kw: calls.append(op) or real(self, op, **kw))
    now = [1000.0]
    monkeypatch.setattr(site_key.time, "monotonic", lambda: now[0])
    site_key._fits_seen.clear()
    node.install(sign_request(tmp_path / "ca", "site-east", node.tls_request()))
    assert calls == ["request", "fits"]                  # what install checked stands
    calls.clear()
    pems = {node.certificate() for _ in range(20)}
    assert len(pems) == 1 and None not in pems and calls == []
    now[0] += site_key.FITS_TTL_S                        # an hour on: asked again
    assert node.certificate() is not None and calls == ["fits"]
    (tmp_path / "node" / "site-east.tls.crt").write_bytes(b"not a certificate")
    assert node.certificate() is None and len(calls) == 2   # another file: checked at once

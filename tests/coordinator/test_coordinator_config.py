"""The coordinator's YAML configuration and `agora keys`: clear errors with file and field."""

from __future__ import annotations

import pytest
import yaml

from agora.agents.workloads.errors import InputError
from agora.coordinator.config import load_config
from agora.coordinator.pbft.keys import KeySet
from agora.deploy.cli_coordinator import DEFAULT_CONFIG, main


def write(tmp_path, data) -> str:
    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump(data))
    return str(p)


def test_the_shipped_local_config_loads():
    cfg = load_config(DEFAULT_CONFIG)
    assert cfg.n == 4 and cfg.f == 1 and cfg.pbft().n == 4
    assert all(r.startswith("127.0.0.1:") for r in cfg.replicas)
    assert cfg.require_run is False


@pytest.mark.parametrize("data, field, expected", [
    ({"f": 1}, "replicas", "host:port"),
    ({"replicas": ["a:1", "b:2", "c:3"], "f": 1}, "replicas", "3f+1"),
    ({"replicas": ["a:1", "b"], "f": 1}, "replicas[1]", "host:port"),
    ({"replicas": ["a:1"], "f": 0, "batch_size": 0}, "batch_size", "integer >= 1"),
    ({"replicas": ["a:1"], "f": 0, "view_change_timeout_s": 0}, "view_change_timeout_s", "> 0"),
    ({"replicas": ["a:1"], "f": 0, "bogus": 1}, "bogus", "one of"),
    ({"replicas": ["a:1"], "f": 0, "require_run": "yes"}, "require_run", "true or false"),
    ({"replicas": ["a:1"], "f": 0, "checkpoint_interval": 10, "watermark_window": 15},
     "watermark_window", None),
])
def test_bad_configs_name_the_file_and_field(tmp_path, data, field, expected):
    path = write(tmp_path, data)
    with pytest.raises(InputError) as e:
        load_config(path)
    assert e.value.path == path and e.value.field == field
    if expected:
        assert expected in str(e.value)


@pytest.mark.parametrize("text, field, line", [
    ("replicas:\n  - a:1\n  - nope\nf: 0\n", "replicas[1]", 3),
    ("replicas: [a:1]\nf: 0\n\nbatch_size: -3\n", "batch_size", 4),
    ("replicas: [a:1]\nf: 0\ntls:\n  enabled: true\n  ca: 3\n", "tls.ca", 5),
    ("replicas: [a:1]\nf: 0\nbogus: 1\n", "bogus", 3),
    ("replicas: [a:1]\nf: 0\nbatch_size: 010\n", None, 3),        # YAML 1.1 octal: refused
    ("replicas: [a:1]\nf: 0\nf: 1\n", "f", 3),                     # a key twice
    # a probe: one address twice was taken, and agora status said all was well
    ("replicas: [a:1, a:2, a:1, a:4]\nf: 1\n", "replicas", 1),
])
def test_a_bad_config_names_the_line_as_the_other_readers_do(tmp_path, text, field, line):
    p = tmp_path / "c.yaml"
    p.write_text(text)
    with pytest.raises(InputError) as e:
        load_config(str(p))
    assert (e.value.field, e.value.line) == (field, line)
    assert str(e.value).startswith(f"{p}:{line}: ")


def test_agora_keys_writes_a_private_key_file(tmp_path, capsys):
    out = tmp_path / "keys.yaml"
    assert main(["keys", "--replicas", "4", "--clients", "site:a,site:b", "--out", str(out)]) == 0
    assert out.stat().st_mode & 0o077 == 0
    keys = KeySet.from_dict(yaml.safe_load(out.read_text()))
    assert keys.n == 4 and sorted(keys.client_verify) == [
        "operator", *(f"replica:{i}" for i in range(4)), "site:a", "site:b"]
    assert main(["keys", "--replicas", "5", "--out", str(out)]) == 2
    assert "3f+1" in capsys.readouterr().err


def test_a_keys_file_given_as_the_configuration_is_named_so(tmp_path):
    # a probe: it said "unknown field; expected one of ['batch_size', ...]"
    keys = tmp_path / "keys.yaml"
    assert main(["keys", "--replicas", "1", "--out", str(keys)]) == 0
    with pytest.raises(InputError, match="this is a coordinator keys file"):
        load_config(keys)


def test_status_warns_and_fails_when_too_few_replicas_answer_to_commit(monkeypatch, capsys):
    """A probe: with two of four replicas stopped, ``agora status`` printed "agreed by f+1"
    and exited 0, though nothing could be committed (2f+1 = 3 are needed). The replicas'
    answers here are made up (a fake client, in this unit test only)."""
    import agora.deploy.cli_coordinator as cc
    from agora.protos.agora.v1 import coordinator_pb2 as pb

    cfg = load_config(DEFAULT_CONFIG)
    answers = [pb.ReplicaStatus(view=2, primary=2, last_executed=9)] * 2 + ["refused"] * 2

    class Fake:
        async def __aenter__(self):
            return self

        async def __aexit__(self, *exc):
            return None

        async def status(self):
            return list(answers)

    monkeypatch.setattr(cc, "_client", lambda a: (cfg, Fake()))
    # a service that runs (else agora status reads the replicas' logs on disk)
    monkeypatch.setattr("agora.deploy.service_client.Target.serving", lambda self: True)
    assert main(["status"]) == 1
    assert "warning: 2 of 4 replicas answer; ordering needs 2f+1 = 3" in capsys.readouterr().out
    answers[2] = answers[0]
    assert main(["status"]) == 0
    assert "warning" not in capsys.readouterr().out

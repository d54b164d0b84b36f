"""``agora site list``'s key column: an admitted key, the key file's, or none. A probe read
"(the key file's)" beside every site of a standalone group whose key file held two. The
service is a stand-in here (``run_live`` returns a ledger view); the key file is real."""

from __future__ import annotations

from types import SimpleNamespace

import yaml

from agora.coordinator.pbft.keys import generate_keys
from agora.coordinator.private_file import write_private
from agora.deploy import cli_sites
from agora.deploy.cli import main
from agora.protos.agora.v1 import coordinator_pb2 as pb


def test_a_site_without_a_key_is_listed_as_not_admitted_unless_the_key_file_has_one(
        tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path / "..")          # not the config's folder
    (tmp_path / "conf").mkdir()
    keys = tmp_path / "keys.yaml"               # named relative to the config's folder
    write_private(keys, yaml.safe_dump(generate_keys(4, ["operator", "site:dc-east"],
                                                     seed=b"list").to_dict()))
    view = pb.LedgerView(version=7)
    view.sites.add(site="dc-east")
    view.sites.add(site="dc-west")
    view.sites.add(site="edge", key=b"\x01" * 32)
    t = SimpleNamespace(coordinator=SimpleNamespace(
        keys_file="../keys.yaml", path=lambda p: tmp_path / "conf" / p))
    monkeypatch.setattr(cli_sites, "target", lambda config: t)
    monkeypatch.setattr(cli_sites, "run_live", lambda *a, **k: (view, set()))
    cfg = tmp_path / "c.yaml"
    cfg.write_text("x: 1\n")
    assert main(["site", "list", "--config", str(cfg)]) == 0
    rows = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()}
    assert "(the key file's)" in rows["dc-east"]
    assert "(none: not admitted)" in rows["dc-west"]
    assert "0101010101010101..." in rows["edge"]

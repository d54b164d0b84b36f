"""``agora up`` starts its replicas once more on fresh ports only when one could not listen
(its port taken meanwhile): a probe saw a replica whose log was damaged tried "once more on
fresh ports" first, which cannot help, before the replica's own advice. Real replica
processes: the group started, stopped, one log damaged, started again."""

from __future__ import annotations

import logging

import pytest

from agora.deploy.launch import ReplicaDidNotStart, start_group
from agora.deploy.up_config import up_config_from_dict

pytestmark = pytest.mark.timeout(120)


def test_a_damaged_log_is_said_at_once_without_a_retry_on_fresh_ports(tmp_path, caplog):
    out = tmp_path / "out"
    cfg = up_config_from_dict({"out": str(out)})
    cluster = cfg.load_cluster()
    group = start_group(cfg, cluster, "default", out, keep=True)
    group.stop()
    (out / "coordinator" / "data" / "replica-1.sqlite").write_bytes(b"not SQLite " * 500)
    before = group.log(1).read_text().count("coordinator config:")
    with caplog.at_level(logging.WARNING, logger="agora.launch"):
        with pytest.raises(ReplicaDidNotStart, match="replica 1 did not start: .*its log: "):
            start_group(cfg, cluster, "default", out, keep=True)
    assert "fresh ports" not in caplog.text
    assert group.log(1).read_text().count("coordinator config:") == before + 1   # once

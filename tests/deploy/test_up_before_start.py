"""``agora up`` tells what would fail only once the service starts before it starts anything,
naming the field, exit 2. A probe: a policy file that is no checkpoint, or a replica_host
that does not resolve or is not this machine's, failed after the keeper had started (exit 1,
"could not start: gaierror", no field). Nothing is started here: each start is refused."""

from __future__ import annotations

import pytest

from agora.deploy.cli import main


@pytest.mark.parametrize("line, words", [
    ('replica_host: "not a host!"', "field 'replica_host': 'not a host!': the replicas cannot "
                                    "listen there"),
    ("replica_host: 203.0.113.77", "field 'replica_host': '203.0.113.77'"),    # not this machine
    ("policy: notack.pt", "field 'policy'"),
])
def test_what_fails_only_at_start_is_told_before_it(tmp_path, capsys, line, words):
    (tmp_path / "notack.pt").write_text("not a checkpoint")
    cfg = tmp_path / "up.yaml"
    cfg.write_text(f"out: {tmp_path / 'out'}\n{line}\n")
    assert main(["up", "--config", str(cfg), "--detach"]) == 2
    err = capsys.readouterr().err
    assert words in err and "Traceback" not in err, err
    assert not (tmp_path / "out" / "agora.log").exists()      # nothing was started


def test_a_state_made_by_a_larger_group_is_not_resumed_by_a_smaller_one(tmp_path, capsys):
    """A probe: a 7-replica state resumed as 4 replicas without a word, the logs of replicas
    4-6 left behind (a group's quorums are its size's)."""
    data = tmp_path / "out" / "coordinator" / "data"
    data.mkdir(parents=True)
    for i in range(7):
        (data / f"replica-{i}.sqlite").write_bytes(b"")
    cfg = tmp_path / "up.yaml"
    cfg.write_text(f"out: {tmp_path / 'out'}\nreplicas: 4\n")
    assert main(["up", "--config", str(cfg), "--detach"]) == 2
    err = capsys.readouterr().err
    assert "field 'replicas': 4, and " in err and "expected replicas: 7" in err, err

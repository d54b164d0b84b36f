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


def _log(path, executed: int) -> None:
    """A replica log as far as the start's check reads it (its meta table)."""
    import sqlite3

    db = sqlite3.connect(path)
    db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL)")
    db.execute("INSERT INTO meta VALUES ('executed', ?)", (executed,))
    db.commit()
    db.close()


def test_more_than_f_replicas_without_their_log_are_refused_naming_each(tmp_path, capsys):
    """A probe: two damaged logs moved aside one at a time, as the replica's own message
    advises; the service said it was up and never committed again."""
    from agora.deploy.cli_up import _rebuildable

    data = tmp_path / "out" / "coordinator" / "data"
    data.mkdir(parents=True)
    for i in (2, 3):
        _log(data / f"replica-{i}.sqlite", 578)
    (data / "replica-1.sqlite").write_bytes(b"garbage, not SQLite" * 100)
    cfg = tmp_path / "up.yaml"
    cfg.write_text(f"out: {tmp_path / 'out'}\nreplicas: 4\n")
    assert main(["up", "--config", str(cfg), "--detach"]) == 2
    err = capsys.readouterr().err
    assert "2 replicas have no usable log (replica 0: no log; replica 1: an unreadable " \
        "log" in err and "replicas 2, 3 executed up to sequence 578" in err, err
    assert "rebuilds at most f = 1" in err and "Traceback" not in err, err
    assert not (tmp_path / "out" / "agora.log").exists()      # nothing was started
    _log(data / "replica-0.sqlite", 0)                          # still empty: as missing
    with pytest.raises(ValueError, match="replica 1: an unreadable log.*replica 0: an empty"):
        _rebuildable(4, data)
    (data / "replica-1.sqlite").unlink()
    _log(data / "replica-1.sqlite", 570)
    assert _rebuildable(4, data) == ["replica 0: an empty log"]    # f = 1: the start goes on
    for i in range(4):
        (data / f"replica-{i}.sqlite").unlink()
        _log(data / f"replica-{i}.sqlite", 0)
    assert _rebuildable(4, data) == []    # a group that executed nothing yet

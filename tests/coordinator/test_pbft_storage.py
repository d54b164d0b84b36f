"""PBFT storage and restart: what a replica saves (in memory or SQLite, WAL and synchronous
FULL) loads back and truncates at a stable checkpoint; a restarted replica never contradicts
a vote it sent before the crash and rebuilds its app from the checkpoint and committed log."""

from __future__ import annotations

import sqlite3

import pytest

from agora.coordinator.pbft.messages import batch_digest
from agora.coordinator.pbft.storage import (LOG_FORMAT, MemoryStorage, SqliteStorage,
                                            old_format_problem)
from agora.protos.agora.v1.pbft_pb2 import PbftMessage
from tests.pbft_fixtures import Forge, finish, kinds, net, ops, replica

pytestmark = pytest.mark.timeout(60)


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_storage_round_trip(tmp_path, kind):
    fx = Forge()
    s = MemoryStorage() if kind == "memory" else SqliteStorage(tmp_path / "r.db")
    env = fx.pre_prepare([fx.request()])
    pp = PbftMessage.FromString(env.payload).pre_prepare
    s.save_view(3, False)
    s.save_pre_prepare(pp)
    s.save_vote("prepare", 0, 1, pp.digest)
    s.save_committed(1, 0, pp.digest)
    s.save_executed(1)
    s.save_client("c0", 1, b"1", b"o" * 32)
    s.save_checkpoint(4, b"d" * 32, b"state")
    s.save_stable(4, b"d" * 32, [env, env])
    s.flush()
    if kind == "sqlite":
        s.close()
        s = SqliteStorage(tmp_path / "r.db")
        mode = s.db.execute("PRAGMA journal_mode").fetchone()[0]
        assert mode == "wal" and s.db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    st = s.load()
    assert (st.view, st.view_active, st.executed) == (3, False, 1)
    assert st.pre_prepares[(0, 1)] == pp and st.votes[("prepare", 0, 1)] == pp.digest
    assert st.committed[1] == (0, pp.digest) and st.clients["c0"] == (1, b"1", b"o" * 32)
    assert st.checkpoints[4] == (b"d" * 32, b"state")
    assert st.stable[0] == 4 and st.stable[2] == [env, env]
    s.truncate(4)
    s.flush()
    st = s.load()
    assert not st.pre_prepares and not st.committed and 4 in st.checkpoints


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_restart_never_contradicts_an_earlier_vote(tmp_path, kind):
    fx = Forge()
    storage = MemoryStorage() if kind == "memory" else SqliteStorage(tmp_path / "r1.db")
    r = replica(1, storage=storage)
    a, b = fx.request("c0", 1), fx.request("c1", 1)
    assert kinds(r.receive(fx.pre_prepare([a]), 0.0)) == ["prepare"]
    if kind == "sqlite":
        storage.close()
        storage = SqliteStorage(tmp_path / "r1.db")
    again = replica(1, storage=storage)                  # crash: memory gone, storage kept
    out = again.receive(fx.pre_prepare([b]), 1.0)
    assert "prepare" not in kinds(out) and "commit" not in kinds(out)   # it suspects, no vote
    assert again.rejected["conflicting_pre_prepare"] == 1
    assert ("prepare", 0, 1) in again.sent_votes
    assert again.sent_votes[("prepare", 0, 1)] == batch_digest([a])


def test_restart_rebuilds_the_app_from_checkpoint_and_committed_log(tmp_path):
    storages = {i: SqliteStorage(tmp_path / f"r{i}.db") for i in range(4)}
    n = net(storage_factory=lambda i: storages[i])
    n.submit("c0", ops("c0", 7))
    finish(n)
    before = n.replica(2)
    data, executed, clients = dict(before.app.data), before.last_executed, dict(before.clients)
    storages[2].close()
    storages[2] = SqliteStorage(tmp_path / "r2.db")
    n.nodes[2].storage = storages[2]
    n.crash(2)
    n.restart(2)
    after = n.replica(2)
    assert after.app.data == data and after.last_executed == executed
    assert after.clients == clients and after.h == before.h


def test_a_log_written_before_op_digests_is_widened_in_place_and_still_read_offline(tmp_path):
    """A replica log from before the reply table kept its requests' op digests (no
    ``op_digest`` column): read offline as it is (digest b"", unknown), and a replica that
    opens it adds the column and goes on, instead of failing on the missing column."""
    import sqlite3

    from agora.coordinator.offline import load_log
    from agora.coordinator.pbft.storage import LOG_FORMAT

    path = tmp_path / "old.db"
    SqliteStorage(path).close()                      # today's tables, then the old client one
    db = sqlite3.connect(path)
    db.executescript(
        "DROP TABLE client;"
        "CREATE TABLE client (client_id TEXT PRIMARY KEY, timestamp INTEGER NOT NULL,"
        " result BLOB NOT NULL);")
    assert db.execute("SELECT value FROM meta WHERE key = 'format'").fetchone() == (LOG_FORMAT,)
    db.execute("INSERT INTO meta VALUES ('executed', 3)")
    db.execute("INSERT INTO client VALUES ('c0', 5, x'01')")
    db.commit()
    db.close()
    assert load_log(path).clients == {"c0": (5, b"\x01", b"")}
    s = SqliteStorage(path)
    assert s.load().clients == {"c0": (5, b"\x01", b"")}
    s.save_client("c1", 2, b"r", b"d" * 32)
    s.flush()
    s.close()
    assert load_log(path).clients == {"c0": (5, b"\x01", b""), "c1": (2, b"r", b"d" * 32)}


def test_a_log_of_a_newer_agora_is_not_called_one_of_an_earlier(tmp_path):
    """A review: it was refused as "a replica log of an earlier Agora", with the advice to
    start on a new folder; what is right is the Agora that wrote it."""
    path = tmp_path / "replica-0.sqlite"
    SqliteStorage(path).close()
    con = sqlite3.connect(path)
    con.execute("UPDATE meta SET value = ? WHERE key = 'format'", (LOG_FORMAT + 1,))
    con.commit()
    con.close()
    s = SqliteStorage(path)
    try:
        problem = old_format_problem(s)
    finally:
        s.close()
    assert problem is not None and str(path) in problem and "\n" not in problem
    assert "earlier Agora" not in problem and "newer" in problem
